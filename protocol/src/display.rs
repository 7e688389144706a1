//! How execgate shows attacker-chosen text to a person: commands, folders, rule locations,
//! justifications and reasons, in the terminal prompt, the MCP elicitation message and the
//! denial line. One escaping for all of them, so nothing a sandboxed process chooses can
//! move the cursor, erase a line, start a new one or reorder what a person reads.
//!
//! Allocation-free (writes into any [`Sink`]), so the execve wrapper and the preload shim
//! (after `fork`) use it too.
//!
//! # What is shown as it is
//!
//! An allow-list ([`is_shown`]): printable ASCII (space to `~`), and above ASCII the
//! letters, marks, numbers, punctuation and symbols of Unicode (general categories L, M, N,
//! P, S) except default-ignorable (invisible) ones, as generated into `shown.rs` by
//! `protocol/tools/gen_shown.py`. Everything else is escaped: C0 controls, DEL, C1 controls,
//! ESC, CR and LF, bidi and other format characters (U+061C, U+200B..U+200F,
//! U+202A..U+202E, U+2066..U+2069, U+FEFF, ...), separators other than the ASCII space,
//! private-use and unassigned code points, and bytes that are not UTF-8.
//!
//! # The escaped form
//!
//! Text that needs escaping is written whole in bash's ANSI-C quoting, `$'...'`, which
//! bash and zsh read back to the same bytes: `\\` and `\'` for backslash and quote; `\a`
//! `\b` `\t` `\n` `\v` `\f` `\r` `\e` for those controls; `\xHH` for other ASCII controls,
//! DEL and every byte that is not UTF-8; `\uHHHH` (always four digits) or `\UHHHHHHHH`
//! (eight) for any other character not shown. So `\x85` is the byte 0x85 and `\u0085` the
//! character U+0085: the form is unambiguous and reversible.
//!
//! - A word of a command ([`quote_word`]) is written as it is when it holds only
//!   characters that never need shell quoting, single-quoted (`'a b'`, `'` as `'\''`) when
//!   everything in it is shown, and in the escaped form otherwise.
//! - Free text ([`text`]: a folder, a rule location, a justification, a reason) is written
//!   as it is when everything in it is shown and it does not itself start with `$'`, and in
//!   the escaped form otherwise.
//!
//! # Long text and blank runs
//!
//! A run of [`SPACE_RUN`] or more spaces is invisible and pushes what follows to where the
//! sandbox wants it (a forged line of a prompt). Text holding one is written in the escaped
//! form with each such run counted, `\x20{N}` for N spaces (not bash syntax: a space is
//! otherwise always written as itself, so the form stays unambiguous). The braille blank
//! U+2800 is escaped like an invisible character.
//!
//! What a person is shown is also bounded ([`quote_command_within`], [`text_within`]): text
//! longer than the limit keeps its first two thirds and its last third, with
//! ` ... N more bytes ... ` between them, so a long argument can neither push the rest of a
//! prompt off the screen nor fill it.

use crate::shown::SHOWN;
use crate::Sink;
use alloc::string::String;
use alloc::vec::Vec;

pub use crate::shown::UNICODE_VERSION;

/// Runs of this many spaces or more are written counted (see the module documentation).
pub const SPACE_RUN: usize = 4;

/// How many bytes of a command a prompt or a denial line shows at most (plus the marker).
pub const COMMAND_LIMIT: usize = 320;

/// How many bytes of free text (a folder, a rule, a reason) a prompt shows at most.
pub const TEXT_LIMIT: usize = 160;

/// Whether `c` is shown as it is (see the module documentation).
pub fn is_shown(c: char) -> bool {
    let cp = c as u32;
    if cp < 0x80 {
        return (0x20..0x7f).contains(&cp);
    }
    // The braille blank is a symbol that draws nothing.
    if cp == 0x2800 {
        return false;
    }
    SHOWN
        .binary_search_by(|&(lo, hi)| {
            if hi < cp {
                core::cmp::Ordering::Less
            } else if lo > cp {
                core::cmp::Ordering::Greater
            } else {
                core::cmp::Ordering::Equal
            }
        })
        .is_ok()
}

