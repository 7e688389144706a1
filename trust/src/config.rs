//! The parts of a git config file that name other files git reads or runs: `include.path`,
//! `includeIf.<condition>.path` (every condition counts: which apply depends on things the
//! sandbox can change) and `core.hooksPath`.
//!
//! A small reader of git's config syntax: sections (`[core]`, `[includeIf "gitdir:~/x/"]`,
//! the old `[section.sub]`), keys case-insensitive, values with quotes, escapes, comments
//! and line continuations. A file it cannot read as git would is reported as such, so the
//! caller can refuse to trust what it did not understand.

/// What a config file names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigRefs {
    /// Every `include.path` and `includeIf.*.path` value, in order (unexpanded).
    pub includes: Vec<Vec<u8>>,
    /// The last `core.hooksPath` value (unexpanded).
    pub hooks_path: Option<Vec<u8>>,
}

/// The config text could not be read as git reads it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {what}")]
pub struct ConfigError {
    /// The line (1-based).
    pub line: usize,
    /// What is wrong.
    pub what: &'static str,
}

/// Reads the file references out of config text.
pub fn refs(text: &[u8]) -> Result<ConfigRefs, ConfigError> {
    let mut parser = Parser {
        text,
        at: 0,
        line: 1,
    };
    let mut refs = ConfigRefs::default();
    let mut section: Vec<u8> = Vec::new();
    let mut subsection: Option<Vec<u8>> = None;
    loop {
        parser.skip_blank();
        let Some(c) = parser.peek() else {
            return Ok(refs);
        };
        match c {
            b'\n' => parser.bump(),
            b'#' | b';' => parser.skip_line(),
            b'[' => {
                let (name, sub) = parser.section()?;
                section = name;
                subsection = sub;
            }
            c if c.is_ascii_alphabetic() => {
                let key = parser.key();
                parser.skip_blank();
                let value = match parser.peek() {
                    Some(b'=') => {
                        parser.bump();
                        Some(parser.value()?)
                    }
                    None | Some(b'\n') | Some(b'#') | Some(b';') => None,
                    _ => {
                        return Err(
                            parser.error("a key must be followed by '=' or the end of the line")
                        )
                    }
                };
                let Some(value) = value else { continue };
                match (section.as_slice(), subsection.is_some(), key.as_slice()) {
                    (b"include", false, b"path") | (b"includeif", true, b"path") => {
                        refs.includes.push(value);
                    }
                    (b"core", false, b"hookspath") => refs.hooks_path = Some(value),
                    _ => {}
                }
            }
            _ => return Err(parser.error("not a section, key or comment")),
        }
    }
}

