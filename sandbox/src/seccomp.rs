//! The seccomp filters every sandboxed process runs under, compiled with `seccompiler`.
//!
//! Two programs, because a `seccompiler` filter has one errno for all its matches:
//! - the *base* filter (always): `ptrace`, `process_vm_readv`/`process_vm_writev`,
//!   `io_uring_setup`/`_enter`/`_register`, and the terminal-injection ioctls `TIOCSTI` and
//!   `TIOCLINUX` fail with `EPERM`. Blocking `TIOCSTI` here is what lets the shell keep the
//!   session's controlling terminal (no `setsid`, so job control works) without being able
//!   to push keystrokes into the terminal of whoever runs execgate.
//! - the *network* filter (network off): `socket` and `socketpair` for any family but
//!   `AF_UNIX` fail with `EAFNOSUPPORT`. `AF_UNIX` stays: the escalation protocol needs
//!   `socketpair` and `SCM_RIGHTS`.
//! - the *unix-type* filter (always): `AF_UNIX` sockets and socketpairs of any type but
//!   `SOCK_STREAM` and `SOCK_SEQPACKET` fail with `EPERM` (`SOCK_RAW` is a datagram socket
//!   for `AF_UNIX`). With no unix datagram socket in the sandbox, no `sendto`/`sendmsg` can
//!   carry an address to a host socket (stream and seqpacket sockets ignore or refuse one),
//!   so `connect` is the only way to a named socket, and the supervisor decides each one.
//! - the *notify* filter ([`notify_program`], installed last by the session's init with
//!   `SECCOMP_FILTER_FLAG_NEW_LISTENER`): the system calls the supervisor decides are
//!   handed to it (`SECCOMP_RET_USER_NOTIF`); everything else is allowed. It is written by
//!   hand: `seccompiler` has no user-notification action. Filters stack and the strictest
//!   action wins, so an `EPERM`/`EAFNOSUPPORT` above beats a notification.
//!
//! On x86_64 the base filter also answers `ENOSYS` to x32-ABI system call numbers, which
//! would otherwise slip past a deny list; calls through other ABIs (i386 `int 0x80`) fail
//! `seccompiler`'s architecture check, which kills the process.

use crate::SandboxError;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::BTreeMap;

/// `TIOCLINUX` (not exported by the libc crate on every target).
const TIOCLINUX: u64 = 0x541C;
/// System call numbers at or above this are the x32 ABI on x86_64.
#[cfg(target_arch = "x86_64")]
const X32_SYSCALL_BIT: u32 = 0x4000_0000;

/// A compiled filter, ready for `seccomp(SECCOMP_SET_MODE_FILTER)` or bwrap's
/// `--add-seccomp-fd`.
#[derive(Debug, Clone)]
pub(crate) struct Program(pub Vec<libc::sock_filter>);

impl Program {
    /// The program as the raw bytes bwrap reads from a seccomp fd.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.0.len() * 8);
        for insn in &self.0 {
            out.extend_from_slice(&insn.code.to_ne_bytes());
            out.push(insn.jt);
            out.push(insn.jf);
            out.extend_from_slice(&insn.k.to_ne_bytes());
        }
        out
    }
}

/// Builds the filters for a sandbox: base and unix-type always, network when `network` is
/// false.
pub(crate) fn build(network: bool) -> Result<Vec<Program>, SandboxError> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| SandboxError::Seccomp(e.to_string()))?;
    let mut programs = vec![base(arch)?, unix_stream_only(arch)?];
    if !network {
        programs.push(no_ip_sockets(arch)?);
    }
    Ok(programs)
}

/// `AF_UNIX` socket types the sandbox may create.
const UNIX_TYPES_ALLOWED: [u64; 2] = [libc::SOCK_STREAM as u64, libc::SOCK_SEQPACKET as u64];

fn unix_stream_only(arch: TargetArch) -> Result<Program, SandboxError> {
    // The kernel masks the type with SOCK_TYPE_MASK (0xf) and refuses other flag bits than
    // SOCK_CLOEXEC/SOCK_NONBLOCK, so the low four bits decide the type: refuse every value
    // but the two allowed (an allow-list: a type added to the kernel later is refused).
    let mut per_type = Vec::new();
    for ty in (0u64..16).filter(|t| !UNIX_TYPES_ALLOWED.contains(t)) {
        let conditions = vec![
            SeccompCondition::new(
                0,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::Eq,
                libc::AF_UNIX as u64,
            )
            .map_err(|e| SandboxError::Seccomp(e.to_string()))?,
            SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::MaskedEq(0xf), ty)
                .map_err(|e| SandboxError::Seccomp(e.to_string()))?,
        ];
        per_type
            .push(SeccompRule::new(conditions).map_err(|e| SandboxError::Seccomp(e.to_string()))?);
    }
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    rules.insert(libc::SYS_socket, per_type.clone());
    rules.insert(libc::SYS_socketpair, per_type);
    Ok(Program(compile(rules, libc::EPERM, arch)?))
}

/// A system call the supervisor decides, optionally only for some first-argument values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notified {
    /// The system call number.
    pub nr: i64,
    /// Notify only when argument 0 equals this (low 32 bits), e.g. `AF_UNIX` for `socket`.
    pub arg0: Option<u32>,
}

