//! Call flows driven by canned peer messages and virtual time.

mod common;
use common::*;
use huis_sip::*;
use std::time::Duration;

fn start_outgoing(h: &mut Harness, target: &str) -> (CallId, Sent) {
    let call = h.ua.invite(h.now, target, peer_dest(), &our_offer()).unwrap();
    let inv = h.sent_one();
    assert_eq!(inv.method(), "INVITE");
    (call, inv)
}

/// Outgoing call answered: 100, 180, 200 with Record-Route, ACK, retransmitted 200, BYE.
#[test]
fn uac_call_flow() {
    let mut h = Harness::new(config());
    let (call, inv) = start_outgoing(&mut h, "sip:bob@192.0.2.2");
    assert!(inv.raw.start_line.starts_with("INVITE sip:bob@192.0.2.2 SIP/2.0"));
    assert!(inv.branch().starts_with("z9hG4bK"));
    assert_eq!(inv.h("supported"), "timer");
    assert!(inv.h("from").starts_with("\"Room 1\" <sip:room@example.org>;tag="));
    assert!(inv.h("contact").contains("sip:room@192.0.2.1:5060"));
    assert_eq!(inv.dest, peer());

    h.recv(&respond(&inv, 100, "Trying", None, "", ""));
    assert!(h.sent().is_empty());
    h.recv(&respond(&inv, 180, "Ringing", Some("bt"), "Contact: <sip:bob@192.0.2.2:5070>\r\n", ""));
    assert_eq!(h.events(), vec![Event::CallRinging { call, code: 180, early_sdp: None }]);
    // No retransmission of INVITE once a provisional arrived.
    h.advance(Duration::from_secs(5));
    assert!(h.sent().is_empty());

    let ok = respond(
        &inv,
        200,
        "OK",
        Some("bt"),
        "Contact: <sip:bob@192.0.2.2:5070>\r\nRecord-Route: <sip:192.0.2.9;lr>\r\n",
        &peer_sdp("sendrecv", true),
    );
    h.recv(&ok);
    let ack = h.sent_one();
    assert_eq!(ack.method(), "ACK");
    assert!(ack.raw.start_line.starts_with("ACK sip:bob@192.0.2.2:5070 "), "{}", ack.raw.start_line);
    assert_eq!(ack.h("route"), "<sip:192.0.2.9;lr>");
    assert_eq!(ack.dest.to_string(), "192.0.2.9:5060", "sent to the first route");
    assert_eq!(ack.cseq(), inv.cseq());
    assert_ne!(ack.branch(), inv.branch(), "ACK for 2xx is its own transaction");
    assert_eq!(ack.to_tag().as_deref(), Some("bt"));
    assert_eq!(h.events(), vec![Event::CallEstablished { call, remote_sdp: Some(peer_sdp("sendrecv", true)) }]);
    // The 200 is retransmitted: the same ACK again, nothing else.
    h.recv(&ok);
    let again = h.sent_one();
    assert_eq!(again.text, ack.text);
    assert!(h.events().is_empty());

    h.ua.hangup(h.now, call).unwrap();
    let bye = h.sent_one();
    assert_eq!(bye.method(), "BYE");
    assert_eq!(bye.cseq(), inv.cseq() + 1);
    assert_eq!(bye.h("route"), "<sip:192.0.2.9;lr>");
    assert_eq!(h.events(), vec![Event::CallEnded { call, reason: EndReason::LocalHangup }]);
    h.recv(&respond(&bye, 200, "OK", None, "", ""));
    assert!(h.sent().is_empty());
    h.advance(Duration::from_secs(60));
    assert_eq!(h.ua.active_calls(), 0);
    assert_eq!(h.ua.poll_timeout(), None, "everything cleaned up");
}

/// Incoming call: 100 and 180 at once, answer, 2xx retransmitted until ACK, BYE from peer.
#[test]
fn uas_call_flow() {
    let mut h = Harness::new(config());
    let inv = peer_request("INVITE", "z9hG4bKin1", "c1@192.0.2.2", 10, "pt", None, "", &peer_sdp("sendrecv", true));
    h.recv(&inv);
    let sent = h.sent();
    assert_eq!(sent.iter().map(|s| s.code()).collect::<Vec<_>>(), vec![100, 180]);
    let tag = sent[1].to_tag().unwrap();
    assert_eq!(sent[1].dest, peer());
    let ev = h.events();
    let Event::IncomingCall { call, from, remote_sdp, auto_answer, transport } = ev[0].clone() else {
        panic!("{ev:?}")
    };
    assert_eq!(from, "\"Peer\" <sip:peer@192.0.2.2>");
    assert!(remote_sdp.is_some() && !auto_answer && transport == TransportKind::Udp);
    // A retransmitted INVITE gets the last provisional again.
    h.recv(&inv);
    assert_eq!(h.sent_one().code(), 180);

    h.ua.answer(h.now, call, &our_offer()).unwrap();
    let ok = h.sent_one();
    assert_eq!(ok.code(), 200);
    assert_eq!(ok.to_tag(), Some(tag.clone()));
    assert!(ok.body().contains("m=audio 40000"));
    assert!(h.events().is_empty(), "established only when the ACK comes");
    let re = h.advance_collect(Duration::from_millis(1600));
    let times: Vec<u128> = re.iter().filter(|(_, s)| s.code() == 200).map(|(t, _)| *t).collect();
    assert_eq!(times, vec![500, 1500], "2xx retransmitted at T1, 2·T1");

    let ack = peer_request("ACK", "z9hG4bKack1", "c1@192.0.2.2", 10, "pt", Some(&tag), "", "");
    h.recv(&ack);
    assert_eq!(h.events(), vec![Event::CallEstablished { call, remote_sdp: Some(peer_sdp("sendrecv", true)) }]);
    assert!(h.advance_collect(Duration::from_secs(10)).is_empty(), "no more 2xx after ACK");

    let bye = peer_request("BYE", "z9hG4bKbye1", "c1@192.0.2.2", 11, "pt", Some(&tag), "", "");
    h.recv(&bye);
    assert_eq!(h.sent_one().code(), 200);
    assert_eq!(h.events(), vec![Event::CallEnded { call, reason: EndReason::RemoteHangup }]);
    // A retransmitted BYE is answered from the transaction.
    h.recv(&bye);
    assert_eq!(h.sent_one().code(), 200);
}

