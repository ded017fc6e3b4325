//! TLS as the core sees it: a transport like TCP with its own Via token, Contact parameter,
//! default port and `sips:` URIs; RFC 5626 keep-alives; failed flows reported at once.

mod common;

use common::*;
use huis_sip::*;
use std::net::SocketAddr;
use std::time::Duration;

const REGISTRAR: &str = "192.0.2.9:5061";

fn tls_dest() -> Destination {
    Destination { addr: REGISTRAR.parse().unwrap(), transport: TransportKind::Tls }
}

fn stream(h: &mut Harness, from: SocketAddr, bytes: &[u8]) {
    h.ua.handle_input(h.now, Input::Stream { from, to: LOCAL.parse().unwrap(), transport: TransportKind::Tls, bytes });
}

#[test]
fn register_over_tls_says_tls_in_via_and_contact() {
    let mut cfg = config();
    let mut acc = account("secret");
    acc.proxy = tls_dest();
    cfg.accounts.push(acc);
    let mut h = Harness::new(cfg);
    h.ua.register(h.now, 0).unwrap();
    let reg = h.sent_one();
    assert_eq!(reg.transport, TransportKind::Tls);
    assert_eq!(reg.dest.to_string(), REGISTRAR);
    assert!(reg.h("via").starts_with("SIP/2.0/TLS 192.0.2.1:5060;"), "{}", reg.h("via"));
    assert!(reg.h("contact").contains(";transport=tls;ob>"), "{}", reg.h("contact"));
    // Nothing is retransmitted over a reliable transport.
    assert!(h.advance_collect(Duration::from_secs(20)).is_empty());
}

#[test]
fn sips_and_transport_tls_route_to_5061_over_tls() {
    let h = Harness::new(config());
    let d = h.ua.route_for("sips:meet@198.51.100.7").unwrap();
    assert_eq!((d.addr.to_string().as_str(), d.transport), ("198.51.100.7:5061", TransportKind::Tls));
    let d = h.ua.route_for("sip:meet@198.51.100.7;transport=TLS").unwrap();
    assert_eq!((d.addr.to_string().as_str(), d.transport), ("198.51.100.7:5061", TransportKind::Tls));
    let d = h.ua.route_for("SIPS:meet@198.51.100.7:5071;transport=tcp").unwrap();
    assert_eq!((d.addr.to_string().as_str(), d.transport), ("198.51.100.7:5071", TransportKind::Tls), "sips wins");
    let d = h.ua.route_for("sip:meet@[2001:db8::2];transport=tls").unwrap();
    assert_eq!(d.addr.to_string(), "[2001:db8::2]:5061");
    assert_eq!(h.ua.route_for("sips:meet@gw.example"), None, "names are the shell's to resolve");
}

#[test]
fn requests_on_a_tls_flow_are_answered_on_it_with_tls() {
    let mut h = Harness::new(config());
    let from: SocketAddr = REGISTRAR.parse().unwrap();
    let text = options("z9hG4bKtls1").replace("SIP/2.0/UDP", "SIP/2.0/TLS");
    for chunk in text.as_bytes().chunks(11) {
        stream(&mut h, from, chunk);
    }
    let ok = h.sent_one();
    assert_eq!((ok.code(), ok.transport, ok.dest), (200, TransportKind::Tls, from));
}

#[test]
fn crlf_ping_gets_one_pong_and_pongs_get_nothing() {
    let mut h = Harness::new(config());
    let from: SocketAddr = REGISTRAR.parse().unwrap();
    // A ping split over two reads.
    stream(&mut h, from, b"\r\n");
    assert!(h.ua.poll_transmit().is_none(), "a lone CRLF (a pong) is not answered");
    stream(&mut h, from, b"\r\n");
    let pong = h.ua.poll_transmit().expect("a pong");
    assert_eq!((pong.bytes.as_slice(), pong.dest, pong.transport), (&b"\r\n"[..], from, TransportKind::Tls));
    assert!(h.ua.poll_transmit().is_none());
    // A ping right before a message: one pong, and the message is handled.
    let mut bytes = b"\r\n\r\n".to_vec();
    bytes.extend_from_slice(options("z9hG4bKtls2").as_bytes());
    stream(&mut h, from, &bytes);
    let mut out = Vec::new();
    while let Some(t) = h.ua.poll_transmit() {
        out.push(t.bytes);
    }
    assert_eq!(out.len(), 2, "a pong and a 200");
    assert_eq!(out[0], b"\r\n");
    assert!(out[1].starts_with(b"SIP/2.0 200"));
    // Many pings in one read ask for one pong, not a flood.
    stream(&mut h, from, &b"\r\n".repeat(4000));
    assert_eq!(h.ua.poll_transmit().map(|t| t.bytes), Some(b"\r\n".to_vec()));
    assert!(h.ua.poll_transmit().is_none());
}

#[test]
fn transport_failure_fails_registration_and_call_at_once() {
    let mut cfg = config();
    let mut acc = account("secret");
    acc.proxy = tls_dest();
    cfg.accounts.push(acc);
    let mut h = Harness::new(cfg);
    h.ua.register(h.now, 0).unwrap();
    let _ = h.sent();
    let _ = h.events();
    h.ua.transport_failed(h.now, tls_dest());
    match &h.events()[..] {
        [
            Event::Registration {
                state: RegistrationState::Failed { reason: RegistrationFailure::Transport, retry_at, .. },
                ..
            },
        ] => {
            assert!(retry_at.is_some(), "retried later, like a timeout")
        }
        other => panic!("{other:?}"),
    }
    let call = h.ua.invite(h.now, "sips:bob@example.org", tls_dest(), &our_offer()).unwrap();
    let inv = h.sent_one();
    assert!(inv.raw.start_line.starts_with("INVITE sips:bob@example.org"));
    h.ua.transport_failed(h.now, tls_dest());
    assert_eq!(h.events(), vec![Event::CallEnded { call, reason: EndReason::Transport }]);
    // A failure of another hop touches nothing.
    h.ua.transport_failed(h.now, peer_dest());
    assert!(h.events().is_empty());
}
