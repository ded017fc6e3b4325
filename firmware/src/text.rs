//! Text from outside (D-Bus callers, the network, files) quoted back in messages: bounded and
//! with control characters escaped, so an error never repeats a megabyte or breaks a log line.

/// At most this many characters of the input are quoted.
const MAX: usize = 80;

/// `s` as it may appear in a message: its first 80 characters, control characters escaped,
/// and how much was left out.
pub fn excerpt(s: &str) -> String {
    let n = s.chars().count();
    let mut out: String = s.chars().take(MAX).flat_map(char::escape_debug).collect();
    if n > MAX {
        out.push_str(&format!("… ({n} characters)"));
    }
    out
}

/// A longer message of ours that may hold outside text (a parser's reason): its first 400
/// characters, escaped likewise.
pub fn excerpt_long(s: &str) -> String {
    let n = s.chars().count();
    let mut out: String = s.chars().take(400).flat_map(char::escape_debug).collect();
    if n > 400 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn long_and_control_text_is_bounded_and_escaped() {
        assert_eq!(super::excerpt("call"), "call");
        assert_eq!(super::excerpt("a\r\nb"), "a\\r\\nb");
        let long = super::excerpt(&"x".repeat(1 << 20));
        assert!(long.len() < 120 && long.ends_with("(1048576 characters)"), "{long}");
    }
}
