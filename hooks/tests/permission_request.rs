//! The `PermissionRequest` event end to end, with real `sh` hook scripts.

mod support;

use execgate_hooks::{
    HookDecision, HookOutputEntry, HookOutputEntryKind, HookRun, HookRunStatus, HooksConfig,
    PermissionOutcome, RunIn, OUTPUT_CAP_BYTES,
};
use serde_json::json;
use support::{deny_json, load, print, Fixture, ALLOW};

fn entry(kind: HookOutputEntryKind, text: &str) -> HookOutputEntry {
    HookOutputEntry {
        kind,
        text: text.to_owned(),
    }
}

fn error(text: &str) -> HookOutputEntry {
    entry(HookOutputEntryKind::Error, text)
}

fn feedback(text: &str) -> HookOutputEntry {
    entry(HookOutputEntryKind::Feedback, text)
}

async fn run_one(command: String) -> (PermissionOutcome, HookRun) {
    let fx = Fixture::new();
    let config = fx.config(std::slice::from_ref(&command));
    let outcome = config.permission_request(&fx.request("/bin/true")).await;
    assert_eq!(outcome.runs.len(), 1);
    let run = outcome.runs[0].clone();
    assert_eq!(run.command, command);
    (outcome, run)
}

fn statuses(outcome: &PermissionOutcome) -> Vec<HookRunStatus> {
    outcome.runs.iter().map(|r| r.status).collect()
}

// ----- input -----

#[tokio::test]
async fn hook_reads_codex_shaped_input_json_on_stdin_and_runs_in_the_folder_given_not_the_request_cwd(
) {
    let fx = Fixture::new();
    let workdir = fx.path().join("work");
    let run_dir = fx.path().join("started-here");
    std::fs::create_dir(&workdir).unwrap();
    std::fs::create_dir(&run_dir).unwrap();
    let config = fx.config(&[format!(
        "cat > '{0}/input.json'; pwd > '{0}/cwd.txt'",
        fx.path().display()
    )]);
    let mut request = fx.request("/usr/bin/touch '/tmp/a b'");
    request.cwd = workdir.clone();
    request.description = Some("make a file".into());
    let outcome = config
        .permission_request_in(&request, &RunIn::new(run_dir.clone()))
        .await;
    assert_eq!(statuses(&outcome), [HookRunStatus::Completed]);

    let input = std::fs::read_to_string(fx.path().join("input.json")).unwrap();
    // Field order matters too: it is the order Codex sends.
    let expected = format!(
        concat!(
            r#"{{"session_id":"session-1","turn_id":"turn-1","transcript_path":null,"#,
            r#""cwd":{},"hook_event_name":"PermissionRequest","model":"test-model","#,
            r#""permission_mode":"default","tool_name":"Bash","#,
            r#""tool_input":{{"command":"/usr/bin/touch '/tmp/a b'","description":"make a file"}}}}"#
        ),
        json!(workdir.display().to_string())
    );
    assert_eq!(input, expected);
    let cwd = std::fs::read_to_string(fx.path().join("cwd.txt")).unwrap();
    assert_eq!(
        std::path::Path::new(cwd.trim()).canonicalize().unwrap(),
        run_dir.canonicalize().unwrap()
    );
}

#[tokio::test]
async fn a_handler_the_caller_refuses_is_not_run_and_fails() {
    let fx = Fixture::new();
    let ran = fx.path().join("ran");
    let config = fx.config(&[format!("touch '{}'", ran.display()), print(ALLOW)]);
    let run = RunIn::vetted(&config, fx.path().to_path_buf(), |handler| {
        if handler.command.starts_with("touch") {
            Err("it names a script the sandbox can write".into())
        } else {
            Ok(())
        }
    });
    let outcome = config.permission_request_in(&fx.request("ls"), &run).await;
    assert_eq!(
        statuses(&outcome),
        [HookRunStatus::Failed, HookRunStatus::Completed]
    );
    assert_eq!(
        outcome.runs[0].entries,
        [error("not run: it names a script the sandbox can write")]
    );
    assert_eq!(outcome.decision, Some(HookDecision::Allow));
    assert!(!ran.exists());
}

// ----- one handler's output -----

#[tokio::test]
async fn silent_success_completes_without_decision() {
    let (outcome, run) = run_one("printf '  \\n'".into()).await;
    assert_eq!(run.status, HookRunStatus::Completed);
    assert!(run.entries.is_empty());
    assert_eq!(outcome.decision, None);
}

