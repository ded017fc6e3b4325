//! The `cargo fuzz` entry point (`fuzz/fuzz_targets/bfcp.rs`), also replayed over the seeds by
//! `tests/tests/fuzz_corpus.rs`. It must never panic, whatever the bytes.

use std::time::{Duration, Instant};

use crate::framer::StreamFramer;
use crate::msg::{decode, encode};
use crate::{Client, ClientConfig, Server, ServerConfig, Timing, Transport};

/// Every parser of the crate on `data`, and both state machines driven by it:
/// - decode; what decodes must encode and decode to itself;
/// - the TCP framer over the bytes in two pieces;
/// - the SDP parser on the bytes as text;
/// - a UDP client that asked for the floor, and a UDP server, fed the bytes as datagrams split at
///   every `\n--8<--\n`, with a timer step between them.
pub fn fuzz_bfcp(data: &[u8]) {
    if let Ok(m) = decode(data) {
        let wire = encode(&m).expect("a decoded message encodes");
        assert_eq!(decode(&wire).as_ref(), Ok(&m), "round trip");
    }
    let mut f = StreamFramer::new();
    let (a, b) = data.split_at(data.len() / 2);
    f.push(a);
    f.push(b);
    while let Some(Ok(m)) = f.next_message() {
        let _ = decode(&m);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::sdp::parse_media(text);
    }

    let mut now = Instant::now();
    let timing = Timing::default();
    let mut c = Client::new(ClientConfig { transport: Transport::Udp, conference_id: 1, user_id: 2, timing });
    c.hello(now);
    let _ = c.request_floor(now, 1);
    let mut s =
        Server::new(ServerConfig { transport: Transport::Udp, conference_id: 1, floor_id: 1, user_id: 1, timing });
    s.request_floor(now);
    for piece in split(data) {
        let _ = c.handle_input(now, piece);
        let _ = s.handle_input(now, piece);
        let _ = c.release(now);
        now += Duration::from_millis(700);
        c.handle_timeout(now);
        s.handle_timeout(now);
        while c.poll_transmit().is_some() || c.poll_event().is_some() {}
        while s.poll_transmit().is_some() || s.poll_event().is_some() {}
    }
}

const SEPARATOR: &[u8] = b"\n--8<--\n";

fn split(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while out.len() < 64 {
        match rest.windows(SEPARATOR.len()).position(|w| w == SEPARATOR) {
            Some(i) => {
                out.push(&rest[..i]);
                rest = &rest[i + SEPARATOR.len()..];
            }
            None => break,
        }
    }
    out.push(rest);
    out
}
