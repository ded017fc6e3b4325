use super::*;

#[test]
fn destinations_are_parsed_once_with_a_reason_when_refused() {
    assert_eq!(
        Destination::parse("sip:meet@gw.example.org;transport=tcp").unwrap(),
        Destination::Sip { uri: "sip:meet@gw.example.org;transport=tcp".into(), secure: false, dtmf: String::new() }
    );
    assert!(matches!(Destination::parse("SIPS:room@pbx.example.org").unwrap(), Destination::Sip { secure: true, .. }));
    assert_eq!(Destination::parse("sip:192.0.2.7:5070").unwrap().scheme(), "sip");
    assert_eq!(
        Destination::parse("tel:+33-1-23-45-67-89").unwrap(),
        Destination::Tel { number: "+33-1-23-45-67-89".into(), dtmf: String::new() }
    );
    assert_eq!(
        Destination::parse("https://visio.numerique.gouv.fr/abc-defg-hij").unwrap(),
        Destination::Web { url: "https://visio.numerique.gouv.fr/abc-defg-hij".into() }
    );
    assert_eq!(
        Destination::parse("janus+https://sfu.example.org/janus?room=1234&pin=a%26b").unwrap(),
        Destination::Janus { api: "https://sfu.example.org/janus".into(), room: 1234, pin: "a&b".into() }
    );
    assert_eq!(
        Destination::parse("janus+http://127.0.0.1:8088/janus?room=7").unwrap().to_string(),
        "janus+http://127.0.0.1:8088/janus?room=7"
    );
    assert_eq!(
        Destination::parse("whip+https://sfu.example.org/whip/room1").unwrap(),
        Destination::Whip { whip: "https://sfu.example.org/whip/room1".into(), whep: None, token: String::new() }
    );
    let both =
        Destination::parse("whip+http://127.0.0.1:8080/whip/a#whep=http%3A%2F%2F127.0.0.1%3A8080%2Fwhep%2Fa%3Fx%3D1")
            .unwrap()
            .with_token("s3cret");
    assert_eq!(
        both,
        Destination::Whip {
            whip: "http://127.0.0.1:8080/whip/a".into(),
            whep: Some("http://127.0.0.1:8080/whep/a?x=1".into()),
            token: "s3cret".into()
        }
    );
    // Shown without the token, and parsed back to the same endpoints.
    let shown = both.to_string();
    assert!(!shown.contains("s3cret"), "{shown}");
    assert_eq!(Destination::parse(&shown).unwrap(), both.clone().with_token(""));
    assert_eq!(both.scheme(), "whip");
    for (bad, why) in [
        ("whip+ftp://sfu.example.org/whip", "whip+https://"),
        ("whip+https:///whip", "the WHIP URL has no host"),
        ("whip+https://sfu.example.org/whip#whep=ftp%3A%2F%2Fx", "the WHEP URL is not http"),
        ("whip+https://sfu.example.org/whip#whep=http%3A%2F%2F", "the WHEP URL has no host"),
        ("whip+https://sfu.example.org/whip#whep=%zz", "percent-encoding"),
        ("whip+https://sfu.example.org/whip#token=abc", "unknown parameter 'token'"),
        ("whip+https://sfu.example.org/whip#whep=http%3A%2F%2Fh%2F%23x", "a #"),
        ("janus+https://sfu.example.org/janus", "no room number"),
        ("janus+https://sfu.example.org/janus?room=abc", "not a room number"),
        ("janus+https://sfu.example.org/janus?room=1&x=2", "unknown parameter"),
        ("janus+https://sfu.example.org/janus?room=1&pin=%zz", "percent-encoding"),
        ("janus+ftp://sfu.example.org/janus?room=1", "janus+https://"),
        ("janus+https:///janus?room=1", "no host"),
        ("", "empty"),
        ("sip:@", "no host"),
        ("sip:user@", "no host"),
        ("sip:a@b c", "spaces"),
        ("tel:+33abc", "digits"),
        ("https:///x", "no host"),
        ("mailto:a@b", "expected sip:"),
        ("sip:a@b\r\nVia: x", "control"),
    ] {
        let e = Destination::parse(bad).unwrap_err().to_string();
        assert!(e.contains(why), "{bad:?}: {e}");
    }
    let long = format!("sip:{}@example.org", "a".repeat(5000));
    assert!(Destination::parse(&long).unwrap_err().to_string().contains("too long"));
}

#[test]
fn a_named_destination_carries_its_digits() {
    let d = Destination::parse("sip:meet@gw.example.org").unwrap().with_dtmf("1234,56#");
    assert!(matches!(d, Destination::Sip { ref dtmf, .. } if dtmf == "1234,56#"));
    assert_eq!(d.to_string(), "sip:meet@gw.example.org");
}

#[test]
fn end_reasons_say_whether_a_person_ended_the_call() {
    for r in [EndReason::LocalHangup, EndReason::RemoteHangup, EndReason::Cancelled] {
        assert!(!r.is_failure(), "{r}");
    }
    for r in [EndReason::Busy, EndReason::Timeout, EndReason::Refused("480 Temporarily Unavailable".into())] {
        assert!(r.is_failure(), "{r}");
    }
    assert_eq!(EndReason::Refused("480 Temporarily Unavailable".into()).to_string(), "480 Temporarily Unavailable");
}

#[test]
fn call_ids_are_unique_across_clones() {
    let ids = CallIds::default();
    let other = ids.clone();
    let a = ids.next();
    let b = other.next();
    assert_ne!(a, b);
    assert_ne!(a.0, 0, "0 means the current call on D-Bus");
}

#[test]
fn a_heartbeat_ages_until_it_beats() {
    let h = Heartbeat::default();
    std::thread::sleep(Duration::from_millis(30));
    assert!(h.age() >= Duration::from_millis(30));
    h.beat();
    assert!(h.age() < Duration::from_millis(30));
}

#[test]
fn visio_destinations_take_a_pin_and_never_show_it() {
    let d = Destination::parse("visio:1234567890").unwrap();
    assert_eq!(d, Destination::Visio { gateway: String::new(), pin: "1234567890".into() });
    assert_eq!(Destination::parse("VISIO:1234567890#").unwrap(), d, "a trailing # is the PIN's end");
    assert_eq!(d.to_string(), "visio:••••••••90");
    assert_eq!(d.scheme(), "visio");
    for bad in ["visio:", "visio:123", "visio:12345678901234567", "visio:12a456", "visio:1234 5678", "visio:12#34"] {
        let e = Destination::parse(bad).unwrap_err().to_string();
        assert!(e.contains("meeting PIN"), "{bad}: {e}");
        assert!(!e.contains("1234") && !e.contains("5678"), "the PIN is not quoted back: {e}");
    }
    // A [[destination]] with a gateway URI and a pin.
    let g = Destination::parse("sip:visio@gw.example.org").unwrap().with_pin("55554444");
    assert_eq!(g, Destination::Visio { gateway: "sip:visio@gw.example.org".into(), pin: "55554444".into() });
    assert_eq!(Destination::parse("sip:a@b").unwrap().with_pin(""), Destination::parse("sip:a@b").unwrap());
    assert_eq!(EndReason::PinRefused.to_string(), "the meeting PIN was refused");
    assert!(EndReason::PinRefused.is_failure());
}
