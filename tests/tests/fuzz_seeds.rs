//! Fuzz seeds from real peers' traffic: calls between huisd and baresip (plain, SDES-SRTP and
//! DTLS-SRTP, audio and video, hold, DTMF), through Kamailio (REGISTER, 401/407 challenges,
//! Record-Route), and SIPp's caller and answerer, all captured on the loopback of a test
//! namespace. Every SIP message a peer sent becomes a `sip_parsers` seed, and every SDP body in
//! them an `sdp_negotiation` seed, as `fuzz/seeds/TARGET/real-PEER-HASH`. (BFCP seeds from libre
//! come from `bfcp_libre.rs` run the same way.)
//!
//! Ignored in the default run, since it writes into the repository: `bench/fuzz-seeds.sh`.

use std::time::Duration;

use huis_tests::peers::sipp::{Scenario, reinvite_media_scenario};
use huis_tests::peers::tone::write_room_tone_wav;
use huis_tests::peers::*;
use huis_tests::{Bus, Huisd, huisctl, keep_seed, stderr};
use serde_json::Value;

const SEC: Duration = Duration::from_secs(1);

fn ok(bus: &Bus, args: &[&str]) {
    let out = huisctl(bus, args);
    assert!(out.status.success(), "huisctl {args:?}: {}", stderr(&out));
}

fn wait_state(bus: &Bus, d: &Huisd, want: &str) -> Value {
    huis_tests::wait_status(bus, d, want, 15 * SEC, |s: &Value| s["state"] == want)
}

/// A SIP message (request or response) at the start of a datagram.
fn is_sip(p: &[u8]) -> bool {
    if p.starts_with(b"SIP/2.0 ") {
        return true;
    }
    let method = p.iter().take_while(|b| b.is_ascii_uppercase()).count();
    method >= 3 && p[method..].starts_with(b" sip:")
}

/// The body after the blank line, if it is an SDP.
fn sdp_body(p: &[u8]) -> Option<&[u8]> {
    let at = p.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    p[at..].starts_with(b"v=0").then(|| &p[at..])
}

