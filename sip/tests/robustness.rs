//! Hostile input: garbage, truncation, oversized messages, missing headers. The UA must never
//! panic or hang, and must still answer OPTIONS afterwards.

mod common;
use common::*;
use huis_sip::*;
use std::time::Duration;

/// xorshift64*: a fixed-seed generator so failures reproduce.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn assert_options_answered(h: &mut Harness, branch: &str) {
    h.sent();
    h.recv(&options(branch));
    let ok = h.sent_one();
    assert_eq!(ok.code(), 200);
    assert!(ok.h("allow").contains("INVITE"));
    assert!(ok.h("accept").contains("application/sdp"));
    assert_eq!(ok.h("supported"), "timer");
}

fn seeds() -> Vec<String> {
    vec![
        peer_request("INVITE", "z9hG4bKf1", "f1@x", 1, "a", None, "Session-Expires: 90\r\n", &peer_sdp("sendrecv", true)),
        peer_request("BYE", "z9hG4bKf2", "f2@x", 2, "a", Some("b"), "", ""),
        options("z9hG4bKf3"),
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:c@d>;tag=2\r\nCall-ID: z\r\nCSeq: 1 INVITE\r\nWWW-Authenticate: Digest realm=\"r\", nonce=\"n\"\r\nContent-Length: 0\r\n\r\n".into(),
    ]
}

fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut m = base.to_vec();
    for _ in 0..1 + rng.below(8) {
        if m.is_empty() {
            break;
        }
        let pos = rng.below(m.len());
        match rng.below(6) {
            0 => m[pos] = rng.next() as u8,
            1 => {
                m.remove(pos);
            }
            2 => m.insert(pos, b"\r\n:;=<>\"@ ,/0\x00\xff"[rng.below(15)]),
            3 => m.truncate(pos),
            4 => {
                let n = rng.below(200);
                let chunk: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                m.splice(pos..pos, chunk);
            }
            _ => {
                // Duplicate a slice (repeated headers, doubled bodies).
                let end = (pos + rng.below(80)).min(m.len());
                let dup = m[pos..end].to_vec();
                m.splice(pos..pos, dup);
            }
        }
    }
    m
}

#[test]
fn random_mutations_never_panic_and_options_still_answered() {
    let mut h = Harness::new(config());
    let mut rng = Rng(0x00C0_FFEE_1234_5678);
    let seeds = seeds();
    for i in 0..20_000 {
        let base = seeds[rng.below(seeds.len())].as_bytes();
        let input =
            if i % 10 == 0 { (0..rng.below(3000)).map(|_| rng.next() as u8).collect() } else { mutate(&mut rng, base) };
        h.recv_bytes(&input);
        h.sent();
        h.events();
        // Also as TCP, in two pieces, from a few peers.
        let from: std::net::SocketAddr = format!("192.0.2.{}:5060", 10 + i % 3).parse().unwrap();
        let mid = rng.below(input.len() + 1);
        for part in [&input[..mid], &input[mid..]] {
            h.ua.handle_input(
                h.now,
                Input::Stream { from, to: LOCAL.parse().unwrap(), transport: TransportKind::Tcp, bytes: part },
            );
        }
        if i % 1000 == 0 {
            h.advance(Duration::from_secs(1));
        }
    }
    h.sent();
    assert_options_answered(&mut h, "z9hG4bKafter");
    // Everything created by garbage eventually goes away: no hang, no leak of timers.
    h.advance(Duration::from_secs(600));
    h.sent();
    let pending_calls = h.ua.active_calls();
    for e in h.events() {
        if let Event::IncomingCall { call, .. } = e {
            let _ = h.ua.reject(h.now, call, 486);
        }
    }
    let _ = pending_calls;
    assert_options_answered(&mut h, "z9hG4bKafter2");
}

#[test]
fn fuzz_entry_point_survives_random_bytes() {
    let mut rng = Rng(42);
    for s in seeds() {
        for _ in 0..2000 {
            huis_sip::framing::fuzz_parse(&mutate(&mut rng, s.as_bytes()));
        }
    }
}

#[test]
fn oversized_and_truncated_are_dropped() {
    let mut h = Harness::new(config());
    // 100 KiB datagram.
    let big = options("z9hG4bKbig")
        .replace("Content-Length: 0", &format!("X-Pad: {}\r\nContent-Length: 0", "a".repeat(100_000)));
    h.recv(&big);
    assert!(h.sent().is_empty());
    // A header line over 8 KiB.
    let long = options("z9hG4bKlong")
        .replace("Content-Length: 0", &format!("Subject: {}\r\nContent-Length: 0", "b".repeat(9000)));
    h.recv(&long);
    assert!(h.sent().is_empty());
    // 150 headers.
    let many =
        options("z9hG4bKmany").replace("Content-Length: 0", &format!("{}Content-Length: 0", "X-A: 1\r\n".repeat(150)));
    h.recv(&many);
    assert!(h.sent().is_empty());
    // Truncated body (Content-Length larger than what arrived).
    let inv = peer_request("INVITE", "z9hG4bKtr", "tr@x", 1, "a", None, "", &peer_sdp("sendrecv", false));
    h.recv(&inv[..inv.len() - 20]);
    assert!(h.sent().is_empty());
    assert!(h.events().is_empty());
    assert_options_answered(&mut h, "z9hG4bKok");
}

