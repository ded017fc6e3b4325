//! Bounded framing of SIP messages from datagrams (UDP) and byte streams (TCP).
//!
//! Every byte from the network passes through [`precheck`] before `rsip` sees it: the message
//! size, the number of header lines and the length of each line are bounded, the head must be
//! followed by a blank line, `Content-Length` must be a sane number and the body must be exactly
//! that long. Only then is the message handed to `rsip` for parsing. The checks are cheap, linear
//! and never panic; they make the worst case for the parser a small, well-formed-looking message.

use crate::msg::RawMessage;
use thiserror::Error;

/// Bounds applied to every received message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest whole message (head and body) accepted, in bytes.
    pub max_message: usize,
    /// Largest number of header lines (folded continuation lines count too).
    pub max_headers: usize,
    /// Longest single line of the head, in bytes, without the line end.
    pub max_line: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits { max_message: 64 * 1024, max_headers: 100, max_line: 8 * 1024 }
    }
}

/// Why received bytes were not accepted as a SIP message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum FrameError {
    /// The message is larger than [`Limits::max_message`].
    #[error("message of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// Size seen (or announced), in bytes.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// More header lines than [`Limits::max_headers`].
    #[error("more than {limit} header lines")]
    TooManyHeaders {
        /// The limit.
        limit: usize,
    },
    /// A line of the head is longer than [`Limits::max_line`].
    #[error("a header line is longer than {limit} bytes")]
    LineTooLong {
        /// The limit.
        limit: usize,
    },
    /// No blank line ends the head (a datagram must hold a whole message).
    #[error("message head is not terminated by an empty line")]
    UnterminatedHead,
    /// The head contains bytes that cannot be part of SIP text (NUL, bare CR, non-UTF-8...).
    #[error("message head contains invalid bytes")]
    InvalidBytes,
    /// A header line has no `name:` part.
    #[error("malformed header line {line}")]
    MalformedHeader {
        /// Line number, the start line being 1.
        line: usize,
    },
    /// The start line is neither `METHOD uri SIP/2.0` nor `SIP/2.0 code reason`.
    #[error("malformed start line")]
    MalformedStartLine,
    /// `Content-Length` is missing on a stream, repeated with different values or not a number.
    #[error("missing or invalid Content-Length")]
    BadContentLength,
    /// The datagram holds fewer body bytes than `Content-Length` announces.
    #[error("body truncated: Content-Length {declared}, {actual} bytes present")]
    Truncated {
        /// `Content-Length`.
        declared: usize,
        /// Body bytes present.
        actual: usize,
    },
    /// `rsip` refused the message even though it passed the bounds.
    #[error("SIP syntax error: {0}")]
    Syntax(String),
}