#[test]
#[ignore = "writes fuzz seeds into the repository: bench/fuzz-seeds.sh"]
fn seeds_from_baresip_kamailio_and_sipp() {
    assert!(std::env::var_os("HUIS_KEEP_SEEDS").is_some(), "run through bench/fuzz-seeds.sh (HUIS_KEEP_SEEDS=1)");
    let _w = watchdog("seeds", 240);
    let ns = NetNs::new();
    let bus = Bus::start();
    let dir = tempfile::tempdir().unwrap();
    let k = Kamailio::start(&ns, None, &[("room", "roompw"), ("bob", "bobpw")], Algorithm::Md5).unwrap();
    let bob = Baresip::start(
        &ns,
        BaresipOpts::new("bob")
            .registrar(&k.host_port(), "bobpw")
            .codecs(&["opus/48000/2", "PCMU/8000/1"])
            .source(AudioSource::Sine(440.0))
            .video(640, 360),
    )
    .unwrap();
    bob.wait_registered(10 * SEC).unwrap();
    let carol_port = ns.port();
    let carol = Baresip::start(
        &ns,
        BaresipOpts::new("carol")
            .port(carol_port)
            .codecs(&["PCMU/8000/1"])
            .source(AudioSource::Sine(440.0))
            .video(640, 360)
            .mediaenc(MediaEnc::SrtpMand),
    )
    .unwrap();
    let dave_port = ns.port();
    let dave = Baresip::start(
        &ns,
        BaresipOpts::new("dave").port(dave_port).codecs(&["PCMU/8000/1"]).mediaenc(MediaEnc::DtlsSrtp).rtcp_mux(true),
    )
    .unwrap();
    let (port, uas_port, uac_port) = (ns.port(), ns.port(), ns.port());
    let tone = dir.path().join("room-tone.wav");
    write_room_tone_wav(&tone).unwrap();
    let config = format!(
        "[audio]\nsim_recording = \"{}\"\n[sip]\nlisten = \"127.0.0.1:{port}\"\n[call]\nauto_answer = true\n\
         media_encryption = \"best-effort\"\n[video]\nwidth = 640\nheight = 360\nframerate = 30\n\
         [account]\nregistrar = \"sip:{}\"\ntransport = \"udp\"\nuser = \"room\"\npassword = \"roompw\"\n",
        tone.display(),
        k.host_port()
    );
    let cap = capture(&ns, 75);
    let mut d = huis_tests::peers::huisd::start_in_blocking(&ns, &bus, &config);
    huis_tests::wait_status(&bus, &d, "registered", 10 * SEC, huis_tests::registered);

    // bob calls the room through Kamailio; the room calls bob (the proxy challenges it).
    bob.dial(&k.aor("room")).unwrap();
    wait_state(&bus, &d, "in-call");
    std::thread::sleep(2 * SEC);
    bob.hangup().unwrap();
    wait_state(&bus, &d, "idle");
    ok(&bus, &["dial", &k.aor("bob")]);
    bob.wait_event_where(|e| e.kind == "CALL_ESTABLISHED", 10 * SEC).unwrap();
    wait_state(&bus, &d, "in-call");
    ok(&bus, &["hold"]);
    std::thread::sleep(SEC);
    ok(&bus, &["resume"]);
    bob.send_dtmf("1#").unwrap();
    std::thread::sleep(SEC);
    ok(&bus, &["hangup"]);
    wait_state(&bus, &d, "idle");

    // carol offers SDES-SRTP keys over plain UDP signalling, which the room refuses (488); dave
    // calls with DTLS-SRTP.
    let room = format!("sip:room@127.0.0.1:{port}");
    carol.dial(&room).unwrap();
    carol.wait_event("CALL_CLOSED", 10 * SEC).unwrap();
    dave.dial(&room).unwrap();
    wait_state(&bus, &d, "in-call");
    std::thread::sleep(2 * SEC);
    dave.hangup().unwrap();
    wait_state(&bus, &d, "idle");

    // SIPp: a caller that moves its media and adds and drops video, and the built-in answerer.
    let mut o = SippOpts::uac(&format!("127.0.0.1:{port}"), 1);
    o.scenario = Scenario::Xml(reinvite_media_scenario([ns.port(), ns.port()], ns.port(), 1000));
    o.service = Some("room".into());
    o.local_port = Some(uac_port);
    let r = Sipp::run(&ns, o).unwrap();
    assert!(r.success(), "SIPp's caller: {r:?}\n{}", d.log_text());
    let uas = Sipp::spawn(&ns, SippOpts::uas(uas_port, 1)).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    ok(&bus, &["dial", &format!("sip:sipp@127.0.0.1:{uas_port}")]);
    wait_state(&bus, &d, "in-call");
    std::thread::sleep(SEC);
    ok(&bus, &["hangup"]);
    wait_state(&bus, &d, "idle");
    let _ = uas.wait();
    let _ = d.terminate(5 * SEC);

    // Who sent what: each peer by its SIP port (the room's own messages are not kept).
    let kamailio_port: u16 = k.host_port().rsplit(':').next().unwrap().parse().unwrap();
    let peers = [
        (kamailio_port, "kamailio"),
        (bob.sip_port, "baresip"),
        (carol_port, "baresip-sdes"),
        (dave_port, "baresip-dtls"),
        (uac_port, "sipp-uac"),
        (uas_port, "sipp-uas"),
    ];
    let (mut sip, mut sdp) = (0, 0);
    for (sport, _dport, p) in cap.join().unwrap() {
        let Some(peer) = peers.iter().find(|(port, _)| *port == sport).map(|(_, n)| *n) else { continue };
        if !is_sip(&p) {
            continue;
        }
        sip += usize::from(keep_seed("sip_parsers", peer, &p));
        if let Some(body) = sdp_body(&p) {
            sdp += usize::from(keep_seed("sdp_negotiation", peer, body));
        }
    }
    println!("kept {sip} new SIP messages and {sdp} new SDP bodies as seeds");
    assert!(
        sip > 0
            || std::fs::read_dir("../fuzz/seeds/sip_parsers")
                .unwrap()
                .any(|e| { e.unwrap().file_name().to_string_lossy().starts_with("real-kamailio") }),
        "no SIP message of a peer was captured; peer ports {peers:?}"
    );
}
