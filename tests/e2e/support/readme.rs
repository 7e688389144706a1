//! The README's snippets, word for word, for the tests that run them: a README config
//! snippet that no test runs can rot unnoticed.

use super::bins::{execgate, repo_root};
use std::path::Path;

/// The body of the first fenced block that follows the line containing `marker` in
/// README.md, word for word.
pub fn block(marker: &str) -> String {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let start = readme
        .find(marker)
        .unwrap_or_else(|| panic!("README.md has no {marker:?}"));
    let rest = &readme[start..];
    let fence = rest.find("\n```").expect("a fenced block after the marker") + 1;
    let body_start = fence + rest[fence..].find('\n').unwrap() + 1;
    let body_len = rest[body_start..]
        .find("\n```")
        .expect("the block's closing fence");
    rest[body_start..body_start + body_len + 1].to_string()
}

/// `text` with the README's example paths replaced by the test's: the installed binary
/// and the person's home.
pub fn localize(text: &str, home: &Path) -> String {
    text.replace("/usr/local/bin/execgate", &execgate().display().to_string())
        .replace("/home/me", &home.display().to_string())
}
