//! A Visio room against SIPp playing Visio's SIP video gateway (LiveKit's SIP service with
//! H.264 and BFCP): the room dials `visio:<PIN>`, gives the PIN as `X-PIN` (each scenario checks
//! it with a regexp and fails without it) and, when configured, by RFC 4733 DTMF after the
//! prompt, which a UDP listener at the gateway's audio address decodes. The gateway answers
//! H.264 High, G.722 and telephone-event, plus a slides `m=video` and a BFCP line (the room
//! offers both in its INVITE; each scenario checks that too). The calls live through session-timer refreshes and re-INVITE glare; a
//! gateway that hangs up after the PIN ends the call as "the meeting PIN was refused".
//!
//! The gateway's BFCP (it answers `s-only`: it runs the floor) is an independent implementation,
//! libre's, in `bfcp_peer.c`: the room asks for the floor when its laptop is plugged in and gets
//! it, yields when the peer takes the floor over, and releases it when the cable is pulled.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use huis_tests::peers::sipp::{Scenario, Sipp, SippOpts, SippResult};
use huis_tests::peers::*;
use huis_tests::{Bus, Huisd, huisctl, stderr};
use serde_json::Value;

const SEC: Duration = Duration::from_secs(1);
const PIN: &str = "1234567890";

fn json(bus: &Bus, args: &[&str]) -> Value {
    huis_tests::huisctl_json(bus, args)
}

/// The room: SIP on `port`, the gateway at `gw`, the PIN's DTMF as `pin_dtmf` says, a 10 s
/// session timer (the test-only low end of `visio.session_expires`: a refresh every 5 s).
fn room_config(port: u16, gw: u16, pin_dtmf: &str) -> String {
    format!(
        "[sip]\nlisten = \"127.0.0.1:{port}\"\n\
         [call]\naudio_codecs = [\"opus\", \"g722\", \"pcmu\"]\nmedia_encryption = \"off\"\nmedia_timeout = 0\n\
         [video]\nwidth = 640\nheight = 360\nframerate = 15\n\
         [visio]\ngateway = \"sip:visio@127.0.0.1:{gw}\"\npin_delay_ms = 500\npin_dtmf = \"{pin_dtmf}\"\n\
         session_expires = 10\n"
    )
}

/// What arrived on a UDP port: (payload type, payload after the RTP header).
type Arrivals = Vec<(u8, Vec<u8>)>;

/// Listens on 127.0.0.1:`port` inside the namespace for `secs` seconds: the gateway's audio.
fn listen(ns: &NetNs, port: u16, secs: u64) -> std::thread::JoinHandle<Arrivals> {
    let ns = ns.clone();
    std::thread::spawn(move || {
        ns.enter(move || {
            let s = UdpSocket::bind(("127.0.0.1", port)).expect("the gateway's audio port");
            s.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
            let end = Instant::now() + Duration::from_secs(secs);
            let mut got = Vec::new();
            let mut buf = [0u8; 2048];
            while Instant::now() < end {
                if let Ok(n) = s.recv(&mut buf)
                    && n > 12
                    && buf[0] >> 6 == 2
                    && !(200..=204).contains(&buf[1])
                {
                    let ts = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]);
                    let mut p = ts.to_be_bytes().to_vec();
                    p.extend_from_slice(&buf[12..n]);
                    got.push((buf[1] & 0x7f, p));
                }
            }
            got
        })
        .expect("inside the namespace")
    })
}

/// The digits of the RFC 4733 events (payload type `pt`) among `arrivals`, one per event: an
/// event is its RTP timestamp (its packets, the three end packets included, share it).
fn dtmf_digits(arrivals: &Arrivals, pt: u8) -> String {
    let mut seen = Vec::new();
    let mut out = String::new();
    for (t, p) in arrivals {
        if *t != pt || p.len() < 8 {
            continue;
        }
        let ts = u32::from_be_bytes([p[0], p[1], p[2], p[3]]);
        if seen.contains(&ts) {
            continue;
        }
        seen.push(ts);
        out.push(match p[4] {
            e @ 0..=9 => char::from(b'0' + e),
            10 => '*',
            11 => '#',
            e @ 12..=15 => char::from(b'A' + e - 12),
            _ => '?',
        });
    }
    out
}