#[tokio::test]
async fn plain_text_output_is_ignored() {
    let (outcome, run) = run_one("echo looks fine to me".into()).await;
    assert_eq!(run.status, HookRunStatus::Completed);
    assert!(run.entries.is_empty());
    assert_eq!(outcome.decision, None);
}

#[tokio::test]
async fn json_allow_allows() {
    let (outcome, run) = run_one(print(ALLOW)).await;
    assert_eq!(run.status, HookRunStatus::Completed);
    assert!(run.entries.is_empty());
    assert_eq!(outcome.decision, Some(HookDecision::Allow));
    assert_eq!(outcome.message, None);
    assert!(!outcome.interrupt);
}

#[tokio::test]
async fn json_deny_blocks_with_trimmed_message_and_interrupt() {
    let stdout = json!({"hookSpecificOutput": {"hookEventName": "PermissionRequest",
        "decision": {"behavior": "deny", "message": "  no pushes on Friday \n", "interrupt": true}}});
    let (outcome, run) = run_one(print(&stdout.to_string())).await;
    assert_eq!(run.status, HookRunStatus::Blocked);
    assert_eq!(run.entries, [feedback("no pushes on Friday")]);
    assert_eq!(outcome.decision, Some(HookDecision::Deny));
    assert_eq!(outcome.message.as_deref(), Some("no pushes on Friday"));
    assert!(outcome.interrupt);
}

#[tokio::test]
async fn json_deny_without_message_uses_the_default_message() {
    let stdout = r#"{"hookSpecificOutput":{"hookEventName":"PermissionRequest","decision":{"behavior":"deny"}}}"#;
    let (outcome, run) = run_one(print(stdout)).await;
    assert_eq!(run.status, HookRunStatus::Blocked);
    assert_eq!(
        run.entries,
        [feedback("PermissionRequest hook denied approval")]
    );
    assert_eq!(
        outcome.message.as_deref(),
        Some("PermissionRequest hook denied approval")
    );
    assert!(!outcome.interrupt);
}

#[tokio::test]
async fn json_without_decision_completes_and_surfaces_system_message() {
    let stdout = r#"{"systemMessage":"checked by policy bot","hookSpecificOutput":{"hookEventName":"PermissionRequest"}}"#;
    let (outcome, run) = run_one(print(stdout)).await;
    assert_eq!(run.status, HookRunStatus::Completed);
    assert_eq!(
        run.entries,
        [entry(HookOutputEntryKind::Warning, "checked by policy bot")]
    );
    assert_eq!(outcome.decision, None);
}

