//! What a person's "session" and "always" answers leave behind: prefixes and hosts allowed
//! for the rest of a session, and allow rules appended to the user's approvals file.

use execgate_execpolicy::{
    amend, render_network_rule, render_prefix_rule, AmendError, CanonicalHost, Decision,
    NetworkProtocol, RenderError,
};
use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// What a person allowed for the rest of a session (answer "s"): command prefixes, and
/// hosts for a protocol (every port). Clones share them, so the MCP server can keep them
/// for its whole life across calls.
#[derive(Debug, Clone, Default)]
pub struct SessionApprovals(Arc<Mutex<Approved>>);

#[derive(Debug, Default)]
struct Approved {
    prefixes: Vec<Vec<String>>,
    hosts: HashSet<(CanonicalHost, NetworkProtocol)>,
}

impl SessionApprovals {
    fn lock(&self) -> MutexGuard<'_, Approved> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `prefix` was allowed.
    pub fn contains(&self, prefix: &[String]) -> bool {
        self.lock().prefixes.iter().any(|p| p == prefix)
    }

    /// Allows `prefix` from now on.
    pub fn add(&self, prefix: Vec<String>) {
        self.lock().prefixes.push(prefix);
    }

    /// Whether connections to `host` speaking `protocol` were allowed.
    pub fn contains_host(&self, host: &CanonicalHost, protocol: NetworkProtocol) -> bool {
        self.lock().hosts.contains(&(host.clone(), protocol))
    }

    /// Allows connections to `host` speaking `protocol`, on any port, from now on.
    pub fn add_host(&self, host: CanonicalHost, protocol: NetworkProtocol) {
        self.lock().hosts.insert((host, protocol));
    }
}

/// Why an "always" answer could not be saved.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SaveError {
    /// The prefix cannot be written as a rule.
    #[error(transparent)]
    Render(#[from] RenderError),
    /// The approvals file could not be amended.
    #[error(transparent)]
    Amend(#[from] AmendError),
}

/// Appends an allow rule for `prefix` to `file`, with a comment saying when and why
/// (`command` as the person saw it, `asked_by` the rule that asked, if any).
pub(crate) fn save_always(
    file: &Path,
    prefix: &[String],
    command: &str,
    asked_by: Option<&str>,
) -> Result<(), SaveError> {
    let rule = render_prefix_rule(prefix, Decision::Allow, None)?;
    let comment = format!(
        "Added by execgate on {}: \"always\" answered for `{command}` (asked by {}).",
        utc_now(),
        asked_by.unwrap_or("no rule")
    );
    amend::append_rule(file, &rule, Some(&comment))?;
    Ok(())
}

/// Appends `network_rule(host=..., protocol=..., decision="allow")` for `host` (canonical
/// text) to `file`, with a comment saying when and why (`target` and `command` as the
/// person saw them, `asked_by` the rule that asked, if any).
pub(crate) fn save_always_network(
    file: &Path,
    host: &str,
    protocol: NetworkProtocol,
    target: &str,
    command: &str,
    asked_by: Option<&str>,
) -> Result<(), SaveError> {
    let rule = render_network_rule(host, protocol, Decision::Allow);
    let comment = format!(
        "Added by execgate on {}: \"always\" answered for {target} from `{command}` (asked by {}).",
        utc_now(),
        asked_by.unwrap_or("no rule")
    );
    amend::append_rule(file, &rule, Some(&comment))?;
    Ok(())
}

/// The current UTC time as `YYYY-MM-DD HH:MM:SS UTC`.
fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    civil_time(secs)
}

/// `secs` since the Unix epoch as `YYYY-MM-DD HH:MM:SS UTC` (Howard Hinnant's
/// civil-from-days algorithm).
fn civil_time(secs: u64) -> String {
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamp_has_the_documented_shape() {
        let now = utc_now();
        assert_eq!(now.len(), "2026-11-23 09:00:00 UTC".len());
        assert!(now.ends_with(" UTC"));
        assert_eq!(&now[4..5], "-");
    }

    #[test]
    fn civil_time_is_exact() {
        assert_eq!(civil_time(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(civil_time(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(civil_time(1_798_761_599), "2026-12-31 23:59:59 UTC");
    }

    #[test]
    fn always_appends_one_commented_rule_and_never_twice() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("rules/approved.rules");
        let prefix = vec!["git".to_string(), "push".to_string()];
        save_always(&file, &prefix, "/usr/bin/git push", Some("/r:3")).unwrap();
        save_always(&file, &prefix, "/usr/bin/git push", None).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        let (comment, rule) = text
            .strip_prefix("\n# Added by execgate on ")
            .and_then(|t| t.split_once('\n'))
            .unwrap();
        assert!(
            comment.ends_with(" UTC: \"always\" answered for `/usr/bin/git push` (asked by /r:3)."),
            "{text}"
        );
        assert_eq!(
            rule,
            "prefix_rule(pattern=[\"git\", \"push\"], decision=\"allow\")\n"
        );
    }

    #[test]
    fn always_for_a_host_appends_one_network_rule_that_loads() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("approved.rules");
        let save = || {
            save_always_network(
                &file,
                "pypi.test",
                NetworkProtocol::Https,
                "https://pypi.test:443",
                "/usr/bin/pip download x",
                None,
            )
        };
        save().unwrap();
        save().unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        let (comment, rule) = text
            .strip_prefix("\n# Added by execgate on ")
            .and_then(|t| t.split_once('\n'))
            .unwrap();
        assert!(
            comment.ends_with(" UTC: \"always\" answered for https://pypi.test:443 from `/usr/bin/pip download x` (asked by no rule)."),
            "{text}"
        );
        assert_eq!(
            rule,
            "network_rule(host=\"pypi.test\", protocol=\"https\", decision=\"allow\")\n"
        );
        let policy = execgate_execpolicy::Policy::from_files(&[&file]).unwrap();
        let host = execgate_execpolicy::canonical_host("pypi.test").unwrap();
        assert_eq!(
            policy.check_network(&host, NetworkProtocol::Https).decision,
            Some(Decision::Allow)
        );
    }

    #[test]
    fn session_hosts_are_per_protocol_and_shared_by_clones() {
        let approvals = SessionApprovals::default();
        let host = execgate_execpolicy::canonical_host("a.test").unwrap();
        approvals
            .clone()
            .add_host(host.clone(), NetworkProtocol::Https);
        assert!(approvals.contains_host(&host, NetworkProtocol::Https));
        assert!(!approvals.contains_host(&host, NetworkProtocol::Http));
    }

    #[test]
    fn session_approvals_are_shared_by_clones() {
        let approvals = SessionApprovals::default();
        let prefix = vec!["make".to_string()];
        assert!(!approvals.contains(&prefix));
        approvals.clone().add(prefix.clone());
        assert!(approvals.contains(&prefix));
        assert!(!approvals.contains(&["make".to_string(), "install".to_string()]));
    }
}
