//! Appending a rule to a user's rules file (the "always allow this" answer).
//!
//! An append takes an exclusive lock on the file, so appenders in several sessions (or
//! threads) never interleave, and it writes nothing when the file already holds the exact
//! rule text on a line of its own. It never rewrites or truncates what is there: the file
//! only grows, by one block per new rule:
//!
//! ```text
//! <blank line, or the newline the file's last line lacked>
//! # <comment>            (when one is given)
//! <rule>
//! ```

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// What [`append_rule`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// The rule was written at the end of the file.
    Added,
    /// A line of the file already is exactly this rule; nothing was written.
    AlreadyPresent,
}

/// Why a rule could not be appended. Every variant names the file and renders as one line.
#[derive(Debug, thiserror::Error)]
pub enum AmendError {
    /// The rule text spans more than one line (or is empty).
    #[error("a rule to append must be one non-empty line")]
    NotOneLine,
    /// The file's folder could not be created.
    #[error("cannot create {}: {error}", dir.display())]
    CreateDir {
        /// The folder.
        dir: PathBuf,
        /// Why (part of the message, so the error stays one line).
        error: std::io::Error,
    },
    /// The file could not be opened, locked, read or written.
    #[error("cannot {action} {}: {error}", path.display())]
    Io {
        /// What was being done: `open`, `lock`, `read` or `write`.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why (part of the message, so the error stays one line).
        error: std::io::Error,
    },
}

