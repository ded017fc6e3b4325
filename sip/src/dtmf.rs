//! DTMF helpers: the `dtmf=` parameter of a dial URI, RFC 4733 telephone-event payloads, and the
//! `application/dtmf-relay` body of SIP INFO.
//!
//! **Dial strings.** `sip:meet@gw.example;dtmf=1234%23` dials `sip:meet@gw.example` and, once the
//! call is up, sends the digits `1234#`. The value is percent-decoded. Allowed: `0`–`9`, `*`, `#`,
//! `A`–`D` (any case) and `,` which is a one-second pause (as on phones and most room systems).
//! Anything else makes the destination invalid, so a typo is reported before dialling.

use thiserror::Error;

/// One element of a DTMF sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DtmfItem {
    /// A digit: one of `0123456789*#ABCD`.
    Digit(char),
    /// A pause of one second (`,`).
    Pause,
}

/// Why a DTMF string was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DtmfError {
    /// A character that is not a DTMF digit or pause.
    #[error("invalid DTMF character {0:?} (allowed: 0-9 * # A-D and ',' for a pause)")]
    InvalidChar(char),
    /// Broken percent-encoding.
    #[error("invalid percent-encoding in dtmf parameter")]
    BadEscape,
    /// More than 256 items.
    #[error("DTMF string too long")]
    TooLong,
    /// A telephone-event payload shorter than 4 bytes or with an unknown event.
    #[error("invalid telephone-event payload")]
    BadPayload,
}

/// Parses a sequence of DTMF digits and pauses (already percent-decoded).
pub fn parse_digits(s: &str) -> Result<Vec<DtmfItem>, DtmfError> {
    if s.chars().count() > 256 {
        return Err(DtmfError::TooLong);
    }
    s.chars()
        .map(|c| match c.to_ascii_uppercase() {
            d @ ('0'..='9' | '*' | '#' | 'A'..='D') => Ok(DtmfItem::Digit(d)),
            ',' => Ok(DtmfItem::Pause),
            other => Err(DtmfError::InvalidChar(other)),
        })
        .collect()
}

fn percent_decode(s: &str) -> Result<String, DtmfError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = b.get(i + 1..i + 3).ok_or(DtmfError::BadEscape)?;
            let h = std::str::from_utf8(h).map_err(|_| DtmfError::BadEscape)?;
            out.push(u8::from_str_radix(h, 16).map_err(|_| DtmfError::BadEscape)?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| DtmfError::BadEscape)
}

/// Splits a dial string into the URI to call (without the `dtmf` parameter) and the digits to
/// send once the call is established.
///
/// `sip:meet@gw.example;dtmf=1234567890%23` → (`sip:meet@gw.example`, digits `1234567890#`).
pub fn parse_dial_string(uri: &str) -> Result<(String, Vec<DtmfItem>), DtmfError> {
    let (base, headers) = match uri.split_once('?') {
        Some((b, h)) => (b, Some(h)),
        None => (uri, None),
    };
    let mut parts = base.split(';');
    let mut out = parts.next().unwrap_or("").to_string();
    let mut digits = Vec::new();
    for p in parts {
        let (k, v) = p.split_once('=').unwrap_or((p, ""));
        if k.eq_ignore_ascii_case("dtmf") {
            digits = parse_digits(&percent_decode(v)?)?;
        } else {
            out.push(';');
            out.push_str(p);
        }
    }
    if let Some(h) = headers {
        out.push('?');
        out.push_str(h);
    }
    Ok((out, digits))
}

/// An RFC 4733 §2.3 telephone-event payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEvent {
    /// Event code: 0–9 digits, 10 `*`, 11 `#`, 12–15 `A`–`D`.
    pub event: u8,
    /// End bit: the last packets of an event have it set.
    pub end: bool,
    /// Power level in -dBm0, 0–63.
    pub volume: u8,
    /// Duration so far, in RTP timestamp units.
    pub duration: u16,
}

impl TelephoneEvent {
    /// The event code of a DTMF digit.
    pub fn code_for(digit: char) -> Option<u8> {
        match digit.to_ascii_uppercase() {
            d @ '0'..='9' => Some(d as u8 - b'0'),
            '*' => Some(10),
            '#' => Some(11),
            d @ 'A'..='D' => Some(d as u8 - b'A' + 12),
            _ => None,
        }
    }

