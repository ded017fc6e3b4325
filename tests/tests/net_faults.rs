//! Issue 21, calls through network faults: two huisd rooms in two network namespaces joined by
//! an impaired link of the harness (`huis_tests::peers::impair`: TUN devices, delay, jitter
//! and loss both ways, addresses unchanged), a link cut with nftables during a call with a room
//! registered at Kamailio, and a registrar that goes away in the middle of a registration.
//!
//! `HUIS_FAULT_SECS` sets how long the call is held under loss and jitter (60 s by default;
//! `bench/net-faults.sh` runs it for 5 minutes and prints the figures).

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use huis_tests::peers::impair::{A_ADDR, B_ADDR};
use huis_tests::peers::*;
use huis_tests::{Bus, Huisd, backoff_lines, huisctl, huisctl_json, registered, stderr, wait_status};
use serde_json::Value;

const SEC: Duration = Duration::from_secs(1);

/// Two rooms in real time each encode and decode video: one such test at a time, so the
/// figures are the link's and not the next test's pipelines'.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// Room A's tone (in its microphones), heard in room B. Room B's microphones hear silence:
/// with a steady tone in both rooms, each room's echo control takes the far end's tone for
/// echo to protect against and holds its own microphones down (a room hears the other only
/// while it does not play something itself), so one talker at a time, as in a meeting.
const TONE_A: f32 = tone::ROOM_TONE_HZ;
const SIP_PORT: u16 = 5060;

