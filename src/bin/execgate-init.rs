//! `execgate-init`: the per-session init inside the sandbox (see `execgate_sandbox::init`).
//! Installed next to `execgate`; started by it, never by hand.

fn main() {
    execgate_sandbox::init::main()
}