#[test]
fn uas_without_ack_gives_up_with_bye() {
    let mut h = Harness::new(config());
    h.recv(&peer_request("INVITE", "z9hG4bKin2", "c2@x", 1, "pt", None, "", &peer_sdp("sendrecv", false)));
    h.sent();
    let Event::IncomingCall { call, .. } = h.events()[0].clone() else { panic!() };
    h.ua.answer(h.now, call, &our_offer()).unwrap();
    h.sent();
    let out = h.advance_collect(Duration::from_secs(40));
    assert!(out.iter().any(|(t, s)| s.method() == "BYE" && *t == 32000), "BYE after 64·T1");
    assert_eq!(h.events(), vec![Event::CallEnded { call, reason: EndReason::Timeout }]);
}

/// INVITE retransmitted on timer A (doubling) until timer B: Timeout.
#[test]
fn uac_invite_timeout() {
    let mut h = Harness::new(config());
    let (call, _) = start_outgoing(&mut h, "sip:bob@192.0.2.2");
    let out = h.advance_collect(Duration::from_secs(40));
    let times: Vec<u128> = out.iter().filter(|(_, s)| s.method() == "INVITE").map(|(t, _)| *t).collect();
    assert_eq!(times, vec![500, 1500, 3500, 7500, 15500, 31500]);
    assert_eq!(h.events(), vec![Event::CallEnded { call, reason: EndReason::Timeout }]);
}

#[test]
fn failure_reasons() {
    for (code, reason, expected) in [
        (486, "Busy Here", EndReason::Busy),
        (600, "Busy Everywhere", EndReason::Busy),
        (603, "Decline", EndReason::Declined),
        (404, "Not Found", EndReason::NotFound),
        (488, "Not Acceptable Here", EndReason::NoCommonCodec),
        (408, "Request Timeout", EndReason::Timeout),
        (480, "Temporarily Unavailable", EndReason::Other(480, "Temporarily Unavailable".into())),
    ] {
        let mut h = Harness::new(config());
        let (call, inv) = start_outgoing(&mut h, "sip:bob@192.0.2.2");
        let resp = respond(&inv, code, reason, Some("x"), "", "");
        h.recv(&resp);
        let ack = h.sent_one();
        assert_eq!(ack.method(), "ACK");
        assert_eq!(ack.branch(), inv.branch(), "ACK for non-2xx is in the INVITE transaction");
        assert_eq!(h.events(), vec![Event::CallEnded { call, reason: expected }]);
        h.recv(&resp);
        assert_eq!(h.sent_one().method(), "ACK", "retransmitted final answered by the transaction");
        assert!(h.events().is_empty());
    }
}

#[test]
fn answer_without_common_codec_ends_call() {
    let mut h = Harness::new(config());
    let (call, inv) = start_outgoing(&mut h, "sip:bob@192.0.2.2");
    let sdp = "v=0\r\no=- 1 1 IN IP4 192.0.2.2\r\ns=-\r\nc=IN IP4 192.0.2.2\r\nt=0 0\r\nm=audio 6000 RTP/AVP 18\r\n";
    h.recv(&respond(&inv, 200, "OK", Some("t"), "", sdp));
    let sent = h.sent();
    assert_eq!(sent.iter().map(|s| s.method().to_string()).collect::<Vec<_>>(), vec!["ACK", "BYE"]);
    assert_eq!(h.events(), vec![Event::CallEnded { call, reason: EndReason::NoCommonCodec }]);
}

/// hangup() while ringing: CANCEL with the INVITE's branch, then 487 ends the call.
#[test]
fn cancel_outgoing() {
    let mut h = Harness::new(config());
    let (call, inv) = start_outgoing(&mut h, "sip:bob@192.0.2.2");
    // Before any provisional, CANCEL must wait (RFC 3261 §9.1).
    h.ua.hangup(h.now, call).unwrap();
    assert!(h.sent().is_empty());
    h.recv(&respond(&inv, 180, "Ringing", Some("bt"), "", ""));
    let cancel = h.sent_one();
    assert_eq!(cancel.method(), "CANCEL");
    assert_eq!(cancel.branch(), inv.branch());
    assert_eq!(cancel.cseq(), inv.cseq());
    assert_eq!(cancel.to_tag(), None);
    h.recv(&respond(&cancel, 200, "OK", None, "", ""));
    h.recv(&respond(&inv, 487, "Request Terminated", Some("bt"), "", ""));
    assert_eq!(h.sent_one().method(), "ACK");
    assert_eq!(h.events(), vec![Event::CallEnded { call, reason: EndReason::LocalHangup }]);
}

