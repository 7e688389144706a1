//! Shell-quoted display of a command, as shown in denial and failure messages.
//!
//! Allocation-free (writes into any [`Sink`]), so the preload shim can use it after `fork`.
//! Words made only of characters that never need quoting are written as they are; other
//! printable text is single-quoted (POSIX style, `'` written as `'\''`); a word holding
//! control characters or bytes that are not UTF-8 is written ANSI-C style, `$'...'`, with
//! those bytes as `\xNN`.

use crate::Sink;

/// Writes `program` followed by `args`, each shell-quoted, separated by single spaces.
///
/// `args` are the arguments after `argv[0]`: the denial message shows the resolved program
/// path in place of `argv[0]`.
pub fn quote_command<'a, S, A>(program: &[u8], args: A, sink: &mut S) -> Result<(), S::Error>
where
    S: Sink,
    A: IntoIterator<Item = &'a [u8]>,
{
    quote_word(program, sink)?;
    for arg in args {
        sink.put(b" ")?;
        quote_word(arg, sink)?;
    }
    Ok(())
}

/// Writes the text of a denial line, `execgate: denied: <command>: <reason>` (no newline):
/// the command as [`quote_command`] shows it, the reason as the server gave it.
pub fn denial<'a, S, A>(
    program: &[u8],
    args: A,
    reason: &[u8],
    sink: &mut S,
) -> Result<(), S::Error>
where
    S: Sink,
    A: IntoIterator<Item = &'a [u8]>,
{
    sink.put(b"execgate: denied: ")?;
    quote_command(program, args, sink)?;
    sink.put(b": ")?;
    sink.put(reason)
}

/// Writes the start of a line saying a command could not be run, `execgate: cannot run
/// <program>: `; the caller writes why after it.
pub fn cannot_run<S: Sink>(program: &[u8], sink: &mut S) -> Result<(), S::Error> {
    sink.put(b"execgate: cannot run ")?;
    sink.put(program)?;
    sink.put(b": ")
}

/// Writes one word, quoted as needed.
pub fn quote_word<S: Sink>(word: &[u8], sink: &mut S) -> Result<(), S::Error> {
    if word.is_empty() {
        return sink.put(b"''");
    }
    if word.iter().all(|&b| is_plain(b)) {
        return sink.put(word);
    }
    if needs_ansi_c(word) {
        return ansi_c(word, sink);
    }
    sink.put(b"'")?;
    let mut rest = word;
    while let Some(pos) = rest.iter().position(|&b| b == b'\'') {
        sink.put(&rest[..pos])?;
        sink.put(b"'\\''")?;
        rest = &rest[pos + 1..];
    }
    sink.put(rest)?;
    sink.put(b"'")
}

fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"_@%+=:,./-".contains(&b)
}

/// True when `word` holds a byte that is not valid UTF-8 or a control character.
fn needs_ansi_c(word: &[u8]) -> bool {
    match core::str::from_utf8(word) {
        Ok(text) => text.chars().any(char::is_control),
        Err(_) => true,
    }
}

fn ansi_c<S: Sink>(word: &[u8], sink: &mut S) -> Result<(), S::Error> {
    sink.put(b"$'")?;
    let mut rest = word;
    while !rest.is_empty() {
        let (valid_len, bad_len) = match core::str::from_utf8(rest) {
            Ok(_) => (rest.len(), 0),
            Err(err) => (
                err.valid_up_to(),
                err.error_len().unwrap_or(rest.len() - err.valid_up_to()),
            ),
        };
        let (valid, tail) = rest.split_at(valid_len);
        if let Ok(text) = core::str::from_utf8(valid) {
            let mut utf8 = [0u8; 4];
            for ch in text.chars() {
                match ch {
                    '\'' => sink.put(b"\\'")?,
                    '\\' => sink.put(b"\\\\")?,
                    c if c.is_control() && (c as u32) < 0x100 => hex(c as u8, sink)?,
                    c if c.is_control() => {
                        for &b in c.encode_utf8(&mut utf8).as_bytes() {
                            hex(b, sink)?;
                        }
                    }
                    c => sink.put(c.encode_utf8(&mut utf8).as_bytes())?,
                }
            }
        }
        let (bad, tail) = tail.split_at(bad_len);
        for &b in bad {
            hex(b, sink)?;
        }
        rest = tail;
    }
    sink.put(b"'")
}

fn hex<S: Sink>(b: u8, sink: &mut S) -> Result<(), S::Error> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    sink.put(&[
        b'\\',
        b'x',
        DIGITS[usize::from(b >> 4)],
        DIGITS[usize::from(b & 0xf)],
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::String;
    use std::vec::Vec;

    fn shown(program: &[u8], args: &[&[u8]]) -> String {
        let mut out = Vec::new();
        let Ok(()) = quote_command(program, args.iter().copied(), &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn denial_and_failure_lines_name_the_quoted_command() {
        let mut out = Vec::new();
        let Ok(()) = denial(b"/usr/bin/rm", [&b"-rf"[..], b"a b"], b"no", &mut out);
        assert_eq!(out, b"execgate: denied: /usr/bin/rm -rf 'a b': no");
        let mut out = Vec::new();
        let Ok(()) = cannot_run(b"/bin/x", &mut out);
        assert_eq!(out, b"execgate: cannot run /bin/x: ");
    }

    #[test]
    fn plain_words_are_unquoted() {
        assert_eq!(
            shown(b"/bin/rm", &[b"-rf", b"/tmp/x_y"]),
            "/bin/rm -rf /tmp/x_y"
        );
    }

    #[test]
    fn spaces_and_quotes_use_single_quotes() {
        assert_eq!(
            shown(b"/bin/echo", &[b"a b", b"it's", b""]),
            "/bin/echo 'a b' 'it'\\''s' ''"
        );
    }

    #[test]
    fn control_and_non_utf8_bytes_use_ansi_c_quotes() {
        assert_eq!(
            shown(b"/bin/echo", &[b"a\nb", b"\xff'x", "é\t".as_bytes()]),
            "/bin/echo $'a\\x0ab' $'\\xff\\'x' $'é\\x09'"
        );
    }

    #[test]
    fn printable_unicode_is_kept() {
        assert_eq!(shown("/bin/é".as_bytes(), &[]), "'/bin/é'");
    }
}
