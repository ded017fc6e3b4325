//! Cutting BFCP messages out of a TCP/TLS byte stream (RFC 8855 §6.1: the common header's
//! payload length delimits each message).
//!
//! Incremental (bytes arrive in any pieces), linear (each byte is copied at most twice) and
//! bounded (a message announced above [`MAX_MESSAGE_LEN`] fails the stream: the connection must
//! be closed, there is no way to find the next message).

use crate::msg::{DecodeError, HEADER_LEN, MAX_MESSAGE_LEN};

/// A TCP stream's reassembly buffer.
#[derive(Debug, Default)]
pub struct StreamFramer {
    buf: Vec<u8>,
    start: usize,
    failed: bool,
}

impl StreamFramer {
    /// An empty framer.
    pub fn new() -> StreamFramer {
        StreamFramer::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.failed {
            return;
        }
        if self.start > 0 && self.start >= self.buf.len() / 2 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole message, `None` if more bytes are needed, or an error after which the
    /// stream is dead (every later call returns the error again).
    pub fn next_message(&mut self) -> Option<Result<Vec<u8>, DecodeError>> {
        let pending = &self.buf[self.start..];
        if self.failed {
            return Some(Err(DecodeError::TooLong { len: MAX_MESSAGE_LEN + 1, max: MAX_MESSAGE_LEN }));
        }
        if pending.len() < HEADER_LEN {
            return None;
        }
        let words = usize::from(u16::from_be_bytes([pending[2], pending[3]]));
        // The F bit adds the 4 bytes of fragment offset and length; decode refuses it later.
        let fragment = if pending[0] & 0x08 != 0 { 4 } else { 0 };
        let total = HEADER_LEN + fragment + words * 4;
        if total > MAX_MESSAGE_LEN {
            self.failed = true;
            self.buf = Vec::new();
            self.start = 0;
            return Some(Err(DecodeError::TooLong { len: total, max: MAX_MESSAGE_LEN }));
        }
        if pending.len() < total {
            return None;
        }
        let m = pending[..total].to_vec();
        self.start += total;
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        Some(Ok(m))
    }

    /// Bytes held that are not yet a whole message.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msg::{Attribute, Message, Primitive, Value, decode, encode};

    fn wire(tid: u16, text: &str) -> Vec<u8> {
        encode(&Message {
            version: 1,
            responder: false,
            primitive: Primitive::Hello,
            conference_id: 1,
            transaction_id: tid,
            user_id: 2,
            attributes: vec![Attribute::new(Value::StatusInfo(text.into()))],
        })
        .unwrap()
    }

    #[test]
    fn split_and_joined_messages() {
        let mut all = Vec::new();
        for i in 0..50u16 {
            all.extend(wire(i + 1, &"x".repeat(usize::from(i))));
        }
        // Byte by byte, and in pieces of 7.
        for piece in [1, 7, all.len()] {
            let mut f = StreamFramer::new();
            let mut got = Vec::new();
            for chunk in all.chunks(piece) {
                f.push(chunk);
                while let Some(m) = f.next_message() {
                    got.push(decode(&m.unwrap()).unwrap().transaction_id);
                }
            }
            assert_eq!(got, (1..=50).collect::<Vec<_>>());
            assert_eq!(f.buffered(), 0);
        }
    }

    #[test]
    fn oversized_announcement_kills_the_stream() {
        let mut f = StreamFramer::new();
        f.push(&[0x20, 0x0b, 0xff, 0xff, 0, 0, 0, 1, 0, 1, 0, 1]);
        assert!(matches!(f.next_message(), Some(Err(DecodeError::TooLong { .. }))));
        f.push(&wire(1, "ok"));
        assert!(matches!(f.next_message(), Some(Err(_))));
        assert_eq!(f.buffered(), 0);
    }
}