fn status(bus: &Bus) -> Value {
    let out = huisctl(bus, &["--json", "status"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

fn video_stats(bus: &Bus) -> Value {
    huisctl_json(bus, &["video"])["stats"].clone()
}

/// The first call's Call1.Stats (audio, and video as `video_*`); Null without a call.
fn call_stats(bus: &Bus) -> Value {
    huisctl_json(bus, &["calls"])[0]["stats"].clone()
}

fn stat(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(0.0)
}

/// Milliseconds the room's loudspeaker has played (48 kHz stereo 16-bit on the sim board).
fn speaker_ms(d: &Huisd) -> u32 {
    let bytes = std::fs::metadata(d.state_dir.join("speaker.wav")).map(|m| m.len()).unwrap_or(0);
    (bytes.saturating_sub(44) / (48 * 2 * 2)) as u32
}

/// The room's loudspeaker in 1 s windows after `skip_ms`: the report and the share of all
/// windows (silent ones count against it) whose dominant frequency is `hz`.
fn tone_windows(d: &Huisd, hz: f32, skip_ms: u32) -> (tone::ToneReport, f64) {
    let r = tone::tone_fraction(&d.state_dir.join("speaker.wav"), hz, 25.0, 1000, skip_ms)
        .unwrap_or_else(|e| panic!("read the room's loudspeaker: {e}\n{}", d.log_text()));
    let share = if r.windows == 0 { 0.0 } else { r.matching as f64 / r.windows as f64 };
    (r, share)
}

/// A room of the two-namespace tests: a tone of `hz` in its microphones (0: silence), 640×360 video at 30 fps, SIP
/// on the link address.
fn room_config(dir: &Path, name: &str, addr: std::net::Ipv4Addr, hz: f32, sip_extra: &str, extra: &str) -> String {
    let tone = dir.join(format!("{}-tone.wav", name.replace(' ', "-")));
    tone::write_sine_wav(&tone, hz.max(1.0), 5.0, 16000, 1, if hz > 0.0 { 0.4 } else { 0.0 }).unwrap();
    format!(
        "[room]\nname = \"{name}\"\n[audio]\nsim_recording = \"{}\"\n\
         [sip]\nlisten = \"{addr}:{SIP_PORT}\"\nrtp_port_min = 30000\nrtp_port_max = 30020\n{sip_extra}\n\
         [video]\nwidth = 640\nheight = 360\nframerate = 30\n{extra}",
        tone.display()
    )
}

/// Room A (namespace A) and room B (namespace B, auto-answer) on either side of an impaired
/// link, in a call A placed, with audio and video both ways.
struct LinkedRooms {
    ns_a: NetNs,
    ns_b: NetNs,
    link: ImpairedLink,
    bus_a: Bus,
    bus_b: Bus,
    a: Huisd,
    b: Huisd,
    _dir: tempfile::TempDir,
}

impl LinkedRooms {
    /// `b_sip` goes into room B's `[sip]` section and `b_extra` after its configuration (e.g. an
    /// `[account]`); `prepare` runs with room B's namespace before room B starts (e.g. to start
    /// a registrar there), `before_dial` with room B once both rooms are up.
    fn start<T>(
        b_sip: &str,
        b_extra: &str,
        prepare: impl FnOnce(&NetNs) -> T,
        before_dial: impl FnOnce(&Bus, &Huisd),
    ) -> (LinkedRooms, T) {
        let (ns_a, ns_b) = (NetNs::new(), NetNs::new());
        let link = ImpairedLink::new(&ns_a, &ns_b, Impairment::none()).expect("an impaired link between namespaces");
        let prepared = prepare(&ns_b);
        let dir = tempfile::tempdir().unwrap();
        let (bus_a, bus_b) = (Bus::start(), Bus::start());
        let a = huisd::start_in_blocking(&ns_a, &bus_a, &room_config(dir.path(), "Studio 4", A_ADDR, TONE_A, "", ""));
        let b = huisd::start_in_blocking(
            &ns_b,
            &bus_b,
            &room_config(
                dir.path(),
                "Board room",
                B_ADDR,
                0.0,
                b_sip,
                &format!("[call]\nauto_answer = true\n{b_extra}"),
            ),
        );
        let r = LinkedRooms { ns_a, ns_b, link, bus_a, bus_b, a, b, _dir: dir };
        before_dial(&r.bus_b, &r.b);
        huisctl_json(&r.bus_a, &["dial", &format!("sip:room@{B_ADDR}:{SIP_PORT}")]);
        r.wait_video_both_ways("after the call started", 30);
        (r, prepared)
    }

    /// Waits until each room has decoded 30 more frames than now.
    fn wait_video_both_ways(&self, when: &str, secs: u64) {
        for (room, bus) in [("A", &self.bus_a), ("B", &self.bus_b)] {
            let from = stat(&video_stats(bus), "frames_decoded");
            let deadline = Instant::now() + Duration::from_secs(secs);
            while stat(&video_stats(bus), "frames_decoded") < from + 30.0 {
                assert!(
                    Instant::now() < deadline,
                    "{when}: room {room} decodes no video within {secs} s: {}\n{}",
                    video_stats(bus),
                    self.logs()
                );
                std::thread::sleep(Duration::from_millis(200));
            }
        }
    }

    fn logs(&self) -> String {
        let (ab, ba) = self.link.stats();
        format!(
            "link A→B {ab:?}, B→A {ba:?}\nroom A status {}\nroom A log:\n{}\nroom B status {}\nroom B log:\n{}",
            status(&self.bus_a),
            self.a.log_text(),
            status(&self.bus_b),
            self.b.log_text()
        )
    }

    /// Both rooms say they are in the call, and it is active.
    fn assert_in_call(&self, when: &str) {
        for (room, bus) in [("A", &self.bus_a), ("B", &self.bus_b)] {
            let s = status(bus);
            let calls = huisctl_json(bus, &["calls"]);
            assert!(
                s["state"] == "in-call" && calls[0]["state"] == "active",
                "{when}: room {room} is no longer in the call: {s}\ncalls: {calls}\n{}",
                self.logs()
            );
        }
    }
}

/// The link itself, before anything relies on it: with 10 % loss and 10 + 0–50 ms of delay,
/// datagrams are lost, delayed and reordered as asked, in both directions, and addresses stay
/// what they were.
#[test]
fn the_impaired_link_drops_delays_and_reorders_both_ways() {
    let _w = watchdog("impaired link", 60);
    let (ns_a, ns_b) = (NetNs::new(), NetNs::new());
    let imp = Impairment { loss: 0.10, delay: Duration::from_millis(10), jitter: Duration::from_millis(50) };
    let link = ImpairedLink::new(&ns_a, &ns_b, imp).unwrap();
    let base = Instant::now();
    for (from_ns, to_ns, from, to) in [(&ns_a, &ns_b, A_ADDR, B_ADDR), (&ns_b, &ns_a, B_ADDR, A_ADDR)] {
        let rx = to_ns.enter(move || UdpSocket::bind((to, 9000))).unwrap().unwrap();
        let tx = from_ns.enter(move || UdpSocket::bind((from, 9001))).unwrap().unwrap();
        rx.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
        const N: u32 = 1000;
        let sender = std::thread::spawn(move || {
            for i in 0..N {
                let at = base.elapsed().as_micros() as u64;
                let mut p = [0u8; 160];
                p[..4].copy_from_slice(&i.to_be_bytes());
                p[4..12].copy_from_slice(&at.to_be_bytes());
                tx.send_to(&p, (to, 9000)).unwrap();
                std::thread::sleep(Duration::from_millis(1));
            }
        });
        let (mut got, mut reordered, mut max_seq) = (Vec::new(), 0, None::<u32>);
        let mut buf = [0u8; 2048];
        while let Ok((n, src)) = rx.recv_from(&mut buf) {
            assert_eq!(n, 160);
            assert_eq!(src, SocketAddr::from((from, 9001)), "the link changed the sender's address");
            let seq = u32::from_be_bytes(buf[..4].try_into().unwrap());
            let sent = u64::from_be_bytes(buf[4..12].try_into().unwrap());
            let delay_ms = (base.elapsed().as_micros() as u64 - sent) as f64 / 1000.0;
            if max_seq.is_some_and(|m| seq < m) {
                reordered += 1;
            }
            max_seq = Some(max_seq.map_or(seq, |m| m.max(seq)));
            got.push(delay_ms);
        }
        sender.join().unwrap();
        let lost = 1.0 - got.len() as f64 / f64::from(N);
        got.sort_by(f64::total_cmp);
        let (min, max, p95) = (got[0], got[got.len() - 1], got[got.len() * 95 / 100]);
        let mean = got.iter().sum::<f64>() / got.len() as f64;
        eprintln!(
            "{from} → {to}: {} of {N} arrived ({:.1} % lost), delay {min:.1}..{max:.1} ms (mean {mean:.1}, 95 % within \
             {p95:.1}), {reordered} reordered",
            got.len(),
            lost * 100.0
        );
        assert!((0.05..=0.15).contains(&lost), "{:.1} % lost where 10 % were to be", lost * 100.0);
        assert!(min >= 9.5, "a datagram came in {min:.1} ms over a link of 10 ms + jitter");
        // 10 + 50 ms, and what a busy machine adds to waking threads (the link's and ours).
        assert!(p95 <= 75.0, "5 % of the datagrams took over {p95:.1} ms over a link of 10 + 0–50 ms");
        assert!((25.0..=50.0).contains(&mean), "mean delay {mean:.1} ms, where 10 + 25 ms is expected");
        assert!(reordered >= 100, "only {reordered} of {N} datagrams overtaken with 50 ms jitter at 1 ms spacing");
    }
    let (ab, ba) = link.stats();
    eprintln!("link counters: A→B {ab:?}, B→A {ba:?}");
    assert!(ab.dropped > 0 && ba.dropped > 0 && ab.reordered > 0 && ba.reordered > 0);
}

/// 10 % loss and 0–50 ms jitter both ways on a call between two rooms with audio and video,
/// held `HUIS_FAULT_SECS` (60 s by default): the call stays up, each room's tone is heard at
/// the other in ≥ 90 % of 1 s windows, and both rooms keep decoding video (frames every 5 s).
#[test]
fn a_call_through_loss_and_jitter_stays_up_intelligible_and_decoding() {
    let secs: u64 = std::env::var("HUIS_FAULT_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let _serial = one_at_a_time();
    let _w = watchdog("loss and jitter", 150 + secs);
    let (r, ()) = LinkedRooms::start("", "", |_| (), |_, _| {});
    r.assert_in_call("before the impairment");
    let ms_b = speaker_ms(&r.b);
    let (va0, vb0) = (video_stats(&r.bus_a), video_stats(&r.bus_b));
    let (ca0, cb0) = (call_stats(&r.bus_a), call_stats(&r.bus_b));
    let link0 = r.link.stats();
    r.link.set(Impairment { loss: 0.10, delay: Duration::ZERO, jitter: Duration::from_millis(50) });
    let started = Instant::now();

    // Every 5 s: both still in the call, both decoding.
    let (mut prev_a, mut prev_b) = (stat(&va0, "frames_decoded"), stat(&vb0, "frames_decoded"));
    let (mut least_a, mut least_b) = (f64::MAX, f64::MAX);
    while started.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep((5 * SEC).min((Duration::from_secs(secs)).saturating_sub(started.elapsed())).max(SEC));
        let at = started.elapsed().as_secs();
        r.assert_in_call(&format!("{at} s into the loss and jitter"));
        let (fa, fb) = (stat(&video_stats(&r.bus_a), "frames_decoded"), stat(&video_stats(&r.bus_b), "frames_decoded"));
        assert!(
            fa > prev_a && fb > prev_b,
            "{at} s in: video stopped decoding (room A {prev_a} → {fa}, room B {prev_b} → {fb} frames)\n\
             room A video {}\nroom B video {}\n{}",
            video_stats(&r.bus_a),
            video_stats(&r.bus_b),
            r.logs()
        );
        least_a = least_a.min(fa - prev_a);
        least_b = least_b.min(fb - prev_b);
        (prev_a, prev_b) = (fa, fb);
    }
    let held = started.elapsed().as_secs_f64();
    // Read under the impairment still: the windows are all from the impaired time.
    let (tone_b, share_b) = tone_windows(&r.b, TONE_A, ms_b + 500);
    let (va, vb) = (video_stats(&r.bus_a), video_stats(&r.bus_b));
    let (ca, cb) = (call_stats(&r.bus_a), call_stats(&r.bus_b));
    let link = r.link.stats();
    r.link.set(Impairment::none());

    let d = |after: &Value, before: &Value, k: &str| stat(after, k) - stat(before, k);
    let loss_seen = |after: &Value, before: &Value, prefix: &str| {
        let lost = d(after, before, &format!("{prefix}packets_lost"));
        let got = d(after, before, &format!("{prefix}packets_received"));
        if lost + got > 0.0 { 100.0 * lost / (lost + got) } else { 0.0 }
    };
    let link_loss = |now: &impair::DirStats, then: &impair::DirStats| {
        let n = now.packets - then.packets;
        if n == 0 { 0.0 } else { 100.0 * (now.dropped - then.dropped) as f64 / n as f64 }
    };
    let mean_delay = |now: &impair::DirStats, then: &impair::DirStats| {
        let n = now.delivered - then.delivered;
        if n == 0 { 0.0 } else { (now.delay_ms_total - then.delay_ms_total) / n as f64 }
    };
    let figures = format!(
        "held {held:.0} s under 10 % loss + 0–50 ms jitter both ways\n\
         link: A→B {} packets, {:.1} % dropped, {} reordered, mean delay {:.1} ms (max {:.1}); \
         B→A {} packets, {:.1} % dropped, {} reordered, mean delay {:.1} ms (max {:.1})\n\
         tone A→B ({TONE_A} Hz): {:.1} % of {} 1 s windows\n\
         video decoded: room A {:.1} fps (least {least_a} frames in 5 s), room B {:.1} fps (least {least_b} in 5 s)\n\
         audio loss seen (before repair): room A {:.1} %, room B {:.1} %; jitter room A {:.1} ms, room B {:.1} ms; \
         RTT room A {:.0} ms, room B {:.0} ms\n\
         video loss seen: room A {:.1} %, room B {:.1} %; repaired by RTX: room A {}, room B {}; unrepaired: room A {}, \
         room B {}; keyframe requests sent: room A {}, room B {}; jitter buffer room A {} ms, room B {} ms",
        link.0.packets - link0.0.packets,
        link_loss(&link.0, &link0.0),
        link.0.reordered - link0.0.reordered,
        mean_delay(&link.0, &link0.0),
        link.0.max_delay_ms,
        link.1.packets - link0.1.packets,
        link_loss(&link.1, &link0.1),
        link.1.reordered - link0.1.reordered,
        mean_delay(&link.1, &link0.1),
        link.1.max_delay_ms,
        share_b * 100.0,
        tone_b.windows,
        d(&va, &va0, "frames_decoded") / held,
        d(&vb, &vb0, "frames_decoded") / held,
        loss_seen(&ca, &ca0, ""),
        loss_seen(&cb, &cb0, ""),
        stat(&ca, "jitter_ms"),
        stat(&cb, "jitter_ms"),
        stat(&ca, "rtt_ms"),
        stat(&cb, "rtt_ms"),
        loss_seen(&va, &va0, ""),
        loss_seen(&vb, &vb0, ""),
        d(&va, &va0, "retransmissions_received"),
        d(&vb, &vb0, "retransmissions_received"),
        d(&va, &va0, "packets_unrepaired"),
        d(&vb, &vb0, "packets_unrepaired"),
        d(&va, &va0, "keyframe_requests_sent"),
        d(&vb, &vb0, "keyframe_requests_sent"),
        stat(&va, "jitter_buffer_ms"),
        stat(&vb, "jitter_buffer_ms"),
    );
    eprintln!("net-faults figures:\n{figures}\nroom A call stats {ca}\nroom B call stats {cb}");
    let why =
        || format!("{figures}\nroom A video {va}\nroom B video {vb}\nroom A call {ca}\nroom B call {cb}\n{}", r.logs());

    // The link did what it was asked: about a tenth lost each way.
    for (dir, now, then) in [("A→B", &link.0, &link0.0), ("B→A", &link.1, &link0.1)] {
        let l = link_loss(now, then);
        assert!((7.0..=13.0).contains(&l), "the link dropped {l:.1} % {dir}, not about 10 %\n{}", why());
    }
    // Audio stays intelligible: the tone in ≥ 90 % of the 1 s windows, silent windows counting
    // against it.
    assert!(
        tone_b.windows as f64 >= held - 3.0,
        "room B played only {} s of the call: {tone_b:?}\n{}",
        tone_b.windows,
        why()
    );
    assert!(
        share_b >= 0.9,
        "room A's tone heard in room B in {:.1} % of 1 s windows: {tone_b:?}\n{}",
        share_b * 100.0,
        why()
    );
    // Video keeps decoding: checked every 5 s above; on the whole, a watchable rate.
    for (room, fps) in [("A", d(&va, &va0, "frames_decoded") / held), ("B", d(&vb, &vb0, "frames_decoded") / held)] {
        assert!(fps >= 10.0, "room {room} decoded {fps:.1} frames a second through loss and jitter\n{}", why());
    }
    // The loss is seen by the receivers (so the numbers above are about a lossy call).
    assert!(loss_seen(&cb, &cb0, "") >= 3.0, "room B saw no audio loss through a 10 % lossy link\n{}", why());

    huisctl_json(&r.bus_a, &["hangup"]);
    wait_status(&r.bus_b, &r.b, "room B idle after the hangup", 10 * SEC, |s| s["state"] == "idle");
}

/// A 20 s cut (nftables drops every packet in both namespaces) in a call between two rooms,
/// room B registered over TCP at Kamailio (keep-alives every 10 s, register_retry_base 2 s):
/// after the cut, either the call is still active with audio and video flowing again both
/// ways, or it ended with the RTP-timeout reason (call.media_timeout defaults to 30 s, so it
/// should survive); and room B is registered again by itself within 30 s of the link's return.
#[test]
fn a_20_s_cut_in_a_video_call_is_survived_and_registration_comes_back() {
    let _serial = one_at_a_time();
    let _w = watchdog("20 s cut in a video call", 200);
    let users = [("room", "roompw")];
    let account =
        "[account]\nregistrar = \"sip:{REGISTRAR}\"\ntransport = \"tcp\"\nuser = \"room\"\npassword = \"roompw\"\n";
    // Kamailio listens on 127.0.0.1 only, so it can neither reach nor be reached across the
    // link: it lives in room B's namespace (the callee's: a registered room's calls go through
    // its registrar, and this one could not relay to room B's link address). The cut drops
    // every packet in both namespaces, room B's way to its registrar included.
    let kport = 5090;
    let account = account.replace("{REGISTRAR}", &format!("127.0.0.1:{kport}"));
    let (r, k) = LinkedRooms::start(
        "keepalive_interval = 10\nregister_retry_base = 2",
        &account,
        |ns| Kamailio::start(ns, Some(kport), &users, Algorithm::Md5).expect("Kamailio in room B's namespace"),
        |bus, d| {
            wait_status(bus, d, "room B registered", 15 * SEC, registered);
        },
    );
    r.assert_in_call("before the cut");
    // The tone in two 1 s windows of the last three before the cut (the recording may have
    // only just begun on a busy machine: wait for it, up to 15 s).
    let heard_by = Instant::now() + 15 * SEC;
    loop {
        let (tone_b, _) = tone_windows(&r.b, TONE_A, speaker_ms(&r.b).saturating_sub(3000));
        if tone_b.matching >= 2 {
            break;
        }
        assert!(Instant::now() < heard_by, "room B does not hear room A before the cut: {tone_b:?}\n{}", r.logs());
        std::thread::sleep(SEC / 2);
    }

    let (nft_a, nft_b) = (Nft::new(&r.ns_a).unwrap(), Nft::new(&r.ns_b).unwrap());
    let registers_before = k.count("REGISTER", Some("room"));
    nft_a.cut().unwrap();
    nft_b.cut().unwrap();
    let cut_at = Instant::now();
    std::thread::sleep(20 * SEC);
    nft_a.heal().unwrap();
    nft_b.heal().unwrap();
    let healed_at = Instant::now();
    let ms_b = speaker_ms(&r.b);
    let rx_a = stat(&call_stats(&r.bus_a), "packets_received");
    eprintln!("cut for {:.1} s", healed_at.duration_since(cut_at).as_secs_f64());

    // Survived, with media again both ways; or ended for the RTP timeout, saying so.
    std::thread::sleep(2 * SEC);
    let (sa, sb) = (status(&r.bus_a), status(&r.bus_b));
    let outcome = if sa["state"] == "in-call" && sb["state"] == "in-call" {
        r.assert_in_call("after the cut");
        r.wait_video_both_ways("after the cut", 15);
        // Audio: room A's tone heard in room B for a few seconds after the link came back, and
        // room B's audio packets (silence, 50 a second) reaching room A again.
        std::thread::sleep(4 * SEC);
        let (tb, share_b) = tone_windows(&r.b, TONE_A, ms_b + 1000);
        let rx = stat(&call_stats(&r.bus_a), "packets_received") - rx_a;
        eprintln!("after the cut: room B hears {tb:?}; room A received {rx} audio packets");
        assert!(
            tb.windows >= 3 && share_b >= 0.75,
            "the call survived the cut but room A's audio is not heard in room B again: {tb:?}\n{}",
            r.logs()
        );
        assert!(rx >= 100.0, "room A received only {rx} audio packets in the 6 s after the cut\n{}", r.logs());
        "the call survived; audio and video flow again both ways"
    } else {
        // The room whose timer ran out says why; the other may have been told by its BYE.
        let timed_out = [&sa, &sb].iter().any(|s| s["last_error"].as_str().unwrap_or("").contains("(RTP timeout)"));
        assert!(
            sa["state"] == "idle" && sb["state"] == "idle" && timed_out,
            "after a 20 s cut the call is neither up in both rooms nor ended by the RTP timeout\n{}",
            r.logs()
        );
        "the call ended with the RTP timeout"
    };
    eprintln!("20 s cut: {outcome}");

    // Room B's registration comes back by itself, within 30 s of the link's return: the flow was found
    // dead by its keep-alive (10 s, pong within 10 s) during the cut, and retries back off from
    // 2 s (a wait of at most 16 s after the fourth failure in a row).
    let s = wait_status(&r.bus_b, &r.b, "room B registered again after the cut", 30 * SEC, |s| {
        registered(s) && k.count("REGISTER", Some("room")) > registers_before
    });
    let back_after = healed_at.elapsed().as_secs_f64();
    let log = r.b.log_text();
    assert!(
        log.contains("stopped answering keep-alives"),
        "room B's registration flow was not declared dead in a 20 s cut\n{log}"
    );
    eprintln!(
        "cut figures: {outcome}; registered again {back_after:.1} s after the link came back ({}); {} REGISTERs at Kamailio in all",
        s["registration"],
        k.count("REGISTER", Some("room"))
    );
    if sa["state"] == "in-call" {
        huisctl_json(&r.bus_a, &["hangup"]);
    }
}

/// Sends `sig` to `pid` and to all its children (Kamailio's workers are its children and hold
/// its sockets).
fn signal_tree(pid: u32, sig: libc::c_int) {
    let mut pids = vec![pid];
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(p) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
            // pid (comm) state ppid …: the comm may hold spaces, so read after its ')'.
            let ppid = stat.rsplit(')').next().and_then(|r| r.split_whitespace().nth(1)).and_then(|s| s.parse().ok());
            if ppid == Some(pid) {
                pids.push(p);
            }
        }
    }
    for p in pids {
        // SAFETY: a signal to processes this test started.
        unsafe { libc::kill(p as i32, sig) };
    }
}

/// The registrar goes away in the middle of the room's first registration: Kamailio is frozen
/// (SIGSTOP) before huisd starts, so the room's REGISTER reaches it and is never answered, and
/// killed a second later; `down` later it starts again on the same port. Meanwhile the room
/// retries with back-off and jitter (base 2 s: each wait between half and all of 2, 4, 8 … s,
/// so attempts come further and further apart), which is counted on the wire by nftables, in
/// huisd's log and in the restarted Kamailio's; and it registers by itself once Kamailio is
/// back, within `back_within`.
fn registrar_restarted_mid_registration(transport: &str, down: Duration, back_within: Duration) -> RegistrarFigures {
    let ns = NetNs::new();
    let bus = Bus::start();
    let nft = Nft::new(&ns).unwrap();
    let (kport, port) = (ns.port(), ns.port());
    let users = [("room", "roompw")];
    let mut k = Kamailio::start(&ns, Some(kport), &users, Algorithm::Md5).unwrap();
    // What counts as an attempt on the wire: a REGISTER datagram (first sends and RFC 3261
    // retransmissions alike) over UDP; a connection (SYN) over TCP.
    let attempt = match transport {
        "udp" => format!("udp sport {port} udp dport {kport}"),
        _ => format!("tcp dport {kport} tcp flags & (syn|ack) == syn"),
    };
    nft.counter("attempts", &attempt).unwrap();
    signal_tree(k.pid(), libc::SIGSTOP);
    let config = format!(
        "[sip]\nlisten = \"127.0.0.1:{port}\"\nregister_retry_base = 2\n[account]\nregistrar = \"sip:127.0.0.1:{kport}\"\n\
         transport = \"{transport}\"\nuser = \"room\"\npassword = \"roompw\"\n"
    );
    let d = huisd::start_in_blocking(&ns, &bus, &config);
    let deadline = Instant::now() + 10 * SEC;
    while nft.count("attempts").unwrap() == 0 {
        assert!(Instant::now() < deadline, "no REGISTER towards the registrar within 10 s\n{}", d.log_text());
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(SEC);
    let s = status(&bus);
    assert!(!registered(&s), "registered at a frozen registrar? {s}\n{}", d.log_text());
    eprintln!("[{transport}] mid-registration, registrar frozen: {}", s["registration"]);
    signal_tree(k.pid(), libc::SIGKILL);
    k.stop();
    let down_at = Instant::now();
    let sent_before = nft.count("attempts").unwrap();

    // Down: note when each counted failure shows in the log.
    let mut failures: Vec<(f64, u32, u64)> = Vec::new();
    while down_at.elapsed() < down {
        let lines = backoff_lines(&d.log_text());
        for &(n, ms) in &lines[failures.len().min(lines.len())..] {
            failures.push((down_at.elapsed().as_secs_f64(), n, ms));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let sent = nft.count("attempts").unwrap() - sent_before;
    let log = d.log_text();
    let why = || {
        format!(
            "failures (s after the registrar went, n in a row, next wait ms): {failures:?}\n{}\n{log}",
            nft.listing()
        )
    };
    eprintln!("[{transport}] registrar down {down:?}: {sent} attempts on the wire; failures {failures:?}");

    // Back-off with jitter: each wait between half and all of 2 s · 2^(n-1), so each is at
    // least as long as the one before, not all at their ceiling, and the next failure came
    // no sooner than announced.
    assert!(!failures.is_empty(), "no counted failure while the registrar was down\n{}", why());
    let first = failures[0].1;
    for (i, &(at, n, ms)) in failures.iter().enumerate() {
        assert_eq!(n, first + i as u32, "failures are counted in a row\n{}", why());
        let ceiling = 2000u64 << (n - 1).min(20);
        assert!(
            (ceiling / 2..=ceiling).contains(&ms),
            "failure {n}: next attempt in {ms} ms, outside [{}, {ceiling}]\n{}",
            ceiling / 2,
            why()
        );
        if i > 0 {
            let (prev_at, _, prev_ms) = failures[i - 1];
            assert!(ms >= prev_ms, "failure {n}: the wait shrank ({prev_ms} → {ms} ms)\n{}", why());
            assert!(
                at - prev_at >= prev_ms as f64 / 1000.0 - 0.3,
                "failure {n} came {:.1} s after the one before, which announced {prev_ms} ms\n{}",
                at - prev_at,
                why()
            );
        }
    }
    let jittered = failures.iter().filter(|&&(_, n, ms)| ms < (2000u64 << (n - 1).min(20)) * 95 / 100).count();
    let attempts = failures.len() as u64;
    match transport {
        "udp" => {
            // One transaction (11 datagrams at most, T1 500 ms to Timer F's 32 s) per attempt,
            // plus the one in flight when the registrar came back.
            assert!(
                attempts <= 2,
                "{attempts} failed attempts in {down:?} over UDP: each should take Timer F's 32 s\n{}",
                why()
            );
            assert!(
                sent <= 11 * (attempts + 1),
                "{sent} REGISTER datagrams for {attempts} failed attempts: a storm\n{}",
                why()
            );
        }
        _ => {
            // Refused at once: waits of 1–2, 2–4, 4–8, 8–16 s give 4 or 5 failures in 20 s, the
            // first of them the reset flow, so 3 or 4 connections, where a fixed 2 s retry
            // makes 10 and no back-off hundreds.
            assert!(
                (3..=6).contains(&sent),
                "{sent} connection attempts in {down:?}; back-off from 2 s makes 3 or 4\n{}",
                why()
            );
            assert!(jittered > 0, "no jitter: every wait at its ceiling\n{}", why());
            // Every connection on the wire is a counted failure (the first failure is the
            // reset of the flow the REGISTER was on; the last connection may still be pending).
            assert!(
                sent + 1 >= attempts && sent <= attempts + 1,
                "{sent} connections for {attempts} counted failures\n{}",
                why()
            );
        }
    }

    let k = Kamailio::start(&ns, Some(kport), &users, Algorithm::Md5).unwrap();
    let back_at = Instant::now();
    wait_status(&bus, &d, "registered again once the registrar was back", back_within, registered);
    let back_after = back_at.elapsed();
    let registers = k.count("REGISTER", Some("room"));
    eprintln!(
        "[{transport}] registered {:.1} s after the registrar came back; {registers} REGISTERs at the new Kamailio",
        back_after.as_secs_f64()
    );
    assert!(k.has_registered("room"), "{}", k.log_text());
    // The challenge and the answer to it, and a retransmission or two of the first.
    assert!(
        registers <= 4,
        "{registers} REGISTERs at the restarted registrar: a burst\n{}\n{}",
        k.log_text(),
        d.log_text()
    );
    RegistrarFigures { attempts, sent, back_after }
}

struct RegistrarFigures {
    attempts: u64,
    sent: u64,
    back_after: Duration,
}

/// Over UDP, the default: every attempt is a client transaction that lasts Timer F (32 s) with
/// its retransmissions, then back-off; the registrar is away 45 s and the room is registered
/// within 10 s of its return (the transaction in flight retransmits at least every 4 s).
#[test]
fn a_registrar_restarted_mid_registration_over_udp_gets_no_storm() {
    let _w = watchdog("registrar restarted mid-registration (UDP)", 120);
    let f = registrar_restarted_mid_registration("udp", 45 * SEC, 10 * SEC);
    eprintln!(
        "registrar figures (udp): {} failures, {} datagrams in 45 s, back {:?}",
        f.attempts, f.sent, f.back_after
    );
}

/// Over TCP: the frozen registrar's connection is reset when it dies, so the attempt in flight
/// fails at once, and so does each reconnection: the back-off alone spaces them. Away 20 s;
/// the next attempt is at most 32 s away when it comes back.
#[test]
fn a_registrar_restarted_mid_registration_over_tcp_is_met_with_backoff() {
    let _w = watchdog("registrar restarted mid-registration (TCP)", 120);
    let f = registrar_restarted_mid_registration("tcp", 20 * SEC, 35 * SEC);
    eprintln!(
        "registrar figures (tcp): {} failures, {} connections in 20 s, back {:?}",
        f.attempts, f.sent, f.back_after
    );
}