/// CANCEL crosses the 200: ACK the 200, then BYE.
#[test]
fn cancel_race_with_200() {
    let mut h = Harness::new(config());
    let (call, inv) = start_outgoing(&mut h, "sip:bob@192.0.2.2");
    h.recv(&respond(&inv, 180, "Ringing", Some("bt"), "", ""));
    h.events();
    h.ua.hangup(h.now, call).unwrap();
    let cancel = h.sent_one();
    assert_eq!(cancel.method(), "CANCEL");
    h.recv(&respond(&inv, 200, "OK", Some("bt"), "Contact: <sip:bob@192.0.2.2>\r\n", &peer_sdp("sendrecv", false)));
    h.recv(&respond(&cancel, 200, "OK", None, "", ""));
    let sent: Vec<String> = h.sent().iter().map(|s| s.method().to_string()).collect();
    assert_eq!(sent, vec!["ACK", "BYE"]);
    assert_eq!(h.events(), vec![Event::CallEnded { call, reason: EndReason::LocalHangup }]);
}

/// The caller cancels our ringing call: 200 to CANCEL, 487 to INVITE, Cancelled.
#[test]
fn incoming_cancel() {
    let mut h = Harness::new(config());
    h.recv(&peer_request("INVITE", "z9hG4bKc3", "c3@x", 1, "pt", None, "", &peer_sdp("sendrecv", false)));
    h.sent();
    let Event::IncomingCall { call, .. } = h.events()[0].clone() else { panic!() };
    h.recv(&peer_request("CANCEL", "z9hG4bKc3", "c3@x", 1, "pt", None, "", ""));
    let sent = h.sent();
    assert_eq!(
        sent.iter().map(|s| (s.code(), s.h("cseq"))).collect::<Vec<_>>(),
        vec![(200, "1 CANCEL".into()), (487, "1 INVITE".into())]
    );
    assert_eq!(h.events(), vec![Event::CallEnded { call, reason: EndReason::Cancelled }]);
    assert!(h.ua.answer(h.now, call, &our_offer()).is_err());
    // ACK for the 487 is absorbed by the transaction, and a CANCEL for nothing gets 481.
    h.recv(&peer_request("ACK", "z9hG4bKc3", "c3@x", 1, "pt", Some(&sent[1].to_tag().unwrap()), "", ""));
    assert!(h.sent().is_empty());
    h.recv(&peer_request("CANCEL", "z9hG4bKnone", "c9@x", 1, "pt", None, "", ""));
    assert_eq!(h.sent_one().code(), 481);
}

fn established_incoming(h: &mut Harness, extra: &str) -> (CallId, String) {
    h.recv(&peer_request("INVITE", "z9hG4bKe1", "e1@x", 1, "pt", None, extra, &peer_sdp("sendrecv", true)));
    h.sent();
    let Event::IncomingCall { call, .. } = h.events()[0].clone() else { panic!() };
    h.ua.answer(h.now, call, &our_offer()).unwrap();
    let ok = h.sent_one();
    let tag = ok.to_tag().unwrap();
    h.recv(&peer_request("ACK", "z9hG4bKe1a", "e1@x", 1, "pt", Some(&tag), "", ""));
    assert!(matches!(h.events()[..], [Event::CallEstablished { .. }]));
    (call, tag)
}

/// The peer holds (sendonly) and resumes (sendrecv) with re-INVITEs.
#[test]
fn reinvite_hold_resume_by_peer() {
    let mut h = Harness::new(config());
    let (call, tag) = established_incoming(&mut h, "");
    h.recv(&peer_request("INVITE", "z9hG4bKh1", "e1@x", 2, "pt", Some(&tag), "", &peer_sdp("sendonly", true)));
    let ok = h.sent_one();
    assert_eq!(ok.code(), 200);
    assert!(ok.body().contains("a=recvonly"), "{}", ok.body());
    assert!(ok.body().contains(" 2 IN IP4"), "o= version bumped: {}", ok.body());
    assert_eq!(
        h.events(),
        vec![Event::CallUpdated { call, remote_sdp: peer_sdp("sendonly", true) }, Event::CallHeld { call }]
    );
    h.recv(&peer_request("ACK", "z9hG4bKh1a", "e1@x", 2, "pt", Some(&tag), "", ""));
    h.recv(&peer_request("INVITE", "z9hG4bKh2", "e1@x", 3, "pt", Some(&tag), "", &peer_sdp("sendrecv", true)));
    let ok = h.sent_one();
    assert!(ok.body().contains("a=sendrecv"));
    assert_eq!(h.events()[1], Event::CallResumed { call });
    h.recv(&peer_request("ACK", "z9hG4bKh2a", "e1@x", 3, "pt", Some(&tag), "", ""));
    // A malformed re-INVITE offer gets 488 and the call stays.
    h.recv(&peer_request("INVITE", "z9hG4bKh3", "e1@x", 4, "pt", Some(&tag), "", "v=0\r\nnonsense\r\n"));
    assert_eq!(h.sent_one().code(), 488);
    assert_eq!(h.ua.active_calls(), 1);
    // An old CSeq is refused.
    h.recv(&peer_request("INFO", "z9hG4bKh4", "e1@x", 2, "pt", Some(&tag), "", ""));
    assert_eq!(h.sent_one().code(), 500);
}

