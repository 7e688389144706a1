//! The execgate wire protocol: every message exchanged between the execve wrapper (or the
//! preload shim) and the escalation server, the frame format and its size limit.
//!
//! (Skeleton: the protocol is being written.)