#[test]
fn missing_headers_and_unknown_methods() {
    let mut h = Harness::new(config());
    // No Call-ID (or From, To, CSeq): no valid response can be formed, dropped.
    for h_name in [
        "Call-ID: opt-z9hG4bKnc@192.0.2.2\r\n",
        "From: \"Peer\" <sip:peer@192.0.2.2>;tag=o1\r\n",
        "CSeq: 1 OPTIONS\r\n",
    ] {
        let msg = options("z9hG4bKnc").replace(h_name, "");
        assert_ne!(msg, options("z9hG4bKnc"), "{h_name}");
        h.recv(&msg);
        assert!(h.sent().is_empty(), "answered without {h_name}");
    }
    // No Max-Forwards: answered anyway.
    h.recv(&options("z9hG4bKmf").replace("Max-Forwards: 70\r\n", ""));
    assert_eq!(h.sent_one().code(), 200);
    // No Via: cannot answer, dropped.
    let no_via = options("z9hG4bKnv").replace("Via: SIP/2.0/UDP 192.0.2.2:5060;branch=z9hG4bKnv\r\n", "");
    h.recv(&no_via);
    assert!(h.sent().is_empty());
    // CSeq method mismatch: 400.
    h.recv(&options("z9hG4bKcm").replace("1 OPTIONS", "1 INVITE"));
    assert_eq!(h.sent_one().code(), 400);
    // Unknown method: 501 with Allow.
    h.recv(&peer_request("FROBNICATE", "z9hG4bKfr", "fr@x", 1, "a", None, "", ""));
    let r = h.sent_one();
    assert_eq!(r.code(), 501);
    assert!(r.h("allow").contains("OPTIONS"));
    // Known but not ours: 405.
    h.recv(&peer_request("SUBSCRIBE", "z9hG4bKsu", "su@x", 1, "a", None, "", ""));
    assert_eq!(h.sent_one().code(), 405);
    // Require with an extension we lack: 420.
    h.recv(&peer_request(
        "INVITE",
        "z9hG4bKrq",
        "rq@x",
        1,
        "a",
        None,
        "Require: 100rel\r\n",
        &peer_sdp("sendrecv", false),
    ));
    let r = h.sent_one();
    assert_eq!(r.code(), 420);
    assert_eq!(r.h("unsupported"), "100rel");
    // INVITE with a body that is not SDP: 415.
    let inv = peer_request("INVITE", "z9hG4bKct", "ct@x", 1, "a", None, "", &peer_sdp("sendrecv", false))
        .replace("application/sdp", "text/plain");
    h.recv(&inv);
    assert_eq!(h.sent().last().unwrap().code(), 415);
    assert!(h.events().is_empty());
    // Keep-alive CRLFs are ignored.
    h.recv("\r\n\r\n");
    assert!(h.sent().is_empty());
    assert_options_answered(&mut h, "z9hG4bKfine");
}

#[test]
fn tcp_split_joined_and_garbage_closes() {
    let mut h = Harness::new(config());
    let from: std::net::SocketAddr = "192.0.2.7:40000".parse().unwrap();
    let two = format!("{}{}", options("z9hG4bKt1"), options("z9hG4bKt2"));
    let bytes = two.as_bytes();
    for chunk in bytes.chunks(7) {
        h.ua.handle_input(
            h.now,
            Input::Stream { from, to: LOCAL.parse().unwrap(), transport: TransportKind::Tcp, bytes: chunk },
        );
    }
    let sent = h.sent();
    assert_eq!(sent.len(), 2);
    assert!(sent.iter().all(|s| s.code() == 200), "{sent:#?}");
    assert!(sent.iter().all(|s| s.code() == 200 && s.transport == TransportKind::Tcp && s.dest == from));
    // Garbage: the connection must be closed by the shell.
    h.ua.handle_input(
        h.now,
        Input::Stream {
            from,
            to: LOCAL.parse().unwrap(),
            transport: TransportKind::Tcp,
            bytes: b"\x16\x03\x01 hello TLS?\r\nxx\r\n\r\n",
        },
    );
    assert!(matches!(h.events()[..], [Event::CloseStream { peer, .. }] if peer == from));
    // A new connection from the same peer works again.
    h.ua.handle_input(h.now, Input::StreamClosed { from });
    h.ua.handle_input(
        h.now,
        Input::Stream {
            from,
            to: LOCAL.parse().unwrap(),
            transport: TransportKind::Tcp,
            bytes: options("z9hG4bKt3").as_bytes(),
        },
    );
    assert_eq!(h.sent_one().code(), 200);
    // Over TCP nothing is retransmitted: an outgoing INVITE over TCP waits for timer B only.
    let dest = Destination { addr: from, transport: TransportKind::Tcp };
    let _call = h.ua.invite(h.now, "sip:x@192.0.2.7", dest, &our_offer()).unwrap();
    let inv = h.sent_one();
    assert!(inv.h("via").starts_with("SIP/2.0/TCP "));
    assert!(inv.h("contact").contains("transport=tcp"));
    let out = h.advance_collect(Duration::from_secs(40));
    assert!(out.is_empty());
    assert!(matches!(h.events()[..], [Event::CallEnded { reason: EndReason::Timeout, .. }]));
}
