//! Raw Linux system calls, without libc.
//!
//! The execve wrapper is a freestanding static binary: with no dynamic loader and no libc to
//! start, an exec of it costs a fraction of an ordinary program's, which is what keeps an
//! intercepted command close to a plain `execve`. The protocol's client side runs in that
//! binary and in the preload shim, sometimes between `fork` and `exec`. Both need the same
//! handful of system calls with no allocation, no locks and no `errno` global: every call
//! here returns `Result<_, Errno>` straight from the kernel's return value.
//!
//! Supported: Linux on x86_64, aarch64 and riscv64 (64-bit layouts are assumed throughout).
//! On other systems the crate is empty.
//!
//! Why not `rustix`, the crate of choice for raw system calls: Cargo unifies a crate's
//! features across the workspace, and starlark's dependency tree turns on rustix's `std`
//! feature, which would link std into the freestanding wrapper.

#![no_std]
#![deny(missing_docs)]

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub use linux::*;