/// How the gateway behaves after it answered.
#[derive(Clone, Copy, PartialEq)]
enum Gateway {
    /// Takes the PIN (by DTMF or X-PIN), then: our session refresh meets its own re-INVITE
    /// (glare, both answered 491), our retry is answered, one more refresh, then our BYE.
    Joins,
    /// Plays its "wrong PIN" prompt and hangs up (a bare BYE, as LiveKit's service does).
    RefusesPin,
}

/// The gateway's SDP: G.722 + telephone-event (our payload type 100), H.264 High on our 104,
/// a slides stream and BFCP, the gateway running the floor (`s-only`, the room is user 2).
fn gateway_sdp(version: u32, audio: u16) -> String {
    format!(
        "v=0\no=gw 1 {version} IN IP4 [local_ip]\ns=-\nc=IN IP4 [local_ip]\nt=0 0\n\
         m=audio {audio} RTP/AVP 9 100\na=rtpmap:9 G722/8000\na=rtpmap:100 telephone-event/8000\na=fmtp:100 0-16\na=sendrecv\n\
         m=video {} RTP/AVP 104\na=rtpmap:104 H264/90000\na=fmtp:104 profile-level-id=64001f;packetization-mode=1\n\
         a=rtcp-fb:104 nack pli\na=rtcp-fb:104 ccm fir\na=rtcp-fb:104 ccm tmmbr\na=sendrecv\n\
         m=video {} RTP/AVP 104\na=rtpmap:104 H264/90000\na=fmtp:104 profile-level-id=64001f;packetization-mode=1\n\
         a=content:slides\na=label:2\na=sendrecv\n\
         m=application {} UDP/BFCP *\na=floorctrl:s-only\na=confid:1\na=userid:2\na=floorid:1 mstrm:2\n\
         a=setup:passive\na=connection:new\n",
        audio + 2,
        audio + 4,
        audio + 6
    )
}

/// A request from the gateway inside the dialog (it is the UAS of the call).
fn gateway_request(method: &str, cseq: u32, body: Option<String>) -> String {
    let ct = match body {
        Some(b) => format!("Content-Type: application/sdp\nContent-Length: [len]\n\n{b}"),
        None => "Content-Length: 0\n\n".to_string(),
    };
    format!(
        "{method} [$contact] SIP/2.0\nVia: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n\
         From: [$gto];tag=[pid]SIPpTag01[call_number]\nTo: [$hfrom]\nCall-ID: [call_id]\nCSeq: {cseq} {method}\n\
         Max-Forwards: 70\nContact: <sip:visio@[local_ip]:[local_port]>\n{ct}"
    )
}

/// A 200 to the room's last INVITE, with the gateway's SDP and, with `timer`, the session
/// timer the room asked for (the room refreshes).
fn ok_to_invite(version: u32, audio: u16, timer: bool) -> String {
    let timer = if timer { "Require: timer\nSession-Expires: 10;refresher=uac\n" } else { "" };
    format!(
        "  <send><![CDATA[\nSIP/2.0 200 OK\n[last_Via:]\n[last_From:]\n[last_To:];tag=[pid]SIPpTag01[call_number]\n\
         [last_Call-ID:]\n[last_CSeq:]\nContact: <sip:visio@[local_ip]:[local_port]>\nSupported: timer\n\
         {timer}Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, INFO\n\
         Content-Type: application/sdp\nContent-Length: [len]\n\n{}]]></send>\n",
        gateway_sdp(version, audio)
    )
}

