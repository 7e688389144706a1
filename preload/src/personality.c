/* A hidden stand-in for `rust_eh_personality`, the one unwinding symbol the precompiled
 * `core` still refers to. The shim is `no_std` and built with panic=abort, so it is never
 * called. It must be hidden: an exported one would interpose on the personality routine of
 * a Rust program the shim is preloaded into, and break that program's own panics. It is
 * weak so that a build linking std (the never-run test build) takes std's. */

#include <stdlib.h>

__attribute__((weak, visibility("hidden"))) void rust_eh_personality(void) { abort(); }