/// Checks a complete message held in `bytes` against `limits` and splits it into a
/// [`RawMessage`]. For datagrams, `datagram` is true: extra bytes after the body are ignored
/// (RFC 3261 §18.3) and a missing `Content-Length` means "the rest of the datagram".
pub fn precheck(bytes: &[u8], limits: &Limits, datagram: bool) -> Result<RawMessage, FrameError> {
    if bytes.len() > limits.max_message {
        return Err(FrameError::TooLarge { size: bytes.len(), limit: limits.max_message });
    }
    let head_end = find_head_end(bytes, limits)?.ok_or(FrameError::UnterminatedHead)?;
    let head = &bytes[..head_end];
    let head = std::str::from_utf8(head).map_err(|_| FrameError::InvalidBytes)?;
    let mut lines = head.split("\r\n");
    let start = lines.next().unwrap_or("");
    if start.is_empty() || start.len() > limits.max_line {
        return Err(FrameError::MalformedStartLine);
    }
    check_start_line(start)?;
    let mut headers: Vec<(String, String)> = Vec::new();
    for (i, line) in lines.enumerate() {
        if line.is_empty() {
            continue;
        }
        if i >= limits.max_headers {
            return Err(FrameError::TooManyHeaders { limit: limits.max_headers });
        }
        if line.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
            return Err(FrameError::InvalidBytes);
        }
        if line.starts_with(' ') || line.starts_with('\t') {
            // Folded continuation (RFC 3261 §7.3.1): join to the previous header.
            match headers.last_mut() {
                Some((_, v)) => {
                    v.push(' ');
                    v.push_str(line.trim());
                }
                None => return Err(FrameError::MalformedHeader { line: i + 2 }),
            }
            continue;
        }
        let (name, value) = line.split_once(':').ok_or(FrameError::MalformedHeader { line: i + 2 })?;
        let name = name.trim();
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(FrameError::MalformedHeader { line: i + 2 });
        }
        headers.push((name.to_string(), value.trim().to_string()));
    }
    let body_start = head_end + 4;
    let available = bytes.len().saturating_sub(body_start);
    let declared = content_length(&headers)?;
    let body_len = match declared {
        Some(n) if n > available => {
            return Err(FrameError::Truncated { declared: n, actual: available });
        }
        Some(n) => n,
        None if datagram => available,
        None => return Err(FrameError::BadContentLength),
    };
    Ok(RawMessage {
        start_line: start.to_string(),
        headers,
        body: bytes[body_start..body_start + body_len].to_vec(),
        wire_len: body_start + body_len,
    })
}

/// Position of the `\r\n\r\n` that ends the head, or `None` if not (yet) present.
/// Fails early if a line or the head outgrow the limits.
fn find_head_end(bytes: &[u8], limits: &Limits) -> Result<Option<usize>, FrameError> {
    find_head_end_from(bytes, limits, &mut HeadScan::default())
}

/// How far a head has been scanned: a stream that delivers its head a few bytes at a time
/// resumes where the last scan stopped instead of starting over (which made framing quadratic).
#[derive(Debug, Default, Clone, Copy)]
struct HeadScan {
    i: usize,
    line_start: usize,
    lines: usize,
}

fn find_head_end_from(bytes: &[u8], limits: &Limits, scan: &mut HeadScan) -> Result<Option<usize>, FrameError> {
    let HeadScan { mut i, mut line_start, mut lines } = *scan;
    while i + 1 < bytes.len() {
        if bytes[i] == b'\r' && bytes[i + 1] == b'\n' {
            if i == line_start && lines > 0 {
                return Ok(Some(i - 2));
            }
            if i - line_start > limits.max_line {
                return Err(FrameError::LineTooLong { limit: limits.max_line });
            }
            lines += 1;
            if lines > limits.max_headers + 1 {
                return Err(FrameError::TooManyHeaders { limit: limits.max_headers });
            }
            i += 2;
            line_start = i;
            continue;
        }
        i += 1;
    }
    if bytes.len().saturating_sub(line_start) > limits.max_line {
        return Err(FrameError::LineTooLong { limit: limits.max_line });
    }
    *scan = HeadScan { i, line_start, lines };
    Ok(None)
}

fn check_start_line(start: &str) -> Result<(), FrameError> {
    let mut parts = start.splitn(3, ' ');
    let a = parts.next().unwrap_or("");
    let b = parts.next().unwrap_or("");
    let c = parts.next().unwrap_or("");
    if a == "SIP/2.0" {
        if b.len() == 3 && b.bytes().all(|x| x.is_ascii_digit()) && b.as_bytes()[0] != b'0' {
            return Ok(());
        }
        return Err(FrameError::MalformedStartLine);
    }
    if !a.is_empty() && a.bytes().all(is_token_byte) && !b.is_empty() && c == "SIP/2.0" {
        return Ok(());
    }
    Err(FrameError::MalformedStartLine)
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

fn content_length(headers: &[(String, String)]) -> Result<Option<usize>, FrameError> {
    let mut found: Option<usize> = None;
    for (name, value) in headers {
        if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l") {
            let v = value.trim();
            if v.is_empty() || v.len() > 9 || !v.bytes().all(|b| b.is_ascii_digit()) {
                return Err(FrameError::BadContentLength);
            }
            let n: usize = v.parse().map_err(|_| FrameError::BadContentLength)?;
            if found.is_some_and(|f| f != n) {
                return Err(FrameError::BadContentLength);
            }
            found = Some(n);
        }
    }
    Ok(found)
}

