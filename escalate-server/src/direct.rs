//! Execs that reach the server without the wrapper or the shim: a sandbox that traps every
//! `execve` (seccomp user notifications) hands the ones nobody decided yet to
//! [`DirectExecs`], which asks the session's policy, so children of non-shell programs
//! (`env`, `xargs`, an interpreter's `os.system`, a static binary) are decided too.
//!
//! Each exec is decided once. Execs the wrapper or the shim already asked about are
//! recognised: for a Run verdict the server remembers the asking process (the stream's
//! `SO_PEERCRED` pid), the program's file and the argv, and the trapped exec that follows
//! matches that once ([`DirectExecs::take_decided`]). The wrapper's own exec is recognised
//! by the wrapper binary's file ([`DirectExecs::is_wrapper`]); it then asks over the socket.
//!
//! A direct exec can only run inside the sandbox or be refused: nobody is asked about it,
//! and a ruling that would escalate it is a denial ([`direct_exec_denial`]), since only the
//! shell's and the shim's path can carry out an escalation.

use crate::event::ExecEvent;
use crate::policy::{CwdDir, ExecContext, Ruling};
use crate::serve::{Bounded, Server, MAX_WAITING_DECISIONS};
use crate::spawn;
use execgate_protocol::{ExecRequest, Verdict};
use std::collections::HashMap;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Waker};
use tokio::runtime::Handle;

/// Most Run verdicts remembered at once (one per process at most); beyond that the memory
/// starts over, and an exec it forgot is decided again (recorded twice, never let through).
const MAX_REMEMBERED: usize = 4096;

/// A file's identity: `(st_dev, st_ino)`.
pub type FileId = (u64, u64);

/// The reason a direct exec that would have to leave the sandbox is denied with; `caller`
/// is the program that executed it.
pub fn direct_exec_denial(caller: &Path) -> String {
    format!(
        "needs to run outside the sandbox, but {} executed it directly, not through the \
         session's shell; run it from the shell",
        caller.display()
    )
}

/// What a direct exec gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirectAnswer {
    /// Let it run, inside the sandbox.
    Run,
    /// Refuse it (`EACCES`), telling the caller why.
    Deny {
        /// Why, as raw bytes (shown escaped).
        reason: Vec<u8>,
    },
}

/// The Run verdicts given through the socket whose exec has not been seen yet.
#[derive(Debug, Default)]
pub(crate) struct RunMemory {
    watching: AtomicBool,
    runs: Mutex<HashMap<i32, (FileId, Arc<ExecRequest>)>>,
}

impl RunMemory {
    /// Remembers a Run verdict for `pid` executing `file` with `request`'s argv (only once
    /// a sandbox traps execs).
    pub(crate) fn remember(
        &self,
        pid: Option<i32>,
        file: Option<FileId>,
        request: &Arc<ExecRequest>,
    ) {
        if !self.watching.load(Ordering::Relaxed) {
            return;
        }
        let (Some(pid), Some(file)) = (pid, file) else {
            return;
        };
        let mut runs = self.runs.lock().unwrap_or_else(PoisonError::into_inner);
        if runs.len() >= MAX_REMEMBERED && !runs.contains_key(&pid) {
            runs.clear();
        }
        runs.insert(pid, (file, Arc::clone(request)));
    }
}

/// Decides what a session's direct execs ask for.
trait DirectDecide: Send + Sync {
    fn decide(
        self: Arc<Self>,
        runtime: &Handle,
        request: ExecRequest,
        caller: PathBuf,
        answer: Box<dyn FnOnce(DirectAnswer) + Send>,
    );
}

/// A session's handle for the execs its sandbox traps (see the module documentation),
/// given to the session's [`crate::Launcher`]. Cheap to clone.
#[derive(Clone)]
pub struct DirectExecs {
    /// Weak: the sandbox's supervisor holds this, and the session (which the server's
    /// state keeps) holds the supervisor.
    server: std::sync::Weak<dyn DirectDecide>,
    memory: Arc<RunMemory>,
    wrapper: Option<FileId>,
    runtime: Handle,
}

impl std::fmt::Debug for DirectExecs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectExecs")
            .field("wrapper", &self.wrapper)
            .finish_non_exhaustive()
    }
}