/// Writes `program` followed by `args`, each as [`quote_word`] writes it, separated by
/// single spaces.
///
/// `args` are the arguments after `argv[0]`: execgate shows the resolved program path in
/// place of `argv[0]`.
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
/// the command as [`quote_command_within`] shows it ([`COMMAND_LIMIT`]), the reason as
/// [`text_within`] shows it (twice [`TEXT_LIMIT`]).
pub fn denial<'a, S, A>(
    program: &[u8],
    args: A,
    reason: &[u8],
    sink: &mut S,
) -> Result<(), S::Error>
where
    S: Sink,
    A: IntoIterator<Item = &'a [u8]>,
    A::IntoIter: Clone,
{
    sink.put(b"execgate: denied: ")?;
    quote_command_within(program, args, COMMAND_LIMIT, sink)?;
    sink.put(b": ")?;
    text_within(reason, 2 * TEXT_LIMIT, sink)
}

/// [`quote_command`], bounded: at most `limit` bytes of it (cut at characters) plus the
/// ` ... N more bytes ... ` marker (see the module documentation).
pub fn quote_command_within<'a, S, A>(
    program: &[u8],
    args: A,
    limit: usize,
    sink: &mut S,
) -> Result<(), S::Error>
where
    S: Sink,
    A: IntoIterator<Item = &'a [u8]>,
    A::IntoIter: Clone,
{
    within(
        &Command {
            program,
            args: args.into_iter(),
        },
        limit,
        sink,
    )
}

/// [`text`], bounded like [`quote_command_within`].
pub fn text_within<S: Sink>(bytes: &[u8], limit: usize, sink: &mut S) -> Result<(), S::Error> {
    within(&Text(bytes), limit, sink)
}

/// [`quote_command_within`] into a new string.
pub fn command_string_within<'a, A>(program: &[u8], args: A, limit: usize) -> String
where
    A: IntoIterator<Item = &'a [u8]>,
    A::IntoIter: Clone,
{
    let mut out = Vec::new();
    let Ok(()) = quote_command_within(program, args, limit, &mut out);
    into_string(out)
}

/// [`text_within`] into a new string.
pub fn text_string_within(bytes: &[u8], limit: usize) -> String {
    let mut out = Vec::new();
    let Ok(()) = text_within(bytes, limit, &mut out);
    into_string(out)
}

/// Something shown that can be written more than once (to measure it, then to write it).
trait Render {
    fn render<S: Sink>(&self, sink: &mut S) -> Result<(), S::Error>;
}

struct Command<'p, A> {
    program: &'p [u8],
    args: A,
}

impl<'a, A: Iterator<Item = &'a [u8]> + Clone> Render for Command<'_, A> {
    fn render<S: Sink>(&self, sink: &mut S) -> Result<(), S::Error> {
        quote_command(self.program, self.args.clone(), sink)
    }
}

struct Text<'t>(&'t [u8]);

impl Render for Text<'_> {
    fn render<S: Sink>(&self, sink: &mut S) -> Result<(), S::Error> {
        text(self.0, sink)
    }
}

/// Counts what is written and finds the first character that starts at or after `mark`.
struct Measure {
    len: usize,
    mark: usize,
    found: Option<usize>,
}

impl Sink for Measure {
    type Error = core::convert::Infallible;
    fn put(&mut self, bytes: &[u8]) -> Result<(), Self::Error> {
        if self.found.is_none() {
            for (i, &b) in bytes.iter().enumerate() {
                let at = self.len + i;
                if at >= self.mark && !is_continuation(b) {
                    self.found = Some(at);
                    break;
                }
            }
        }
        self.len += bytes.len();
        Ok(())
    }
}

fn is_continuation(b: u8) -> bool {
    b & 0xc0 == 0x80
}

/// Passes on the bytes before `head` and from `tail` on, and the marker between them.
struct Window<'s, S> {
    inner: &'s mut S,
    at: usize,
    head: usize,
    tail: usize,
}

impl<S: Sink> Sink for Window<'_, S> {
    type Error = S::Error;
    fn put(&mut self, bytes: &[u8]) -> Result<(), Self::Error> {
        let start = self.at;
        self.at += bytes.len();
        for (lo, hi) in [(0, self.head), (self.tail, usize::MAX)] {
            let from = lo.max(start);
            let to = hi.min(self.at);
            if from < to {
                self.inner.put(&bytes[from - start..to - start])?;
            }
            if lo == 0 && start < self.head && self.at >= self.head {
                let omitted = self.tail - self.head;
                self.inner.put(b" ... ")?;
                decimal(omitted, self.inner)?;
                self.inner.put(b" more bytes ... ")?;
            }
        }
        Ok(())
    }
}

