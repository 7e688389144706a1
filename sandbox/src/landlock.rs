//! The Landlock backend: read everywhere, write only the writable roots, a short allow-list
//! of devices (the null-like ones, `/dev/tty`, ptys of the session's own and, without a
//! mount namespace, `/dev/ptmx` and the session's own terminal, so no other terminal can be
//! read or written), signals and abstract unix sockets scoped to the sandbox (ABI 6).
//!
//! The server resolves the paths into a [`LandlockSpec`] ([`LandlockPlan::new`]); the
//! session's init builds the ruleset from it ([`build`]) and applies it to the shell's
//! process after creating its namespaces (a Landlock domain may no longer mount). Under
//! bubblewrap the same function builds a scope-only domain: bwrap restricts the
//! filesystem itself.
//!
//! Landlock grants rights down a hierarchy and cannot take them back for a subpath, so a
//! protected path inside a writable root cannot stay read-only; the caller refuses to
//! start in that case unless the user accepted it. For the same reason the host's `/dev`
//! must not be under a read grant. With a mount namespace (as root) the init replaces it
//! with a fresh one holding only [`DEVICE_NODES`], its own `/dev/pts` and `/dev/shm`
//! (and makes every other mount `nodev`), so `/` is granted whole: one rule that every
//! path walk ends at. Without one, each top-level folder but `/dev` gets a read rule and
//! the allowed devices are listed one by one.

use crate::control::LandlockSpec;
use crate::paths::Resolved;
use crate::SandboxError;
use landlock::{
    Access, AccessFs, BitFlags, CompatLevel, Compatible, PathBeneath, PathFd, Ruleset, RulesetAttr,
    RulesetCreatedAttr, Scope, ABI,
};
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

/// Devices that stay writable (and, for terminals, usable with ioctls) in every mode; the
/// session's own `/dev` (with a mount namespace) holds exactly these, bound from the host.
pub(crate) const DEVICE_NODES: [&str; 6] = [
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
    "/dev/tty",
];
/// The host's pty multiplexer, allowed when the session shares the host's `/dev` (a
/// session with its own `/dev` gets the `ptmx` of its own `/dev/pts`).
const HOST_PTMX: &str = "/dev/ptmx";
/// The session's own ptys, and its `/dev/shm`, in a `/dev` of its own.
const OWN_PTS: &str = "/dev/pts";
const OWN_SHM: &str = "/dev/shm";

/// The resolved Landlock domain for a policy; each session's init builds it afresh.
#[derive(Debug, Clone)]
pub(crate) struct LandlockPlan {
    /// What the init applies.
    pub spec: LandlockSpec,
    /// The Landlock ABI the kernel reports.
    pub abi: i32,
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

/// The scope-only domain bubblewrap sessions get (signals and abstract sockets stay
/// inside), when the kernel has Landlock ABI 6; `None` otherwise.
pub(crate) fn scope_only() -> Option<LandlockSpec> {
    let abi = kernel_abi().ok()?;
    (abi >= 6).then(|| LandlockSpec {
        abi,
        fs: false,
        ..LandlockSpec::default()
    })
}

impl LandlockPlan {
    /// Resolves the domain for a policy. `own_dev`: the init gives the session a `/dev` of
    /// its own (it has a mount namespace); else the host's `/dev` is shared, and no
    /// terminal in it is usable by its path but those [`crate::Sandbox::allow_terminal`]
    /// adds.
    pub fn new(resolved: &Resolved, own_dev: bool) -> Result<Self, SandboxError> {
        let abi = kernel_abi()?;
        if abi < 3 {
            return Err(SandboxError::LandlockTooOld { found: abi });
        }
        let root = Path::new("/");
        let mut devices: Vec<PathBuf> = DEVICE_NODES
            .iter()
            .map(PathBuf::from)
            .filter(|p| p.exists())
            .collect();
        let mut write = resolved.writable.clone();
        let (read, list) = if own_dev {
            devices.push(OWN_PTS.into());
            write.push(OWN_SHM.into());
            (vec![root.to_path_buf()], Vec::new())
        } else {
            if Path::new(HOST_PTMX).exists() {
                devices.push(HOST_PTMX.into());
            }
            let entries = std::fs::read_dir(root).map_err(|source| SandboxError::Io {
                what: "cannot list / for the Landlock ruleset",
                source,
            })?;
            let mut read: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p != Path::new("/dev"))
                .collect();
            read.sort();
            (read, vec![root.to_path_buf()])
        };
        let spec = LandlockSpec {
            abi,
            fs: true,
            read,
            list,
            write,
            devices,
        };
        // Build it once here, so a path that cannot be used is reported at prepare time
        // (without the session's own /dev/pts and /dev/shm, which only its init makes).
        let mut host_view = spec.clone();
        host_view.write.retain(|p| p != Path::new(OWN_SHM));
        host_view.devices.retain(|p| p != Path::new(OWN_PTS));
        build(&host_view)?;
        Ok(LandlockPlan { spec, abi })
    }
}

/// Builds the ruleset `spec` describes (in the init, just before it is applied).
pub(crate) fn build(spec: &LandlockSpec) -> Result<OwnedFd, SandboxError> {
    let abi = match spec.abi {
        i32::MIN..=3 => ABI::V3,
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
    let mut ruleset = Ruleset::default().set_compatibility(CompatLevel::HardRequirement);
    if spec.fs {
        ruleset = ruleset
            .handle_access(AccessFs::from_all(abi))
            .map_err(err(root))?;
    }
    if abi >= ABI::V6 {
        ruleset = ruleset.scope(Scope::from_all(abi)).map_err(err(root))?;
    }
    let mut created = ruleset.create().map_err(err(root))?;
    if spec.fs {
        for dir in &spec.list {
            created = created
                .add_rule(path_rule(dir, AccessFs::ReadDir.into())?)
                .map_err(err(dir))?;
        }
        for path in &spec.read {
            // A file (e.g. /.dockerenv) takes only the rights that apply to files.
            let mut access = AccessFs::from_read(abi);
            if !path.is_dir() {
                access &= AccessFs::from_file(abi);
            }
            created = created
                .add_rule(path_rule(path, access)?)
                .map_err(err(path))?;
        }
        for dir in &spec.write {
            created = created
                .add_rule(path_rule(dir, AccessFs::from_all(abi))?)
                .map_err(err(dir))?;
        }
        // Truncate too: `> /dev/null` opens with O_TRUNC, which Landlock checks.
        let mut device = AccessFs::ReadFile | AccessFs::WriteFile | AccessFs::Truncate;
        if abi >= ABI::V5 {
            device |= AccessFs::IoctlDev;
        }
        for dev in &spec.devices {
            // A directory (the session's own /dev/pts) grants its devices beneath.
            let access = if dev.is_dir() {
                device | AccessFs::ReadDir
            } else {
                device
            };
            created = created
                .add_rule(path_rule(dev, access)?)
                .map_err(err(dev))?;
        }
    }
    let fd: Option<OwnedFd> = created.into();
    fd.ok_or_else(|| SandboxError::LandlockUnavailable {
        detail: "the landlock crate created no ruleset".to_owned(),
    })
}

fn path_rule(path: &Path, access: BitFlags<AccessFs>) -> Result<PathBeneath<PathFd>, SandboxError> {
    let fd = PathFd::new(path).map_err(|e| SandboxError::LandlockRuleset {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })?;
    Ok(PathBeneath::new(fd, access))
}
