//! Links the `execgate-execve-wrapper` binary freestanding on Linux: its own `_start`, no C
//! runtime, no libc, no dynamic loader, not position-independent (so nothing needs relocating
//! at startup). See `execve-wrapper/src/rt.rs`.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        for arg in [
            "-nostartfiles",
            "-nostdlib",
            "-static",
            "-no-pie",
            "-Wl,-z,norelro",
        ] {
            println!("cargo:rustc-link-arg-bin=execgate-execve-wrapper={arg}");
        }
    }
}
