//! Compiles the shim's C parts: `src/variadic.c` (`execl`, `execle`, `execlp`: C variadic
//! functions) and `src/unwind.c` (hidden unwinder stand-ins that keep `libgcc_s` out).

fn main() {
    println!("cargo:rerun-if-changed=src/variadic.c");
    println!("cargo:rerun-if-changed=src/unwind.c");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return;
    }
    cc::Build::new()
        .file("src/variadic.c")
        .flag_if_supported("-fvisibility=hidden")
        .compile("execgate_preload_variadic");
    // Whole-archive: the standard library's references to these symbols come later on the
    // link line than this archive, so the linker would not otherwise pull them in.
    cc::Build::new()
        .file("src/unwind.c")
        .flag_if_supported("-fvisibility=hidden")
        .cargo_metadata(false)
        .compile("execgate_preload_unwind");
    let out = std::env::var("OUT_DIR").unwrap_or_default();
    println!("cargo:rustc-link-search=native={out}");
    println!("cargo:rustc-link-lib=static:+whole-archive=execgate_preload_unwind");
}