/// With `shell_answers_reoffers`, the peer's re-offer goes to the shell, which answers it (here
/// with video added and the media moved) or refuses it; a second offer meanwhile waits.
#[test]
fn reoffer_answered_or_refused_by_the_shell() {
    let mut cfg = config();
    cfg.shell_answers_reoffers = true;
    let mut h = Harness::new(cfg);
    let (call, tag) = established_incoming(&mut h, "");
    let offer = peer_sdp("sendrecv", true).replace("m=audio 6000", "m=audio 6100")
        + "m=video 6102 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n";
    h.recv(&peer_request("INVITE", "z9hG4bKr1", "e1@x", 2, "pt", Some(&tag), "", &offer));
    assert!(h.sent().is_empty(), "nothing answered before the shell does");
    assert_eq!(h.events(), vec![Event::Reoffer { call, remote_sdp: offer.clone() }]);
    // Another offer meanwhile waits (500 with Retry-After).
    h.recv(&peer_request("UPDATE", "z9hG4bKr2", "e1@x", 3, "pt", Some(&tag), "", &offer));
    let busy = h.sent_one();
    assert_eq!((busy.code(), busy.h("retry-after")), (500, "1".to_string()));
    let answer = media(40002, &[huis_sip::sdp::Codec::Pcmu], huis_sip::sdp::Direction::SendRecv).offer().to_text()
        + "m=video 40004 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n";
    h.ua.answer_reoffer(h.now, call, Ok(&answer)).unwrap();
    let ok = h.sent_one();
    assert_eq!(ok.code(), 200);
    assert_eq!(ok.body(), answer);
    assert_eq!(h.events(), vec![Event::CallUpdated { call, remote_sdp: offer.clone() }]);
    assert!(h.ua.answer_reoffer(h.now, call, Ok(&answer)).is_err(), "answered once");
    h.recv(&peer_request("ACK", "z9hG4bKr1a", "e1@x", 2, "pt", Some(&tag), "", ""));
    // Refused: 488, the call stays.
    h.recv(&peer_request("INVITE", "z9hG4bKr3", "e1@x", 4, "pt", Some(&tag), "", &offer));
    let ev = h.events();
    assert!(matches!(ev[..], [Event::Reoffer { .. }]), "{ev:?} {:?}", h.sent());
    h.ua.answer_reoffer(h.now, call, Err(488)).unwrap();
    assert_eq!(h.sent_one().code(), 488);
    assert!(h.events().is_empty());
    assert_eq!(h.ua.active_calls(), 1);
}

/// We hold and resume: re-INVITE, 200 with answer, ACK.
#[test]
fn reinvite_hold_resume_local() {
    let mut h = Harness::new(config());
    let (call, inv) = start_outgoing(&mut h, "sip:bob@192.0.2.2");
    h.recv(&respond(&inv, 200, "OK", Some("bt"), "Contact: <sip:bob@192.0.2.2>\r\n", &peer_sdp("sendrecv", false)));
    h.sent();
    h.events();
    let hold = media(40000, &[huis_sip::sdp::Codec::Pcmu], huis_sip::sdp::Direction::SendOnly).offer().to_text();
    h.ua.hold(h.now, call, &hold).unwrap();
    let re = h.sent_one();
    assert_eq!(re.method(), "INVITE");
    assert_eq!(re.to_tag().as_deref(), Some("bt"));
    assert_eq!(re.cseq(), inv.cseq() + 1);
    assert!(re.body().contains("a=sendonly"));
    assert!(h.ua.hold(h.now, call, &hold).is_err(), "one re-INVITE at a time");
    h.recv(&respond(&re, 200, "OK", None, "", &peer_sdp("recvonly", false)));
    let ack = h.sent_one();
    assert_eq!((ack.method(), ack.cseq()), ("ACK", re.cseq()));
    assert_eq!(h.events(), vec![Event::CallUpdated { call, remote_sdp: peer_sdp("recvonly", false) }]);
    // Resume refused by the peer: the session stays as it was.
    let resume = media(40000, &[huis_sip::sdp::Codec::Pcmu], huis_sip::sdp::Direction::SendRecv).offer().to_text();
    h.ua.resume(h.now, call, &resume).unwrap();
    let re2 = h.sent_one();
    h.recv(&respond(&re2, 488, "Not Acceptable Here", None, "", ""));
    assert_eq!(h.sent_one().method(), "ACK");
    assert_eq!(h.events(), vec![Event::CallUpdateFailed { call, code: 488 }]);
    // Glare: 491 → retried after 2.1–4 s.
    h.ua.resume(h.now, call, &resume).unwrap();
    let re3 = h.sent_one();
    h.recv(&respond(&re3, 491, "Request Pending", None, "", ""));
    h.sent();
    let out = h.advance_collect(Duration::from_secs(5));
    assert_eq!(firsts(&out, "INVITE").len(), 1);
}

/// Peer asks for a session timer with us as refresher: refresh at half the interval.
#[test]
fn session_timer_we_refresh() {
    let mut h = Harness::new(config());
    h.recv(&peer_request(
        "INVITE",
        "z9hG4bKs1",
        "s1@x",
        1,
        "pt",
        None,
        "Supported: timer\r\nSession-Expires: 120;refresher=uas\r\nAllow: INVITE, ACK, BYE, CANCEL, UPDATE\r\n",
        &peer_sdp("sendrecv", false),
    ));
    h.sent();
    let Event::IncomingCall { call, .. } = h.events()[0].clone() else { panic!() };
    h.ua.answer(h.now, call, &our_offer()).unwrap();
    let ok = h.sent_one();
    assert_eq!(ok.h("session-expires"), "120;refresher=uas");
    assert_eq!(ok.h("require"), "timer");
    let tag = ok.to_tag().unwrap();
    h.recv(&peer_request("ACK", "z9hG4bKs1a", "s1@x", 1, "pt", Some(&tag), "", ""));
    h.events();
    let out = h.advance_collect(Duration::from_secs(61));
    let refresh = firsts(&out, "UPDATE");
    assert_eq!(refresh.len(), 1, "{:?}", out.iter().map(|(t, s)| (t, s.raw.start_line.clone())).collect::<Vec<_>>());
    assert_eq!(refresh[0].0, 60_000);
    let upd = refresh[0].1.clone();
    assert!(upd.h("session-expires").starts_with("120"));
    h.recv(&respond(&upd, 200, "OK", None, "Session-Expires: 120;refresher=uac\r\n", ""));
    // Still up long after the first interval because refreshes keep coming.
    for _ in 0..3 {
        let out = h.advance_collect(Duration::from_secs(60));
        for (_, s) in firsts(&out, "UPDATE").iter() {
            h.recv(&respond(s, 200, "OK", None, "Session-Expires: 120;refresher=uac\r\n", ""));
        }
    }
    assert_eq!(h.ua.active_calls(), 1);
    assert!(h.events().is_empty());
}

