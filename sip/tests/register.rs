//! Registration with digest authentication, refresh and the wrong-password case.

mod common;
use common::*;
use huis_sip::digest::{Algorithm, compute_response};
use huis_sip::msg::header_param;
use huis_sip::*;
use std::time::Duration;

fn harness(password: &str) -> Harness {
    let mut cfg = config();
    cfg.accounts.push(account(password));
    Harness::new(cfg)
}

/// Pulls `name="value"` or `name=value` out of an Authorization value.
fn auth_param(v: &str, name: &str) -> String {
    let i = v.find(&format!("{name}=")).unwrap_or_else(|| panic!("{name} missing in {v}"));
    let rest = &v[i + name.len() + 1..];
    if let Some(r) = rest.strip_prefix('"') {
        r[..r.find('"').unwrap()].to_string()
    } else {
        rest.split(',').next().unwrap().trim().to_string()
    }
}

const CHALLENGE_SHA: &str = "WWW-Authenticate: Digest realm=\"example.org\", nonce=\"abc123\", qop=\"auth\", algorithm=SHA-256, opaque=\"op\"\r\n";
const CHALLENGE_MD5: &str = "WWW-Authenticate: Digest realm=\"example.org\", nonce=\"md5nonce\", qop=\"auth\"\r\n";

#[test]
fn register_with_sha256_digest_and_refresh() {
    let mut h = harness("secret");
    h.ua.register(h.now, 0).unwrap();
    let reg = h.sent_one();
    assert!(reg.raw.start_line.starts_with("REGISTER sip:example.org SIP/2.0"));
    assert_eq!(reg.h("expires"), "3600");
    assert_eq!(reg.h("to"), "<sip:room@example.org>");
    assert_eq!(h.events(), vec![Event::Registration { account: 0, state: RegistrationState::Registering }]);

    h.recv(&respond(&reg, 401, "Unauthorized", Some("r"), CHALLENGE_SHA, ""));
    let reg2 = h.sent_one();
    assert_eq!(reg2.cseq(), reg.cseq() + 1);
    assert_eq!(reg2.h("call-id"), reg.h("call-id"));
    let auth = reg2.h("authorization");
    assert_eq!(auth_param(&auth, "algorithm"), "SHA-256");
    assert_eq!(auth_param(&auth, "opaque"), "op");
    assert_eq!(auth_param(&auth, "uri"), "sip:example.org");
    let cnonce = auth_param(&auth, "cnonce");
    let expected = compute_response(
        Algorithm::Sha256,
        "room",
        "example.org",
        "secret",
        "REGISTER",
        "sip:example.org",
        "abc123",
        1,
        &cnonce,
        true,
    );
    assert_eq!(auth_param(&auth, "response"), expected);

    let contact = format!("Contact: {};expires=600\r\n", reg2.h("contact"));
    h.recv(&respond(&reg2, 200, "OK", Some("r"), &contact, ""));
    assert_eq!(
        h.events(),
        vec![Event::Registration { account: 0, state: RegistrationState::Registered { expires: 600 } }]
    );
    assert_eq!(h.ua.registration_state(0), Some(&RegistrationState::Registered { expires: 600 }));

    // Refresh at 70 % of 600 s = 420 s, with cached credentials (nc=2).
    let out = h.advance_collect(Duration::from_secs(421));
    let regs = firsts(&out, "REGISTER");
    assert_eq!(regs.len(), 1);
    assert_eq!(regs[0].0, 420_000);
    let refresh = &regs[0].1;
    assert_eq!(auth_param(&refresh.h("authorization"), "nc"), "00000002");
    // The registrar wants a new nonce: one more try with it, then success.
    h.recv(&respond(refresh, 401, "Unauthorized", Some("r"), &CHALLENGE_SHA.replace("abc123", "fresh"), ""));
    let again = h.sent_one();
    assert_eq!(auth_param(&again.h("authorization"), "nonce"), "fresh");
    h.recv(&respond(&again, 200, "OK", Some("r"), "Expires: 600\r\n", ""));
    let ev = h.events();
    assert!(
        ev.iter().all(|e| !matches!(e, Event::Registration { state: RegistrationState::Failed { .. }, .. })),
        "{ev:?}"
    );
    assert_eq!(h.ua.registration_state(0), Some(&RegistrationState::Registered { expires: 600 }));
}

