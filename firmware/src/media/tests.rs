//! Two real sessions on 127.0.0.1 talking to each other, one pair per test; ports come from the OS.

use std::f32::consts::TAU;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;

const RATE: f32 = DSP_RATE as f32;
const WINDOW: usize = DSP_RATE as usize / 10; // 100 ms

fn local() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

struct Setup {
    /// Where both sessions bind: 127.0.0.1 unless a test says otherwise.
    bind: SocketAddr,
    codec: CodecParams,
    te: Option<TelephoneEvent>,
    rtcp_mux: bool,
    rtp_timeout: Option<Duration>,
    /// A's SRTP keys (B gets them swapped), and B's receive key if it should differ.
    srtp: Option<(SrtpParams, Option<Vec<u8>>)>,
    /// DTLS-SRTP for A and B.
    dtls: Option<(DtlsParams, DtlsParams)>,
}

impl Setup {
    fn new(codec: CodecParams) -> Self {
        Setup { bind: local(), codec, te: None, rtcp_mux: false, rtp_timeout: None, srtp: None, dtls: None }
    }

    fn start(self) -> (AudioSession, AudioSession) {
        let sa = RtpSockets::bind(self.bind).unwrap();
        let sb = RtpSockets::bind(self.bind).unwrap();
        let (addr_a, addr_b) = (sa.local_rtp(), sb.local_rtp());
        let params = |s, remote, srtp| {
            let mut p = AudioSessionParams::new(s, remote, self.codec.clone());
            p.srtp = srtp;
            p.telephone_event = self.te;
            p.rtcp_mux = self.rtcp_mux;
            p.rtcp_interval = Duration::from_millis(500);
            p.rtp_timeout = self.rtp_timeout;
            p.cname = "test@huis".into();
            p
        };
        let srtp_a = self.srtp.as_ref().map(|(s, _)| s.clone());
        let srtp_b = self.srtp.as_ref().map(|(s, b_recv)| SrtpParams {
            profile: s.profile,
            send_key: s.recv_key.clone(),
            recv_key: b_recv.clone().unwrap_or_else(|| s.send_key.clone()),
        });
        let (dtls_a, dtls_b) = self.dtls.clone().map_or((None, None), |(a, b)| (Some(a), Some(b)));
        let mut pa = params(sa, addr_b, srtp_a);
        pa.dtls = dtls_a;
        let mut pb = params(sb, addr_a, srtp_b);
        pb.dtls = dtls_b;
        let a = AudioSession::start(pa).expect("session A starts");
        let b = AudioSession::start(pb).expect("session B starts");
        (a, b)
    }
}