    /// The digit of an event code 0–15.
    pub fn digit_for(code: u8) -> Option<char> {
        match code {
            0..=9 => Some((b'0' + code) as char),
            10 => Some('*'),
            11 => Some('#'),
            12..=15 => Some((b'A' + code - 12) as char),
            _ => None,
        }
    }

    /// The 4-byte payload.
    pub fn encode(&self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [self.event, (u8::from(self.end) << 7) | (self.volume & 0x3f), d[0], d[1]]
    }

    /// Decodes a payload (extra bytes, e.g. padding, are ignored).
    pub fn decode(b: &[u8]) -> Result<TelephoneEvent, DtmfError> {
        if b.len() < 4 {
            return Err(DtmfError::BadPayload);
        }
        Ok(TelephoneEvent {
            event: b[0],
            end: b[1] & 0x80 != 0,
            volume: b[1] & 0x3f,
            duration: u16::from_be_bytes([b[2], b[3]]),
        })
    }
}

/// Content type of SIP INFO DTMF bodies.
pub const DTMF_RELAY: &str = "application/dtmf-relay";

/// The `application/dtmf-relay` body for one digit (`Signal=5\r\nDuration=160\r\n`),
/// duration in milliseconds.
pub fn info_body(digit: char, duration_ms: u32) -> String {
    format!("Signal={}\r\nDuration={duration_ms}\r\n", digit.to_ascii_uppercase())
}

/// Parses an `application/dtmf-relay` body into digit and duration (ms, 250 if absent).
pub fn parse_info_body(body: &str) -> Option<(char, u32)> {
    let mut digit = None;
    let mut duration = 250;
    for line in body.lines().take(16) {
        let (k, v) = match line.split_once('=') {
            Some(kv) => kv,
            None => continue,
        };
        match k.trim().to_ascii_lowercase().as_str() {
            "signal" => {
                let v = v.trim();
                digit = match v.parse::<u8>() {
                    Ok(n) if v.len() == 2 => TelephoneEvent::digit_for(n),
                    _ => {
                        let mut c = v.chars();
                        match (c.next(), c.next()) {
                            (Some(d), None) if TelephoneEvent::code_for(d).is_some() => Some(d.to_ascii_uppercase()),
                            _ => None,
                        }
                    }
                }
            }
            "duration" => duration = v.trim().parse().unwrap_or(250).min(10_000),
            _ => {}
        }
    }
    digit.map(|d| (d, duration))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dial_string() {
        let (uri, d) = parse_dial_string("sip:meet@gw.example;dtmf=1234567890%23").unwrap();
        assert_eq!(uri, "sip:meet@gw.example");
        assert_eq!(d.len(), 11);
        assert_eq!(d[10], DtmfItem::Digit('#'));
        let (uri, d) = parse_dial_string("sip:a@b;transport=tcp;DTMF=12,,*a?subject=x").unwrap();
        assert_eq!(uri, "sip:a@b;transport=tcp?subject=x");
        assert_eq!(
            d,
            vec![
                DtmfItem::Digit('1'),
                DtmfItem::Digit('2'),
                DtmfItem::Pause,
                DtmfItem::Pause,
                DtmfItem::Digit('*'),
                DtmfItem::Digit('A')
            ]
        );
        assert_eq!(parse_dial_string("sip:a@b;dtmf=12x"), Err(DtmfError::InvalidChar('X')));
        assert_eq!(parse_dial_string("sip:a@b;dtmf=%2"), Err(DtmfError::BadEscape));
        assert_eq!(parse_dial_string("sip:a@b").unwrap().1, vec![]);
    }

    #[test]
    fn rfc4733_payload() {
        let e = TelephoneEvent { event: 11, end: true, volume: 10, duration: 1280 };
        assert_eq!(e.encode(), [11, 0x8a, 0x05, 0x00]);
        assert_eq!(TelephoneEvent::decode(&e.encode()).unwrap(), e);
        assert_eq!(TelephoneEvent::decode(&[1, 2]), Err(DtmfError::BadPayload));
        for d in "0123456789*#ABCD".chars() {
            assert_eq!(TelephoneEvent::digit_for(TelephoneEvent::code_for(d).unwrap()), Some(d));
        }
    }

    #[test]
    fn info_bodies() {
        assert_eq!(parse_info_body(&info_body('#', 160)), Some(('#', 160)));
        assert_eq!(parse_info_body("Signal= 5\nDuration= 100\n"), Some(('5', 100)));
        assert_eq!(parse_info_body("Signal=11\r\n"), Some(('#', 250)));
        assert_eq!(parse_info_body("Signal=xyz\r\n"), None);
    }
}