fn gateway_scenario(kind: Gateway, audio: u16) -> String {
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"ISO-8859-1\" ?>\n<scenario name=\"visio gateway\">\n");
    // The INVITE: X-PIN, the session timer with us as refresher, H.264 High offered first.
    x += &format!(
        "  <recv request=\"INVITE\"><action>\n\
         \x20   <ereg regexp=\"^ *{PIN} *$\" search_in=\"hdr\" header=\"X-PIN:\" check_it=\"true\" assign_to=\"xpin\"/>\n\
         \x20   <ereg regexp=\"10;refresher=uac\" search_in=\"hdr\" header=\"Session-Expires:\" check_it=\"true\" assign_to=\"se\"/>\n\
         \x20   <ereg regexp=\"m=video [0-9]+ RTP/AVP 104 105 96 97\" search_in=\"body\" check_it=\"true\" assign_to=\"high\"/>\n\
         \x20   <ereg regexp=\"a=fmtp:104 profile-level-id=64[0-9a-f]{{4}};packetization-mode=1\" search_in=\"body\" check_it=\"true\" assign_to=\"highfmtp\"/>\n\
         \x20   <ereg regexp=\"a=content:slides\" search_in=\"body\" check_it=\"true\" assign_to=\"slides\"/>\n\
         \x20   <ereg regexp=\"m=application [0-9]+ UDP/BFCP \\*\" search_in=\"body\" check_it=\"true\" assign_to=\"bfcp\"/>\n\
         \x20   <ereg regexp=\"sip:[^>;]*\" search_in=\"hdr\" header=\"Contact:\" assign_to=\"contact\"/>\n\
         \x20   <ereg regexp=\"&lt;sip:[^&gt;]*&gt;;tag=[^;]*\" search_in=\"hdr\" header=\"From:\" assign_to=\"hfrom\"/>\n\
         \x20   <ereg regexp=\"&lt;sip:[^&gt;]*&gt;\" search_in=\"hdr\" header=\"To:\" assign_to=\"gto\"/>\n\
         \x20 </action></recv>\n"
    );
    x += &ok_to_invite(1, audio, kind == Gateway::Joins);
    x += "  <recv request=\"ACK\"/>\n";
    match kind {
        Gateway::RefusesPin => {
            // The prompt, our PIN (0.5 s wait + 11 digits), the "wrong PIN" prompt, BYE.
            x += "  <pause milliseconds=\"6000\"/>\n";
            x += &format!("  <send retrans=\"500\"><![CDATA[\n{}]]></send>\n", gateway_request("BYE", 1, None));
            x += "  <recv response=\"200\"/>\n";
        }
        Gateway::Joins => {
            // Our refresh (5 s after the answer) crosses the gateway's own re-INVITE.
            x += "  <recv request=\"INVITE\" timeout=\"9000\"><action>\n\
                  \x20   <ereg regexp=\"SIP/2.0/UDP [^ ]*\" search_in=\"hdr\" header=\"Via:\" assign_to=\"hvia\"/>\n\
                  \x20   <ereg regexp=\"[0-9]+ INVITE\" search_in=\"hdr\" header=\"CSeq:\" assign_to=\"hcseq\"/>\n\
                  \x20 </action></recv>\n";
            x += &format!(
                "  <send retrans=\"500\"><![CDATA[\n{}]]></send>\n",
                gateway_request("INVITE", 1, Some(gateway_sdp(2, audio)))
            );
            x += "  <recv response=\"491\"/>\n";
            x += "  <send><![CDATA[\nACK [$contact] SIP/2.0\n[last_Via:]\nFrom: [$gto];tag=[pid]SIPpTag01[call_number]\n\
                  To: [$hfrom]\nCall-ID: [call_id]\nCSeq: 1 ACK\nMax-Forwards: 70\nContent-Length: 0\n\n]]></send>\n";
            x += "  <send><![CDATA[\nSIP/2.0 491 Request Pending\nVia: [$hvia]\nFrom: [$hfrom]\n\
                  To: [$gto];tag=[pid]SIPpTag01[call_number]\nCall-ID: [call_id]\nCSeq: [$hcseq]\nContent-Length: 0\n\n]]></send>\n";
            x += "  <recv request=\"ACK\"/>\n";
            // Our retry after the back-off (the owner of the Call-ID: 2.1-4 s), answered.
            x += "  <recv request=\"INVITE\" timeout=\"6000\"/>\n";
            x += &ok_to_invite(3, audio, true);
            x += "  <recv request=\"ACK\"/>\n";
            // The next refresh, 5 s later: the session timer goes on.
            x += "  <recv request=\"INVITE\" timeout=\"8000\"/>\n";
            x += &ok_to_invite(4, audio, true);
            x += "  <recv request=\"ACK\"/>\n";
            x += "  <recv request=\"BYE\" timeout=\"20000\"/>\n";
            x += "  <send><![CDATA[\nSIP/2.0 200 OK\n[last_Via:]\n[last_From:]\n[last_To:]\n[last_Call-ID:]\n\
                  [last_CSeq:]\nContent-Length: 0\n\n]]></send>\n";
        }
    }
    x += "  <Reference variables=\"xpin,se,high,highfmtp,slides,bfcp\"/>\n</scenario>\n";
    x
}

