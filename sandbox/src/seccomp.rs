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

/// Builds the filters for a sandbox: base always, network when `network` is false.
pub(crate) fn build(network: bool) -> Result<Vec<Program>, SandboxError> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)
        .map_err(|e| SandboxError::Seccomp(e.to_string()))?;
    let mut programs = vec![base(arch)?];
    if !network {
        programs.push(no_ip_sockets(arch)?);
    }
    Ok(programs)
}

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
    fn network_off_builds_two_programs_and_network_on_one() {
        assert_eq!(build(false).unwrap().len(), 2);
        assert_eq!(build(true).unwrap().len(), 1);
    }

    #[test]
    fn bytes_are_eight_per_instruction() {
        let programs = build(true).unwrap();
        assert_eq!(programs[0].to_bytes().len(), programs[0].0.len() * 8);
    }
}
