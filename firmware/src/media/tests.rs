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
    codec: CodecParams,
    te: Option<TelephoneEvent>,
    rtcp_mux: bool,
    rtp_timeout: Option<Duration>,
}

impl Setup {
    fn new(codec: CodecParams) -> Self {
        Setup { codec, te: None, rtcp_mux: false, rtp_timeout: None }
    }

    fn start(self) -> (AudioSession, AudioSession) {
        let sa = RtpSockets::bind(local()).unwrap();
        let sb = RtpSockets::bind(local()).unwrap();
        let (addr_a, addr_b) = (sa.local_rtp(), sb.local_rtp());
        let params = |s, remote| {
            let mut p = AudioSessionParams::new(s, remote, self.codec.clone());
            p.telephone_event = self.te;
            p.rtcp_mux = self.rtcp_mux;
            p.rtcp_interval = Duration::from_millis(500);
            p.rtp_timeout = self.rtp_timeout;
            p.cname = "test@huis".into();
            p
        };
        let a = AudioSession::start(params(sa, addr_b)).expect("session A starts");
        let b = AudioSession::start(params(sb, addr_a)).expect("session B starts");
        (a, b)
    }
}

/// Play the DSP thread's part for `dur`: push 10 ms of `tone_hz` at A (if any) and pull 10 ms at B.
/// `each_frame` runs after every frame with the time since the start. Returns what B heard.
fn run(a: &AudioSession, b: &AudioSession, dur: Duration, tone_hz: f32, mut each_frame: impl FnMut(Duration)) -> Vec<f32> {
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
    assert!(windows.len() >= 10, "{what}: only {} windows of audio", windows.len());
    let good = windows.iter().filter(|w| rms(w) > 0.1 && (dominant_hz(w) - hz).abs() <= 30.0).count();
    assert!(
        good * 10 >= windows.len() * 8,
        "{what}: {good} of {} windows carry {hz} Hz (dominant: {:?})",
        windows.len(),
        windows.iter().map(|w| dominant_hz(w)).collect::<Vec<_>>()
    );
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
    assert_tone(&heard, 1000.0, "opus");
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
fn g722_carries_a_tone() {
    let (a, b) = Setup::new(CodecParams::g722()).start();
    let heard = run(&a, &b, Duration::from_millis(2500), 1000.0, |_| {});
    assert_tone(&heard, 1000.0, "G.722");
}

#[test]
fn pcmu_carries_a_tone_and_dtmf_arrives_in_order() {
    let mut setup = Setup::new(CodecParams::pcmu());
    setup.te = Some(TelephoneEvent::new(101, 8000));
    let (a, b) = setup.start();
    let mut sent = false;
    let heard = run(&a, &b, Duration::from_millis(3800), 440.0, |t| {
        if !sent && t > Duration::from_millis(1800) {
            a.send_dtmf("1#9").unwrap();
            sent = true;
        }
    });
    // While a digit plays, rtpdtmfmux holds the audio back: check the tone before the digits.
    assert_tone(&heard[..DSP_FRAME * 180], 440.0, "PCMU");
    let digits: String = std::iter::from_fn(|| b.poll_event())
        .filter_map(|e| match e {
            MediaEvent::Dtmf { digit } => Some(digit),
            _ => None,
        })
        .collect();
    assert_eq!(digits, "1#9");
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
    assert_tone(loud, 440.0, "PCMA before mute");
    let tail = &muted[DSP_FRAME * 40..]; // 400 ms for the pipeline to drain
    assert!(rms(tail) < 0.005, "muted audio has rms {}", rms(tail));
}

#[test]
fn rtcp_mux_carries_audio_and_rtcp_on_one_port() {
    let mut setup = Setup::new(CodecParams::opus(96));
    setup.rtcp_mux = true;
    let (a, b) = setup.start();
    let heard = run(&a, &b, Duration::from_millis(2500), 1000.0, |_| {});
    assert_tone(&heard, 1000.0, "opus with rtcp-mux");
    let sa = wait_stats(&a, Duration::from_secs(3), |s| s.rtt_ms.is_some());
    assert!(sa.rtt_ms.is_some(), "RTCP over the RTP port gives an RTT: {sa:?}");
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
    let held = b.stats().packets_received;
    run(&a, &b, Duration::from_millis(1500), 440.0, |_| {});
    let still = b.stats().packets_received;
    assert!(still <= held + 2, "RTP kept arriving on hold: {held} → {still}");
    a.set_direction(Direction::SendRecv);
    run(&a, &b, Duration::from_millis(800), 440.0, |_| {});
    assert!(b.stats().packets_received > still + 20, "RTP resumes");
    let events: Vec<MediaEvent> = std::iter::from_fn(|| b.poll_event()).collect();
    let timeout = events.iter().position(|e| matches!(e, MediaEvent::RtpTimeout { .. }));
    let resumed = events.iter().position(|e| matches!(e, MediaEvent::RtpResumed));
    assert!(timeout.is_some() && resumed > timeout, "events: {events:?}");
}

#[test]
fn stop_is_quick_and_says_bye() {
    let (a, b) = Setup::new(CodecParams::pcmu()).start();
    run(&a, &b, Duration::from_millis(700), 440.0, |_| {});
    let tx = a.sender();
    let t = Instant::now();
    a.stop();
    assert!(t.elapsed() < Duration::from_millis(1500), "stop took {:?}", t.elapsed());
    assert!(!tx.is_open());
    let until = Instant::now() + Duration::from_secs(2);
    let mut bye = false;
    while !bye && Instant::now() < until {
        bye = std::iter::from_fn(|| b.poll_event()).any(|e| matches!(e, MediaEvent::RemoteBye { .. }));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(bye, "B saw A's RTCP BYE");
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
