//! The session init (`execgate_sandbox::init`) built from this crate, so its own tests and
//! benchmarks have one (`CARGO_BIN_EXE_execgate-sandbox-init`); the installed copy is the
//! root package's `execgate-init`.

fn main() {
    execgate_sandbox::init::main()
}