/// Wrong password: the second challenge stops everything with AuthFailed; no retry storm.
#[test]
fn wrong_password_gives_auth_failed_once() {
    let mut h = harness("wrong");
    h.ua.register(h.now, 0).unwrap();
    let reg = h.sent_one();
    h.recv(&respond(&reg, 401, "Unauthorized", Some("r"), CHALLENGE_MD5, ""));
    let reg2 = h.sent_one();
    assert_eq!(auth_param(&reg2.h("authorization"), "algorithm"), "MD5");
    h.recv(&respond(&reg2, 401, "Unauthorized", Some("r"), &CHALLENGE_MD5.replace("md5nonce", "other"), ""));
    assert!(h.sent().is_empty());
    let ev = h.events();
    assert_eq!(
        ev.last().unwrap(),
        &Event::Registration {
            account: 0,
            state: RegistrationState::Failed { reason: RegistrationFailure::AuthFailed, retry_at: None, failures: 0 }
        }
    );
    let failed =
        ev.iter().filter(|e| matches!(e, Event::Registration { state: RegistrationState::Failed { .. }, .. })).count();
    assert_eq!(failed, 1);
    // A whole day later: nothing was sent.
    let out = h.advance_collect(Duration::from_secs(86_400));
    assert!(out.is_empty(), "{} messages sent after AuthFailed", out.len());
    // The account is changed (or a person asks): register() tries again.
    h.ua.register(h.now, 0).unwrap();
    assert_eq!(h.sent_one().method(), "REGISTER");
}

#[test]
fn stale_nonce_is_retried() {
    let mut h = harness("secret");
    h.ua.register(h.now, 0).unwrap();
    let reg = h.sent_one();
    h.recv(&respond(&reg, 401, "Unauthorized", Some("r"), CHALLENGE_MD5, ""));
    let reg2 = h.sent_one();
    let stale = CHALLENGE_MD5.replace("md5nonce", "n2").replace("qop=\"auth\"", "qop=\"auth\", stale=true");
    h.recv(&respond(&reg2, 401, "Unauthorized", Some("r"), &stale, ""));
    let reg3 = h.sent_one();
    assert_eq!(auth_param(&reg3.h("authorization"), "nonce"), "n2");
    h.recv(&respond(&reg3, 200, "OK", Some("r"), "Expires: 300\r\n", ""));
    assert_eq!(h.ua.registration_state(0), Some(&RegistrationState::Registered { expires: 300 }));
}

#[test]
fn proxy_challenge_and_403() {
    let mut h = harness("secret");
    h.ua.register(h.now, 0).unwrap();
    let reg = h.sent_one();
    h.recv(&respond(
        &reg,
        407,
        "Proxy Authentication Required",
        Some("r"),
        &CHALLENGE_MD5.replace("WWW-Authenticate", "Proxy-Authenticate"),
        "",
    ));
    let reg2 = h.sent_one();
    assert!(reg2.raw.header("proxy-authorization").is_some());
    h.recv(&respond(&reg2, 403, "Forbidden", Some("r"), "", ""));
    assert_eq!(
        h.ua.registration_state(0),
        Some(&RegistrationState::Failed { reason: RegistrationFailure::AuthFailed, retry_at: None, failures: 0 })
    );
}

/// The times (ms from the start) at which each new REGISTER (not a retransmission) went out
/// while the registrar never answers, for `secs` seconds, with `seed`.
fn unanswered_register_starts(seed: u64, secs: u64) -> (Vec<u128>, Vec<Event>) {
    let mut cfg = config();
    cfg.accounts.push(account("secret"));
    cfg.rng_seed = seed;
    let mut h = Harness::new(cfg);
    h.ua.register(h.now, 0).unwrap();
    h.sent();
    let out = h.advance_collect(Duration::from_secs(secs));
    // (500: the first REGISTER's own retransmission.)
    let starts = firsts(&out, "REGISTER").iter().map(|(t, _)| *t).filter(|t| *t != 500).collect();
    (starts, h.events())
}

/// No answer: Timeout (Timer F, 32 s), then retries after a random wait between half and all
/// of 30 s, 60 s, 120 s ... up to 900 s (RFC 5626 §4.5 with our base and maximum), never a
/// storm; another seed (another room) waits differently.
#[test]
fn registrar_timeout_backs_off_with_jitter() {
    let (starts, ev) = unanswered_register_starts(1, 4000);
    let mut prev = 0u128;
    for (i, s) in starts.iter().enumerate() {
        let failures = i as u32 + 1;
        let ceiling = RetryBackoff::default().ceiling(failures).as_millis();
        let wait = s - (prev + 32_000);
        assert!(
            (ceiling / 2..=ceiling).contains(&wait),
            "retry {failures} waited {wait} ms after the timeout, not within {}..={ceiling} ms: starts {starts:?}",
            ceiling / 2
        );
        prev = *s;
    }
    assert!(starts.len() >= 6, "the maximum is reached in 4000 s: {starts:?}");
    assert_eq!(RetryBackoff::default().ceiling(6).as_secs(), 900, "capped");
    let counted: Vec<u32> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Registration {
                state: RegistrationState::Failed { reason: RegistrationFailure::Timeout, failures, retry_at },
                ..
            } => {
                assert!(retry_at.is_some());
                Some(*failures)
            }
            _ => None,
        })
        .collect();
    assert_eq!(counted, (1..=counted.len() as u32).collect::<Vec<_>>(), "failures are counted in a row");
    let (other, _) = unanswered_register_starts(2, 4000);
    assert_ne!(starts[..3], other[..3], "two rooms that lost the registrar together retry at the same times");
}