struct Run {
    ns: NetNs,
    audio: u16,
    bus: Bus,
    d: Huisd,
    sipp: Option<Sipp>,
    listener: Option<std::thread::JoinHandle<Arrivals>>,
}

impl Run {
    fn start(kind: Gateway, pin_dtmf: &str, listen_secs: u64) -> Run {
        let ns = NetNs::new();
        let bus = Bus::start();
        let (port, gw, audio) = (ns.port(), ns.port(), ns.port());
        let listener = listen(&ns, audio, listen_secs);
        let mut o = SippOpts::uas(gw, 1);
        o.scenario = Scenario::Xml(gateway_scenario(kind, audio));
        o.timeout = Duration::from_secs(45);
        let sipp = Sipp::spawn(&ns, o).unwrap();
        let d = huis_tests::peers::huisd::start_in_blocking(&ns, &bus, &room_config(port, gw, pin_dtmf));
        Run { ns, audio, bus, d, sipp: Some(sipp), listener: Some(listener) }
    }

    fn sipp(&mut self) -> SippResult {
        self.sipp.take().unwrap().wait().unwrap()
    }

    fn why(&self, sipp: Option<&SippResult>) -> String {
        let s = sipp.map(|r| format!("{r}\n--- SIPp messages ---\n{}", r.messages)).unwrap_or_default();
        format!(
            "--- status ---\n{}\n--- huisd ---\n{}\n--- SIPp ---\n{s}",
            json(&self.bus, &["status"]),
            self.d.log_text()
        )
    }