/// Peer is the refresher and goes silent: BYE before expiry, SessionExpired.
#[test]
fn session_timer_expiry() {
    let mut h = Harness::new(config());
    let (call, tag) = established_incoming(&mut h, "Supported: timer\r\nSession-Expires: 90;refresher=uac\r\n");
    // A refresh from the peer at 40 s pushes expiry out.
    h.advance(Duration::from_secs(40));
    h.recv(&peer_request(
        "INVITE",
        "z9hG4bKr1",
        "e1@x",
        2,
        "pt",
        Some(&tag),
        "Session-Expires: 90;refresher=uac\r\n",
        &peer_sdp("sendrecv", true),
    ));
    let ok = h.sent_one();
    assert_eq!(ok.h("session-expires"), "90;refresher=uac");
    h.recv(&peer_request("ACK", "z9hG4bKr1a", "e1@x", 2, "pt", Some(&tag), "", ""));
    h.events();
    let out = h.advance_collect(Duration::from_secs(120));
    let byes: Vec<u128> = firsts(&out, "BYE").iter().map(|(t, _)| *t).collect();
    // 40 s + (90 − min(32, 30)) = 100 s.
    assert_eq!(byes, vec![100_000]);
    assert_eq!(h.events(), vec![Event::CallEnded { call, reason: EndReason::SessionExpired }]);
}

#[test]
fn session_interval_too_small() {
    let mut h = Harness::new(config());
    h.recv(&peer_request(
        "INVITE",
        "z9hG4bKs9",
        "s9@x",
        1,
        "pt",
        None,
        "Session-Expires: 30\r\n",
        &peer_sdp("sendrecv", false),
    ));
    let sent = h.sent();
    assert_eq!(sent.last().unwrap().code(), 422);
    assert_eq!(sent.last().unwrap().h("min-se"), "90");
    assert!(h.events().is_empty());
    // And our INVITE answered with 422 is retried with the peer's Min-SE.
    let (_, inv) = start_outgoing(&mut h, "sip:bob@192.0.2.2");
    h.recv(&respond(&inv, 422, "Session Interval Too Small", Some("x"), "Min-SE: 300\r\n", ""));
    let sent = h.sent();
    assert_eq!(sent[0].method(), "ACK");
    assert_eq!(sent[1].method(), "INVITE");
    assert_eq!(sent[1].h("session-expires"), "300");
    assert_eq!(sent[1].cseq(), inv.cseq() + 1);
}

/// 407 to INVITE: ACK, INVITE again with Proxy-Authorization; a second 407 is AuthFailed.
#[test]
fn invite_proxy_auth() {
    let mut cfg = config();
    cfg.accounts.push(account("secret"));
    let mut h = Harness::new(cfg);
    let (call, inv) = start_outgoing(&mut h, "sip:bob@192.0.2.2");
    let ch = "Proxy-Authenticate: Digest realm=\"example.org\", nonce=\"n1\", qop=\"auth\", algorithm=SHA-256\r\n";
    h.recv(&respond(&inv, 407, "Proxy Authentication Required", Some("p"), ch, ""));
    let sent = h.sent();
    assert_eq!(sent.iter().map(|s| s.method().to_string()).collect::<Vec<_>>(), vec!["ACK", "INVITE"]);
    let inv2 = &sent[1];
    assert_eq!(inv2.cseq(), inv.cseq() + 1);
    assert_eq!(inv2.h("call-id"), inv.h("call-id"));
    assert_eq!(inv2.from_tag(), inv.from_tag());
    let auth = inv2.h("proxy-authorization");
    assert!(
        auth.contains("algorithm=SHA-256") && auth.contains("username=\"room\"") && auth.contains("nc=00000001"),
        "{auth}"
    );
    h.recv(&respond(inv2, 407, "Proxy Authentication Required", Some("p"), ch, ""));
    assert_eq!(h.sent_one().method(), "ACK");
    assert_eq!(h.events(), vec![Event::CallEnded { call, reason: EndReason::AuthFailed }]);
    assert!(h.advance_collect(Duration::from_secs(120)).iter().all(|(_, s)| s.method() != "INVITE"), "no retry storm");
}

#[test]
fn incoming_sdp_problems_get_488() {
    let mut h = Harness::new(config());
    let no_common = "v=0\r\no=- 1 1 IN IP4 192.0.2.2\r\ns=-\r\nc=IN IP4 192.0.2.2\r\nt=0 0\r\nm=audio 6000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n";
    let malformed = "v=0\r\no=broken\r\nm=audio x\r\n";
    let video_only =
        "v=0\r\no=- 1 1 IN IP4 192.0.2.2\r\ns=-\r\nc=IN IP4 192.0.2.2\r\nt=0 0\r\nm=video 6000 RTP/AVP 96\r\n";
    for (i, body) in [no_common, malformed, video_only].iter().enumerate() {
        h.recv(&peer_request("INVITE", &format!("z9hG4bKsdp{i}"), &format!("sdp{i}@x"), 1, "pt", None, "", body));
        let last = h.sent().pop().unwrap();
        assert_eq!(last.code(), 488, "{body}");
        assert!(h.events().is_empty());
    }
    assert_eq!(h.ua.active_calls(), 0);
}

