//! What this machine offers the sandbox, for `execgate doctor`: the Landlock ABI, the
//! bubblewrap program, user namespaces and seccomp user notification. Each answers without
//! preparing a sandbox (`Sandbox::prepare` is the authoritative check).

use crate::SandboxError;
use std::path::PathBuf;

/// The kernel's Landlock ABI version, or why there is none.
pub fn landlock_abi() -> Result<i32, SandboxError> {
    crate::landlock::kernel_abi()
}

/// The bubblewrap program a session would use (system locations first, then `PATH`).
pub fn bwrap_path() -> Option<PathBuf> {
    crate::bwrap::locate().ok()
}

/// Whether the kernel offers seccomp user notification (`SECCOMP_GET_NOTIF_SIZES`), which
/// the session's supervisor needs.
pub fn seccomp_user_notification() -> Result<(), std::io::Error> {
    const SECCOMP_GET_NOTIF_SIZES: libc::c_ulong = 3;
    let mut sizes = [0u16; 3];
    // SAFETY: the kernel writes three u16 (struct seccomp_notif_sizes) into `sizes`.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            SECCOMP_GET_NOTIF_SIZES,
            0 as libc::c_ulong,
            sizes.as_mut_ptr(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// The sysctls that govern unprivileged user namespaces (bubblewrap needs one), with
/// their values, for those this kernel has.
pub fn user_namespace_sysctls() -> Vec<(&'static str, String)> {
    [
        "/proc/sys/user/max_user_namespaces",
        "/proc/sys/kernel/unprivileged_userns_clone",
        "/proc/sys/kernel/apparmor_restrict_unprivileged_userns",
    ]
    .into_iter()
    .filter_map(|path| {
        let value = std::fs::read_to_string(path).ok()?;
        Some((path, value.trim().to_string()))
    })
    .collect()
}
