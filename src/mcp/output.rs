//! Output capping: a runaway command must not flood the agent's context.

/// Caps `text` at about `max` bytes, keeping its head and its tail and marking what was
/// cut in between. Cuts fall on character boundaries.
pub fn cap(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let head_end = floor_boundary(text, max / 2);
    let tail_start = ceil_boundary(text, text.len() - (max - max / 2));
    let cut = tail_start - head_end;
    format!(
        "{}\n[... execgate: {cut} bytes of output cut ...]\n{}",
        &text[..head_end],
        &text[tail_start..]
    )
}

fn floor_boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn ceil_boundary(text: &str, mut at: usize) -> usize {
    while !text.is_char_boundary(at) {
        at += 1;
    }
    at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_output_is_untouched() {
        assert_eq!(cap("hello", 5), "hello");
    }

    #[test]
    fn long_output_keeps_head_and_tail_and_says_how_much_was_cut() {
        let text = format!("{}{}{}", "a".repeat(10), "b".repeat(100), "c".repeat(10));
        assert_eq!(
            cap(&text, 20),
            format!(
                "{}\n[... execgate: 100 bytes of output cut ...]\n{}",
                "a".repeat(10),
                "c".repeat(10)
            )
        );
    }

    #[test]
    fn cuts_never_split_a_character() {
        let text = "é".repeat(50);
        // Two bytes per character: the head stops before byte 5, the tail starts at byte 94.
        assert_eq!(
            cap(&text, 11),
            "éé\n[... execgate: 90 bytes of output cut ...]\nééé"
        );
    }
}