/// Digits in the dial string: no telephone-event in the answer → sent by INFO, one at a time,
/// with ',' as a one-second pause.
#[test]
fn auto_dtmf_by_info() {
    let mut h = Harness::new(config());
    let (call, inv) = start_outgoing(&mut h, "sip:meet@192.0.2.2;dtmf=1,%23");
    assert!(inv.raw.start_line.starts_with("INVITE sip:meet@192.0.2.2 SIP/2.0"), "dtmf param stripped");
    h.recv(&respond(&inv, 200, "OK", Some("m"), "Contact: <sip:meet@192.0.2.2>\r\n", &peer_sdp("sendrecv", false)));
    let sent = h.sent();
    assert_eq!(sent.iter().map(|s| s.method().to_string()).collect::<Vec<_>>(), vec!["ACK", "INFO"]);
    assert_eq!(sent[1].body(), "Signal=1\r\nDuration=160\r\n");
    assert_eq!(sent[1].h("content-type"), "application/dtmf-relay");
    let ev = h.events();
    assert!(matches!(&ev[1], Event::AutoDtmf { rfc4733: false, digits, .. } if digits.len() == 3));
    h.recv(&respond(&sent[1], 200, "OK", None, "", ""));
    assert!(h.sent().is_empty(), "pause first");
    let out = h.advance_collect(Duration::from_secs(2));
    let infos = firsts(&out, "INFO");
    assert_eq!(infos.len(), 1);
    assert_eq!(infos[0].0, 1000);
    assert_eq!(infos[0].1.body(), "Signal=#\r\nDuration=160\r\n");
    let _ = call;
}

/// Telephone-event negotiated: the media pipeline is told to send the digits.
#[test]
fn auto_dtmf_rfc4733() {
    let mut h = Harness::new(config());
    let (call, inv) = start_outgoing(&mut h, "sip:meet@192.0.2.2;dtmf=42");
    h.recv(&respond(&inv, 200, "OK", Some("m"), "", &peer_sdp("sendrecv", true)));
    assert_eq!(h.sent().len(), 1, "only the ACK");
    let ev = h.events();
    assert!(matches!(&ev[1], Event::AutoDtmf { rfc4733: true, call: c, .. } if *c == call));
}

#[test]
fn incoming_info_dtmf() {
    let mut h = Harness::new(config());
    let (call, tag) = established_incoming(&mut h, "");
    let info = peer_request("INFO", "z9hG4bKi1", "e1@x", 2, "pt", Some(&tag), "", "")
        .replace("Content-Length: 0", "Content-Type: application/dtmf-relay\r\nContent-Length: 24");
    h.recv(&format!("{info}Signal=5\r\nDuration=200\r\n"));
    assert_eq!(h.sent_one().code(), 200);
    assert_eq!(h.events(), vec![Event::DtmfInfo { call, digit: '5', duration_ms: 200 }]);
    // OPTIONS and unknown requests inside the dialog.
    h.recv(&peer_request("OPTIONS", "z9hG4bKi2", "e1@x", 3, "pt", Some(&tag), "", ""));
    assert_eq!(h.sent_one().code(), 200);
    h.recv(&peer_request("MESSAGE", "z9hG4bKi3", "e1@x", 4, "pt", Some(&tag), "", ""));
    assert_eq!(h.sent_one().code(), 405);
    // A request for a dialog we don't know.
    h.recv(&peer_request("BYE", "z9hG4bKi4", "other@x", 1, "pt", Some("nope"), "", ""));
    assert_eq!(h.sent_one().code(), 481);
}

/// RFC 5168: a keyframe request in INFO is answered 200 and reported; a broken one gets 400.
#[test]
fn incoming_info_picture_fast_update() {
    let mut h = Harness::new(config());
    let (call, tag) = established_incoming(&mut h, "");
    let body = "<?xml version=\"1.0\" encoding=\"utf-8\" ?>\r\n<media_control><vc_primitive><to_encoder>\
<picture_fast_update/></to_encoder></vc_primitive></media_control>\r\n";
    let info = peer_request("INFO", "z9hG4bKp1", "e1@x", 2, "pt", Some(&tag), "", "").replace(
        "Content-Length: 0",
        &format!("Content-Type: application/media_control+xml\r\nContent-Length: {}", body.len()),
    );
    h.recv(&format!("{info}{body}"));
    assert_eq!(h.sent_one().code(), 200);
    assert_eq!(h.events(), vec![Event::PictureFastUpdate { call }]);
    let junk = "<media_control><x/>";
    let info = peer_request("INFO", "z9hG4bKp2", "e1@x", 3, "pt", Some(&tag), "", "").replace(
        "Content-Length: 0",
        &format!("Content-Type: application/media_control+xml\r\nContent-Length: {}", junk.len()),
    );
    h.recv(&format!("{info}{junk}"));
    assert_eq!(h.sent_one().code(), 400);
    assert!(h.events().is_empty());
}

/// We ask for keyframes by INFO: one at a time, at most one a second, and never again once the
/// peer refuses them; DTMF by INFO is not disturbed by their responses.
#[test]
fn outgoing_info_picture_fast_update() {
    let mut h = Harness::new(config());
    let (call, _tag) = established_incoming(&mut h, "");
    assert_eq!(h.ua.send_info_picture_fast_update(h.now, call), Ok(true));
    let info = h.sent_one();
    assert_eq!(info.method(), "INFO");
    assert_eq!(info.h("content-type"), "application/media_control+xml");
    assert!(info.body().contains("<to_encoder>") && info.body().contains("<picture_fast_update/>"), "{}", info.text);
    // One in flight: the next waits.
    assert_eq!(h.ua.send_info_picture_fast_update(h.now, call), Ok(false));
    h.recv(&respond(&info, 200, "OK", None, "", ""));
    // Answered, but within a second of the last: still not.
    assert_eq!(h.ua.send_info_picture_fast_update(h.now, call), Ok(false));
    h.advance(Duration::from_millis(1000));
    assert_eq!(h.ua.send_info_picture_fast_update(h.now, call), Ok(true));
    let info = h.sent_one();
    // DTMF by INFO meanwhile, then the peer refuses the keyframe request: DTMF goes on.
    h.ua.send_info_dtmf(h.now, call, "12").unwrap();
    let dtmf = h.sent_one();
    h.recv(&respond(&info, 415, "Unsupported Media Type", None, "", ""));
    h.recv(&respond(&dtmf, 200, "OK", None, "", ""));
    let next = h.sent_one();
    assert_eq!(next.body(), "Signal=2\r\nDuration=160\r\n");
    h.advance(Duration::from_secs(2));
    assert_eq!(h.ua.send_info_picture_fast_update(h.now, call), Ok(false), "refused once: never again");
    assert!(h.ua.send_info_picture_fast_update(h.now, CallId(999)).is_err());
}