    fn wait_state(&self, state: &str, within: Duration) {
        let end = Instant::now() + within;
        while json(&self.bus, &["status"])["state"] != state {
            assert!(Instant::now() < end, "the room is not {state} within {within:?}\n{}", self.why(None));
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// (a) + (c): the gateway prompts; the room sends the PIN by DTMF once, `#` at the end, after
/// the configured wait; the call lives through a refresh that meets glare, and the next one.
#[test]
fn visio_gateway_prompt_dtmf_pin_session_timer_and_glare() {
    let _w = watchdog("visio: DTMF PIN, refresh, glare", 150);
    let mut r = Run::start(Gateway::Joins, "auto", 20);
    let out = huisctl(&r.bus, &["dial", &format!("visio:{PIN}")]);
    assert!(out.status.success(), "huisctl dial: {}\n{}", stderr(&out), r.why(None));
    r.wait_state("in-call", 10 * SEC);
    let calls = json(&r.bus, &["calls"]);
    assert!(calls[0]["audio_codec"].as_str().unwrap_or("").starts_with("G722"), "{calls}\n{}", r.why(None));
    assert!(!calls.to_string().contains(PIN), "the PIN is never shown: {calls}");
    // Through the refresh at 5 s, its glare and retry (7-9 s) and the next refresh (12-14 s).
    std::thread::sleep(15 * SEC);
    let calls = json(&r.bus, &["calls"]);
    assert_eq!(calls[0]["state"], "active", "the call lives through refreshes and glare\n{}", r.why(None));
    let out = huisctl(&r.bus, &["hangup"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let sipp = r.sipp();
    assert!(sipp.success(), "SIPp, the gateway, saw a broken call\n{}", r.why(Some(&sipp)));
    let arrivals = r.listener.take().unwrap().join().unwrap();
    let digits = dtmf_digits(&arrivals, 100);
    assert_eq!(digits, format!("{PIN}#"), "the PIN by DTMF, once\n{}", r.why(Some(&sipp)));
    let log = r.d.log_text();
    assert!(!log.contains(PIN), "huisd logged the PIN:\n{log}");
    r.wait_state("idle", 5 * SEC);
}

/// (b): a gateway that takes X-PIN (the scenario fails without it) and no DTMF (`never`).
#[test]
fn visio_gateway_takes_x_pin_and_no_dtmf_is_sent() {
    let _w = watchdog("visio: X-PIN only", 150);
    let mut r = Run::start(Gateway::Joins, "never", 20);
    let out = huisctl(&r.bus, &["dial", &format!("visio:{PIN}")]);
    assert!(out.status.success(), "huisctl dial: {}\n{}", stderr(&out), r.why(None));
    r.wait_state("in-call", 10 * SEC);
    std::thread::sleep(15 * SEC);
    assert_eq!(json(&r.bus, &["calls"])[0]["state"], "active", "{}", r.why(None));
    assert!(huisctl(&r.bus, &["hangup"]).status.success());
    let sipp = r.sipp();
    assert!(sipp.success(), "SIPp, the gateway, refused the call\n{}", r.why(Some(&sipp)));
    let arrivals = r.listener.take().unwrap().join().unwrap();
    assert_eq!(dtmf_digits(&arrivals, 100), "", "no DTMF with pin_dtmf = never\n{}", r.why(Some(&sipp)));
    assert!(arrivals.iter().any(|(pt, _)| *pt == 9), "G.722 audio reached the gateway\n{}", r.why(Some(&sipp)));
}

/// (d): the gateway plays "wrong PIN" and hangs up: the call ends with the reason people read,
/// and the room is idle again.
#[test]
fn visio_wrong_pin_ends_the_call_with_its_reason() {
    let _w = watchdog("visio: wrong PIN", 120);
    let mut r = Run::start(Gateway::RefusesPin, "auto", 12);
    let out = huisctl(&r.bus, &["dial", &format!("visio:{PIN}")]);
    assert!(out.status.success(), "huisctl dial: {}\n{}", stderr(&out), r.why(None));
    r.wait_state("in-call", 10 * SEC);
    let sipp = r.sipp();
    assert!(sipp.success(), "SIPp\n{}", r.why(Some(&sipp)));
    r.wait_state("idle", 5 * SEC);
    let status = json(&r.bus, &["status"]);
    let err = status["last_error"].as_str().unwrap_or("").to_string();
    assert!(err.contains("the meeting PIN was refused"), "LastError: {err:?}\n{}", r.why(Some(&sipp)));
    assert!(!err.contains(PIN), "{err}");
    let arrivals = r.listener.take().unwrap().join().unwrap();
    assert_eq!(dtmf_digits(&arrivals, 100), format!("{PIN}#"), "{}", r.why(Some(&sipp)));
}

/// The call's presentation (`Call1.Presentation`).
fn presentation(bus: &Bus) -> String {
    json(bus, &["calls"])[0]["presentation"].as_str().unwrap_or("").to_owned()
}

impl Run {
    fn wait_presentation(&self, ok: impl Fn(&str) -> bool, what: &str, within: Duration) -> Duration {
        let t = Instant::now();
        loop {
            let p = presentation(&self.bus);
            if ok(&p) {
                return t.elapsed();
            }
            assert!(
                t.elapsed() < within,
                "the presentation is {p:?}, not {what}, after {within:?}\n{}",
                self.why(None)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The floor of the gateway's presentation, run by libre's BFCP (the gateway's answer says
/// `s-only`, conference 1, user 2 for the room): plugging the laptop in asks for the floor and
/// gets it; the gateway's own user taking the floor over makes the room yield; asked again and
/// granted, pulling the cable releases it within a second.
#[test]
fn visio_floor_against_libre_bfcp_request_yield_and_release_on_unplug() {
    let _w = watchdog("visio: BFCP against libre", 150);
    let Some(bin) = bfcp_peer::peer_binary() else { return };
    let mut r = Run::start(Gateway::Joins, "never", 20);
    let bfcp_port = (r.audio + 6).to_string();
    let (mut peer, _) =
        bfcp_peer::BfcpPeer::start(&bin, Some(&r.ns), &["server", "127.0.0.1", &bfcp_port, "1", "1", "3"]);
    let out = huisctl(&r.bus, &["dial", &format!("visio:{PIN}")]);
    assert!(out.status.success(), "huisctl dial: {}\n{}", stderr(&out), r.why(None));
    r.wait_state("in-call", 10 * SEC);
    r.wait_presentation(|p| p == "free", "free (a presentation channel agreed)", 5 * SEC);

    // The laptop is plugged in: the room asks the gateway's floor server and is granted.
    assert!(huisctl(&r.bus, &["share", "plug"]).status.success());
    peer.wait_line("GRANTED floor=1 user=2");
    r.wait_presentation(|p| p == "sending", "sending", 2 * SEC);

    // The gateway's own participant takes the floor: the room is revoked and yields.
    peer.send("take");
    peer.wait_line("REVOKED user=2");
    let t = r.wait_presentation(|p| p != "sending", "no longer sending", 2 * SEC);
    eprintln!("yielded {t:?} after the revocation was seen");

    // Asked again (the laptop is still plugged in): the gateway's user is revoked, the room
    // granted (the peer prints them in that order).
    assert!(huisctl(&r.bus, &["share", "start"]).status.success());
    peer.wait_line("REVOKED user=3");
    peer.wait_line("GRANTED floor=1 user=2");
    r.wait_presentation(|p| p == "sending", "sending again", 2 * SEC);

    // Pulling the cable releases the floor at the server within a second.
    let t = Instant::now();
    assert!(huisctl(&r.bus, &["share", "unplug"]).status.success());
    peer.wait_line("RELEASED user=2");
    let released = t.elapsed();
    eprintln!("floor released at libre {released:?} after the unplug");
    assert!(released < SEC, "the release reached the floor server after {released:?}\n{}", r.why(None));
    r.wait_presentation(|p| p == "free", "free", SEC);

    // Through the gateway's session-timer refresh and its glare re-INVITE (5-14 s), the
    // presentation channel stays as agreed: plugged in again, the room is granted again.
    std::thread::sleep(15 * SEC);
    assert_eq!(json(&r.bus, &["calls"])[0]["state"], "active", "{}", r.why(None));
    assert!(huisctl(&r.bus, &["share", "plug"]).status.success());
    peer.wait_line("GRANTED floor=1 user=2");
    r.wait_presentation(|p| p == "sending", "sending after the re-INVITEs", 2 * SEC);
    assert!(!peer.has_line("FAILED"), "libre saw a failed transaction: {:?}", peer.seen);

    assert!(huisctl(&r.bus, &["hangup"]).status.success());
    let sipp = r.sipp();
    assert!(sipp.success(), "SIPp, the gateway, saw a broken call\n{}", r.why(Some(&sipp)));
}
