//! Glass-to-glass latency of conference video through Janus, beside a SIP call's
//! (`bench/conference-latency.sh`; the SIP figure is `bench/video-latency.sh`).
//!
//! One process, one network namespace with a real Janus (Debian's `janus`): two
//! [`ConferenceMedia`] — huisd's conference media code, sim camera, the encoder, webrtcbin —
//! join a VideoRoom over Janus's HTTP API. Both publish and each subscribes to the other, so
//! the machine carries what the SIP benchmark's two `VideoSession`s carry (two streams, each
//! encoded once and decoded once), only through the SFU. Every frame leaving A's camera gets
//! the wall-clock time stamped into its picture (`media::stamp`, the SIP benchmark's stamp); B
//! shows A on the real [`Screen`], whose sink reads the stamps back.
//!
//! A sample covers capture → encode → RTP over SRTP → Janus → webrtcbin's jitter buffer →
//! decode → layout compositor → intervideo → screen compositor → sink.
//!
//! Ignored in normal runs (it is a measurement, not a check); needs root (namespaces).
//! `HUIS_BENCH_SECS` (default 20) seconds measured per size, `HUIS_BENCH_SIZES` (default
//! `1280x720,640x360`); prints `ROW|...` lines the script turns into a table.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use huis_firmware::media::screen::{Screen, ScreenStatus};
use huis_firmware::media::stamp;
use huis_firmware::media::video::{FAR_CHANNEL, SELF_CHANNEL};
use huis_firmware::media::webrtc::{ConferenceMedia, ConferenceParams, ConferenceVideo};
use huis_hal::camera::{Camera, SimCamera};
use huis_tests::peers::janus::http_request;
use huis_tests::peers::netns::is_root;
use huis_tests::peers::{Janus, NetNs, watchdog};
use serde_json::{Value, json};

const ROOM: u64 = 4321;
const FPS: u32 = 30;
const ENCODER: &str = "x264enc";

/// A Janus session over the HTTP API, inside the namespace.
struct Rest {
    ns: NetNs,
    port: u16,
    session: u64,
    transaction: AtomicU64,
}

impl Rest {
    fn new(ns: &NetNs, port: u16) -> Result<Rest> {
        let mut r = Rest { ns: ns.clone(), port, session: 0, transaction: AtomicU64::new(1) };
        let s = r.post("", json!({"janus": "create"}))?;
        r.session = s["data"]["id"].as_u64().ok_or_else(|| anyhow!("no session id in {s}"))?;
        Ok(r)
    }

    fn post(&self, path: &str, mut msg: Value) -> Result<Value> {
        msg["transaction"] = json!(format!("bench-{}", self.transaction.fetch_add(1, Ordering::Relaxed)));
        let (code, body) = http_request(&self.ns, self.port, "POST", &format!("/janus{path}"), Some(&msg.to_string()))?;
        let v: Value = serde_json::from_str(&body).with_context(|| format!("janus answered {code}: {body}"))?;
        if v["janus"] == "error" {
            bail!("janus: {} answered {}", msg["janus"], v["error"]);
        }
        Ok(v)
    }

    fn attach(&self) -> Result<u64> {
        let a =
            self.post(&format!("/{}", self.session), json!({"janus": "attach", "plugin": "janus.plugin.videoroom"}))?;
        a["data"]["id"].as_u64().ok_or_else(|| anyhow!("no handle id in {a}"))
    }

    fn message(&self, handle: u64, body: Value, jsep: Option<Value>) -> Result<()> {
        let mut msg = json!({"janus": "message", "body": body});
        if let Some(j) = jsep {
            msg["jsep"] = j;
        }
        self.post(&format!("/{}/{handle}", self.session), msg).map(|_| ())
    }