struct Parser<'a> {
    text: &'a [u8],
    at: usize,
    line: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn bump(&mut self) {
        if self.peek() == Some(b'\n') {
            self.line += 1;
        }
        self.at += 1;
    }

    fn error(&self, what: &'static str) -> ConfigError {
        ConfigError {
            line: self.line,
            what,
        }
    }

    /// Skips spaces and tabs (not newlines).
    fn skip_blank(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\r')) {
            self.bump();
        }
    }

    fn skip_line(&mut self) {
        while let Some(c) = self.peek() {
            self.bump();
            if c == b'\n' {
                return;
            }
        }
    }

    /// `[name]`, `[name "sub"]` or `[name.sub]`; the name lower-cased.
    fn section(&mut self) -> Result<(Vec<u8>, Option<Vec<u8>>), ConfigError> {
        self.bump(); // [
        let mut name = Vec::new();
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == b'-' || c == b'.' {
                name.push(c.to_ascii_lowercase());
                self.bump();
            } else {
                break;
            }
        }
        let mut sub = None;
        match self.peek() {
            Some(b']') => {
                self.bump();
                if let Some(dot) = name.iter().position(|&b| b == b'.') {
                    sub = Some(name[dot + 1..].to_vec());
                    name.truncate(dot);
                }
            }
            Some(b' ' | b'\t') => {
                self.skip_blank();
                if self.peek() != Some(b'"') {
                    return Err(self.error("a subsection name must be quoted"));
                }
                self.bump();
                let mut text = Vec::new();
                loop {
                    match self.peek() {
                        None | Some(b'\n') => {
                            return Err(self.error("unterminated subsection name"))
                        }
                        Some(b'"') => {
                            self.bump();
                            break;
                        }
                        Some(b'\\') => {
                            self.bump();
                            match self.peek() {
                                None | Some(b'\n') => {
                                    return Err(self.error("unterminated subsection name"))
                                }
                                Some(c) => {
                                    text.push(c);
                                    self.bump();
                                }
                            }
                        }
                        Some(c) => {
                            text.push(c);
                            self.bump();
                        }
                    }
                }
                if self.peek() != Some(b']') {
                    return Err(self.error("expected ']' after the subsection name"));
                }
                self.bump();
                sub = Some(text);
            }
            _ => return Err(self.error("bad section header")),
        }
        if name.is_empty() {
            return Err(self.error("empty section name"));
        }
        Ok((name, sub))
    }

    /// A key name, lower-cased.
    fn key(&mut self) -> Vec<u8> {
        let mut key = Vec::new();
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == b'-' {
                key.push(c.to_ascii_lowercase());
                self.bump();
            } else {
                break;
            }
        }
        key
    }

    /// A value after `=`, up to the end of its (logical) line.
    fn value(&mut self) -> Result<Vec<u8>, ConfigError> {
        self.skip_blank();
        let mut value = Vec::new();
        let mut quoted = false;
        // Whitespace outside quotes is kept only when something follows it.
        let mut pending = 0usize;
        while let Some(c) = self.peek() {
            match c {
                b'\n' => {
                    if quoted {
                        return Err(self.error("unterminated quote"));
                    }
                    self.bump();
                    break;
                }
                b'#' | b';' if !quoted => {
                    self.skip_line();
                    break;
                }
                b' ' | b'\t' | b'\r' if !quoted => {
                    if !value.is_empty() {
                        pending += 1;
                    }
                    self.bump();
                    continue;
                }
                _ => {}
            }
            value.extend(std::iter::repeat_n(b' ', pending));
            pending = 0;
            self.bump();
            match c {
                b'"' => quoted = !quoted,
                b'\\' => match self.peek() {
                    Some(b'\n') => self.bump(),
                    Some(b'n') => {
                        value.push(b'\n');
                        self.bump();
                    }
                    Some(b't') => {
                        value.push(b'\t');
                        self.bump();
                    }
                    Some(b'b') => {
                        value.pop();
                        self.bump();
                    }
                    Some(e @ (b'"' | b'\\')) => {
                        value.push(e);
                        self.bump();
                    }
                    _ => return Err(self.error("bad escape in a value")),
                },
                c => value.push(c),
            }
        }
        if quoted {
            return Err(self.error("unterminated quote"));
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn includes(text: &str) -> Vec<String> {
        refs(text.as_bytes())
            .unwrap()
            .includes
            .iter()
            .map(|v| String::from_utf8(v.clone()).unwrap())
            .collect()
    }

    #[test]
    fn every_include_form_is_found() {
        let text = "[core]\n\tbare = false\n\
                    [include]\n\tpath = a.cfg\n\
                    [Include]\n  PATH=\"b c.cfg\" ; comment\n\
                    [includeIf \"gitdir:~/work/\"]\n\tpath = ~/d.cfg\n\
                    [includeIf.x]\npath = e\\\n.cfg\n\
                    [other \"include\"]\n\tpath = not-me\n\
                    [include] path = f.cfg\n";
        assert_eq!(
            includes(text),
            ["a.cfg", "b c.cfg", "~/d.cfg", "e.cfg", "f.cfg"]
        );
    }

    #[test]
    fn the_last_hooks_path_wins_and_other_keys_are_ignored() {
        let text =
            "[core]\n\thooksPath = one\n\tfsmonitor = touch x\n[core]\nhookspath = \"two\" # c\n";
        let found = refs(text.as_bytes()).unwrap();
        assert_eq!(found.hooks_path.as_deref(), Some(&b"two"[..]));
        assert_eq!(found.includes, Vec::<Vec<u8>>::new());
    }

    #[test]
    fn values_are_read_as_git_reads_them() {
        let text = "[include]\n\tpath = \"a\\\"b\" c\\td  # x\n\tpath = x\"y z\"w\n\tpath\n";
        assert_eq!(includes(text), ["a\"b c\td", "xy zw"]);
    }

    #[test]
    fn text_git_would_refuse_is_an_error() {
        for (text, line) in [
            ("[include\npath = x\n", 1),
            ("[include]\npath = \"open\n", 2),
            ("[a \"b\n", 1),
            ("[include]\n= x\n", 2),
            ("[include]\npath = a\\q\n", 2),
        ] {
            assert_eq!(refs(text.as_bytes()).unwrap_err().line, line, "{text:?}");
        }
    }
}