#[test]
fn reject_and_auto_answer_flag() {
    let mut cfg = config();
    cfg.auto_answer = true;
    let mut h = Harness::new(cfg);
    h.recv(&peer_request("INVITE", "z9hG4bKr9", "r9@x", 1, "pt", None, "", &peer_sdp("sendrecv", false)));
    h.sent();
    let Event::IncomingCall { call, auto_answer, .. } = h.events()[0].clone() else { panic!() };
    assert!(auto_answer);
    h.ua.reject(h.now, call, 486).unwrap();
    assert_eq!(h.sent_one().code(), 486);
    assert_eq!(h.events(), vec![Event::CallEnded { call, reason: EndReason::Busy }]);
}

/// A second INVITE with the same From tag, Call-ID and CSeq on another branch is merged.
#[test]
fn merged_request_gets_482() {
    let mut h = Harness::new(config());
    h.recv(&peer_request("INVITE", "z9hG4bKm1", "m1@x", 1, "pt", None, "", &peer_sdp("sendrecv", false)));
    h.sent();
    h.recv(&peer_request("INVITE", "z9hG4bKm2", "m1@x", 1, "pt", None, "", &peer_sdp("sendrecv", false)));
    assert_eq!(h.sent_one().code(), 482);
    assert_eq!(h.events().len(), 1);
}

/// A peer's Contact that a lenient parse accepts but that would make our request line
/// unreadable (seen in a fuzzing probe) is never used verbatim: an INVITE carrying it is refused
/// with 400, and in a 200 it leaves the target where it was, so the BYE still reaches the peer.
#[test]
fn a_contact_that_does_not_survive_a_round_trip_is_never_our_request_uri() {
    let bad = "Contact: <sip:peer: <sip:proxy@192.0.2.9;lr>\r\n";
    let mut h = Harness::new(config());
    let inv = peer_request("INVITE", "z9hG4bKbc", "bc@x", 1, "pt", None, "", &peer_sdp("sendrecv", false))
        .replace("Contact: <sip:peer@192.0.2.2:5060>\r\n", bad);
    assert!(inv.contains(bad));
    h.recv(&inv);
    let codes: Vec<u16> = h.sent().iter().map(|s| s.code()).collect();
    assert_eq!(codes.last(), Some(&400), "{codes:?}");
    assert!(h.events().is_empty(), "no call for an INVITE we could never end");

    let (call, inv) = start_outgoing(&mut h, "sip:bob@192.0.2.2");
    h.recv(&respond(&inv, 200, "OK", Some("bt"), bad, &peer_sdp("sendrecv", false)));
    assert_eq!(h.sent_one().method(), "ACK");
    h.events();
    h.ua.hangup(h.now, call).unwrap();
    let bye = h.sent_one();
    assert_eq!(bye.raw.start_line, "BYE sip:bob@192.0.2.2 SIP/2.0", "the BYE's request line is one we can stand by");
}

/// The merged-request check forgets a request once its transaction is over: the same Call-ID,
/// CSeq and From tag on a new branch is then a new request, not a merge.
#[test]
fn merged_request_check_ends_with_the_transaction() {
    let mut h = Harness::new(config());
    h.recv(&peer_request("OPTIONS", "z9hG4bKo1", "o1@x", 1, "pt", None, "", ""));
    assert_eq!(h.sent_one().code(), 200);
    h.recv(&peer_request("OPTIONS", "z9hG4bKo2", "o1@x", 1, "pt", None, "", ""));
    assert_eq!(h.sent_one().code(), 482, "while the first transaction lives, the second is merged");
    // Timer J (64*T1 over UDP) ends the non-INVITE server transaction.
    h.advance(Duration::from_secs(40));
    h.sent();
    h.recv(&peer_request("OPTIONS", "z9hG4bKo3", "o1@x", 1, "pt", None, "", ""));
    assert_eq!(h.sent_one().code(), 200, "the ended transaction still counted as a merge");
}

/// CANCELs that match nothing still take a server transaction each (for their 481): they count
/// against the same bound as every other request, so a flood of them cannot grow the table.
#[test]
fn a_cancel_flood_is_bounded_like_any_request() {
    let mut cfg = config();
    cfg.max_server_transactions = 16;
    let mut h = Harness::new(cfg);
    let mut answered = 0;
    for i in 0..40 {
        h.recv(&peer_request("CANCEL", &format!("z9hG4bKc{i}"), &format!("c{i}@x"), 1, "pt", None, "", ""));
        answered += h.sent().iter().filter(|s| s.code() == 481).count();
    }
    assert_eq!(answered, 16, "only as many CANCELs as the table holds are answered; the rest are dropped");
    // Once their transactions end, requests are answered again.
    h.advance(Duration::from_secs(40));
    h.sent();
    h.recv(&peer_request("OPTIONS", "z9hG4bKafter", "after@x", 1, "pt", None, "", ""));
    assert_eq!(h.sent_one().code(), 200);
}

