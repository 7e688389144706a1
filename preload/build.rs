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
    // Every process of the session maps the shim, so its layout is paid on every exec:
    // no C start files (no `_init`/`_fini`, no TM-clone or `__cxa_finalize` imports), no
    // RELRO (one `mprotect` less), and code and read-only data in one segment, so the loader
    // maps two segments instead of four.
    for arg in ["-nostartfiles", "-Wl,-z,norelro", "-Wl,-z,noseparate-code"] {
        println!("cargo:rustc-cdylib-link-arg={arg}");
    }
    if links_with_lld() {
        // lld keeps read-only data apart from code unless told not to.
        println!("cargo:rustc-cdylib-link-arg=-Wl,--no-rosegment");
    }
}

/// Whether rustc links this target with its bundled lld: the default for
/// `x86_64-unknown-linux-gnu` since Rust 1.90, unless turned off with
/// `-Clinker-features=-lld` (or a linker of one's own).
fn links_with_lld() -> bool {
    println!("cargo:rerun-if-env-changed=CARGO_ENCODED_RUSTFLAGS");
    let flags = std::env::var("CARGO_ENCODED_RUSTFLAGS").unwrap_or_default();
    if flags.contains("linker-features=-lld") || flags.contains("-fuse-ld=bfd") {
        return false;
    }
    if flags.contains("linker-features=+lld") || flags.contains("-fuse-ld=lld") {
        return true;
    }
    if std::env::var("TARGET").as_deref() != Ok("x86_64-unknown-linux-gnu")
        || std::env::var_os("CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER").is_some()
    {
        return false;
    }
    rustc_minor_version().is_some_and(|minor| minor >= 90)
}

/// The minor version of the rustc doing this build (`1.95.0` gives 95).
fn rustc_minor_version() -> Option<u32> {
    let rustc = std::env::var_os("RUSTC")?;
    let out = std::process::Command::new(rustc)
        .arg("--version")
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    let version = text.split_whitespace().nth(1)?;
    version.split('.').nth(1)?.parse().ok()
}