/// Writes `what`, or when it is longer than `limit`, its first two thirds and last third
/// (cut at characters) with the marker between them.
fn within<R: Render, S: Sink>(what: &R, limit: usize, sink: &mut S) -> Result<(), S::Error> {
    let mut head = Measure {
        len: 0,
        mark: limit - limit / 3,
        found: None,
    };
    let Ok(()) = what.render(&mut head);
    let total = head.len;
    if total <= limit {
        return what.render(sink);
    }
    let head = head.found.unwrap_or(total);
    let mut tail = Measure {
        len: 0,
        mark: total - limit / 3,
        found: None,
    };
    let Ok(()) = what.render(&mut tail);
    let tail = tail.found.unwrap_or(total).max(head);
    what.render(&mut Window {
        inner: sink,
        at: 0,
        head,
        tail,
    })
}

fn decimal<S: Sink>(mut value: usize, sink: &mut S) -> Result<(), S::Error> {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    sink.put(&digits[i..])
}

/// Writes the start of a line saying a command could not be run, `execgate: cannot run
/// <program>: ` (the program as [`quote_word`] shows it); the caller writes why after it.
pub fn cannot_run<S: Sink>(program: &[u8], sink: &mut S) -> Result<(), S::Error> {
    sink.put(b"execgate: cannot run ")?;
    quote_word(program, sink)?;
    sink.put(b": ")
}