/// Play the DSP thread's part for `dur`: push 10 ms of `tone_hz` at A (if any) and pull 10 ms at B.
/// `each_frame` runs after every frame with the time since the start. Returns what B heard.
fn run(
    a: &AudioSession,
    b: &AudioSession,
    dur: Duration,
    tone_hz: f32,
    mut each_frame: impl FnMut(Duration),
) -> Vec<f32> {
    let (tx, rx) = (a.sender(), b.receiver());
    let frames = (dur.as_millis() / 10) as usize;
    let mut heard = vec![0f32; frames * DSP_FRAME];
    let mut frame = [0f32; DSP_FRAME];
    let start = Instant::now();
    for k in 0..frames {
        for (i, s) in frame.iter_mut().enumerate() {
            let n = (k * DSP_FRAME + i) as f32;
            *s = 0.5 * (TAU * tone_hz * n / RATE).sin();
        }
        tx.push(&frame);
        rx.pull(&mut heard[k * DSP_FRAME..(k + 1) * DSP_FRAME]);
        each_frame(start.elapsed());
        let due = start + Duration::from_millis(10 * (k as u64 + 1));
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    heard
}

fn goertzel_power(x: &[f32], hz: f32) -> f32 {
    let coeff = 2.0 * (TAU * hz / RATE).cos();
    let (mut s1, mut s2) = (0f32, 0f32);
    for &v in x {
        let s0 = v + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    s1 * s1 + s2 * s2 - coeff * s1 * s2
}

fn dominant_hz(x: &[f32]) -> f32 {
    (5..=390).map(|i| i as f32 * 10.0).max_by(|&f, &g| goertzel_power(x, f).total_cmp(&goertzel_power(x, g))).unwrap()
}

fn rms(x: &[f32]) -> f32 {
    (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt()
}

/// 100 ms windows from 300 ms after the first sound to the end.
fn windows_after_onset(heard: &[f32]) -> Vec<&[f32]> {
    let onset = heard.iter().position(|v| v.abs() > 0.01).expect("B heard something");
    heard[onset + 3 * WINDOW..].chunks_exact(WINDOW).collect()
}

fn assert_tone(heard: &[f32], hz: f32, what: &str) {
    let windows = windows_after_onset(heard);
    // Dropouts: 10 ms frames that went (nearly) silent in the middle of the tone.
    let frames: Vec<&[f32]> = windows.iter().flat_map(|w| w.chunks_exact(DSP_FRAME)).collect();
    let holes = frames.iter().filter(|f| rms(f) < 0.1).count();
    assert!(holes * 5 <= frames.len(), "{what}: {holes} of {} 10 ms frames dropped out", frames.len());
    assert!(windows.len() >= 10, "{what}: only {} windows of audio", windows.len());
    let good = windows.iter().filter(|w| rms(w) > 0.1 && (dominant_hz(w) - hz).abs() <= 30.0).count();
    assert!(
        good * 10 >= windows.len() * 8,
        "{what}: {good} of {} windows carry {hz} Hz (dominant: {:?})",
        windows.len(),
        windows.iter().map(|w| dominant_hz(w)).collect::<Vec<_>>()
    );
}

/// What a failed audio check prints: both ends' statistics, underruns included.
fn diag(what: &str, a: &AudioSession, b: &AudioSession) -> String {
    format!("{what}\n  A: {:?}\n  B: {:?}\n", a.stats(), b.stats())
}

fn wait_stats(s: &AudioSession, limit: Duration, ok: impl Fn(&CallStats) -> bool) -> CallStats {
    let until = Instant::now() + limit;
    loop {
        let st = s.stats();
        if ok(&st) || Instant::now() > until {
            return st;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn opus_carries_a_tone_and_reports_stats_with_rtt() {
    let (a, b) = Setup::new(CodecParams::opus(111)).start();
    let heard = run(&a, &b, Duration::from_millis(3000), 1000.0, |_| {});
    assert_tone(&heard, 1000.0, &diag("opus", &a, &b));
    let sa = wait_stats(&a, Duration::from_secs(3), |s| s.rtt_ms.is_some());
    let sb = b.stats();
    assert_eq!(sa.codec, AudioCodec::Opus);
    assert!(sa.packets_sent >= 100, "A sent {sa:?}");
    assert!(sb.packets_received >= 100, "B received {sb:?}");
    assert!(sa.bitrate_kbps > 5.0, "A's bitrate {sa:?}");
    let rtt = sa.rtt_ms.expect("A learns the round-trip time from B's receiver reports");
    assert!((0.0..200.0).contains(&rtt), "loopback RTT {rtt} ms");
    assert!(sb.jitter_ms < 100.0 && sb.packets_lost < 10, "B's view {sb:?}");
    a.stop();
    b.stop();
}

#[test]
fn ipv6_loopback_carries_a_tone() {
    let mut setup = Setup::new(CodecParams::pcmu());
    setup.bind = "[::1]:0".parse().unwrap();
    let (a, b) = setup.start();
    let heard = run(&a, &b, Duration::from_millis(2000), 440.0, |_| {});
    assert_tone(&heard, 440.0, &diag("PCMU over IPv6", &a, &b));
    let sb = wait_stats(&b, Duration::from_secs(2), |s| s.rtcp_received > 0);
    assert!(sb.rtcp_received > 0, "RTCP over IPv6 too: {sb:?}");
}

#[test]
fn g722_carries_a_tone() {
    let (a, b) = Setup::new(CodecParams::g722()).start();
    let heard = run(&a, &b, Duration::from_millis(2500), 1000.0, |_| {});
    assert_tone(&heard, 1000.0, &diag("G.722", &a, &b));
}

/// DTMF digits sent at A come out at B in order (the tones themselves are checked elsewhere).
fn dtmf_in_order(codec: CodecParams, te: TelephoneEvent, what: &str) {
    let mut setup = Setup::new(codec);
    setup.te = Some(te);
    let (a, b) = setup.start();
    let mut sent = false;
    // rtpdtmfsrc makes each digit 250 ms plus a 100 ms gap: three digits take about 1.1 s.
    run(&a, &b, Duration::from_millis(2200), 440.0, |t| {
        if !sent && t > Duration::from_millis(500) {
            a.send_dtmf("1#9").unwrap();
            sent = true;
        }
    });
    let digits: String = std::iter::from_fn(|| b.poll_event())
        .filter_map(|e| match e {
            MediaEvent::Dtmf { digit } => Some(digit),
            _ => None,
        })
        .collect();
    assert_eq!(digits, "1#9", "{what}");
}

#[test]
fn pcmu_dtmf_arrives_in_order() {
    dtmf_in_order(CodecParams::pcmu(), TelephoneEvent::new(101, 8000), "PCMU");
}

#[test]
fn opus_dtmf_at_48khz_arrives_in_order() {
    dtmf_in_order(CodecParams::opus(111), TelephoneEvent::new(110, 48_000), "opus");
}

#[test]
fn handles_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<AudioSession>();
    send_sync::<AudioTx>();
    send_sync::<AudioRx>();
    send_sync::<MediaEvent>();
}

#[test]
fn pcma_mute_keeps_rtp_flowing_with_silence() {
    let (a, b) = Setup::new(CodecParams::pcma()).start();
    let mut at_mute = None;
    let heard = run(&a, &b, Duration::from_millis(3000), 440.0, |t| {
        if at_mute.is_none() && t >= Duration::from_millis(1500) {
            a.set_muted(true);
            at_mute = Some(b.stats().packets_received);
        }
    });
    assert!(a.is_muted());
    let before = at_mute.unwrap();
    let after = b.stats().packets_received;
    // 1.5 s at 20 ms ptime is 75 packets; allow for scheduling on a loaded machine.
    assert!(after >= before + 50, "B received {before} packets before the mute and {after} after 1.5 s");
    let (loud, muted) = heard.split_at(DSP_FRAME * 150);
    assert_tone(loud, 440.0, &diag("PCMA before mute", &a, &b));
    let tail = &muted[DSP_FRAME * 40..]; // 400 ms for the pipeline to drain
    assert!(rms(tail) < 0.005, "muted audio has rms {}", rms(tail));
}

#[test]
fn rtcp_mux_carries_audio_and_rtcp_on_one_port() {
    let mut setup = Setup::new(CodecParams::opus(96));
    setup.rtcp_mux = true;
    let (a, b) = setup.start();
    let heard = run(&a, &b, Duration::from_millis(2500), 1000.0, |_| {});
    assert_tone(&heard, 1000.0, &diag("opus with rtcp-mux", &a, &b));
    let sa = wait_stats(&a, Duration::from_secs(3), |s| s.rtt_ms.is_some());
    assert!(sa.rtt_ms.is_some(), "RTCP over the RTP port gives an RTT: {sa:?}");
}

fn srtp_keys() -> SrtpParams {
    SrtpParams {
        profile: SrtpProfile::AesCm128HmacSha1_80,
        send_key: (0..30).collect(),
        recv_key: (100..130).collect(),
    }
}

#[test]
fn srtp_carries_a_tone_and_rtcp() {
    let mut setup = Setup::new(CodecParams::opus(111));
    setup.srtp = Some((srtp_keys(), None));
    setup.rtcp_mux = true;
    let (a, b) = setup.start();
    let heard = run(&a, &b, Duration::from_millis(2500), 1000.0, |_| {});
    assert_tone(&heard, 1000.0, &diag("opus over SRTP", &a, &b));
    let sa = wait_stats(&a, Duration::from_secs(3), |s| s.rtt_ms.is_some());
    assert!(sa.rtt_ms.is_some(), "SRTCP carries the receiver reports: {sa:?}");
    assert!(format!("{:?}", srtp_keys()).contains("redacted"), "keys never reach a log");
}

#[test]
fn srtp_with_a_wrong_key_lets_nothing_through() {
    let mut setup = Setup::new(CodecParams::pcmu());
    setup.srtp = Some((srtp_keys(), Some(vec![7; 30])));
    let (a, b) = setup.start();
    let heard = run(&a, &b, Duration::from_millis(1200), 440.0, |_| {});
    assert!(heard.iter().all(|&v| v == 0.0), "B decrypted nothing");
    assert_eq!(b.stats().packets_received, 0, "forged packets never reach the RTP session");
    assert!(a.stats().packets_received > 20, "the other direction's keys are right");
}

#[test]
fn every_sdes_suite_carries_a_tone() {
    for profile in [SrtpProfile::AesCm128HmacSha1_32, SrtpProfile::AeadAes128Gcm, SrtpProfile::AeadAes256Gcm] {
        let n = profile.key_len() as u8;
        let mut setup = Setup::new(CodecParams::pcmu());
        setup.srtp =
            Some((SrtpParams { profile, send_key: (0..n).collect(), recv_key: (100..100 + n).collect() }, None));
        setup.rtcp_mux = true;
        let (a, b) = setup.start();
        assert_eq!(a.protection(), Protection::Sdes(profile));
        let heard = run(&a, &b, Duration::from_millis(2000), 1000.0, |_| {});
        assert_tone(&heard, 1000.0, &diag(profile.name(), &a, &b));
    }
}

/// Two certificates of our own kind (ECDSA P-256 by openssl), as two rooms have.
fn dtls_pair(a_client: bool) -> (DtlsParams, DtlsParams) {
    let (ca, cb) = (DtlsCertificate::generate().unwrap(), DtlsCertificate::generate().unwrap());
    assert!(ca.pem.is_some(), "openssl makes the certificate (Debian package openssl)");
    assert_ne!(ca.fingerprint, cb.fingerprint);
    (
        DtlsParams { pem: ca.pem.clone(), client: a_client, remote_fingerprint: cb.fingerprint },
        DtlsParams { pem: cb.pem.clone(), client: !a_client, remote_fingerprint: ca.fingerprint },
    )
}

fn wait_protection(s: &AudioSession, limit: Duration) -> Protection {
    let until = Instant::now() + limit;
    loop {
        let p = s.protection();
        if p != Protection::DtlsHandshaking || Instant::now() > until {
            return p;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// DTLS-SRTP both ways, with and without rtcp-mux (then RTCP has its own handshake): the tone
/// arrives, each side names the suite, and RTCP flows (an RTT).
#[test]
fn dtls_srtp_carries_a_tone_with_and_without_rtcp_mux() {
    for rtcp_mux in [true, false] {
        let mut setup = Setup::new(CodecParams::opus(111));
        setup.rtcp_mux = rtcp_mux;
        setup.dtls = Some(dtls_pair(rtcp_mux));
        let (a, b) = setup.start();
        let heard = run(&a, &b, Duration::from_millis(3000), 1000.0, |_| {});
        let (pa, pb) = (wait_protection(&a, Duration::from_secs(5)), wait_protection(&b, Duration::from_secs(5)));
        eprintln!("rtcp-mux {rtcp_mux}: A {pa:?}, B {pb:?}");
        for p in [&pa, &pb] {
            assert!(matches!(p, Protection::Dtls { .. }), "rtcp-mux {rtcp_mux}: {p:?}");
            assert!(p.label().starts_with("DTLS-SRTP AES_CM_128_HMAC_SHA1_"), "{}", p.label());
        }
        assert_tone(&heard, 1000.0, &diag(&format!("DTLS-SRTP, rtcp-mux {rtcp_mux}"), &a, &b));
        let sa = wait_stats(&a, Duration::from_secs(3), |s| s.rtt_ms.is_some());
        assert!(sa.rtt_ms.is_some(), "rtcp-mux {rtcp_mux}: SRTCP carries the reports: {sa:?}");
        a.stop();
        b.stop();
    }
}

/// A far end whose certificate is not the one its SDP named: no media passes, and the
/// transport says why.
#[test]
fn dtls_srtp_with_a_wrong_fingerprint_passes_nothing() {
    let mut setup = Setup::new(CodecParams::pcmu());
    setup.rtcp_mux = true;
    let (pa, mut pb) = dtls_pair(true);
    pb.remote_fingerprint[0] ^= 1;
    setup.dtls = Some((pa, pb));
    let (a, b) = setup.start();
    let heard = run(&a, &b, Duration::from_millis(2000), 440.0, |_| {});
    assert!(heard.iter().all(|&v| v == 0.0), "B played nothing");
    let p = wait_protection(&b, Duration::from_secs(5));
    assert!(
        matches!(&p, Protection::DtlsFailed(why) if why.contains("does not match the fingerprint")),
        "B refuses A's certificate: {p:?}"
    );
    assert!(!p.is_encrypted());
    assert_eq!(b.stats().packets_received, 0, "nothing reached B's RTP session");
}

#[test]
fn hold_stops_rtp_raises_timeout_and_resume_restores_it() {
    let mut setup = Setup::new(CodecParams::pcmu());
    setup.rtp_timeout = Some(Duration::from_millis(800));
    let (a, b) = setup.start();
    run(&a, &b, Duration::from_millis(800), 440.0, |_| {});
    a.set_direction(Direction::Inactive);
    assert_eq!(a.direction(), Direction::Inactive);
    std::thread::sleep(Duration::from_millis(300));
    let held = b.stats();
    run(&a, &b, Duration::from_millis(1500), 440.0, |_| {});
    let still = b.stats();
    assert!(still.packets_received <= held.packets_received + 2, "RTP kept arriving on hold: {held:?} → {still:?}");
    assert!(still.rtcp_received > held.rtcp_received, "RTCP keeps flowing on hold: {held:?} → {still:?}");
    let still = still.packets_received;
    a.set_direction(Direction::SendRecv);
    run(&a, &b, Duration::from_millis(800), 440.0, |_| {});
    assert!(b.stats().packets_received > still + 20, "RTP resumes");
    let events: Vec<MediaEvent> = std::iter::from_fn(|| b.poll_event()).collect();
    let timeout = events.iter().position(|e| matches!(e, MediaEvent::RtpTimeout { .. }));
    let resumed = events.iter().position(|e| matches!(e, MediaEvent::RtpResumed));
    assert!(timeout.is_some() && resumed > timeout, "events: {events:?}");

    // B holds A with sendonly: A's packets still arrive (and are counted) but are not played.
    b.set_direction(Direction::SendOnly);
    let before = b.stats().packets_received;
    let heard = run(&a, &b, Duration::from_millis(600), 440.0, |_| {});
    assert!(heard[DSP_FRAME * 20..].iter().all(|&v| v == 0.0), "a held call plays nothing");
    assert!(b.stats().packets_received > before + 10);
}

#[test]
fn set_remote_moves_the_stream_to_a_new_far_end() {
    let sa = RtpSockets::bind(local()).unwrap();
    let (sb, sc) = (RtpSockets::bind(local()).unwrap(), RtpSockets::bind(local()).unwrap());
    let (addr_a, addr_b, addr_c) = (sa.local_rtp(), sb.local_rtp(), sc.local_rtp());
    let start = |s, remote| AudioSession::start(AudioSessionParams::new(s, remote, CodecParams::pcmu())).unwrap();
    let (a, b, c) = (start(sa, addr_b), start(sb, addr_a), start(sc, addr_a));
    run(&a, &b, Duration::from_millis(600), 440.0, |_| {});
    a.set_remote(addr_c, None).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let b_before = b.stats().packets_received;
    let heard_at_c = run(&a, &c, Duration::from_millis(1800), 440.0, |_| {});
    assert_tone(&heard_at_c, 440.0, &diag("after set_remote, at C", &a, &c));
    assert!(b.stats().packets_received <= b_before + 1, "B no longer gets A's packets");
    assert!(a.set_remote("[::1]:4000".parse().unwrap(), None).is_err(), "IPv6 from an IPv4 socket");
}

/// Stopping drains, sends an RTCP BYE the far end sees, joins every thread and frees the ports,
/// quickly: on plain RTP, and with DTLS-SRTP with and without rtcp-mux (there the BYE leaves
/// encrypted through dtlssrtpenc, which never passes the EOS on to the socket).
#[test]
fn stop_is_quick_and_says_bye() {
    for dtls in [None, Some(true), Some(false)] {
        let what = match dtls {
            None => "plain RTP",
            Some(true) => "DTLS-SRTP with rtcp-mux",
            Some(false) => "DTLS-SRTP without rtcp-mux",
        };
        let mut setup = Setup::new(CodecParams::pcmu());
        if let Some(mux) = dtls {
            setup.rtcp_mux = mux;
            setup.dtls = Some(dtls_pair(true));
        }
        let (a, b) = setup.start();
        run(&a, &b, Duration::from_millis(700), 440.0, |_| {});
        if dtls.is_some() {
            let p = wait_protection(&a, Duration::from_secs(5));
            assert!(matches!(p, Protection::Dtls { .. }), "{what}: {p:?}");
            run(&a, &b, Duration::from_millis(300), 440.0, |_| {});
        }
        let tx = a.sender();
        let port = a.local_rtp().port();
        assert!(!our_threads(port).is_empty(), "the session's threads carry its port in their names");
        let t = Instant::now();
        a.stop();
        let stop_took = t.elapsed();
        assert!(stop_took < Duration::from_millis(1500), "{what}: stop took {stop_took:?}");
        assert!(!tx.is_open());
        assert!(a.is_stopped());
        a.stop(); // idempotent, and the session object may outlive its media (e.g. in an Arc)
        assert!(matches!(a.send_dtmf("1"), Err(MediaError::NoTelephoneEvent)));
        assert_eq!(our_threads(port), Vec::<String>::new(), "{what}: stop joins every thread of the session");
        let again = RtpSockets::bind(SocketAddr::new([127, 0, 0, 1].into(), port));
        assert!(again.is_ok(), "{what}: stop closes the RTP and RTCP sockets: {:?}", again.err());
        drop(again);
        let until = Instant::now() + Duration::from_secs(2);
        let mut bye = false;
        while !bye && Instant::now() < until {
            bye = std::iter::from_fn(|| b.poll_event()).any(|e| matches!(e, MediaEvent::RemoteBye { .. }));
            std::thread::sleep(Duration::from_millis(50));
        }
        let sent = a.bye_left();
        assert!(bye, "{what}: B saw A's RTCP BYE (A saw it leave: {sent}; stop took {stop_took:?})");
        // What stop waits for: had A not seen its BYE leave, every stop would wait out its budget.
        assert!(sent, "{what}: A saw its BYE leave (stop took {stop_took:?})");
        b.stop();
    }
}

#[test]
fn sockets_pair_up_and_carry_dscp() {
    let s = RtpSockets::bind(local()).unwrap();
    assert_eq!(s.local_rtp().port() % 2, 0);
    assert_eq!(s.local_rtcp().port(), s.local_rtp().port() + 1);
    s.set_dscp(46);
    assert_eq!(socket2::SockRef::from(&s.rtp).tos_v4().unwrap(), 46 << 2);
    let busy = s.local_rtp();
    assert!(matches!(RtpSockets::bind(busy), Err(MediaError::Bind { .. })));
}

#[test]
fn bad_parameters_are_refused_with_reasons() {
    let s = RtpSockets::bind(local()).unwrap();
    let remote = "127.0.0.1:40000".parse().unwrap();
    let mut p = AudioSessionParams::new(s, remote, CodecParams::opus(96));
    p.ptime_ms = 30;
    let err = AudioSession::start(p).err().expect("opus has no 30 ms frames");
    assert!(err.to_string().contains("Opus frame size"), "{err}");

    let s = RtpSockets::bind(local()).unwrap();
    let mut p = AudioSessionParams::new(s, remote, CodecParams::pcmu());
    p.telephone_event = Some(TelephoneEvent::new(0, 8000));
    assert!(matches!(AudioSession::start(p), Err(MediaError::InvalidParams(_))));
}

#[test]
fn dtmf_needs_a_negotiated_telephone_event() {
    let (a, _b) = Setup::new(CodecParams::pcmu()).start();
    assert!(matches!(a.send_dtmf("1"), Err(MediaError::NoTelephoneEvent)));
    assert!(matches!(a.send_dtmf("1x"), Err(MediaError::InvalidDtmf('x'))));
}

/// Names of this process's threads that belong to the session on `port`.
fn our_threads(port: u16) -> Vec<String> {
    let suffix = format!("-{port}");
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|c| c.trim().to_owned())
        .filter(|c| c.ends_with(&suffix))
        .collect()
}

struct Rtp {
    pt: u8,
    marker: bool,
    seq: u16,
    ts: u32,
    ssrc: u32,
    payload: Vec<u8>,
}

fn parse_rtp(d: &[u8]) -> Option<Rtp> {
    if d.len() < 12 || d[0] >> 6 != 2 || (192..=223).contains(&d[1]) {
        return None;
    }
    let cc = usize::from(d[0] & 0x0f);
    Some(Rtp {
        pt: d[1] & 0x7f,
        marker: d[1] & 0x80 != 0,
        seq: u16::from_be_bytes([d[2], d[3]]),
        ts: u32::from_be_bytes([d[4], d[5], d[6], d[7]]),
        ssrc: u32::from_be_bytes([d[8], d[9], d[10], d[11]]),
        payload: d.get(12 + 4 * cc..)?.to_vec(),
    })
}

fn rtp_packet(pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt | if marker { 0x80 } else { 0 }];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// A hand-written peer on a plain UDP socket checks what goes on the wire, both ways, the way a
/// gateway would see it: PCMU every 20 ms with one SSRC and consecutive sequence numbers, and
/// RFC 4733 events with the marker on the first packet, one timestamp per event and three end
/// packets; and a gateway's events (which never went through GStreamer) are reported.
#[test]
fn wire_level_pcmu_and_rfc4733_both_ways() {
    let peer = RtpSockets::bind(local()).unwrap();
    let ours = RtpSockets::bind(local()).unwrap();
    let our_addr = ours.local_rtp();
    let mut p = AudioSessionParams::new(ours, peer.local_rtp(), CodecParams::pcmu());
    p.telephone_event = Some(TelephoneEvent::new(101, 8000));
    let a = AudioSession::start(p).unwrap();
    let sock = &peer.rtp;
    sock.set_read_timeout(Some(Duration::from_millis(50))).unwrap();

    // The gateway talks: 10 PCMU packets, event '7' (4 updates, 3 end packets), 10 more PCMU.
    let (ssrc, mut seq) = (0x1234_5678u32, 1000u16);
    let event_ts = 8000 + 10 * 160;
    for i in 0..27u32 {
        let ts = 8000 + i * 160;
        let pkt = if (10..17).contains(&i) {
            let k = (i - 10) as u16;
            let end = k >= 4;
            let [d0, d1] = (160 * (k.min(4) + 1)).to_be_bytes();
            rtp_packet(101, k == 0, seq, event_ts, ssrc, &[7, if end { 0x80 | 10 } else { 10 }, d0, d1])
        } else {
            rtp_packet(0, false, seq, ts, ssrc, &[0xff; 160])
        };
        sock.send_to(&pkt, our_addr).unwrap();
        seq = seq.wrapping_add(1);
        std::thread::sleep(Duration::from_millis(20));
    }

    // Meanwhile our session sent; now it sends '5' while we listen.
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 1500];
    let mut dtmf_sent = false;
    while start.elapsed() < Duration::from_millis(1600) {
        if !dtmf_sent && start.elapsed() > Duration::from_millis(300) {
            a.send_dtmf("5").unwrap();
            dtmf_sent = true;
        }
        if let Ok((n, _)) = sock.recv_from(&mut buf)
            && let Some(rtp) = parse_rtp(&buf[..n])
        {
            got.push(rtp);
        }
    }

    let dtmf: Vec<MediaEvent> = std::iter::from_fn(|| a.poll_event()).collect();
    assert!(
        matches!(dtmf.as_slice(), [MediaEvent::Dtmf { digit: '7' }]),
        "the gateway's '7' is reported once: {dtmf:?}"
    );

    assert!(got.len() >= 60, "about 50 packets a second: {} in 1.6 s", got.len());
    assert!(got.iter().all(|r| r.ssrc == got[0].ssrc), "one SSRC for audio and events");
    for w in got.windows(2) {
        assert_eq!(w[1].seq, w[0].seq.wrapping_add(1), "consecutive sequence numbers");
    }
    let audio: Vec<&Rtp> = got.iter().filter(|r| r.pt == 0).collect();
    assert!(audio.iter().all(|r| r.payload.len() == 160), "20 ms of PCMU per packet");
    let steady = audio.windows(2).filter(|w| w[1].ts.wrapping_sub(w[0].ts) == 160).count();
    assert!(steady * 10 >= (audio.len() - 1) * 8, "timestamps advance 160 per packet");

    let events: Vec<&Rtp> = got.iter().filter(|r| r.pt == 101).collect();
    assert!(events.len() >= 5, "an event spans several packets: {}", events.len());
    assert!(events[0].marker, "the first packet of an event has the marker bit");
    assert!(events.iter().all(|r| r.ts == events[0].ts), "one timestamp per event");
    let parsed: Vec<_> = events.iter().map(|r| super::dtmf::parse_event(&r.payload).unwrap()).collect();
    assert!(parsed.iter().all(|e| e.event == 5));
    let ends: Vec<_> = parsed.iter().filter(|e| e.end).collect();
    assert_eq!(ends.len(), 3, "the end packet goes out three times");
    assert!(ends.iter().all(|e| e.duration == ends[0].duration));
    assert!(u32::from(ends[0].duration) >= 8 * 100, "the tone lasts at least 100 ms");
    assert!(parsed.windows(2).all(|w| w[1].duration >= w[0].duration), "durations grow");
}

/// What a gateway hears of a dial string: each event's digit, start and end on the RTP clock.
fn events_heard(digits: &str, listen: Duration) -> Vec<(char, u32, u32)> {
    let peer = RtpSockets::bind(local()).unwrap();
    let ours = RtpSockets::bind(local()).unwrap();
    let mut p = AudioSessionParams::new(ours, peer.local_rtp(), CodecParams::pcmu());
    p.telephone_event = Some(TelephoneEvent::new(101, 8000));
    let a = AudioSession::start(p).unwrap();
    peer.rtp.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    a.send_dtmf(digits).unwrap();
    let start = Instant::now();
    let mut buf = [0u8; 1500];
    // Per event timestamp: digit and the longest duration heard (the end packets').
    let mut events: Vec<(char, u32, u32)> = Vec::new();
    while start.elapsed() < listen {
        if let Ok((n, _)) = peer.rtp.recv_from(&mut buf)
            && let Some(rtp) = parse_rtp(&buf[..n])
            && rtp.pt == 101
            && let Some(ev) = super::dtmf::parse_event(&rtp.payload)
        {
            let digit = super::dtmf::char_of_event(ev.event).unwrap_or('?');
            match events.iter_mut().find(|e| e.1 == rtp.ts) {
                Some(e) => e.2 = e.2.max(rtp.ts.wrapping_add(u32::from(ev.duration))),
                None => events.push((digit, rtp.ts, rtp.ts.wrapping_add(u32::from(ev.duration)))),
            }
        }
    }
    events
}

/// A `,` is one second of silence on the wire, also after a run of digits (a gateway PIN of the
/// form "meeting id, pause, PIN"): rtpdtmfsrc makes tones longer than asked, and a sequencer
/// that paced itself by the clock fell behind until the backlog ate the pause. Measured on the
/// RTP timestamps the receiving peer sees.
#[test]
fn a_comma_is_a_second_of_silence_between_the_tones_heard() {
    let events = events_heard("12345678,90#", Duration::from_millis(8000));
    let heard: String = events.iter().map(|e| e.0).collect();
    assert_eq!(heard, "1234567890#", "the digits arrive in order: {events:?}");
    let silences: Vec<f64> = events.windows(2).map(|w| f64::from(w[1].1.wrapping_sub(w[0].2)) / 8000.0).collect();
    for (i, s) in silences.iter().enumerate() {
        let (before, after) = (events[i].0, events[i + 1].0);
        if before == '8' {
            assert!((0.97..=1.06).contains(s), "the pause between 8 and 9 is {s:.3} s, not 1 s: {silences:.3?}");
        } else {
            assert!((0.05..=0.2).contains(s), "the gap between {before} and {after} is {s:.3} s: {silences:.3?}");
        }
    }
    // Pauses add up, and one at the start delays the first tone.
    let events = events_heard(",1,,2", Duration::from_millis(4500));
    assert_eq!(events.iter().map(|e| e.0).collect::<String>(), "12", "{events:?}");
    let s = f64::from(events[1].1.wrapping_sub(events[0].2)) / 8000.0;
    assert!((1.97..=2.06).contains(&s), "two commas are {s:.3} s of silence, not 2 s: {events:?}");
}

#[test]
fn sessions_come_and_go_without_leaking_threads_or_ports() {
    for _ in 0..4 {
        let (a, b) = Setup::new(CodecParams::g722()).start();
        let ports = [a.local_rtp().port(), b.local_rtp().port()];
        run(&a, &b, Duration::from_millis(200), 1000.0, |_| {});
        a.stop();
        drop(b);
        for port in ports {
            assert_eq!(our_threads(port), Vec::<String>::new());
            assert!(RtpSockets::bind(SocketAddr::new([127, 0, 0, 1].into(), port)).is_ok());
        }
    }
}

/// Another program as the far end: gst-launch-1.0 sends stereo 48 kHz Opus, as a desktop
/// softphone would with `stereo=1`; we must play it as mono 16 kHz.
#[test]
fn stereo_opus_from_an_external_sender_plays_as_mono() {
    let far = RtpSockets::bind(local()).unwrap();
    let ours = RtpSockets::bind(local()).unwrap();
    let port = ours.local_rtp().port();
    let session = AudioSession::start(AudioSessionParams::new(ours, far.local_rtp(), CodecParams::opus(111))).unwrap();
    let pipeline = format!(
        "audiotestsrc is-live=true freq=1000 volume=0.5 samplesperbuffer=960 num-buffers=150 \
         ! audio/x-raw,rate=48000,channels=2 ! opusenc ! rtpopuspay pt=111 \
         ! udpsink host=127.0.0.1 port={port}"
    );
    let mut child = std::process::Command::new("gst-launch-1.0")
        .arg("-q")
        .args(pipeline.split_whitespace())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("gst-launch-1.0 (Debian package gstreamer1.0-tools) runs");
    let rx = session.receiver();
    let mut heard = vec![0f32; DSP_FRAME * 280];
    let start = Instant::now();
    for (k, frame) in heard.chunks_exact_mut(DSP_FRAME).enumerate() {
        rx.pull(frame);
        if let Some(wait) = (start + Duration::from_millis(10 * (k as u64 + 1))).checked_duration_since(Instant::now())
        {
            std::thread::sleep(wait);
        }
    }
    let status = child.wait().unwrap();
    assert!(status.success(), "gst-launch-1.0 failed: {status}");
    assert_tone(&heard, 1000.0, "stereo opus from gst-launch");
    let lost = session.stats().packets_lost;
    assert!(lost < 5, "{lost} packets lost on loopback");
}

/// RFC 5104 §4.2.2: a TMMBR from the network caps our video bitrate and is acknowledged with a
/// TMMBN naming the requester. The peer here is two plain UDP sockets: what it sends is built
/// by hand, as a far end's RTCP would arrive.
#[test]
fn video_tmmbr_caps_the_bitrate_and_gets_a_tmmbn() {
    tmmbr_caps_the_bitrate_and_gets_a_tmmbn(false);
}

/// The same with rtcp-mux: the TMMBR arrives on our RTP port, the TMMBN leaves from it to the
/// peer's RTP port.
#[test]
fn video_tmmbr_gets_a_tmmbn_with_rtcp_mux() {
    tmmbr_caps_the_bitrate_and_gets_a_tmmbn(true);
}

fn tmmbr_caps_the_bitrate_and_gets_a_tmmbn(rtcp_mux: bool) {
    use huis_hal::camera::{Camera, SimCamera};
    use std::net::UdpSocket;
    let (peer_rtp, peer_rtcp) = (0..50)
        .find_map(|_| {
            let rtp = UdpSocket::bind("127.0.0.1:0").ok()?;
            let rtcp = UdpSocket::bind(("127.0.0.1", rtp.local_addr().ok()?.port().checked_add(1)?)).ok()?;
            Some((rtp, rtcp))
        })
        .expect("two adjacent free UDP ports");
    let sockets = RtpSockets::bind(local()).unwrap();
    let our_rtcp = match rtcp_mux {
        true => sockets.local_rtp(),
        false => SocketAddr::new(sockets.local_rtp().ip(), sockets.local_rtp().port() + 1),
    };
    let peer_rtcp = if rtcp_mux { &peer_rtp } else { &peer_rtcp };
    let v = VideoSession::start(VideoSessionParams {
        sockets,
        remote_rtp: peer_rtp.local_addr().unwrap(),
        send_pt: 96,
        recv_pt: 96,
        packetization_mode: 1,
        source: SimCamera::default().gst_source(320, 180, 15),
        width: 320,
        height: 180,
        framerate: 15,
        encoder: "x264enc".into(),
        start_kbps: 800,
        min_kbps: 100,
        max_kbps: 1000,
        feedback: VideoFeedback { tmmbr: true, pli: true, ..Default::default() },
        rtx: None,
        cname: "test@huis".into(),
        direction: Direction::SendRecv,
        jitter_buffer: Duration::from_millis(50),
        rtcp_interval: Duration::from_millis(500),
        far_channel: format!("tmmbr-far-{rtcp_mux}"),
        self_channel: format!("tmmbr-self-{rtcp_mux}"),
        on_capture: None,
        rtcp_mux,
        srtp: None,
        dtls: None,
        text: false,
    })
    .expect("video session starts");
    // Our SSRC, from the first RTP packet.
    peer_rtp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut buf = [0u8; 2048];
    let n = loop {
        let n = peer_rtp.recv(&mut buf).expect("RTP from the session");
        if parse_rtp(&buf[..n]).is_some() {
            break n;
        }
    };
    assert!(n > 12);
    let ours = u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]);
    // RR from the peer (SSRC 0x5eed), then TMMBR asking for 300 kbit/s: exp 2, mantissa 75000.
    let peer_ssrc: u32 = 0x5eed;
    let word: u32 = (2 << 26) | (75_000 << 9) | 40;
    let mut pkt = vec![0x80, 201, 0, 1];
    pkt.extend_from_slice(&peer_ssrc.to_be_bytes());
    pkt.extend_from_slice(&[0x83, 205, 0, 4]);
    pkt.extend_from_slice(&peer_ssrc.to_be_bytes());
    pkt.extend_from_slice(&0u32.to_be_bytes());
    pkt.extend_from_slice(&ours.to_be_bytes());
    pkt.extend_from_slice(&word.to_be_bytes());
    peer_rtcp.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let tmmbn = loop {
        assert!(Instant::now() < deadline, "no TMMBN within 10 s; stats {:?}", v.stats());
        peer_rtcp.send_to(&pkt, our_rtcp).unwrap();
        let Ok(n) = peer_rtcp.recv(&mut buf) else { continue };
        if parse_rtp(&buf[..n]).is_some() {
            continue; // RTP beside the RTCP, with rtcp-mux
        }
        // Walk the compound packet for an RTPFB with FMT 4.
        let mut off = 0;
        let mut found = None;
        while off + 4 <= n {
            let len = (usize::from(u16::from_be_bytes([buf[off + 2], buf[off + 3]])) + 1) * 4;
            if buf[off + 1] == 205 && buf[off] & 0x1f == 4 && off + len <= n {
                found = Some(buf[off..off + len].to_vec());
            }
            off += len;
        }
        if let Some(f) = found {
            break f;
        }
    };
    assert_eq!(&tmmbn[4..8], &ours.to_be_bytes(), "sent by us");
    assert_eq!(&tmmbn[12..16], &peer_ssrc.to_be_bytes(), "the bound is the requester's");
    assert_eq!(&tmmbn[16..20], &word.to_be_bytes());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = v.stats();
        if s.tmmbr_kbps == 300 && s.bitrate_kbps <= 300 {
            break;
        }
        assert!(Instant::now() < deadline, "the bitrate did not follow the TMMBR: {s:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
    v.stop();
}

/// Video parameters for a session on `sockets` sending to `remote`: the sim camera at
/// 320×180 and 15 fps through x264, PLI and FIR agreed, intervideo channels of its own.
fn video_params(sockets: RtpSockets, remote: SocketAddr, name: &str) -> VideoSessionParams {
    use huis_hal::camera::{Camera, SimCamera};
    VideoSessionParams {
        sockets,
        remote_rtp: remote,
        send_pt: 96,
        recv_pt: 96,
        packetization_mode: 1,
        source: SimCamera::default().gst_source(320, 180, 15),
        width: 320,
        height: 180,
        framerate: 15,
        encoder: "x264enc".into(),
        start_kbps: 500,
        min_kbps: 100,
        max_kbps: 800,
        feedback: VideoFeedback { pli: true, fir: true, ..Default::default() },
        rtx: None,
        cname: format!("{name}@huis"),
        direction: Direction::SendRecv,
        jitter_buffer: Duration::from_millis(50),
        rtcp_interval: Duration::from_millis(500),
        far_channel: format!("{name}-far"),
        self_channel: format!("{name}-self"),
        on_capture: None,
        rtcp_mux: false,
        srtp: None,
        dtls: None,
        text: false,
    }
}

/// Two video sessions on 127.0.0.1, A's keys `srtp` (B gets them swapped, with `b_recv` as its
/// receive key if given). A first sends to a socket nobody reads and is moved to B a second
/// later, so B joins A's stream after its first keyframe: B's picture then starts only by a
/// keyframe request that crosses RTCP (the next regular keyframe is 10 s away).
fn video_call(name: &str, rtcp_mux: bool, srtp: Option<(SrtpParams, Option<Vec<u8>>)>) -> (VideoSession, VideoSession) {
    let (sa, sb, nowhere) =
        (RtpSockets::bind(local()).unwrap(), RtpSockets::bind(local()).unwrap(), RtpSockets::bind(local()).unwrap());
    let (addr_a, addr_b) = (sa.local_rtp(), sb.local_rtp());
    let mut pa = video_params(sa, nowhere.local_rtp(), &format!("{name}-a"));
    let mut pb = video_params(sb, addr_a, &format!("{name}-b"));
    (pa.rtcp_mux, pb.rtcp_mux) = (rtcp_mux, rtcp_mux);
    if let Some((keys, b_recv)) = srtp {
        pb.srtp = Some(SrtpParams {
            profile: keys.profile,
            send_key: keys.recv_key.clone(),
            recv_key: b_recv.unwrap_or_else(|| keys.send_key.clone()),
        });
        pa.srtp = Some(keys);
    }
    let a = VideoSession::start(pa).expect("video session A starts");
    let b = VideoSession::start(pb).expect("video session B starts");
    std::thread::sleep(Duration::from_secs(1));
    a.set_remote(addr_b, None).expect("A moves to B");
    drop(nowhere);
    (a, b)
}

/// Waits up to `limit` until both sessions decoded `frames` frames; their stats then.
fn wait_decoded(a: &VideoSession, b: &VideoSession, frames: u64, limit: Duration) -> (VideoStats, VideoStats) {
    let until = Instant::now() + limit;
    loop {
        let (sa, sb) = (a.stats(), b.stats());
        if (sa.frames_decoded >= frames && sb.frames_decoded >= frames) || Instant::now() > until {
            return (sa, sb);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Video over SDES-SRTP: both pictures decode, and B's keyframe request reaches A in SRTCP.
#[test]
fn video_over_srtp_decodes_both_ways_and_asks_for_keyframes_in_srtcp() {
    let (a, b) = video_call("srtp", false, Some((srtp_keys(), None)));
    let (sa, sb) = wait_decoded(&a, &b, 20, Duration::from_secs(6));
    assert!(sa.frames_decoded >= 20 && sb.frames_decoded >= 20, "pictures both ways:\n  A: {sa:?}\n  B: {sb:?}");
    assert!(sa.keyframe_requests_received >= 1, "B's request for a keyframe reached A: {sa:?}");
    assert_eq!((sb.recv_width, sb.recv_height), (320, 180));
    a.stop();
    b.stop();
}

/// Video over DTLS-SRTP with rtcp-mux: pictures both ways, keyframe requests in SRTCP.
#[test]
fn video_over_dtls_srtp_decodes_both_ways() {
    let (sa, sb) = (RtpSockets::bind(local()).unwrap(), RtpSockets::bind(local()).unwrap());
    let (addr_a, addr_b) = (sa.local_rtp(), sb.local_rtp());
    let mut pa = video_params(sa, addr_b, "dtls-a");
    let mut pb = video_params(sb, addr_a, "dtls-b");
    (pa.rtcp_mux, pb.rtcp_mux) = (true, true);
    let (da, db) = dtls_pair(false);
    (pa.dtls, pb.dtls) = (Some(da), Some(db));
    let a = VideoSession::start(pa).expect("video session A starts");
    let b = VideoSession::start(pb).expect("video session B starts");
    let (sa, sb) = wait_decoded(&a, &b, 20, Duration::from_secs(8));
    assert!(sa.frames_decoded >= 20 && sb.frames_decoded >= 20, "pictures both ways:\n  A: {sa:?}\n  B: {sb:?}");
    assert!(matches!(a.protection(), Protection::Dtls { .. }), "{:?}", a.protection());
    a.stop();
    b.stop();
}

#[test]
fn video_srtp_with_a_wrong_key_decodes_nothing() {
    let (a, b) = video_call("srtp-wrong", false, Some((srtp_keys(), Some(vec![7; 30]))));
    let (sa, sb) = wait_decoded(&a, &b, 20, Duration::from_secs(3));
    assert!(sa.frames_decoded >= 20, "the other direction's keys are right: {sa:?}");
    assert_eq!(sb.frames_decoded, 0, "B decrypted nothing: {sb:?}");
    assert_eq!(sb.packets_received, 0, "forged packets never reach the RTP session: {sb:?}");
}

/// rtcp-mux for video, plain RTP and SRTP: pictures both ways and keyframe requests, all on the
/// RTP ports.
#[test]
fn video_rtcp_mux_carries_pictures_and_keyframe_requests_on_one_port() {
    for srtp in [None, Some((srtp_keys(), None))] {
        let what = if srtp.is_some() { "SRTP" } else { "RTP" };
        let (a, b) = video_call(&format!("mux-{what}"), true, srtp);
        let (sa, sb) = wait_decoded(&a, &b, 20, Duration::from_secs(6));
        assert!(
            sa.frames_decoded >= 20 && sb.frames_decoded >= 20,
            "{what}: pictures both ways:\n  A: {sa:?}\n  B: {sb:?}"
        );
        assert!(sa.keyframe_requests_received >= 1, "{what}: B's keyframe request reached A: {sa:?}");
    }
}

/// The screen's status bar: the lock (drawn in its green) only for an encrypted call.
#[test]
fn the_status_bar_shows_the_lock_only_for_an_encrypted_call() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let green_pixels = |encrypted: bool| -> usize {
        let status =
            screen::ScreenStatus { room_name: "Room".into(), state: "in-call".into(), encrypted, ..Default::default() };
        let s =
            screen::Screen::start(640, 360, 10, "video/x-raw,format=RGBx ! appsink max-buffers=1 drop=true", status)
                .expect("the screen starts");
        let most = Arc::new(AtomicUsize::new(0));
        let m = most.clone();
        s.on_frame(move |buf, _| {
            let Ok(map) = buf.map_readable() else { return };
            // The bar's rows (RGBx, 640 px a row): pixels in the lock's green.
            let n = map[..(640 * 4 * 60).min(map.len())]
                .chunks_exact(4)
                .filter(|p| p[1] > 150 && p[0] < 110 && p[2] < 150)
                .count();
            m.fetch_max(n, Ordering::Relaxed);
        });
        std::thread::sleep(Duration::from_millis(1500));
        s.stop();
        most.load(Ordering::Relaxed)
    };
    let (with, without) = (green_pixels(true), green_pixels(false));
    assert!(with > 20, "the lock shows on an encrypted call ({with} green pixels)");
    assert_eq!(without, 0, "no lock on an unencrypted call");
}
