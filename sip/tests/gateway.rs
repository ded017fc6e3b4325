//! What a meeting gateway (Visio's SIP video gateway) needs of the UA: extra INVITE headers
//! (`X-PIN`), a session timer we ask for and refresh, DTMF after a wait, and re-INVITE glare
//! resolved with the RFC 3261 §14.1 back-off. Virtual time throughout.

mod common;
use common::*;
use huis_sip::*;
use std::time::Duration;

fn gateway_call(h: &mut Harness, target: &str, opts: InviteOptions) -> (CallId, Sent) {
    let call = h.ua.invite_with(h.now, target, peer_dest(), &our_offer(), opts).unwrap();
    let inv = h.sent_one();
    assert_eq!(inv.method(), "INVITE");
    (call, inv)
}

fn visio_options() -> InviteOptions {
    InviteOptions {
        headers: vec![("X-PIN".into(), "1234567890".into())],
        session_expires: Some(90),
        dtmf_delay: Duration::from_millis(2000),
    }
}

#[test]
fn glare_wait_depends_on_who_owns_the_call_id() {
    let mut seed = 0x1234_5678_9abc_def0_u64;
    let (mut owner, mut other) = (Vec::new(), Vec::new());
    for _ in 0..2000 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        owner.push(ua::glare_wait(true, seed).as_millis());
        other.push(ua::glare_wait(false, seed).as_millis());
    }
    assert!(owner.iter().all(|w| (2100..=4000).contains(w)), "{owner:?}");
    assert!(other.iter().all(|w| *w <= 2000), "{other:?}");
    // The whole ranges are used, not one value.
    assert!(*owner.iter().min().unwrap() < 2300 && *owner.iter().max().unwrap() > 3800);
    assert!(*other.iter().min().unwrap() < 200 && *other.iter().max().unwrap() > 1800);
}

/// Our re-INVITE meets the gateway's: it answers ours 491. We placed the call (we own the
/// Call-ID), so we try again 2.1–4 s later, once, and the call stays up.
#[test]
fn glare_on_our_call_retries_after_2_1_to_4_s() {
    let mut h = Harness::new(config());
    let (call, inv) = gateway_call(&mut h, "sip:gw@192.0.2.2", InviteOptions::default());
    h.recv(&respond(&inv, 200, "OK", Some("gw"), "Contact: <sip:gw@192.0.2.2>\r\n", &peer_sdp("sendrecv", true)));
    h.sent();
    h.events();
    let hold = media(40000, &[huis_sip::sdp::Codec::Pcmu], huis_sip::sdp::Direction::SendOnly).offer().to_text();
    h.ua.hold(h.now, call, &hold).unwrap();
    let re = h.sent_one();
    let t491 = (h.now - h.t0).as_millis();
    h.recv(&respond(&re, 491, "Request Pending", None, "", ""));
    assert_eq!(h.sent_one().method(), "ACK");
    let out = h.advance_collect(Duration::from_secs(6));
    let retries = firsts(&out, "INVITE");
    assert_eq!(retries.len(), 1, "one retry");
    let waited = retries[0].0 - t491;
    assert!((2100..=4000).contains(&waited), "retried after {waited} ms");
    assert!(retries[0].1.body().contains("a=sendonly"), "the same offer");
    assert!(retries[0].1.cseq() > re.cseq());
    h.recv(&respond(&retries[0].1, 200, "OK", None, "", &peer_sdp("recvonly", true)));
    assert!(h.events().iter().any(|e| matches!(e, Event::CallUpdated { .. })));
    assert_eq!(h.ua.active_calls(), 1);
}

