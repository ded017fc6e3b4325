//! Test harness: a UserAgent at 192.0.2.1:5060 and a scripted peer at 192.0.2.2:5060,
//! with virtual time.
#![allow(dead_code, clippy::too_many_arguments, clippy::wrong_self_convention)]

use huis_sip::framing::{Limits, precheck};
use huis_sip::msg::RawMessage;
use huis_sip::sdp::{Codec, Direction, LocalMedia};
use huis_sip::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub const LOCAL: &str = "192.0.2.1:5060";
pub const PEER: &str = "192.0.2.2:5060";

pub fn peer() -> SocketAddr {
    PEER.parse().unwrap()
}

pub fn peer_dest() -> Destination {
    Destination { addr: peer(), transport: TransportKind::Udp }
}

pub struct Harness {
    pub ua: UserAgent,
    pub now: Instant,
    pub t0: Instant,
}

pub fn config() -> Config {
    let mut c = Config::new("room", "example.org", LOCAL.parse().unwrap());
    c.display_name = Some("Room 1".into());
    c.rng_seed = 7;
    c
}

pub fn account(password: &str) -> Account {
    Account {
        aor: "sip:room@example.org".into(),
        registrar: "sip:example.org".into(),
        proxy: peer_dest(),
        username: "room".into(),
        password: password.into(),
        expires: 3600,
    }
}

impl Harness {
    pub fn new(cfg: Config) -> Harness {
        let t0 = Instant::now();
        Harness { ua: UserAgent::new(cfg), now: t0, t0 }
    }

    /// Peer sends a UDP datagram.
    pub fn recv(&mut self, text: &str) {
        self.recv_bytes(text.as_bytes());
    }

    pub fn recv_bytes(&mut self, bytes: &[u8]) {
        self.ua.handle_input(self.now, Input::Datagram { from: peer(), to: LOCAL.parse().unwrap(), bytes });
    }

    /// All messages the UA wants to send, parsed.
    pub fn sent(&mut self) -> Vec<Sent> {
        let mut v = Vec::new();
        while let Some(t) = self.ua.poll_transmit() {
            if t.bytes == b"\r\n" {
                continue; // an RFC 5626 pong to a CRLF ping on a stream: not a message
            }
            let raw = precheck(&t.bytes, &Limits::default(), false)
                .unwrap_or_else(|e| panic!("UA sent an invalid message ({e}): {}", String::from_utf8_lossy(&t.bytes)));
            v.push(Sent {
                raw,
                text: String::from_utf8_lossy(&t.bytes).into_owned(),
                dest: t.dest,
                transport: t.transport,
            });
        }
        v
    }

    /// Exactly one message must have been sent; returns it.
    pub fn sent_one(&mut self) -> Sent {
        let mut v = self.sent();
        assert_eq!(
            v.len(),
            1,
            "expected one message, got {:#?}",
            v.iter().map(|s| s.raw.start_line.clone()).collect::<Vec<_>>()
        );
        v.remove(0)
    }

    pub fn events(&mut self) -> Vec<Event> {
        let mut v = Vec::new();
        while let Some(e) = self.ua.poll_event() {
            v.push(e);
        }
        v
    }

    /// Advances virtual time by `d`, running every deadline on the way.
    pub fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        while let Some(t) = self.ua.poll_timeout() {
            if t > end {
                break;
            }
            self.now = t.max(self.now);
            self.ua.handle_timeout(self.now);
            self.check_deadline();
        }
        self.now = end;
        self.ua.handle_timeout(self.now);
    }

    /// Invariant: after handle_timeout(now) no deadline is left at or before now.
    fn check_deadline(&self) {
        if let Some(t) = self.ua.poll_timeout() {
            assert!(t > self.now, "deadline stuck at {:?} after handle_timeout", t - self.t0);
        }
    }

    /// Advances time, collecting what is sent on the way with its time offset in ms.
    pub fn advance_collect(&mut self, d: Duration) -> Vec<(u128, Sent)> {
        let end = self.now + d;
        let mut out = Vec::new();
        while let Some(t) = self.ua.poll_timeout() {
            if t > end {
                break;
            }
            self.now = t.max(self.now);
            self.ua.handle_timeout(self.now);
            self.check_deadline();
            for s in self.sent() {
                out.push(((self.now - self.t0).as_millis(), s));
            }
        }
        self.now = end;
        self.ua.handle_timeout(self.now);
        for s in self.sent() {
            out.push(((self.now - self.t0).as_millis(), s));
        }
        out
    }
}

