//! Looking at processes through `/proc` (leaks, zombies, survivors, stopped processes), and
//! re-running a test alone in a child process of this test binary.

use std::path::PathBuf;
use std::time::Duration;

/// One live process, from `/proc/PID/stat`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    /// Its pid.
    pub pid: i32,
    /// Its state letter (`R`, `S`, `T`, `Z`, ...).
    pub state: char,
    /// Its parent's pid.
    pub ppid: i32,
}

impl Proc {
    /// Process `pid`, if it exists.
    pub fn read(pid: i32) -> Option<Proc> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // "pid (comm) state ppid ...": comm may hold spaces, so split after the last ')'.
        let (_, rest) = stat.rsplit_once(") ")?;
        let mut fields = rest.split(' ');
        let state = fields.next()?.chars().next()?;
        let ppid = fields.next()?.parse().ok()?;
        Some(Proc { pid, state, ppid })
    }

    /// Its executable.
    pub fn exe(&self) -> Option<PathBuf> {
        std::fs::read_link(format!("/proc/{}/exe", self.pid)).ok()
    }

    /// Its arguments.
    pub fn cmdline(&self) -> Vec<Vec<u8>> {
        let raw = std::fs::read(format!("/proc/{}/cmdline", self.pid)).unwrap_or_default();
        raw.split(|&b| b == 0).map(<[u8]>::to_vec).collect()
    }
}

/// Every process on the machine.
pub fn processes() -> Vec<Proc> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|entry| entry.file_name().to_string_lossy().parse().ok())
        .filter_map(Proc::read)
        .collect()
}

/// Open fds of this process.
pub fn open_fd_count() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

/// Zombie children of this process.
pub fn zombie_children() -> Vec<i32> {
    let me = std::process::id() as i32;
    processes()
        .into_iter()
        .filter(|p| p.state == 'Z' && p.ppid == me)
        .map(|p| p.pid)
        .collect()
}

/// The direct children of `parent` running `exe`.
pub fn children_running(parent: i32, exe: &std::path::Path) -> Vec<i32> {
    processes()
        .into_iter()
        .filter(|p| p.ppid == parent && p.exe().as_deref() == Some(exe))
        .map(|p| p.pid)
        .collect()
}

/// A live (not zombie) process with `arg` as one of its arguments.
pub fn find_process(arg: &str) -> Option<i32> {
    processes()
        .into_iter()
        .find(|p| p.state != 'Z' && p.cmdline().iter().any(|a| a == arg.as_bytes()))
        .map(|p| p.pid)
}

/// The state letter of process `pid`, `?` when it is gone.
pub fn process_state(pid: i32) -> char {
    Proc::read(pid).map_or('?', |p| p.state)
}

/// Polls `probe` every 50 ms for up to 20 s.
pub async fn wait_for<T>(mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    for _ in 0..400 {
        if let Some(found) = probe() {
            return Some(found);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Set in the child process [`run_isolated`] starts.
const CHILD_ENV: &str = "EXECGATE_TEST_CHILD";

/// Whether this process is the child [`run_isolated`] (or a test's own re-run) started.
pub fn in_isolated_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some()
}

/// The full name of the test running on this thread (libtest names each test's thread so).
pub fn current_test() -> String {
    let name = std::thread::current().name().map(str::to_owned);
    match name {
        Some(name) if name != "main" => name,
        _ => panic!("not on a test thread: cannot name the current test"),
    }
}

/// A command that runs only the current test, in a fresh process of this test binary,
/// with `EXECGATE_TEST_CHILD` set.
pub fn rerun_current_test() -> std::process::Command {
    let mut cmd = std::process::Command::new(std::env::current_exe().unwrap());
    cmd.args([
        "--exact",
        &current_test(),
        "--nocapture",
        "--include-ignored",
        "--test-threads=1",
    ])
    .env(CHILD_ENV, "1");
    cmd
}

/// Runs the current test alone in a fresh process (so fd counts and child lists are not
/// disturbed by other tests) and fails unless exactly that one test ran and passed.
pub fn run_isolated() {
    let out = rerun_current_test().output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("\nrunning 1 test\n"),
        "{} failed:\n{stdout}\n{}",
        current_test(),
        String::from_utf8_lossy(&out.stderr)
    );
}
