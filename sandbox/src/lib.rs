//! The Linux sandbox the session's shell lives in: filesystem (bubblewrap, Landlock
//! fallback) and network (network namespace, seccomp) restrictions.
