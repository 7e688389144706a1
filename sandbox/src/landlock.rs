//! The Landlock fallback: read everywhere, write only the writable roots and a few devices,
//! plus the same seccomp filters, applied in the child between `fork` and `exec`.
//!
//! The server is a multithreaded tokio program, so the child of `fork` may only make
//! async-signal-safe calls: no allocation, no locks. The ruleset is therefore built with
//! the `landlock` crate *before* the fork, and the `pre_exec` hook makes three raw system
//! calls on data prepared in advance: `prctl(PR_SET_NO_NEW_PRIVS)`,
//! `landlock_restrict_self(fd)` and `seccomp(SECCOMP_SET_MODE_FILTER)` per filter. We do
//! not call the crate's `RulesetCreated::restrict_self` there: it consumes the ruleset (a
//! `Command` may be spawned more than once) and does compatibility bookkeeping that is not
//! documented as safe after `fork`.
//!
//! Landlock grants rights down a hierarchy and cannot take them back for a subpath, so a
//! protected path inside a writable root cannot stay read-only; the caller refuses to
//! start in that case unless the user accepted it.

use crate::paths::Resolved;
use crate::seccomp::Program;
use crate::SandboxError;
use landlock::{
    Access, AccessFs, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, Scope, ABI,
};
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// Devices that stay writable (and, for terminals, usable with ioctls) in every mode.
const DEVICES: [&str; 7] = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
    "/dev/ptmx",
];
/// Pseudo-terminal slaves, so a shell on a terminal can reopen `/dev/stdout` or its tty.
const PTS_DIR: &str = "/dev/pts";

/// A built ruleset and filters; each [`LandlockPlan::command`] applies them in its child.
#[derive(Debug, Clone)]
pub(crate) struct LandlockPlan {
    /// The ruleset fd (`landlock_create_ruleset`), shared with every command's hook.
    ruleset: Arc<OwnedFd>,
    /// The seccomp programs.
    filters: Arc<Vec<Program>>,
    /// The Landlock ABI the ruleset was built for.
    pub abi: i32,
    /// Whether signals and abstract UNIX sockets are scoped to the sandbox (ABI 6).
    pub scoped: bool,
    /// Working directory of the child.
    cwd: PathBuf,
}

/// The kernel's Landlock ABI version, or why there is none.
pub(crate) fn kernel_abi() -> Result<i32, SandboxError> {
    const LANDLOCK_CREATE_RULESET_VERSION: libc::c_uint = 1;
    // SAFETY: the version query takes no pointers (NULL, 0) and returns a number.
    let abi = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<libc::c_void>(),
            0usize,
            LANDLOCK_CREATE_RULESET_VERSION,
        )
    };
    if abi >= 0 {
        return i32::try_from(abi).map_err(|_| SandboxError::LandlockUnavailable {
            detail: format!("the kernel reported ABI {abi}"),
        });
    }
    let err = io::Error::last_os_error();
    let detail = match err.raw_os_error() {
        Some(libc::ENOSYS) => "the kernel was built without CONFIG_SECURITY_LANDLOCK".to_owned(),
        Some(libc::EOPNOTSUPP) => "Landlock is built in but not enabled at boot".to_owned(),
        _ => format!("landlock_create_ruleset: {err}"),
    };
    Err(SandboxError::LandlockUnavailable { detail })
}

impl LandlockPlan {
    /// Builds the ruleset for a resolved policy; `filters` are applied after it.
    pub fn new(resolved: &Resolved, filters: Vec<Program>) -> Result<Self, SandboxError> {
        let found = kernel_abi()?;
        let abi = match found {
            i32::MIN..=2 => return Err(SandboxError::LandlockTooOld { found }),
            3 => ABI::V3,
            4 => ABI::V4,
            5 => ABI::V5,
            _ => ABI::V6,
        };
        let err = |path: &Path| {
            let path = path.to_path_buf();
            move |e: landlock::RulesetError| SandboxError::LandlockRuleset {
                path,
                detail: e.to_string(),
            }
        };
        let root = Path::new("/");
        let scoped = abi >= ABI::V6;
        let mut ruleset = Ruleset::default()
            .set_compatibility(CompatLevel::HardRequirement)
            .handle_access(AccessFs::from_all(abi))
            .map_err(err(root))?;
        if scoped {
            ruleset = ruleset.scope(Scope::from_all(abi)).map_err(err(root))?;
        }
        let mut created = ruleset.create().map_err(err(root))?;

        created = created
            .add_rule(path_rule(root, AccessFs::from_read(abi))?)
            .map_err(err(root))?;
        for dir in &resolved.writable {
            created = created
                .add_rule(path_rule(dir, AccessFs::from_all(abi))?)
                .map_err(err(dir))?;
        }
        // Truncate too: `> /dev/null` opens with O_TRUNC, which Landlock checks.
        let mut device = AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::Truncate;
        if abi >= ABI::V5 {
            device |= AccessFs::IoctlDev;
        }
        for dev in DEVICES.iter().map(Path::new).filter(|p| p.exists()) {
            created = created
                .add_rule(path_rule(dev, device)?)
                .map_err(err(dev))?;
        }
        let pts = Path::new(PTS_DIR);
        if pts.is_dir() {
            created = created
                .add_rule(path_rule(pts, device | AccessFs::ReadDir)?)
                .map_err(err(pts))?;
        }

        let fd: Option<OwnedFd> = created.into();
        let ruleset = fd.ok_or_else(|| SandboxError::LandlockUnavailable {
            detail: "the landlock crate created no ruleset".to_owned(),
        })?;
        Ok(LandlockPlan {
            ruleset: Arc::new(ruleset),
            filters: Arc::new(filters),
            abi: found,
            scoped,
            cwd: resolved.cwd.clone(),
        })
    }

    /// A command that runs `program args` under the ruleset and filters.
    pub fn command(&self, program: &Path, args: &[OsString]) -> Command {
        let mut cmd = Command::new(program);
        cmd.args(args).current_dir(&self.cwd);
        let ruleset = Arc::clone(&self.ruleset);
        let filters = Arc::clone(&self.filters);
        // SAFETY: the hook makes only async-signal-safe system calls on memory prepared
        // before the fork (the ruleset fd, the filter instructions); it neither allocates
        // nor takes locks (`io::Error::last_os_error` stores the errno inline).
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                let fd = ruleset.as_raw_fd();
                if libc::syscall(libc::SYS_landlock_restrict_self, fd, 0u32) != 0 {
                    return Err(io::Error::last_os_error());
                }
                for program in filters.iter() {
                    let prog = libc::sock_fprog {
                        len: program.0.len() as libc::c_ushort,
                        filter: program.0.as_ptr().cast_mut(),
                    };
                    let rc = libc::syscall(
                        libc::SYS_seccomp,
                        libc::SECCOMP_SET_MODE_FILTER,
                        0u32,
                        &prog as *const libc::sock_fprog,
                    );
                    if rc != 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        cmd
    }
}

fn path_rule(path: &Path, access: BitFlags<AccessFs>) -> Result<PathBeneath<PathFd>, SandboxError> {
    let fd = PathFd::new(path).map_err(|e| SandboxError::LandlockRuleset {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    Ok(PathBeneath::new(fd, access))
}