/// Appends `rule` (one line of rule text, e.g. from [`crate::render_prefix_rule`]) to the
/// rules file at `path`, preceded by `# comment` when a comment is given, creating the file
/// and its folder when missing. The comment is written in printable ASCII, everything else
/// escaped (`\n`, `\u202e`): a line break would end the comment and start code, and a bidi
/// override or line separator would make it read as something else.
///
/// Holds an exclusive lock on the file from before it reads the file (for the duplicate
/// check) until the rule is written, so concurrent appenders see each other's rules.
pub fn append_rule(path: &Path, rule: &str, comment: Option<&str>) -> Result<Appended, AmendError> {
    if rule.is_empty() || rule.contains(['\n', '\r']) {
        return Err(AmendError::NotOneLine);
    }
    let io = |action: &'static str| {
        move |error| AmendError::Io {
            action,
            path: path.to_path_buf(),
            error,
        }
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|error| AmendError::CreateDir {
            dir: dir.to_path_buf(),
            error,
        })?;
    }
    let mut file: File = OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(path)
        .map_err(io("open"))?;
    // Released when `file` is closed, on every return path.
    file.lock().map_err(io("lock"))?;
    let mut existing = Vec::new();
    file.read_to_end(&mut existing).map_err(io("read"))?;
    if existing
        .split(|&b| b == b'\n')
        .any(|line| line == rule.as_bytes())
    {
        return Ok(Appended::AlreadyPresent);
    }
    let mut block = String::from("\n");
    if let Some(comment) = comment {
        block.push_str("# ");
        block.push_str(&crate::render::comment_text(comment));
        block.push('\n');
    }
    block.push_str(rule);
    block.push('\n');
    // One write to a file opened for appending: the block lands whole at the end.
    file.write_all(block.as_bytes()).map_err(io("write"))?;
    Ok(Appended::Added)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIT: &str = r#"prefix_rule(pattern=["git", "push"], decision="allow")"#;
    const TOUCH: &str = r#"prefix_rule(pattern=["touch"], decision="allow")"#;

    fn read(path: &Path) -> String {
        std::fs::read_to_string(path).unwrap()
    }

    #[test]
    fn creates_the_missing_file_and_its_folders() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("a/b/approved.rules");
        assert_eq!(
            append_rule(&path, GIT, Some("why")).unwrap(),
            Appended::Added
        );
        assert_eq!(read(&path), format!("\n# why\n{GIT}\n"));
    }

    #[test]
    fn appends_after_a_file_ending_in_a_newline_with_a_blank_line_between() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("r.rules");
        std::fs::write(&path, "# mine\n").unwrap();
        append_rule(&path, GIT, None).unwrap();
        append_rule(&path, TOUCH, Some("second")).unwrap();
        assert_eq!(
            read(&path),
            format!("# mine\n\n{GIT}\n\n# second\n{TOUCH}\n")
        );
    }

    #[test]
    fn appends_after_a_file_without_a_trailing_newline() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("r.rules");
        std::fs::write(&path, GIT).unwrap();
        append_rule(&path, TOUCH, Some("c")).unwrap();
        assert_eq!(read(&path), format!("{GIT}\n# c\n{TOUCH}\n"));
    }

    #[test]
    fn a_duplicate_append_is_a_no_op() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("r.rules");
        append_rule(&path, GIT, Some("first")).unwrap();
        assert_eq!(
            append_rule(&path, GIT, Some("again")).unwrap(),
            Appended::AlreadyPresent
        );
        assert_eq!(read(&path), format!("\n# first\n{GIT}\n"));
        // Only a whole line counts: a rule that merely contains another is new.
        let longer = GIT.replace(")", ", justification=\"x\")");
        assert_eq!(append_rule(&path, &longer, None).unwrap(), Appended::Added);
        assert_eq!(read(&path), format!("\n# first\n{GIT}\n\n{longer}\n"));
    }

    #[test]
    fn a_comment_cannot_break_out_of_its_line() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("r.rules");
        let hostile = "x\nprefix_rule(pattern=[\"rm\"], decision=\"allow\")\r\u{85}y";
        append_rule(&path, TOUCH, Some(hostile)).unwrap();
        assert_eq!(
            read(&path),
            format!(
                "\n# x\\nprefix_rule(pattern=[\"rm\"], decision=\"allow\")\\r\\u0085y\n{TOUCH}\n"
            )
        );
    }

    #[test]
    fn a_comment_is_printable_ascii_so_it_reads_as_what_it_says() {
        // The comment quotes the command a person answered "always" for: sandbox text. A
        // bidi override reorders what an editor shows; a line separator looks like a new
        // line of code to a reader, though it is none to the loader.
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("r.rules");
        let hostile = "for `/usr/bin/echo '\u{202e}lla\u{2028}prefix_rule(pattern=[\"sh\"])'`";
        append_rule(&path, TOUCH, Some(hostile)).unwrap();
        assert_eq!(
            read(&path),
            format!(
                "\n# for `/usr/bin/echo '\\u202ella\\u2028prefix_rule(pattern=[\"sh\"])'`\n{TOUCH}\n"
            )
        );
    }

    #[test]
    fn a_rule_must_be_one_line() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("r.rules");
        for bad in ["", "a\nb", "a\rb"] {
            assert!(matches!(
                append_rule(&path, bad, None),
                Err(AmendError::NotOneLine)
            ));
        }
        assert!(!path.exists());
    }

    #[test]
    fn concurrent_appenders_each_land_once_and_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("r.rules");
        let rules: Vec<String> = (0..16)
            .map(|i| format!(r#"prefix_rule(pattern=["tool{i}"], decision="allow")"#))
            .collect();
        std::thread::scope(|scope| {
            for rule in &rules {
                let path = &path;
                scope.spawn(move || {
                    // Every thread also races to add the same shared rule.
                    append_rule(path, GIT, None).unwrap();
                    append_rule(path, rule, Some(rule)).unwrap();
                });
            }
        });
        let text = read(&path);
        let blocks: Vec<&str> = text.split_terminator("\n\n").collect();
        let mut expected: Vec<String> = rules.iter().map(|r| format!("# {r}\n{r}")).collect();
        expected.push(GIT.to_string());
        let mut found: Vec<String> = blocks
            .iter()
            .map(|b| b.trim_matches('\n').to_string())
            .collect();
        expected.sort();
        found.sort();
        assert_eq!(found, expected, "{text}");
        let expected_len: usize = rules
            .iter()
            .map(|r| 1 + 2 + r.len() + 1 + r.len() + 1)
            .sum();
        assert_eq!(text.len(), expected_len + 1 + GIT.len() + 1, "{text}");
    }
}
