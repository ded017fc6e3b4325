//! DTMF digits and RFC 4733 telephone-event payloads.

use super::MediaError;

/// One step of a DTMF dial string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtmfDigit {
    /// RFC 4733 event code 0-15 (0-9, `*`=10, `#`=11, A-D=12-15).
    Tone(u8),
    /// `,` in a dial string: wait before the next digit (conference PIN prompts need it).
    Pause,
}

/// The pause a `,` stands for.
pub const PAUSE_MS: u64 = 1000;

/// RFC 4733 event code of a DTMF character.
pub fn event_of_char(c: char) -> Option<u8> {
    match c.to_ascii_uppercase() {
        '0'..='9' => Some(c as u8 - b'0'),
        '*' => Some(10),
        '#' => Some(11),
        c @ 'A'..='D' => Some(12 + (c as u8 - b'A')),
        _ => None,
    }
}

/// The character of an RFC 4733 DTMF event code.
pub fn char_of_event(event: u8) -> Option<char> {
    match event {
        0..=9 => Some((b'0' + event) as char),
        10 => Some('*'),
        11 => Some('#'),
        12..=15 => Some((b'A' + event - 12) as char),
        _ => None,
    }
}

/// Parse a dial string such as `"123456#"` or `",,4711#"`. Spaces are ignored.
pub fn parse_dtmf_digits(s: &str) -> Result<Vec<DtmfDigit>, MediaError> {
    s.chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| match c {
            ',' => Ok(DtmfDigit::Pause),
            c => event_of_char(c).map(DtmfDigit::Tone).ok_or(MediaError::InvalidDtmf(c)),
        })
        .collect()
}

/// An RFC 4733 section 2.3 event payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EventPayload {
    pub event: u8,
    pub end: bool,
    pub volume: u8,
    pub duration: u16,
}

/// Parse the first event of a telephone-event payload; `None` if it is too short.
/// (Redundant events that may follow repeat earlier ones and carry nothing new for us.)
pub(crate) fn parse_event(payload: &[u8]) -> Option<EventPayload> {
    let [event, flags, d0, d1, ..] = *payload else {
        return None;
    };
    Some(EventPayload { event, end: flags & 0x80 != 0, volume: flags & 0x3f, duration: u16::from_be_bytes([d0, d1]) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chars_and_events_round_trip() {
        for c in "0123456789*#ABCD".chars() {
            assert_eq!(char_of_event(event_of_char(c).unwrap()), Some(c));
        }
        assert_eq!(event_of_char('a'), Some(12));
        assert_eq!(char_of_event(16), None);
    }

    #[test]
    fn dial_strings() {
        assert_eq!(parse_dtmf_digits("1, #").unwrap(), vec![DtmfDigit::Tone(1), DtmfDigit::Pause, DtmfDigit::Tone(11)]);
        assert!(matches!(parse_dtmf_digits("12x"), Err(MediaError::InvalidDtmf('x'))));
    }

    #[test]
    fn event_payloads() {
        assert_eq!(
            parse_event(&[11, 0x80 | 10, 0x03, 0x20]),
            Some(EventPayload { event: 11, end: true, volume: 10, duration: 800 })
        );
        assert_eq!(parse_event(&[1, 0, 0]), None);
    }
}