/// Writes one word of a command, quoted as needed.
pub fn quote_word<S: Sink>(word: &[u8], sink: &mut S) -> Result<(), S::Error> {
    if word.is_empty() {
        return sink.put(b"''");
    }
    if word.iter().all(|&b| is_plain(b)) {
        return sink.put(word);
    }
    if !all_shown(word) || has_space_run(word) {
        return escaped(word, sink);
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

/// Writes free text: as it is when every character is shown (and it does not start with
/// `$'`), else in the escaped form.
pub fn text<S: Sink>(text: &[u8], sink: &mut S) -> Result<(), S::Error> {
    if all_shown(text) && !text.starts_with(b"$'") && !has_space_run(text) {
        sink.put(text)
    } else {
        escaped(text, sink)
    }
}

/// [`quote_command`] into a new string.
pub fn command_string<'a, A>(program: &[u8], args: A) -> String
where
    A: IntoIterator<Item = &'a [u8]>,
{
    let mut out = Vec::new();
    let Ok(()) = quote_command(program, args, &mut out);
    into_string(out)
}

/// [`text`] into a new string.
pub fn text_string(bytes: &[u8]) -> String {
    let mut out = Vec::new();
    let Ok(()) = text(bytes, &mut out);
    into_string(out)
}

/// The output is ASCII plus shown characters, so always UTF-8.
fn into_string(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
}

fn is_plain(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"_@%+=:,./-".contains(&b)
}

/// True when `bytes` is UTF-8 and every character in it is shown.
fn all_shown(bytes: &[u8]) -> bool {
    match core::str::from_utf8(bytes) {
        Ok(text) => text.chars().all(is_shown),
        Err(_) => false,
    }
}

/// True when `bytes` holds [`SPACE_RUN`] spaces in a row.
fn has_space_run(bytes: &[u8]) -> bool {
    bytes
        .split(|&b| b != b' ')
        .any(|run| run.len() >= SPACE_RUN)
}

/// Writes `bytes` in the escaped form, `$'...'`.
fn escaped<S: Sink>(bytes: &[u8], sink: &mut S) -> Result<(), S::Error> {
    sink.put(b"$'")?;
    let mut rest = bytes;
    while !rest.is_empty() {
        let (valid_len, bad_len) = match core::str::from_utf8(rest) {
            Ok(_) => (rest.len(), 0),
            Err(err) => (
                err.valid_up_to(),
                err.error_len().unwrap_or(rest.len() - err.valid_up_to()),
            ),
        };
        let (valid, tail) = rest.split_at(valid_len);
        if let Ok(valid) = core::str::from_utf8(valid) {
            let mut spaces = 0usize;
            for ch in valid.chars() {
                if ch == ' ' {
                    spaces += 1;
                    continue;
                }
                space_run(spaces, sink)?;
                spaces = 0;
                escaped_char(ch, sink)?;
            }
            space_run(spaces, sink)?;
        }
        let (bad, tail) = tail.split_at(bad_len);
        for &b in bad {
            hex(b"\\x", u32::from(b), 2, sink)?;
        }
        rest = tail;
    }
    sink.put(b"'")
}

/// Writes `n` spaces: as they are when fewer than [`SPACE_RUN`], else counted, `\x20{N}`.
fn space_run<S: Sink>(n: usize, sink: &mut S) -> Result<(), S::Error> {
    if n >= SPACE_RUN {
        sink.put(b"\\x20{")?;
        decimal(n, sink)?;
        return sink.put(b"}");
    }
    for _ in 0..n {
        sink.put(b" ")?;
    }
    Ok(())
}

fn escaped_char<S: Sink>(ch: char, sink: &mut S) -> Result<(), S::Error> {
    let named: &[u8] = match ch {
        '\\' => b"\\\\",
        '\'' => b"\\'",
        '\u{7}' => b"\\a",
        '\u{8}' => b"\\b",
        '\t' => b"\\t",
        '\n' => b"\\n",
        '\u{b}' => b"\\v",
        '\u{c}' => b"\\f",
        '\r' => b"\\r",
        '\u{1b}' => b"\\e",
        c if is_shown(c) => {
            let mut utf8 = [0u8; 4];
            return sink.put(c.encode_utf8(&mut utf8).as_bytes());
        }
        c if (c as u32) < 0x80 => return hex(b"\\x", c as u32, 2, sink),
        c if (c as u32) <= 0xffff => return hex(b"\\u", c as u32, 4, sink),
        c => return hex(b"\\U", c as u32, 8, sink),
    };
    sink.put(named)
}

fn hex<S: Sink>(prefix: &[u8], value: u32, digits: u32, sink: &mut S) -> Result<(), S::Error> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    sink.put(prefix)?;
    for i in (0..digits).rev() {
        let nibble = (value >> (4 * i)) & 0xf;
        sink.put(&[DIGITS[nibble as usize]])?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::format;
    use std::string::String;
    use std::vec::Vec;

    fn shown(program: &[u8], args: &[&[u8]]) -> String {
        command_string(program, args.iter().copied())
    }

    #[test]
    fn denial_and_failure_lines_name_the_quoted_command() {
        let mut out = Vec::new();
        let Ok(()) = denial(b"/usr/bin/rm", [&b"-rf"[..], b"a b"], b"no", &mut out);
        assert_eq!(out, b"execgate: denied: /usr/bin/rm -rf 'a b': no");
        let mut out = Vec::new();
        let Ok(()) = cannot_run(b"/bin/x", &mut out);
        assert_eq!(out, b"execgate: cannot run /bin/x: ");
        let mut out = Vec::new();
        let Ok(()) = cannot_run(b"/bin/\x1b[2J", &mut out);
        assert_eq!(out, b"execgate: cannot run $'/bin/\\e[2J': ");
    }

    #[test]
    fn denial_reasons_are_escaped_text() {
        let mut out = Vec::new();
        let Ok(()) = denial(b"/bin/x", [], b"line\r\nexecgate: ok", &mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "execgate: denied: /bin/x: $'line\\r\\nexecgate: ok'"
        );
    }

    #[test]
    fn runs_of_spaces_are_counted_and_blanks_escaped() {
        assert_eq!(shown(b"/bin/echo", &[b"a   b"]), "/bin/echo 'a   b'");
        assert_eq!(
            shown(b"/bin/echo", &[b"a    b", b"     "]),
            "/bin/echo $'a\\x20{4}b' $'\\x20{5}'"
        );
        assert_eq!(text_string(b"/w/x      y"), "$'/w/x\\x20{6}y'");
        assert_eq!(
            text_string("a\u{2800}\u{2800}b".as_bytes()),
            "$'a\\u2800\\u2800b'"
        );
    }

    #[test]
    fn long_text_keeps_its_head_and_tail() {
        // Within the limit: unchanged.
        assert_eq!(text_string_within(b"0123456789", 10), "0123456789");
        // 30 bytes at a limit of 9: the first 6 and the last 3, 21 bytes left out.
        assert_eq!(
            text_string_within(b"abcdefghijklmnopqrstuvwxyz0123", 9),
            "abcdef ... 21 more bytes ... 123"
        );
        // Cut at characters, never inside one (each é is two bytes).
        assert_eq!(
            text_string_within("ééééééééé".as_bytes(), 9),
            "ééé ... 10 more bytes ... é"
        );
        let args: [&[u8]; 2] = [b"x", &[b'y'; 100]];
        assert_eq!(
            command_string_within(b"/bin/p", args, 30),
            format!(
                "/bin/p x {} ... 79 more bytes ... {}",
                "y".repeat(11),
                "y".repeat(10)
            )
        );
    }

    #[test]
    fn denial_lines_are_bounded() {
        let long = [b'a'; 5000];
        let mut out = Vec::new();
        let Ok(()) = denial(b"/bin/x", [&long[..]], &[b'r'; 1000], &mut out);
        let text = String::from_utf8(out).unwrap();
        let head = COMMAND_LIMIT - COMMAND_LIMIT / 3 - "/bin/x ".len();
        let tail = COMMAND_LIMIT / 3;
        let reason = 2 * TEXT_LIMIT;
        assert_eq!(
            text,
            format!(
                "execgate: denied: /bin/x {} ... {} more bytes ... {}: {} ... {} more bytes ... {}",
                "a".repeat(head),
                5007 - COMMAND_LIMIT,
                "a".repeat(tail),
                "r".repeat(reason - reason / 3),
                1000 - reason,
                "r".repeat(reason / 3)
            )
        );
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
    fn controls_use_their_names_or_hex() {
        assert_eq!(
            shown(
                b"/bin/echo",
                &[
                    b"a\nb",
                    b"\xff'x",
                    "é\t".as_bytes(),
                    b"\x1b[2J\r\x07\x00\x7f"
                ]
            ),
            "/bin/echo $'a\\nb' $'\\xff\\'x' $'é\\t' $'\\e[2J\\r\\a\\x00\\x7f'"
        );
    }

    #[test]
    fn bidi_format_and_c1_characters_are_code_points() {
        assert_eq!(
            shown(
                b"/bin/echo",
                &[
                    "a\u{202e}b".as_bytes(),
                    "\u{85}\u{9b}".as_bytes(),
                    "\u{200b}\u{2066}\u{61c}".as_bytes()
                ]
            ),
            "/bin/echo $'a\\u202eb' $'\\u0085\\u009b' $'\\u200b\\u2066\\u061c'"
        );
        // Variation selectors and tags are invisible; a non-ASCII space looks like one.
        assert_eq!(
            text_string("x\u{fe0f}\u{e0041}\u{a0}".as_bytes()),
            "$'x\\ufe0f\\U000e0041\\u00a0'"
        );
    }

    #[test]
    fn printable_unicode_is_kept() {
        assert_eq!(shown("/bin/é".as_bytes(), &[]), "'/bin/é'");
        assert_eq!(
            text_string("café — ok “quoted” 日本 ✓".as_bytes()),
            "café — ok “quoted” 日本 ✓"
        );
    }

    #[test]
    fn text_is_kept_unless_it_needs_escaping_or_looks_escaped() {
        assert_eq!(text_string(b"/home/me/my project"), "/home/me/my project");
        assert_eq!(text_string(b"it's \\ fine"), "it's \\ fine");
        assert_eq!(text_string(b"$'\\e'"), "$'$\\'\\\\e\\''");
        assert_eq!(text_string(b""), "");
    }

    #[test]
    fn the_escaped_form_reads_back_to_the_same_bytes() {
        // Decode the form the way bash does, for every kind of escape written.
        fn decode(form: &str) -> Vec<u8> {
            let body = form.strip_prefix("$'").unwrap().strip_suffix('\'').unwrap();
            let mut out = Vec::new();
            let mut chars = body.chars().peekable();
            while let Some(c) = chars.next() {
                if c != '\\' {
                    let mut utf8 = [0u8; 4];
                    out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                    continue;
                }
                let e = chars.next().unwrap();
                let mut take = |n: usize| -> u32 {
                    let digits: String = (0..n).map(|_| chars.next().unwrap()).collect();
                    u32::from_str_radix(&digits, 16).unwrap()
                };
                match e {
                    'x' => out.push(take(2) as u8),
                    'u' | 'U' => {
                        let c = char::from_u32(take(if e == 'u' { 4 } else { 8 })).unwrap();
                        let mut utf8 = [0u8; 4];
                        out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
                    }
                    'a' => out.push(7),
                    'b' => out.push(8),
                    't' => out.push(9),
                    'n' => out.push(10),
                    'v' => out.push(11),
                    'f' => out.push(12),
                    'r' => out.push(13),
                    'e' => out.push(27),
                    '\\' => out.push(b'\\'),
                    '\'' => out.push(b'\''),
                    other => panic!("unknown escape {other}"),
                }
            }
            out
        }
        let mut all: Vec<u8> = (0u8..=0xff).collect();
        all.extend_from_slice("\u{85}\u{202e}\u{fe0f}\u{e0041}é\u{10ffff}'\\".as_bytes());
        let mut out = Vec::new();
        let Ok(()) = escaped(&all, &mut out);
        assert_eq!(decode(&String::from_utf8(out).unwrap()), all);
    }

    #[test]
    fn the_table_is_sorted_and_disjoint() {
        assert!(SHOWN.windows(2).all(|w| w[0].1 < w[1].0));
        assert!(SHOWN.iter().all(|&(lo, hi)| lo <= hi && lo >= 0x80));
    }
}