impl DirectExecs {
    pub(crate) fn new<N: Send + 'static>(
        server: Arc<Server<N>>,
        wrapper: &Path,
        runtime: Handle,
    ) -> Self {
        let wrapper = std::fs::metadata(wrapper).ok().map(|m| {
            use std::os::unix::fs::MetadataExt;
            (m.dev(), m.ino())
        });
        DirectExecs {
            memory: Arc::clone(&server.run_memory),
            server: {
                let weak: std::sync::Weak<Server<N>> = Arc::downgrade(&server);
                weak
            },
            wrapper,
            runtime,
        }
    }

    /// Call once the sandbox traps every exec: from then on the server remembers the Run
    /// verdicts it gives through the socket, for [`DirectExecs::take_decided`].
    pub fn start_watching(&self) {
        self.memory.watching.store(true, Ordering::Relaxed);
    }

    /// Whether `file` is the session's execve wrapper (its exec is continued at once: the
    /// wrapper asks over the socket).
    pub fn is_wrapper(&self, file: FileId) -> bool {
        self.wrapper == Some(file)
    }

    /// Whether any Run verdict is waiting for its exec.
    pub fn remembers_any(&self) -> bool {
        !self
            .memory
            .runs
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    /// The request of the Run verdict process `pid` got for `file`, forgotten as it is
    /// returned: the caller lets the exec run only if its argv is the request's.
    pub fn take_decided(&self, pid: i32, file: FileId) -> Option<Arc<ExecRequest>> {
        let mut runs = self
            .memory
            .runs
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match runs.get(&pid) {
            Some((remembered, _)) if *remembered == file => runs.remove(&pid).map(|(_, r)| r),
            _ => None,
        }
    }

    /// The session's runtime (for work that may block, such as writing a denial).
    pub fn runtime(&self) -> &Handle {
        &self.runtime
    }

    /// Asks the session's policy about a direct exec of `request`, executed by `caller`,
    /// and calls `answer` with the result: on this thread when the policy rules at once
    /// (it asks nobody about a direct exec), else from a runtime task. The decision is
    /// recorded like any exec's (a `Decided` event). Dropping `answer` unanswered (a panic,
    /// the session ending) must refuse the exec.
    pub fn decide(
        &self,
        request: ExecRequest,
        caller: PathBuf,
        answer: Box<dyn FnOnce(DirectAnswer) + Send>,
    ) {
        // A session that is gone refuses the exec (dropping `answer`).
        if let Some(server) = self.server.upgrade() {
            server.decide(&self.runtime, request, caller, answer);
        }
    }
}

impl<N: Send + 'static> DirectDecide for Server<N> {
    fn decide(
        self: Arc<Self>,
        runtime: &Handle,
        request: ExecRequest,
        caller: PathBuf,
        answer: Box<dyn FnOnce(DirectAnswer) + Send>,
    ) {
        let _enter = runtime.enter();
        let mut decision = Box::pin(async move {
            let ruled = decide_direct(&self, request, caller).await;
            answer(ruled);
        });
        let mut cx = Context::from_waker(Waker::noop());
        match catch_unwind(AssertUnwindSafe(|| decision.as_mut().poll(&mut cx))) {
            Ok(Poll::Ready(())) => {}
            Ok(Poll::Pending) => {
                runtime.spawn(decision);
            }
            Err(_) => {
                tracing::error!("deciding a direct exec panicked; the exec is refused");
                let _ = catch_unwind(AssertUnwindSafe(move || drop(decision)));
            }
        }
    }
}

async fn decide_direct<N: Send + 'static>(
    server: &Server<N>,
    request: ExecRequest,
    caller: PathBuf,
) -> DirectAnswer {
    let id = server.next_id.fetch_add(1, Ordering::Relaxed);
    let request = Arc::new(request);
    let (program, invoked) = match server.spawner.open_program(&request) {
        Ok(opened) => (opened.canonical, opened.invoked),
        Err(_) => (spawn::request_path(&request), None),
    };
    let ctx = ExecContext {
        id,
        request: Arc::clone(&request),
        program: program.clone(),
        invoked,
        cwd: Arc::new(CwdDir::new(request.cwd.clone())),
        direct: Some(caller.clone()),
        // The trapped process is not a client of the session socket; attribution finds
        // its connections through the nearest ancestor that asked.
        pid: None,
    };
    let decision = Bounded {
        decision: Some(server.policy.decide(&ctx)),
        budget: &server.waiting_decisions,
        slot: None,
    };
    let (verdict, note, end_session) = match decision.await {
        Some(Ruling {
            verdict,
            note,
            end_session,
            ..
        }) => (verdict, Some(note), end_session),
        None => (
            Verdict::Deny {
                reason: format!(
                    "too many commands of this session are waiting for a decision (at most \
                     {MAX_WAITING_DECISIONS}); run it again once some are decided"
                )
                .into_bytes(),
            },
            None,
            None,
        ),
    };
    let verdict = match verdict {
        Verdict::Escalate => Verdict::Deny {
            reason: direct_exec_denial(&caller).into_bytes(),
        },
        other => other,
    };
    server.emit(ExecEvent::Decided {
        id,
        request,
        program,
        verdict: verdict.clone(),
        note,
    });
    if let Some(reason) = end_session {
        server.shared.interrupt(reason);
    }
    match verdict {
        Verdict::Run => DirectAnswer::Run,
        Verdict::Deny { reason } => DirectAnswer::Deny { reason },
        Verdict::Escalate => DirectAnswer::Deny {
            reason: direct_exec_denial(&caller).into_bytes(),
        },
    }
}