/// The gateway called us (it owns the Call-ID): our retry comes within 0–2 s.
#[test]
fn glare_on_their_call_retries_within_2_s() {
    let mut h = Harness::new(config());
    h.recv(&peer_request("INVITE", "z9hG4bKg1", "g1@x", 1, "pt", None, "", &peer_sdp("sendrecv", true)));
    h.sent();
    let Event::IncomingCall { call, .. } = h.events()[0].clone() else { panic!() };
    h.ua.answer(h.now, call, &our_offer()).unwrap();
    let tag = h.sent_one().to_tag().unwrap();
    h.recv(&peer_request("ACK", "z9hG4bKg1a", "g1@x", 1, "pt", Some(&tag), "", ""));
    h.events();
    let hold = media(40000, &[huis_sip::sdp::Codec::Pcmu], huis_sip::sdp::Direction::SendOnly).offer().to_text();
    h.ua.hold(h.now, call, &hold).unwrap();
    let re = h.sent_one();
    // Meanwhile the gateway's own re-INVITE arrives: ours is pending, so it gets 491 too.
    h.recv(&peer_request("INVITE", "z9hG4bKg2", "g1@x", 2, "pt", Some(&tag), "", &peer_sdp("sendrecv", true)));
    assert_eq!(h.sent_one().code(), 491);
    let t491 = (h.now - h.t0).as_millis();
    h.recv(&respond(&re, 491, "Request Pending", None, "", ""));
    assert_eq!(h.sent_one().method(), "ACK");
    let out = h.advance_collect(Duration::from_secs(3));
    let retries = firsts(&out, "INVITE");
    assert_eq!(retries.len(), 1);
    assert!(retries[0].0 - t491 <= 2000, "retried after {} ms", retries[0].0 - t491);
    assert_eq!(h.ua.active_calls(), 1);
}

/// `X-PIN` and `Session-Expires: 90;refresher=uac` on the INVITE; the gateway agrees, we
/// refresh every 45 s (re-INVITE, as it does not allow UPDATE) and the call lasts.
#[test]
fn we_ask_for_a_session_timer_and_refresh_it() {
    let mut h = Harness::new(config());
    let (call, inv) = gateway_call(&mut h, "sip:gw@192.0.2.2", visio_options());
    assert_eq!(inv.h("x-pin"), "1234567890");
    assert_eq!(inv.h("session-expires"), "90;refresher=uac");
    assert_eq!(inv.h("min-se"), "90");
    assert_eq!(inv.h("supported"), "timer");
    h.recv(&respond(
        &inv,
        200,
        "OK",
        Some("gw"),
        "Contact: <sip:gw@192.0.2.2>\r\nRequire: timer\r\nSession-Expires: 90;refresher=uac\r\n",
        &peer_sdp("sendrecv", true),
    ));
    h.sent();
    h.events();
    let start = (h.now - h.t0).as_millis();
    for n in 1..=3u128 {
        let out = h.advance_collect(Duration::from_secs(45));
        let re = firsts(&out, "INVITE");
        assert_eq!(
            re.len(),
            1,
            "refresh {n}: {:?}",
            out.iter().map(|(t, s)| (*t, s.raw.start_line.clone())).collect::<Vec<_>>()
        );
        assert_eq!(re[0].0 - start, n * 45_000);
        assert_eq!(re[0].1.h("session-expires"), "90;refresher=uac");
        h.recv(&respond(
            &re[0].1,
            200,
            "OK",
            None,
            "Session-Expires: 90;refresher=uac\r\n",
            &peer_sdp("sendrecv", true),
        ));
        assert!(firsts(&h.advance_collect(Duration::ZERO), "BYE").is_empty());
    }
    assert_eq!(h.ua.active_calls(), 1);
    let _ = call;
}

/// A 401 retry and a 422 retry keep the extra headers and our wish to refresh.
#[test]
fn extra_headers_survive_422() {
    let mut h = Harness::new(config());
    let (_, inv) = gateway_call(&mut h, "sip:gw@192.0.2.2", visio_options());
    h.recv(&respond(&inv, 422, "Session Interval Too Small", Some("gw"), "Min-SE: 120\r\n", ""));
    let again: Vec<Sent> = h.sent().into_iter().filter(|s| s.method() == "INVITE").collect();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].h("x-pin"), "1234567890");
    assert_eq!(again[0].h("session-expires"), "120;refresher=uac");
}

/// The gateway takes the refresher role (refresher=uas) and then never refreshes: BYE at
/// interval − min(32 s, interval/3), the call ends as expired.
#[test]
fn refreshed_by_the_gateway_that_stops() {
    let mut h = Harness::new(config());
    let (call, inv) = gateway_call(&mut h, "sip:gw@192.0.2.2", visio_options());
    h.recv(&respond(
        &inv,
        200,
        "OK",
        Some("gw"),
        "Contact: <sip:gw@192.0.2.2>\r\nSession-Expires: 90;refresher=uas\r\n",
        &peer_sdp("sendrecv", true),
    ));
    h.sent();
    h.events();
    let out = h.advance_collect(Duration::from_secs(70));
    assert!(firsts(&out, "INVITE").is_empty() && firsts(&out, "UPDATE").is_empty(), "we do not refresh");
    let byes: Vec<u128> = firsts(&out, "BYE").iter().map(|(t, _)| *t).collect();
    assert_eq!(byes, vec![60_000]);
    assert_eq!(h.events(), vec![Event::CallEnded { call, reason: EndReason::SessionExpired }]);
}