/// First transmissions only (retransmissions share the branch and are dropped).
pub fn firsts(v: &[(u128, Sent)], method: &str) -> Vec<(u128, Sent)> {
    let mut seen = std::collections::HashSet::new();
    v.iter().filter(|(_, s)| s.method() == method && seen.insert(s.branch())).cloned().collect()
}

#[derive(Debug, Clone)]
pub struct Sent {
    pub raw: RawMessage,
    pub text: String,
    pub dest: SocketAddr,
    pub transport: TransportKind,
}

impl Sent {
    pub fn h(&self, name: &str) -> String {
        self.raw.header(name).unwrap_or_else(|| panic!("no {name} in {}", self.text)).to_string()
    }
    pub fn code(&self) -> u16 {
        self.raw.start_line.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0)
    }
    pub fn method(&self) -> &str {
        self.raw.method().unwrap_or("")
    }
    pub fn branch(&self) -> String {
        huis_sip::msg::header_param(&self.h("via"), "branch").unwrap()
    }
    pub fn body(&self) -> String {
        String::from_utf8_lossy(&self.raw.body).into_owned()
    }
    pub fn to_tag(&self) -> Option<String> {
        huis_sip::msg::tag_of(&self.h("to"))
    }
    pub fn from_tag(&self) -> Option<String> {
        huis_sip::msg::tag_of(&self.h("from"))
    }
    pub fn cseq(&self) -> u32 {
        huis_sip::msg::parse_cseq(&self.h("cseq")).unwrap().0
    }
}

pub fn media(port: u16, codecs: &[Codec], dir: Direction) -> LocalMedia {
    LocalMedia {
        address: "192.0.2.1".parse().unwrap(),
        audio_port: port,
        codecs: codecs.to_vec(),
        telephone_event: true,
        session_id: 1,
        direction: dir,
        security: Default::default(),
    }
}

pub fn our_offer() -> String {
    media(40000, &[Codec::Opus, Codec::Pcmu], Direction::SendRecv).offer().to_text()
}

/// The peer's SDP at 192.0.2.2:6000 with PCMU (+ telephone-event if `te`) and direction.
pub fn peer_sdp(dir: &str, te: bool) -> String {
    let (fmts, extra) = if te { ("0 101", "a=rtpmap:101 telephone-event/8000\r\n") } else { ("0", "") };
    format!(
        "v=0\r\no=peer 9 1 IN IP4 192.0.2.2\r\ns=-\r\nc=IN IP4 192.0.2.2\r\nt=0 0\r\nm=audio 6000 RTP/AVP {fmts}\r\na=rtpmap:0 PCMU/8000\r\n{extra}a={dir}\r\n"
    )
}

/// A response from the peer to a request the UA sent, copying Via/From/To/Call-ID/CSeq.
pub fn respond(req: &Sent, code: u16, reason: &str, to_tag: Option<&str>, extra: &str, body: &str) -> String {
    let vias: String = req
        .raw
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("via"))
        .map(|(_, v)| format!("Via: {v}\r\n"))
        .collect();
    let to = match (req.to_tag(), to_tag) {
        (None, Some(t)) => format!("{};tag={t}", req.h("to")),
        _ => req.h("to"),
    };
    let ct = if body.is_empty() { String::new() } else { "Content-Type: application/sdp\r\n".into() };
    format!(
        "SIP/2.0 {code} {reason}\r\n{vias}From: {}\r\nTo: {to}\r\nCall-ID: {}\r\nCSeq: {}\r\n{extra}{ct}Content-Length: {}\r\n\r\n{body}",
        req.h("from"),
        req.h("call-id"),
        req.h("cseq"),
        body.len()
    )
}

/// A request from the peer.
pub fn peer_request(
    method: &str,
    branch: &str,
    call_id: &str,
    cseq: u32,
    from_tag: &str,
    to_tag: Option<&str>,
    extra: &str,
    body: &str,
) -> String {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    let ct = if body.is_empty() { String::new() } else { "Content-Type: application/sdp\r\n".into() };
    format!(
        "{method} sip:room@192.0.2.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.2:5060;branch={branch}\r\nMax-Forwards: 70\r\n\
From: \"Peer\" <sip:peer@192.0.2.2>;tag={from_tag}\r\nTo: <sip:room@192.0.2.1>{to_tag}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n\
Contact: <sip:peer@192.0.2.2:5060>\r\n{extra}{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

pub fn options(branch: &str) -> String {
    peer_request("OPTIONS", branch, &format!("opt-{branch}@192.0.2.2"), 1, "o1", None, "", "")
}
