//! Compiles the shim's C parts: `src/variadic.c` (`execl`, `execle`, `execlp`: C variadic
//! functions) and `src/personality.c` (a hidden `rust_eh_personality` stand-in, which a
//! `no_std` Rust library cannot define with hidden visibility itself).

fn main() {
    println!("cargo:rerun-if-changed=src/variadic.c");
    println!("cargo:rerun-if-changed=src/personality.c");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    cc::Build::new()
        .file("src/variadic.c")
        .flag_if_supported("-fvisibility=hidden")
        .compile("execgate_preload_variadic");
    // Whole-archive: `core`'s reference to the symbol comes later on the link line than this
    // archive, so the linker would not otherwise pull it in.
    cc::Build::new()
        .file("src/personality.c")
        .flag_if_supported("-fvisibility=hidden")
        .cargo_metadata(false)
        .compile("execgate_preload_personality");
    let out = std::env::var("OUT_DIR").unwrap_or_default();
    println!("cargo:rustc-link-search=native={out}");
    println!("cargo:rustc-link-lib=static:+whole-archive=execgate_preload_personality");
    // The hooks call into libc (`dlsym`, the real exec functions): say so, so its symbols
    // bind with their versions.
    println!("cargo:rustc-link-lib=dylib=c");
}