#[test]
fn unanswered_incoming_call_times_out_with_480() {
    let mut h = Harness::new(config());
    h.recv(&peer_request("INVITE", "z9hG4bKrt", "rt@x", 1, "pt", None, "", &peer_sdp("sendrecv", false)));
    h.sent();
    let Event::IncomingCall { call, .. } = h.events()[0].clone() else { panic!() };
    let out = h.advance_collect(Duration::from_secs(121));
    assert!(out.iter().any(|(t, s)| s.code() == 480 && *t == 120_000));
    assert_eq!(h.events(), vec![Event::CallEnded { call, reason: EndReason::Timeout }]);
}

#[test]
fn too_many_calls_get_486() {
    let mut cfg = config();
    cfg.max_calls = 2;
    let mut h = Harness::new(cfg);
    for i in 0..3 {
        h.recv(&peer_request(
            "INVITE",
            &format!("z9hG4bKmc{i}"),
            &format!("mc{i}@x"),
            1,
            "pt",
            None,
            "",
            &peer_sdp("sendrecv", false),
        ));
    }
    let codes: Vec<u16> = h.sent().iter().map(|s| s.code()).collect();
    assert_eq!(codes, vec![100, 180, 100, 180, 100, 486]);
    assert_eq!(h.events().len(), 2);
}

/// Two forks answer: the first 2xx makes the call, the second dialog gets ACK and BYE.
#[test]
fn forked_second_2xx_is_acked_and_ended() {
    let mut h = Harness::new(config());
    let (call, inv) = start_outgoing(&mut h, "sip:bob@192.0.2.2");
    h.recv(&respond(
        &inv,
        200,
        "OK",
        Some("fork1"),
        "Contact: <sip:bob@192.0.2.2:5071>\r\n",
        &peer_sdp("sendrecv", false),
    ));
    assert_eq!(h.sent_one().method(), "ACK");
    h.events();
    h.recv(&respond(
        &inv,
        200,
        "OK",
        Some("fork2"),
        "Contact: <sip:bob@192.0.2.3:5072>\r\n",
        &peer_sdp("sendrecv", false),
    ));
    let sent = h.sent();
    assert_eq!(sent.iter().map(|s| s.method().to_string()).collect::<Vec<_>>(), vec!["ACK", "BYE"]);
    assert!(sent.iter().all(|s| s.to_tag().as_deref() == Some("fork2") && s.dest.to_string() == "192.0.2.3:5072"));
    assert!(h.events().is_empty(), "the kept call is untouched");
    h.ua.hangup(h.now, call).unwrap();
    let bye = h.sent_one();
    assert_eq!(bye.to_tag().as_deref(), Some("fork1"));
}

#[test]
fn route_for_targets() {
    let h = Harness::new(config());
    let d = h.ua.route_for("sip:a@198.51.100.7:5080;transport=tcp;dtmf=1").unwrap();
    assert_eq!((d.addr.to_string().as_str(), d.transport), ("198.51.100.7:5080", TransportKind::Tcp));
    assert_eq!(h.ua.route_for("sip:a@[2001:db8::1]").unwrap().addr.to_string(), "[2001:db8::1]:5060");
    assert_eq!(h.ua.route_for("sip:meet@gw.example"), None, "names are the shell's to resolve");
    let mut cfg = config();
    cfg.accounts.push(account("x"));
    let h = Harness::new(cfg);
    assert_eq!(h.ua.route_for("sip:meet@gw.example"), Some(peer_dest()));
}

/// A proxy challenges requests inside the dialog: each is sent again once with credentials.
#[test]
fn in_dialog_challenges() {
    let mut cfg = config();
    cfg.accounts.push(account("secret"));
    let mut h = Harness::new(cfg);
    let (call, inv) = start_outgoing(&mut h, "sip:bob@192.0.2.2");
    h.recv(&respond(&inv, 200, "OK", Some("bt"), "Contact: <sip:bob@192.0.2.2>\r\n", &peer_sdp("sendrecv", false)));
    h.sent();
    h.events();
    let ch = "Proxy-Authenticate: Digest realm=\"example.org\", nonce=\"dn\", qop=\"auth\"\r\n";
    // re-INVITE: 407 → ACK, then the re-INVITE again with credentials.
    h.ua.hold(h.now, call, &our_offer()).unwrap();
    let re = h.sent_one();
    h.recv(&respond(&re, 407, "Proxy Authentication Required", None, ch, ""));
    let sent = h.sent();
    assert_eq!(sent.iter().map(|s| s.method().to_string()).collect::<Vec<_>>(), vec!["ACK", "INVITE"]);
    assert!(sent[1].h("proxy-authorization").contains("uri=\"sip:bob@192.0.2.2\""));
    assert_eq!(sent[1].cseq(), re.cseq() + 1);
    assert!(sent[1].body().contains("m=audio"));
    h.recv(&respond(&sent[1], 200, "OK", None, "", &peer_sdp("sendrecv", false)));
    assert_eq!(h.sent_one().method(), "ACK");
    assert!(matches!(h.events()[..], [Event::CallUpdated { .. }]));
    // BYE: 407 → BYE with credentials; a second 407 is not answered again.
    h.ua.hangup(h.now, call).unwrap();
    let bye = h.sent_one();
    h.recv(&respond(&bye, 407, "Proxy Authentication Required", None, ch, ""));
    let bye2 = h.sent_one();
    assert_eq!((bye2.method(), bye2.cseq()), ("BYE", bye.cseq() + 1));
    assert!(bye2.raw.header("proxy-authorization").is_some());
    h.recv(&respond(&bye2, 407, "Proxy Authentication Required", None, ch, ""));
    assert!(h.sent().is_empty());
}