    /// The next plugin event for `handle` that `want` accepts (others are skipped), within 10 s.
    fn event(&self, handle: u64, want: impl Fn(&Value) -> bool) -> Result<Value> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            // A long poll: Janus holds it until an event comes (the client gives up after 10 s).
            let Ok((200, body)) =
                http_request(&self.ns, self.port, "GET", &format!("/janus/{}?maxev=1", self.session), None)
            else {
                continue;
            };
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            if v["sender"].as_u64() == Some(handle) && !v["plugindata"]["data"].is_null() {
                if let Some(e) = v["plugindata"]["data"]["error"].as_str() {
                    bail!("videoroom: {e}");
                }
                if want(&v) {
                    return Ok(v);
                }
            }
        }
        bail!("no expected event for handle {handle} within 10 s")
    }

    fn keepalive(&self) {
        let _ = self.post(&format!("/{}", self.session), json!({"janus": "keepalive"}));
    }
}

/// `media` joins the room as a publisher and publishes; returns its feed id.
fn publish(rt: &tokio::runtime::Runtime, j: &Rest, media: &ConferenceMedia, display: &str) -> Result<u64> {
    let h = j.attach()?;
    j.message(h, json!({"request": "join", "ptype": "publisher", "room": ROOM, "display": display}), None)?;
    let joined = j.event(h, |v| v["plugindata"]["data"]["videoroom"] == "joined")?;
    let id = joined["plugindata"]["data"]["id"].as_u64().ok_or_else(|| anyhow!("no publisher id in {joined}"))?;
    let offer = rt.block_on(media.publish_offer())?;
    j.message(
        h,
        json!({"request": "configure", "audio": true, "video": true}),
        Some(json!({"type": "offer", "sdp": offer})),
    )?;
    let answer = j.event(h, |v| v["jsep"]["type"] == "answer")?;
    let sdp = answer["jsep"]["sdp"].as_str().ok_or_else(|| anyhow!("no SDP in {answer}"))?;
    rt.block_on(media.publish_answer(sdp))?;
    Ok(id)
}