/// Splits a TCP byte stream into SIP messages (RFC 3261 §18.3: framing by `Content-Length`).
///
/// Its buffer never holds more than one maximal message. Keep-alive CRLFs between messages
/// (RFC 5626 §3.5.1) are skipped. On garbage the framer cannot resynchronise reliably: it reports
/// the error once and the connection should be closed by the shell ([`StreamFramer::is_broken`]).
#[derive(Debug, Clone)]
pub struct StreamFramer {
    buf: Vec<u8>,
    limits: Limits,
    broken: bool,
    /// Line-end bytes seen in a row between messages (a ping may arrive split).
    crlf_run: usize,
    /// A double CRLF (RFC 5626 ping) arrived since the last [`StreamFramer::take_ping`].
    ping: bool,
    /// How far the head of the message at the start of `buf` has been scanned.
    scan: HeadScan,
    /// Once its head is known: the wire length of that message, so that a body arriving in
    /// pieces is not parsed again at every piece.
    need: Option<usize>,
    /// Head bytes examined since the framer was made (its work, for tests).
    examined: u64,
}

impl StreamFramer {
    /// A framer with the given bounds.
    pub fn new(limits: Limits) -> Self {
        StreamFramer {
            buf: Vec::new(),
            limits,
            broken: false,
            crlf_run: 0,
            ping: false,
            scan: HeadScan::default(),
            need: None,
            examined: 0,
        }
    }

    /// True once if a keep-alive ping (`CRLF CRLF`, RFC 5626 §3.5.1) arrived between messages
    /// since the last call: answer it with one `CRLF` (the pong). Several pings read at once ask
    /// for one pong.
    pub fn take_ping(&mut self) -> bool {
        std::mem::take(&mut self.ping)
    }

    /// The first `n` bytes were one message: the next starts unscanned.
    fn consumed(&mut self, n: usize) {
        self.buf.drain(..n);
        self.scan = HeadScan::default();
        self.need = None;
    }

    /// True after a framing error: the stream cannot be trusted any more; close it.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Appends received bytes and returns every complete message now available, in order.
    /// After an error the remaining bytes are discarded and the framer stays broken.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<Result<RawMessage, FrameError>> {
        let mut out = Vec::new();
        if self.broken {
            return out;
        }
        self.buf.extend_from_slice(bytes);
        loop {
            // Skip keep-alive line ends between messages.
            let skip = self.buf.iter().take_while(|b| **b == b'\r' || **b == b'\n').count();
            if skip > 0 {
                self.buf.drain(..skip);
                self.scan = HeadScan::default();
                // Four line-end bytes in a row (across reads) are a ping; a lone CRLF is a pong
                // (or the end of a ping still to come) and needs no answer.
                self.crlf_run = self.crlf_run.saturating_add(skip);
                if self.crlf_run >= 4 {
                    self.ping = true;
                    self.crlf_run = 0;
                }
            }
            if !self.buf.is_empty() {
                self.crlf_run = 0;
            }
            if self.buf.is_empty() {
                break;
            }
            if self.need.is_some_and(|n| self.buf.len() < n) {
                break;
            }
            let from = self.scan.i;
            let found = find_head_end_from(&self.buf, &self.limits, &mut self.scan);
            self.examined += self.scan.i.max(from).saturating_sub(from) as u64;
            match found {
                Err(e) => {
                    self.fail(&mut out, e);
                    break;
                }
                Ok(None) => {
                    if self.buf.len() > self.limits.max_message {
                        let e = FrameError::TooLarge { size: self.buf.len(), limit: self.limits.max_message };
                        self.fail(&mut out, e);
                    }
                    break;
                }
                Ok(Some(head_end)) => match precheck(&self.buf, &self.limits, false) {
                    Ok(raw) => {
                        let n = raw.wire_len;
                        self.consumed(n);
                        out.push(Ok(raw));
                    }
                    Err(FrameError::Truncated { declared, .. }) => {
                        // Wait for more bytes, unless the announced body can never fit.
                        if declared > self.limits.max_message {
                            let limit = self.limits.max_message;
                            self.fail(&mut out, FrameError::TooLarge { size: declared, limit });
                        }
                        self.need = Some(head_end + 4 + declared);
                        break;
                    }
                    Err(FrameError::TooLarge { size, limit }) => {
                        // The buffer holds more than one message: check the first alone.
                        match precheck(&self.buf[..limit.min(self.buf.len())], &self.limits, false) {
                            Ok(raw) => {
                                let n = raw.wire_len;
                                self.consumed(n);
                                out.push(Ok(raw));
                            }
                            Err(_) => {
                                self.fail(&mut out, FrameError::TooLarge { size, limit });
                                break;
                            }
                        }
                    }
                    Err(e) => {
                        self.fail(&mut out, e);
                        break;
                    }
                },
            }
        }
        out
    }

    fn fail(&mut self, out: &mut Vec<Result<RawMessage, FrameError>>, e: FrameError) {
        self.broken = true;
        self.buf = Vec::new();
        out.push(Err(e));
    }
}