/// A registrar of two servers (DNS SRV), both down: the shell fails over to the second after
/// the first fails, and back to the first at the core's retry. The failures are counted in a
/// row across both, so the waits grow (30, 60, 120 s ceilings), where restarting the count at
/// each failover kept them at the first (a retry of both every 15–30 s, for ever).
#[test]
fn failing_over_between_servers_that_are_all_down_still_backs_off() {
    let second = Destination { addr: "192.0.2.3:5060".parse().unwrap(), transport: TransportKind::Udp };
    let mut h = harness("secret");
    h.ua.register(h.now, 0).unwrap();
    let mut waits = Vec::new();
    for round in 0..3u32 {
        for (server, dest) in [("first", peer_dest()), ("second", second)] {
            let reg = h.sent_one();
            assert_eq!(reg.dest, dest.addr, "round {round}: the REGISTER goes to the {server} server");
            let _ = h.events();
            h.ua.transport_failed(h.now, dest);
            let (failures, retry_at) = match h.ua.registration_state(0) {
                Some(RegistrationState::Failed { reason: RegistrationFailure::Transport, failures, retry_at }) => {
                    (*failures, retry_at.expect("retried later"))
                }
                other => panic!("round {round}, {server} server: {other:?}"),
            };
            assert_eq!(failures, 2 * round + if server == "first" { 1 } else { 2 }, "counted in a row across servers");
            if server == "first" {
                // The shell's failover: the next server, at once.
                h.ua.fail_over(h.now, 0, second).unwrap();
            } else {
                // The shell goes back to the first server for the core's retry.
                waits.push(retry_at - h.now);
                h.ua.set_proxy(0, peer_dest()).unwrap();
                h.advance(retry_at - h.now);
            }
        }
    }
    let b = RetryBackoff::default();
    for (i, w) in waits.iter().enumerate() {
        let n = 2 * i as u32 + 2;
        assert!(
            *w >= b.ceiling(n) / 2 && *w <= b.ceiling(n),
            "wait {i}: {w:?}, not within half and all of {:?}",
            b.ceiling(n)
        );
    }
    assert!(waits[2] >= Duration::from_secs(240), "the back-off did not grow across failovers: {waits:?}");
}

#[test]
fn backoff_waits_stay_within_half_and_all_of_the_ceiling() {
    let b = RetryBackoff { base: Duration::from_secs(2), max: Duration::from_secs(60) };
    assert_eq!((1..=8).map(|n| b.ceiling(n).as_secs()).collect::<Vec<_>>(), vec![2, 4, 8, 16, 32, 60, 60, 60]);
    assert_eq!(b.ceiling(u32::MAX).as_secs(), 60, "no overflow after many failures");
    for n in 1..=8 {
        assert_eq!(b.wait(n, 0), b.ceiling(n) / 2);
        assert_eq!(b.wait(n, (b.ceiling(n) / 2).as_millis() as u64), b.ceiling(n));
        for r in [1u64, 977, u64::MAX] {
            let w = b.wait(n, r);
            assert!(w >= b.ceiling(n) / 2 && w <= b.ceiling(n), "{n} {r} {w:?}");
        }
    }
}

#[test]
fn interval_too_brief_and_unregister() {
    let mut h = harness("secret");
    h.ua.register(h.now, 0).unwrap();
    let reg = h.sent_one();
    h.recv(&respond(&reg, 423, "Interval Too Brief", Some("r"), "Min-Expires: 7200\r\n", ""));
    let reg2 = h.sent_one();
    assert_eq!(reg2.h("expires"), "7200");
    h.recv(&respond(&reg2, 200, "OK", Some("r"), "Expires: 7200\r\n", ""));
    h.ua.unregister(h.now, 0).unwrap();
    let un = h.sent_one();
    assert_eq!(un.h("expires"), "0");
    h.recv(&respond(&un, 200, "OK", Some("r"), "", ""));
    assert_eq!(h.ua.registration_state(0), Some(&RegistrationState::Unregistered));
    assert_eq!(header_param(&un.h("via"), "rport").as_deref(), Some(""));
}
