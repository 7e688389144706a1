//! `libexecgate_preload.so`: an `LD_PRELOAD` shim that routes the exec family of a stock
//! shell (and its dynamically linked children) through the execgate protocol.
