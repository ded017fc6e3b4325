//! huisd against SIPp, a real SIP peer: SIPp calls the room and the room
//! calls SIPp, over UDP on loopback.

use std::process::Command;
use std::time::Duration;

use futures_util::StreamExt;
use huis_firmware::dbus::client::Room1Proxy;
use huis_tests::{Bus, Huisd, huisctl, stderr};

/// A free UDP port on 127.0.0.1 (bound and released; SIPp binds it next).
fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

async fn sip_port(bus: &Bus) -> u16 {
    let conn = bus.connect().await;
    let room = Room1Proxy::new(&conn).await.unwrap();
    let uri = room.sip_uri().await.unwrap();
    uri.rsplit(':').next().unwrap().parse().unwrap_or_else(|_| panic!("no port in {uri}"))
}

#[tokio::test]
async fn sipp_calls_the_room_and_it_answers() {
    let bus = Bus::start();
    let _d = Huisd::start(&bus, Some("[call]\nauto_answer = true\n")).await;
    let port = sip_port(&bus).await;
    let conn = bus.connect().await;
    let room = Room1Proxy::new(&conn).await.unwrap();
    let mut incoming = room.receive_incoming_call().await.unwrap();
    let mut ended = room.receive_call_ended().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = tokio::task::spawn_blocking({
        let dir = dir.path().to_owned();
        move || {
            Command::new("sipp")
                .args(["-sn", "uac", &format!("127.0.0.1:{port}"), "-i", "127.0.0.1", "-p", &free_port().to_string()])
                .args(["-m", "2", "-l", "1", "-d", "1000", "-nostdin", "-timeout", "30", "-timeout_error"])
                .current_dir(dir)
                .output()
                .expect("sipp (Debian package sip-tester)")
        }
    })
    .await
    .unwrap();
    assert!(out.status.success(), "SIPp's calls failed:\n{}\n{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    // Two calls came in, were answered, and ended when SIPp hung up.
    for _ in 0..2 {
        let sig =
            tokio::time::timeout(Duration::from_secs(5), incoming.next()).await.expect("no IncomingCall").unwrap();
        assert!(sig.args().unwrap().remote_uri.contains("sipp@127.0.0.1"), "{:?}", sig.args().unwrap().remote_uri);
        let sig = tokio::time::timeout(Duration::from_secs(5), ended.next()).await.expect("no CallEnded").unwrap();
        assert_eq!(sig.args().unwrap().reason, "remote hung up");
    }
    assert_eq!(room.state().await.unwrap(), "idle");
}

#[tokio::test]
async fn the_room_calls_sipp_shows_the_call_and_hangs_up() {
    let bus = Bus::start();
    let _d = Huisd::start(&bus, Some("[call]\naudio_codecs = [\"pcmu\", \"pcma\"]\n")).await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut sipp = Command::new("sipp")
        .args(["-sn", "uas", "-i", "127.0.0.1", "-p", &port.to_string(), "-m", "1", "-nostdin", "-timeout", "30"])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("sipp");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let out = huisctl(&bus, &["dial", &format!("sip:service@127.0.0.1:{port}")]);
    assert!(out.status.success(), "{}", stderr(&out));

    let conn = bus.connect().await;
    let room = Room1Proxy::new(&conn).await.unwrap();
    let mut state = String::new();
    for _ in 0..100 {
        state = room.state().await.unwrap();
        if state == "in-call" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(state, "in-call");
    // The call is an object with its codec and RTP counters.
    let out = huisctl(&bus, &["--json", "calls"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let calls: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(calls[0]["direction"], "outgoing");
    assert_eq!(calls[0]["state"], "active");
    assert_eq!(calls[0]["audio_codec"], "PCMU/8000");
    // What carries the call, as it is: SIP, plain RTP (SIPp's uas offers no SRTP).
    assert_eq!(calls[0]["protocol"], "sip");
    assert_eq!(calls[0]["encrypted"], false);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let out = huisctl(&bus, &["--json", "calls"]);
    let calls: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let sent = calls[0]["stats"]["packets_sent"].as_f64().unwrap_or(0.0);
    assert!(sent >= 25.0, "RTP must flow (20 ms packets): {sent} sent after 1.5 s");

    let mut ended = room.receive_call_ended().await.unwrap();
    let out = huisctl(&bus, &["hangup"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let sig = tokio::time::timeout(Duration::from_secs(5), ended.next()).await.expect("no CallEnded signal").unwrap();
    assert_eq!(sig.args().unwrap().reason, "hung up");
    let st = tokio::task::spawn_blocking(move || sipp.wait()).await.unwrap().unwrap();
    assert!(st.success(), "SIPp saw a broken call (exit {st})");
    assert_eq!(room.state().await.unwrap(), "idle");
    let out = huisctl(&bus, &["--json", "calls"]);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap(), serde_json::json!([]));
}

#[tokio::test]
async fn a_call_to_nobody_ends_with_a_reason() {
    let bus = Bus::start();
    // SIPp answers 486 Busy Here.
    let _d = Huisd::start(&bus, None).await;
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("busy.xml");
    std::fs::write(
        &scenario,
        r#"<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="busy">
  <recv request="INVITE"/>
  <send><![CDATA[
SIP/2.0 486 Busy Here
[last_Via:]
[last_From:]
[last_To:];tag=[pid]SIPpTag01[call_number]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

]]></send>
  <recv request="ACK"/>
</scenario>
"#,
    )
    .unwrap();
    let mut sipp = Command::new("sipp")
        .args([
            "-sf",
            scenario.to_str().unwrap(),
            "-i",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-m",
            "1",
            "-nostdin",
            "-timeout",
            "20",
        ])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("sipp");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let conn = bus.connect().await;
    let room = Room1Proxy::new(&conn).await.unwrap();
    let mut ended = room.receive_call_ended().await.unwrap();
    assert!(huisctl(&bus, &["dial", &format!("sip:busy@127.0.0.1:{port}")]).status.success());
    let sig = tokio::time::timeout(Duration::from_secs(10), ended.next()).await.expect("no CallEnded").unwrap();
    let reason = sig.args().unwrap().reason.to_string();
    assert!(reason.contains("busy"), "{reason}");
    let err = room.last_error().await.unwrap();
    assert!(err.contains("busy") && err.contains(&port.to_string()), "{err}");
    assert_eq!(room.leds().await.unwrap(), "error");
    let st = tokio::task::spawn_blocking(move || sipp.wait()).await.unwrap().unwrap();
    assert!(st.success(), "SIPp: {st}");
}