#[tokio::test]
async fn invalid_json_fails_without_deciding() {
    let (outcome, run) = run_one(print(r#"{"hookSpecificOutput": {"decision": "allow"}}"#)).await;
    assert_eq!(run.status, HookRunStatus::Failed);
    assert_eq!(
        run.entries,
        [error(
            "hook returned invalid permission-request JSON output"
        )]
    );
    assert_eq!(outcome.decision, None);
}

#[tokio::test]
async fn unsupported_field_fails_with_system_message_kept() {
    let stdout = r#"{"systemMessage":"note","suppressOutput":true,"hookSpecificOutput":{"hookEventName":"PermissionRequest","decision":{"behavior":"allow"}}}"#;
    let (outcome, run) = run_one(print(stdout)).await;
    assert_eq!(run.status, HookRunStatus::Failed);
    assert_eq!(
        run.entries,
        [
            entry(HookOutputEntryKind::Warning, "note"),
            error("PermissionRequest hook returned unsupported suppressOutput"),
        ]
    );
    assert_eq!(outcome.decision, None);
}

#[tokio::test]
async fn allow_with_interrupt_is_invalid() {
    let stdout = r#"{"hookSpecificOutput":{"hookEventName":"PermissionRequest","decision":{"behavior":"allow","interrupt":true}}}"#;
    let (outcome, run) = run_one(print(stdout)).await;
    assert_eq!(run.status, HookRunStatus::Failed);
    assert_eq!(
        run.entries,
        [error(
            "PermissionRequest hook returned unsupported interrupt:true"
        )]
    );
    assert_eq!(outcome.decision, None);
}

#[tokio::test]
async fn exit_2_with_stderr_denies_and_ignores_stdout() {
    let fx = Fixture::new();
    let command = fx.script(
        "deny",
        &format!("printf '%s' '{ALLOW}'\necho '  rm -rf is not allowed  ' >&2\nexit 2\n"),
    );
    let (outcome, run) = run_one(command).await;
    assert_eq!(run.status, HookRunStatus::Blocked);
    assert_eq!(run.entries, [feedback("rm -rf is not allowed")]);
    assert_eq!(outcome.decision, Some(HookDecision::Deny));
    assert_eq!(outcome.message.as_deref(), Some("rm -rf is not allowed"));
    assert!(!outcome.interrupt);
}

#[tokio::test]
async fn exit_2_without_stderr_fails() {
    let (outcome, run) = run_one("echo ' ' >&2; exit 2".into()).await;
    assert_eq!(run.status, HookRunStatus::Failed);
    assert_eq!(
        run.entries,
        [error(
            "PermissionRequest hook exited with code 2 but did not write a denial reason to stderr"
        )]
    );
    assert_eq!(outcome.decision, None);
}

#[tokio::test]
async fn other_exit_codes_fail_even_with_a_decision_on_stdout() {
    let (outcome, run) = run_one(format!("{}; exit 3", print(ALLOW))).await;
    assert_eq!(run.status, HookRunStatus::Failed);
    assert_eq!(run.entries, [error("hook exited with code 3")]);
    assert_eq!(outcome.decision, None);
}

#[tokio::test]
async fn death_by_signal_fails() {
    let (outcome, run) = run_one("kill -9 $$".into()).await;
    assert_eq!(run.status, HookRunStatus::Failed);
    assert_eq!(run.entries, [error("hook exited without a status code")]);
    assert_eq!(outcome.decision, None);
}

#[tokio::test]
async fn hook_that_cannot_start_fails() {
    let fx = Fixture::new();
    let config = fx.config(&["true".into()]);
    let missing = fx.path().join("missing");
    let outcome = config
        .permission_request_in(&fx.request("ls"), &RunIn::new(missing))
        .await;
    assert_eq!(statuses(&outcome), [HookRunStatus::Failed]);
    let text = &outcome.runs[0].entries[0].text;
    assert!(text.starts_with("failed to start hook in "), "{text}");
    assert_eq!(outcome.decision, None);
}

// ----- folding -----

#[tokio::test]
async fn first_deny_in_configured_order_wins_over_allows_and_later_denies() {
    let fx = Fixture::new();
    let config = fx.config(&[
        print(ALLOW),
        "echo first >&2; exit 2".into(),
        print(&deny_json("second")),
        print(ALLOW),
    ]);
    let outcome = config.permission_request(&fx.request("ls")).await;
    assert_eq!(outcome.decision, Some(HookDecision::Deny));
    assert_eq!(outcome.message.as_deref(), Some("first"));
    assert!(!outcome.interrupt);
    assert_eq!(
        statuses(&outcome),
        [
            HookRunStatus::Completed,
            HookRunStatus::Blocked,
            HookRunStatus::Blocked,
            HookRunStatus::Completed
        ]
    );
}

#[tokio::test]
async fn interrupt_comes_from_the_winning_deny() {
    let fx = Fixture::new();
    let interrupting = json!({"hookSpecificOutput": {"hookEventName": "PermissionRequest",
        "decision": {"behavior": "deny", "message": "later", "interrupt": true}}});
    let config = fx.config(&[
        print(&deny_json("earlier")),
        print(&interrupting.to_string()),
    ]);
    let outcome = config.permission_request(&fx.request("ls")).await;
    assert_eq!(outcome.message.as_deref(), Some("earlier"));
    assert!(!outcome.interrupt);
}

#[tokio::test]
async fn one_allow_among_silent_and_failed_hooks_allows() {
    let fx = Fixture::new();
    let config = fx.config(&["exit 1".into(), "true".into(), print(ALLOW), print("{bad")]);
    let outcome = config.permission_request(&fx.request("ls")).await;
    assert_eq!(outcome.decision, Some(HookDecision::Allow));
    assert_eq!(outcome.message, None);
    assert_eq!(
        statuses(&outcome),
        [
            HookRunStatus::Failed,
            HookRunStatus::Completed,
            HookRunStatus::Completed,
            HookRunStatus::Failed
        ]
    );
}

#[tokio::test]
async fn failed_hooks_never_decide() {
    let fx = Fixture::new();
    let config = fx.config(&["exit 1".into(), "exit 2".into(), print("[1")]);
    let outcome = config.permission_request(&fx.request("ls")).await;
    assert_eq!(outcome.decision, None);
    assert_eq!(outcome.message, None);
    assert_eq!(statuses(&outcome), [HookRunStatus::Failed; 3]);
}

#[tokio::test]
async fn no_matching_hooks_means_no_runs_and_no_decision() {
    let fx = Fixture::new();
    let config = HooksConfig::empty();
    let outcome = config.permission_request(&fx.request("ls")).await;
    assert_eq!(outcome, PermissionOutcome::default());
}

// ----- matchers -----

#[tokio::test]
async fn only_groups_whose_matcher_selects_bash_run() {
    let fx = Fixture::new();
    let group = |matcher: Option<&str>, name: &str| {
        let mut group = json!({"hooks": [{"type": "command", "command": format!("echo {name}")}]});
        if let Some(m) = matcher {
            group["matcher"] = json!(m);
        }
        group
    };
    let path = fx.hooks_file(
        "hooks.json",
        json!({
            "PermissionRequest": [
                group(None, "omitted"),
                group(Some(""), "empty"),
                group(Some("*"), "star"),
                group(Some("Bash"), "exact"),
                group(Some("Edit|Bash"), "list"),
                group(Some("BashOutput"), "longer-name"),
                group(Some("Bas"), "prefix"),
                group(Some("^Ba"), "regex"),
                group(Some("^Edit$"), "other-regex"),
                group(Some("Edit|Write"), "other-list"),
            ],
            "PreToolUse": [group(None, "other-event")],
        }),
    );
    let (config, _) = load(&[path]);
    let outcome = config.permission_request(&fx.request("ls")).await;
    let ran: Vec<&str> = outcome.runs.iter().map(|r| r.command.as_str()).collect();
    assert_eq!(
        ran,
        [
            "echo omitted",
            "echo empty",
            "echo star",
            "echo exact",
            "echo list",
            "echo regex"
        ]
    );
}

// ----- concurrency, timeouts, big data -----

#[tokio::test]
async fn handlers_run_concurrently() {
    // Each hook waits for the other to have started: run one after the other, the first
    // would wait forever (and time out); run together, both finish.
    let fx = Fixture::new();
    let dir = fx.path().display();
    let rendezvous = |me: &str, other: &str| {
        fx.script(
            me,
            &format!(
                "touch '{dir}/{me}.started'\nwhile [ ! -e '{dir}/{other}.started' ]; do sleep 0.01; done\nprintf '%s' '{ALLOW}'\n"
            ),
        )
    };
    let handlers = json!([
        {"type": "command", "command": rendezvous("a", "b"), "timeout": 20},
        {"type": "command", "command": rendezvous("b", "a"), "timeout": 20},
    ]);
    let path = fx.hooks_file(
        "hooks.json",
        json!({"PermissionRequest": [{"hooks": handlers}]}),
    );
    let (config, _) = load(&[path]);
    let outcome = config.permission_request(&fx.request("ls")).await;
    assert_eq!(
        statuses(&outcome),
        [HookRunStatus::Completed, HookRunStatus::Completed]
    );
    assert_eq!(outcome.decision, Some(HookDecision::Allow));
}

#[tokio::test]
async fn results_are_in_configured_order_when_a_later_hook_finishes_first() {
    let fx = Fixture::new();
    let dir = fx.path().display();
    let slow = fx.script(
        "slow",
        &format!(
            "while [ ! -e '{dir}/fast.done' ]; do sleep 0.01; done\nprintf '%s' '{}'\n",
            deny_json("slow")
        ),
    );
    let fast = fx.script(
        "fast",
        &format!(
            "printf '%s' '{}'\ntouch '{dir}/fast.done'\n",
            deny_json("fast")
        ),
    );
    let config = fx.config(&[slow.clone(), fast.clone()]);
    let outcome = config.permission_request(&fx.request("ls")).await;
    let ran: Vec<&str> = outcome.runs.iter().map(|r| r.command.as_str()).collect();
    assert_eq!(ran, [slow.as_str(), fast.as_str()]);
    assert_eq!(outcome.message.as_deref(), Some("slow"));
}

#[tokio::test]
async fn timeout_fails_the_run_and_kills_grandchildren() {
    let fx = Fixture::new();
    let pid_file = fx.path().join("grandchild.pid");
    let command = fx.script(
        "hang",
        &format!(
            "sleep 300 </dev/null >/dev/null 2>&1 &\necho $! > '{}'\nprintf '%s' '{ALLOW}'\nwait\n",
            pid_file.display()
        ),
    );
    let path = fx.hooks_file(
        "hooks.json",
        json!({"PermissionRequest": [{"hooks": [{"type": "command", "command": command, "timeout": 1}]}]}),
    );
    let (config, _) = load(&[path]);
    let outcome = config.permission_request(&fx.request("ls")).await;
    assert_eq!(statuses(&outcome), [HookRunStatus::Failed]);
    assert_eq!(outcome.runs[0].entries, [error("hook timed out after 1s")]);
    assert_eq!(outcome.decision, None);

    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(process_dies(pid).await, "grandchild {pid} is still running");
}

/// Waits (boundedly) for `pid` to be gone or a zombie; SIGKILL is not instant.
async fn process_dies(pid: u32) -> bool {
    for _ in 0..500 {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return true,
            Ok(stat) => {
                let state = stat.rsplit(')').next().unwrap_or("").trim_start();
                if state.starts_with('Z') || state.starts_with('X') {
                    return true;
                }
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn dropping_the_request_kills_running_hooks_and_their_children() {
    let fx = Fixture::new();
    let pid_file = fx.path().join("child.pid");
    let command = fx.script(
        "hang",
        &format!(
            "sleep 300 &\necho $! > '{}.tmp'\nmv '{0}.tmp' '{0}'\nwait\n",
            pid_file.display()
        ),
    );
    let config = fx.config(&[command]);
    let request = fx.request("ls");
    let mut pending = Box::pin(config.permission_request(&request));
    while !pid_file.exists() {
        tokio::select! {
            _ = &mut pending => panic!("the hook finished on its own"),
            _ = tokio::time::sleep(std::time::Duration::from_millis(10)) => {}
        }
    }
    drop(pending);
    let pid: u32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(process_dies(pid).await, "child {pid} is still running");
}

#[tokio::test]
async fn hook_that_never_reads_a_1mb_input_still_decides() {
    let fx = Fixture::new();
    let config = fx.config(&[
        "exit 0".into(),
        format!("sleep 0.2; {}", print(ALLOW)),
        "head -c 1 >/dev/null; true".into(),
    ]);
    let big = "a".repeat(1024 * 1024);
    let outcome = config.permission_request(&fx.request(&big)).await;
    assert_eq!(statuses(&outcome), [HookRunStatus::Completed; 3]);
    assert!(outcome.runs.iter().all(|r| r.entries.is_empty()));
    assert_eq!(outcome.decision, Some(HookDecision::Allow));
}

#[tokio::test]
async fn hook_writing_10mb_is_read_to_the_end_and_capped() {
    let fx = Fixture::new();
    let command = fx.script(
        "flood",
        &format!(
            "head -c 10485760 /dev/zero | tr '\\0' x\nhead -c 10485760 /dev/zero | tr '\\0' y >&2\necho done > '{}/flood.finished'\n",
            fx.path().display()
        ),
    );
    let (outcome, run) = run_one(command).await;
    assert_eq!(run.status, HookRunStatus::Completed);
    assert_eq!(
        run.entries,
        [
            entry(
                HookOutputEntryKind::Warning,
                &format!(
                    "hook stdout was longer than {OUTPUT_CAP_BYTES} bytes; the rest was discarded"
                )
            ),
            entry(
                HookOutputEntryKind::Warning,
                &format!(
                    "hook stderr was longer than {OUTPUT_CAP_BYTES} bytes; the rest was discarded"
                )
            ),
        ]
    );
    assert_eq!(outcome.decision, None);
}

#[tokio::test]
async fn hook_denying_with_10mb_of_stderr_is_capped_but_still_denies() {
    let (outcome, run) =
        run_one("head -c 10485760 /dev/zero | tr '\\0' n >&2; exit 2".into()).await;
    assert_eq!(run.status, HookRunStatus::Blocked);
    assert_eq!(outcome.decision, Some(HookDecision::Deny));
    assert_eq!(outcome.message.map(|m| m.len()), Some(OUTPUT_CAP_BYTES));
}

#[tokio::test]
async fn huge_timeout_is_accepted() {
    let fx = Fixture::new();
    let path = fx.hooks_file(
        "hooks.json",
        json!({"PermissionRequest": [{"hooks": [
            {"type": "command", "command": print(ALLOW), "timeout": u64::MAX},
        ]}]}),
    );
    let (config, _) = load(&[path]);
    let outcome = config.permission_request(&fx.request("ls")).await;
    assert_eq!(statuses(&outcome), [HookRunStatus::Completed]);
    assert_eq!(outcome.decision, Some(HookDecision::Allow));
}