/// `media` receives feed `feed` through Janus.
fn subscribe(rt: &tokio::runtime::Runtime, j: &Rest, media: &ConferenceMedia, feed: u64, display: &str) -> Result<()> {
    // A feed can be subscribed to once its connection is up in Janus (until then: "No such
    // feed"), which is a moment after the publisher got its answer.
    let since = Instant::now();
    let (h, attached) = loop {
        let h = j.attach()?;
        let body = json!({"request": "join", "ptype": "subscriber", "room": ROOM, "streams": [{"feed": feed}]});
        j.message(h, body, None)?;
        match j.event(h, |v| v["jsep"]["type"] == "offer") {
            Ok(v) => break (h, v),
            Err(e) if e.to_string().contains("No such feed") && since.elapsed() < Duration::from_secs(10) => {
                let _ = j.post(&format!("/{}/{h}", j.session), json!({"janus": "detach"}));
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    };
    let offer = attached["jsep"]["sdp"].as_str().ok_or_else(|| anyhow!("no SDP in {attached}"))?;
    let answer = rt.block_on(media.subscribe(feed, display, offer))?;
    j.message(h, json!({"request": "start"}), Some(json!({"type": "answer", "sdp": answer})))?;
    Ok(())
}

fn conference(w: u32, h: u32, far: &str, own: &str, hook: bool) -> Result<ConferenceMedia> {
    Ok(ConferenceMedia::start(ConferenceParams {
        video: Some(ConferenceVideo {
            source: SimCamera::default().gst_source(w, h, FPS),
            encoder: ENCODER.into(),
            width: w,
            height: h,
            framerate: FPS,
            // Starts at 1500 kbit/s (3/4) with a 2000 kbit/s ceiling: the SIP benchmark's.
            kbps: 2000,
            on_capture: hook.then(|| Arc::new(stamp::write) as _),
        }),
        layout: (w, h),
        opus_bitrate: 32_000,
        stun: None,
        turn: Vec::new(),
        relay_only: false,
        far_channel: far.into(),
        self_channel: own.into(),
    })?)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// One measurement at `w`×`h`; the `ROW|` line.
fn run(ns: &NetNs, port: u16, (w, h): (u32, u32), secs: u64) -> Result<String> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let status =
        ScreenStatus { room_name: "bench".into(), state: "in-call".into(), self_view: true, ..Default::default() };
    let screen = Screen::start(1280, 720, FPS, "appsink name=screen max-buffers=1 drop=true sync=false", status)?;
    let samples = Arc::new(Mutex::new(Vec::<f64>::new()));
    let unreadable = Arc::new(AtomicU64::new(0));
    {
        let (samples, unreadable) = (samples.clone(), unreadable.clone());
        screen.on_frame(move |buf, caps| match stamp::latency_ms(buf, caps) {
            Some(d) => samples.lock().unwrap().push(f64::from(d)),
            None => {
                unreadable.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    // A: stamped camera, shows B nowhere visible; B: shows A on the screen.
    let a = conference(w, h, "bench-a-far", SELF_CHANNEL, true)?;
    let b = conference(w, h, FAR_CHANNEL, "bench-b-self", false)?;
    let j = Rest::new(ns, port)?;
    let feed_a = publish(&rt, &j, &a, "A")?;
    let feed_b = publish(&rt, &j, &b, "B")?;
    subscribe(&rt, &j, &b, feed_a, "A")?;
    subscribe(&rt, &j, &a, feed_b, "B")?;
    let since = Instant::now();
    while (a.first_frame().is_none() || b.first_frame().is_none()) && since.elapsed() < Duration::from_secs(15) {
        std::thread::sleep(Duration::from_millis(50));
    }
    if b.first_frame().is_none() {
        bail!("B decoded no frame of A within 15 s: {:?}", b.stats());
    }
    // Warm-up (keyframes, jitter buffers, the encoder's rate), then measure.
    std::thread::sleep(Duration::from_secs(3));
    samples.lock().unwrap().clear();
    unreadable.store(0, Ordering::Relaxed);
    let decoded0 = b.stats().frames_decoded;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(secs) {
        std::thread::sleep(Duration::from_secs(1));
        if t0.elapsed().as_secs() % 10 == 0 {
            j.keepalive();
        }
    }
    let decoded = b.stats().frames_decoded - decoded0;
    let fig = rt.block_on(b.figures());
    a.stop();
    b.stop();
    screen.stop();
    let _ = j.post(&format!("/{}", j.session), json!({"janus": "destroy"}));
    let mut v = samples.lock().unwrap().clone();
    v.sort_by(f64::total_cmp);
    Ok(format!(
        "ROW|{w}x{h}|{}|{:.0}|{:.0}|{:.0}|{:.0}|{}|{decoded}|{}|{:.1}",
        v.len(),
        percentile(&v, 0.5),
        percentile(&v, 0.95),
        v.first().copied().unwrap_or(f64::NAN),
        v.last().copied().unwrap_or(f64::NAN),
        unreadable.load(Ordering::Relaxed),
        fig.packets_lost,
        fig.jitter_ms,
    ))
}

#[test]
#[ignore = "a measurement: bench/conference-latency.sh"]
fn bench_conference_latency() {
    if !is_root() {
        eprintln!("SKIPPED bench_conference_latency: needs root (network namespaces)");
        return;
    }
    let secs: u64 = std::env::var("HUIS_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    let sizes: Vec<(u32, u32)> = std::env::var("HUIS_BENCH_SIZES")
        .unwrap_or_else(|_| "1280x720,640x360".into())
        .split(',')
        .filter_map(|s| s.split_once('x').and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?))))
        .collect();
    let _w = watchdog("conference latency benchmark", 60 + sizes.len() as u64 * (secs + 40));
    gstreamer::init().unwrap();
    let ns = NetNs::new();
    let janus = Janus::start(&ns).unwrap();
    janus.create_room_with_codecs(ROOM, None, "latency bench", "h264").unwrap();
    for size in sizes {
        let (ns2, port) = (ns.clone(), janus.port);
        // Everything that opens sockets (webrtcbin's ICE agents) runs inside the namespace.
        let row = ns.enter(move || run(&ns2, port, size, secs).map_err(|e| format!("{e:#}"))).unwrap();
        match row {
            Ok(r) => println!("{r}"),
            Err(e) => panic!("{}x{}: {e}\n--- janus:\n{}", size.0, size.1, janus.log_text()),
        }
    }
}