/// Headers that would break the message are refused before anything is sent.
#[test]
fn bad_extra_headers_are_refused() {
    let mut h = Harness::new(config());
    for (n, v) in [("X-PIN", "12\r\nBYE"), ("X PIN", "1"), ("", "1")] {
        let opts = InviteOptions { headers: vec![(n.into(), v.into())], ..Default::default() };
        assert!(h.ua.invite_with(h.now, "sip:gw@192.0.2.2", peer_dest(), &our_offer(), opts).is_err(), "{n:?}");
    }
    assert!(h.sent().is_empty());
}

/// The dial string's digits wait `dtmf_delay` after the call is up (the prompt plays first).
#[test]
fn dtmf_waits_for_the_prompt() {
    let mut h = Harness::new(config());
    let (call, inv) = gateway_call(&mut h, "sip:gw@192.0.2.2;dtmf=1234567890%23", visio_options());
    assert!(inv.raw.start_line.starts_with("INVITE sip:gw@192.0.2.2 SIP/2.0"), "no PIN in the Request-URI");
    h.recv(&respond(&inv, 200, "OK", Some("gw"), "", &peer_sdp("sendrecv", true)));
    let ev = h.events();
    assert!(!ev.iter().any(|e| matches!(e, Event::AutoDtmf { .. })), "not yet: {ev:?}");
    h.advance(Duration::from_millis(1999));
    assert!(h.events().is_empty());
    h.advance(Duration::from_millis(1));
    let ev = h.events();
    assert!(
        matches!(&ev[..], [Event::AutoDtmf { call: c, rfc4733: true, digits }] if *c == call && digits.len() == 11),
        "{ev:?}"
    );
}

/// A call that ends before the wait is over sends nothing and leaves no stuck deadline.
#[test]
fn dtmf_wait_ends_with_the_call() {
    let mut h = Harness::new(config());
    let (call, inv) = gateway_call(&mut h, "sip:gw@192.0.2.2;dtmf=12%23", visio_options());
    h.recv(&respond(&inv, 200, "OK", Some("gw"), "", &peer_sdp("sendrecv", true)));
    h.events();
    h.ua.hangup(h.now, call).unwrap();
    h.advance(Duration::from_secs(5));
    assert!(!h.events().iter().any(|e| matches!(e, Event::AutoDtmf { .. })));
}

/// Our refresh meets glare near the end of a short interval: the retry waits its back-off and
/// the session is not ended under it (only the refreshed side ends a session at expiry).
#[test]
fn a_refresh_that_met_glare_is_retried_not_expired() {
    let mut h = Harness::new(config());
    let opts = InviteOptions { session_expires: Some(10), ..visio_options() };
    let (call, inv) = gateway_call(&mut h, "sip:gw@192.0.2.2", opts);
    assert_eq!(inv.h("min-se"), "10");
    h.recv(&respond(
        &inv,
        200,
        "OK",
        Some("gw"),
        "Contact: <sip:gw@192.0.2.2>\r\nSession-Expires: 10;refresher=uac\r\n",
        &peer_sdp("sendrecv", true),
    ));
    h.sent();
    h.events();
    let out = h.advance_collect(Duration::from_secs(5));
    let re = firsts(&out, "INVITE");
    assert_eq!(re.len(), 1);
    h.recv(&respond(&re[0].1, 491, "Request Pending", None, "", ""));
    let out = h.advance_collect(Duration::from_secs(4));
    assert!(firsts(&out, "BYE").is_empty(), "not ended while the retry waits");
    let retry = firsts(&out, "INVITE");
    assert_eq!(retry.len(), 1);
    assert_eq!(retry[0].1.h("session-expires"), "10;refresher=uac", "the retry is still a refresh");
    h.recv(&respond(
        &retry[0].1,
        200,
        "OK",
        None,
        "Session-Expires: 10;refresher=uac\r\n",
        &peer_sdp("sendrecv", true),
    ));
    assert_eq!(h.ua.active_calls(), 1);
    assert!(!h.events().iter().any(|e| matches!(e, Event::CallEnded { .. })));
    let _ = call;
}