/// Parses a whole message: bounds first ([`precheck`]), then `rsip`.
pub fn parse_message(
    bytes: &[u8],
    limits: &Limits,
    datagram: bool,
) -> Result<(RawMessage, rsip::SipMessage), (Option<RawMessage>, FrameError)> {
    let raw = precheck(bytes, limits, datagram).map_err(|e| (None, e))?;
    match rsip::SipMessage::try_from(&bytes[..raw.wire_len]) {
        Ok(m) => Ok((raw, m)),
        Err(e) => Err((Some(raw), FrameError::Syntax(short(&e.to_string())))),
    }
}

fn short(s: &str) -> String {
    let mut out: String = s.chars().take(200).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

/// Entry point for `cargo fuzz`: runs every parser of this crate on arbitrary bytes.
/// It must never panic, whatever `data` holds.
pub fn fuzz_parse(data: &[u8]) {
    let limits = Limits::default();
    let _ = parse_message(data, &limits, true);
    let mut framer = StreamFramer::new(limits);
    let mid = data.len() / 2;
    let _ = framer.push(&data[..mid]);
    let _ = framer.push(&data[mid..]);
    let _ = framer.take_ping();
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::sdp::SessionDescription::parse(text);
        crate::sdp_security::fuzz_security(text);
        let _ = crate::digest::Challenge::parse(text);
        let _ = crate::dtmf::parse_dial_string(text);
        let _ = crate::dtmf::parse_info_body(text);
    }
    let _ = crate::dtmf::TelephoneEvent::decode(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    const OPTIONS: &str =
        "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP 1.2.3.4;branch=z9hG4bK1\r\nContent-Length: 3\r\n\r\nabc";

    #[test]
    fn datagram_ok_and_extra_bytes_ignored() {
        let mut b = OPTIONS.as_bytes().to_vec();
        b.extend_from_slice(b"junk");
        let raw = precheck(&b, &Limits::default(), true).unwrap();
        assert_eq!(raw.body, b"abc");
        assert_eq!(raw.header("via"), Some("SIP/2.0/TCP 1.2.3.4;branch=z9hG4bK1"));
    }

    #[test]
    fn truncated_body_is_reported() {
        let b = &OPTIONS.as_bytes()[..OPTIONS.len() - 1];
        assert_eq!(
            precheck(b, &Limits::default(), true).unwrap_err(),
            FrameError::Truncated { declared: 3, actual: 2 }
        );
    }

    #[test]
    fn limits_are_enforced() {
        let l = Limits { max_message: 100, max_headers: 3, max_line: 40 };
        let long = format!("OPTIONS sip:a@b SIP/2.0\r\nX: {}\r\n\r\n", "a".repeat(50));
        assert_eq!(precheck(long.as_bytes(), &l, true), Err(FrameError::LineTooLong { limit: 40 }));
        let many = "OPTIONS sip:a@b SIP/2.0\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
        assert!(matches!(precheck(many.as_bytes(), &l, true), Err(FrameError::TooManyHeaders { .. })));
        let big = vec![b'a'; 101];
        assert!(matches!(precheck(&big, &l, true), Err(FrameError::TooLarge { .. })));
    }

    #[test]
    fn stream_splits_and_joins() {
        let two = format!("\r\n\r\n{OPTIONS}{OPTIONS}");
        let bytes = two.as_bytes();
        for split in 0..bytes.len() {
            let mut f = StreamFramer::new(Limits::default());
            let mut got = f.push(&bytes[..split]);
            got.extend(f.push(&bytes[split..]));
            assert_eq!(got.len(), 2, "split at {split}");
            assert!(got.iter().all(|r| r.as_ref().map(|m| m.body == b"abc").unwrap_or(false)));
        }
        // Byte by byte.
        let mut f = StreamFramer::new(Limits::default());
        let n: usize = bytes.iter().map(|b| f.push(&[*b]).len()).sum();
        assert_eq!(n, 2);
    }

    /// A 60 KB head sent a byte at a time: framing resumes its scan, so the work grows with
    /// the bytes, not with their square (before: ~0.9 s of CPU for a 63 KB head). The body
    /// arriving in pieces is not parsed again at each piece either.
    #[test]
    fn a_head_sent_byte_by_byte_is_framed_in_linear_work() {
        let filler: String = (0..1500).map(|i| format!("X-F{i}: {}\r\n", "v".repeat(30))).collect();
        let msg = format!(
            "OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP 1.2.3.4;branch=z9hG4bK1\r\n{filler}Content-Length: 2000\r\n\r\n{}",
            "b".repeat(2000)
        );
        let limits = Limits { max_message: 128 * 1024, max_headers: 2000, max_line: 8000 };
        let mut f = StreamFramer::new(limits);
        let mut got = Vec::new();
        for b in msg.as_bytes() {
            got.extend(f.push(&[*b]));
        }
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(got[0].as_ref().unwrap().body.len(), 2000);
        // Each head byte is looked at about once (rescanning would be ~n²/2, here ~10⁹).
        assert!(
            f.examined <= 2 * msg.len() as u64,
            "{} head bytes examined for a {}-byte message",
            f.examined,
            msg.len()
        );
        // The framer is ready for the next message, split anywhere.
        let mut again = f.push(&msg.as_bytes()[..100]);
        again.extend(f.push(&msg.as_bytes()[100..]));
        assert_eq!(again.len(), 1);
    }

    #[test]
    fn stream_garbage_breaks_connection() {
        let mut f = StreamFramer::new(Limits::default());
        let r = f.push(b"\x00\x01garbage without end\r\nfoo\r\n\r\n");
        assert_eq!(r.len(), 1);
        assert!(r[0].is_err());
        assert!(f.is_broken());
        assert!(f.push(OPTIONS.as_bytes()).is_empty());
        // A stream message without Content-Length cannot be framed.
        let mut f = StreamFramer::new(Limits::default());
        let r = f.push(b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\n");
        assert_eq!(r, vec![Err(FrameError::BadContentLength)]);
        // An oversized head without end is refused once it passes the limit.
        let mut f = StreamFramer::new(Limits { max_message: 1000, max_headers: 100, max_line: 8000 });
        let r = f.push(&vec![b'a'; 2000]);
        assert!(matches!(r[..], [Err(FrameError::TooLarge { .. })]));
    }
}