/// The user-notification program: each call in `calls` goes to the supervisor, everything
/// else is allowed. Calls of another architecture than this build's are killed (as in the
/// other filters).
pub(crate) fn notify_program(calls: &[Notified]) -> Program {
    const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JEQ_K: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    let insn = |code: u16, jt: u8, jf: u8, k: u32| libc::sock_filter { code, jt, jf, k };
    // offsetof(seccomp_data, nr / arch / args[0])
    const NR: u32 = 0;
    const ARCH: u32 = 4;
    const ARG0_LO: u32 = 16;
    let mut out = vec![
        insn(LD_W_ABS, 0, 0, ARCH),
        insn(JEQ_K, 1, 0, AUDIT_ARCH),
        insn(RET_K, 0, 0, libc::SECCOMP_RET_KILL_PROCESS),
    ];
    for call in calls {
        // A = nr; if A != call.nr skip this block.
        let block_len: u8 = if call.arg0.is_some() { 4 } else { 2 };
        out.push(insn(LD_W_ABS, 0, 0, NR));
        out.push(insn(JEQ_K, 0, block_len - 1, call.nr as u32));
        if let Some(arg0) = call.arg0 {
            out.push(insn(LD_W_ABS, 0, 0, ARG0_LO));
            out.push(insn(JEQ_K, 0, 1, arg0));
        }
        out.push(insn(RET_K, 0, 0, libc::SECCOMP_RET_USER_NOTIF));
    }
    out.push(insn(RET_K, 0, 0, libc::SECCOMP_RET_ALLOW));
    Program(out)
}

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xc000_003e;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xc000_00b7;

fn base(arch: TargetArch) -> Result<Program, SandboxError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for nr in [
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_io_uring_setup,
        libc::SYS_io_uring_enter,
        libc::SYS_io_uring_register,
    ] {
        rules.insert(nr, Vec::new());
    }
    // The kernel reads the ioctl request as 32 bits, so compare only those.
    // (`TIOCSTI`'s type differs between libc targets, hence the cast.)
    #[allow(clippy::unnecessary_cast)]
    let ioctl_rules = [libc::TIOCSTI as u64, TIOCLINUX]
        .into_iter()
        .map(|request| rule(1, SeccompCmpOp::Eq, request))
        .collect::<Result<Vec<_>, _>>()?;
    rules.insert(libc::SYS_ioctl, ioctl_rules);
    let program = compile(rules, libc::EPERM, arch)?;
    Ok(Program(with_x32_guard(program)))
}

fn no_ip_sockets(arch: TargetArch) -> Result<Program, SandboxError> {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for nr in [libc::SYS_socket, libc::SYS_socketpair] {
        rules.insert(nr, vec![rule(0, SeccompCmpOp::Ne, libc::AF_UNIX as u64)?]);
    }
    Ok(Program(compile(rules, libc::EAFNOSUPPORT, arch)?))
}

/// A one-condition rule on the low 32 bits of argument `arg`.
fn rule(arg: u8, op: SeccompCmpOp, value: u64) -> Result<SeccompRule, SandboxError> {
    let condition = SeccompCondition::new(arg, SeccompCmpArgLen::Dword, op, value)
        .map_err(|e| SandboxError::Seccomp(e.to_string()))?;
    SeccompRule::new(vec![condition]).map_err(|e| SandboxError::Seccomp(e.to_string()))
}

fn compile(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    errno: i32,
    arch: TargetArch,
) -> Result<Vec<libc::sock_filter>, SandboxError> {
    let filter = SeccompFilter::new(
        rules,
        SeccompAction::Allow,
        SeccompAction::Errno(errno as u32),
        arch,
    )
    .map_err(|e| SandboxError::Seccomp(e.to_string()))?;
    let bpf: BpfProgram = filter
        .try_into()
        .map_err(|e: seccompiler::BackendError| SandboxError::Seccomp(e.to_string()))?;
    Ok(bpf
        .into_iter()
        .map(|insn| libc::sock_filter {
            code: insn.code,
            jt: insn.jt,
            jf: insn.jf,
            k: insn.k,
        })
        .collect())
}

#[cfg(target_arch = "x86_64")]
fn with_x32_guard(program: Vec<libc::sock_filter>) -> Vec<libc::sock_filter> {
    const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    const JGE_K: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
    const RET_K: u16 = (libc::BPF_RET | libc::BPF_K) as u16;
    let mut out = vec![
        // A = seccomp_data.nr (offset 0)
        libc::sock_filter {
            code: LD_W_ABS,
            jt: 0,
            jf: 0,
            k: 0,
        },
        // if A >= X32 bit: fall into the ENOSYS return, else skip it
        libc::sock_filter {
            code: JGE_K,
            jt: 0,
            jf: 1,
            k: X32_SYSCALL_BIT,
        },
        libc::sock_filter {
            code: RET_K,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ERRNO | libc::ENOSYS as u32,
        },
    ];
    out.extend(program);
    out
}

#[cfg(not(target_arch = "x86_64"))]
fn with_x32_guard(program: Vec<libc::sock_filter>) -> Vec<libc::sock_filter> {
    program
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_off_builds_three_programs_and_network_on_two() {
        assert_eq!(build(false).unwrap().len(), 3);
        assert_eq!(build(true).unwrap().len(), 2);
    }

    #[test]
    fn notify_program_checks_arch_then_each_call() {
        let calls = [
            Notified {
                nr: libc::SYS_connect,
                arg0: None,
            },
            Notified {
                nr: libc::SYS_socket,
                arg0: Some(libc::AF_UNIX as u32),
            },
        ];
        let program = notify_program(&calls);
        // 3 (arch) + 3 (connect) + 5 (socket with arg0) + 1 (allow)
        assert_eq!(program.0.len(), 12);
        assert_eq!(program.0[11].k, libc::SECCOMP_RET_ALLOW);
        assert_eq!(program.0[5].k, libc::SECCOMP_RET_USER_NOTIF);
        assert_eq!(program.0[10].k, libc::SECCOMP_RET_USER_NOTIF);
    }

    #[test]
    fn bytes_are_eight_per_instruction() {
        let programs = build(true).unwrap();
        assert_eq!(programs[0].to_bytes().len(), programs[0].0.len() * 8);
    }
}
