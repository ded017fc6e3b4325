//! Soak (issue 21): two real huisd rooms call each other back to back, audio and video, then
//! hold one call for hours; each room's memory, file descriptors, threads and live GStreamer
//! elements are measured as it goes. Ignored: `bench/soak.sh` runs it (hours by default).
//!
//! Environment:
//! - `HUIS_SOAK_CALLS` calls back to back (default 1000);
//! - `HUIS_SOAK_HOLD_SECS` how long the last call is held (default 28800, 8 h; 0 skips it);
//! - `HUIS_SOAK_WARMUP` calls before the reference figures are taken (default calls / 10,
//!   at most 50, at least 1);
//! - `HUIS_SOAK_EVERY` figures every N calls (default calls / 100, at least 1: idle samples scatter
//!   by ±1.5 MiB, and a slope of 1 MiB per 1000 calls needs about a hundred of them);
//! - `HUIS_SOAK_SAMPLE_SECS` figures every N seconds of the long call (default 60);
//! - `HUIS_SOAK_ELEMENTS=0` runs huisd without GStreamer's leaks tracer (elements not counted);
//! - `HUIS_SOAK_GST_FILTERS` the types the leaks tracer follows (default `GstElement`; e.g.
//!   `GstObject,GstMiniObject` to look for other GStreamer objects left behind: the "elems"
//!   column then counts those);
//! - `HUIS_SOAK_ROOM_A_ENV` / `HUIS_SOAK_ROOM_B_ENV` extra `NAME=VALUE` pairs (space separated)
//!   in that room's huisd environment, to look into a growth (a heap profiler's preload).
//!
//! Limits (the test fails, after printing every figure, when one is broken):
//! - a room's VmRSS, fitted by least squares over the idle samples after warm-up, grows by
//!   less than 1 MiB per 1000 calls;
//! - idle between calls (and after the long call), a room's fds, threads and live
//!   GStreamer elements come back to their level after warm-up.
//!
//! Beside VmRSS, the table shows what glibc's malloc held after the last call's trim, from
//! huisd's log line "after the call: heap in use …, free in arenas …": live objects climbing is
//! a leak, free memory climbing is what the allocator keeps; the summary fits both.
//!
//! Live elements are counted by GStreamer's own leaks tracer, loaded into huisd with
//! `GST_TRACERS=leaks(filters="GstElement")` and `GST_LEAKS_TRACER_SIG`: on SIGUSR1 it logs one
//! `object-alive` record per element still alive (GST_TRACER at level 7, to a file of its own).

use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use huis_tests::peers::*;
use huis_tests::{Bus, Huisd, bin_dir};
use serde_json::Value;

const SEC: Duration = Duration::from_secs(1);
const A_RTP_MIN: u16 = 30000;
const B_RTP_MIN: u16 = 31000;
/// The limit on memory growth: KiB per 1000 calls.
const MAX_GROWTH_KIB_PER_1000: f64 = 1024.0;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(default)
}

fn room_config(name: &str, port: u16, rtp_min: u16, extra: &str) -> String {
    format!(
        "[room]\nname = \"{name}\"\n[sip]\nlisten = \"127.0.0.1:{port}\"\nrtp_port_min = {rtp_min}\nrtp_port_max = {}\n\
         [video]\nwidth = 640\nheight = 360\nframerate = 15\n{extra}",
        rtp_min + 40
    )
}

fn json(bus: &Bus, args: &[&str]) -> Value {
    huis_tests::huisctl_json(bus, args)
}

fn stat(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(0.0)
}

/// A room under test: its bus, its huisd and where its leaks tracer writes.
struct Room {
    name: &'static str,
    bus: Bus,
    huisd: Huisd,
    gst_log: Option<PathBuf>,
    /// How far the tracer's file has been read.
    gst_log_read: u64,
    /// How far huisd's log has been read for its heap figures, and the last ones found.
    log_read: u64,
    heap_kib: Option<(u64, u64)>,
}

/// One room's figures at one moment.
#[derive(Clone, Copy, Debug, Default)]
struct Figures {
    rss_kib: u64,
    rss_anon_kib: u64,
    fds: u64,
    threads: u64,
    /// Live GStreamer elements, when the leaks tracer is loaded.
    elements: Option<u64>,
    /// What malloc held after the last call's trim, by huisd's log ("after the call: heap in
    /// use N KiB, free in arenas M KiB"): (in use, free) in KiB. In use climbing is a leak; free
    /// climbing is memory the arenas keep.
    heap_kib: Option<(u64, u64)>,
}

impl Room {
    fn start(ns: &NetNs, name: &'static str, config: &str, elements: bool) -> Room {
        let bus = Bus::start();
        // A diagnosis aid: extra environment for one room's huisd (e.g. heaptrack's preload),
        // set by `env` right before huisd (a preload set on `ip netns exec` would stay in `ip`).
        // `env` and `ip netns exec` both exec, so the pid is huisd's.
        let mut cmd = match std::env::var(format!("HUIS_SOAK_ROOM_{name}_ENV")) {
            Ok(extra) => {
                let mut c = ns.cmd("env");
                c.args(extra.split_whitespace()).arg(bin_dir().join("huisd"));
                c
            }
            Err(_) => ns.cmd(bin_dir().join("huisd")),
        };
        let gst_log = elements.then(|| bus.dir.path().join("gst-leaks.log"));
        if let Some(log) = &gst_log {
            let filters = std::env::var("HUIS_SOAK_GST_FILTERS").unwrap_or_else(|_| "GstElement".into());
            cmd.env("GST_TRACERS", format!("leaks(filters=\"{filters}\",stack-traces-flags=none)"))
                .env("GST_LEAKS_TRACER_SIG", "1")
                .env("GST_DEBUG", "GST_TRACER:7")
                .env("GST_DEBUG_NO_COLOR", "1")
                .env("GST_DEBUG_FILE", log);
        }
        let d = Huisd::spawn_cmd(cmd, &bus, Some(config), &[]);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
        let huisd = rt.block_on(Huisd::wait_ready(d, &bus));
        Room { name, bus, huisd, gst_log, gst_log_read: 0, log_read: 0, heap_kib: None }
    }

    fn pid(&self) -> u32 {
        self.huisd.child.id()
    }

    fn figures(&mut self) -> Figures {
        let pid = self.pid();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_else(|e| {
            panic!("room {}: huisd (pid {pid}) is gone: {e}\n{}", self.name, self.huisd.log_text())
        });
        let field = |k: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(k))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("no {k} in /proc/{pid}/status"))
        };
        let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count() as u64).unwrap_or(0);
        Figures {
            rss_kib: field("VmRSS:"),
            rss_anon_kib: field("RssAnon:"),
            fds,
            threads: field("Threads:"),
            elements: self.elements(),
            heap_kib: self.heap_kib(),
        }
    }

    /// The last heap figures huisd logged after a call's trim, reading only what the log gained
    /// since the last look (up to its last whole line).
    fn heap_kib(&mut self) -> Option<(u64, u64)> {
        let mut text = Vec::new();
        if let Ok(mut f) = std::fs::File::open(&self.huisd.log)
            && f.seek(SeekFrom::Start(self.log_read)).is_ok()
        {
            let _ = f.read_to_end(&mut text);
        }
        let whole = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        self.log_read += whole as u64;
        let text = String::from_utf8_lossy(&text[..whole]);
        let parse = |rest: &str| {
            let mut numbers =
                rest.split(|c: char| !c.is_ascii_digit()).filter(|w| !w.is_empty()).map(|w| w.parse().ok());
            Some((numbers.next()??, numbers.next()??))
        };
        if let Some(h) = text.lines().rev().find_map(|l| l.split_once("after the call: heap in use ").map(|(_, r)| r)) {
            self.heap_kib = parse(h);
        }
        self.heap_kib
    }

    /// Asks the leaks tracer for the elements alive (SIGUSR1) and counts its `object-alive`
    /// records, waiting until the listing has stopped growing.
    fn elements(&mut self) -> Option<u64> {
        let log = self.gst_log.clone()?;
        unsafe {
            libc::kill(self.pid() as i32, libc::SIGUSR1);
        }
        let mut text = String::new();
        let deadline = Instant::now() + 5 * SEC;
        let mut last_len = usize::MAX;
        loop {
            std::thread::sleep(Duration::from_millis(300));
            let mut f = std::fs::File::open(&log).ok()?;
            f.seek(SeekFrom::Start(self.gst_log_read)).ok()?;
            text.clear();
            f.read_to_string(&mut text).ok()?;
            // The listing is written in one go; stable across two reads means it is complete.
            if (text.len() == last_len && text.contains("object-alive")) || Instant::now() > deadline {
                break;
            }
            last_len = text.len();
        }
        self.gst_log_read += text.len() as u64;
        Some(text.lines().filter(|l| l.contains("object-alive")).count() as u64)
    }

    /// The types of the elements alive and how many of each (for the report of a leak).
    fn element_types(&mut self) -> String {
        let Some(log) = self.gst_log.clone() else { return String::new() };
        let before = self.gst_log_read;
        self.elements();
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&log) {
            let _ = f.seek(SeekFrom::Start(before));
            let _ = f.read_to_string(&mut text);
        }
        let mut counts = std::collections::BTreeMap::<String, u32>::new();
        for l in text.lines().filter(|l| l.contains("object-alive")) {
            let t = l.split("type-name=(string)").nth(1).and_then(|r| r.split([',', ' ']).next()).unwrap_or("?");
            *counts.entry(t.to_string()).or_default() += 1;
        }
        counts.iter().map(|(t, n)| format!("{t}×{n}")).collect::<Vec<_>>().join(" ")
    }

    fn state(&self) -> String {
        json(&self.bus, &["status"])["state"].as_str().unwrap_or("").to_string()
    }

    fn call_state(&self) -> String {
        json(&self.bus, &["calls"])[0]["state"].as_str().unwrap_or("").to_string()
    }

    fn frames_decoded(&self) -> f64 {
        stat(&json(&self.bus, &["video"])["stats"], "frames_decoded")
    }
}

struct Soak {
    a: Room,
    b: Room,
    uri_b: String,
    /// Lines of the table, printed as they come and again at the end.
    rows: Vec<String>,
    started: Instant,
}

impl Soak {
    fn logs(&self) -> String {
        format!("room A log:\n{}\nroom B log:\n{}", self.a.huisd.log_text(), self.b.huisd.log_text())
    }

    fn wait(&self, what: &str, within: Duration, ok: impl Fn(&Soak) -> bool) {
        let deadline = Instant::now() + within;
        while !ok(self) {
            assert!(Instant::now() < deadline, "{what}: not within {within:?}\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Dials room B from room A and waits until the call is active in both rooms and both
    /// decode the other's video.
    fn dial(&self) {
        json(&self.a.bus, &["dial", &self.uri_b]);
        self.wait("the call active and video decoded both ways", 30 * SEC, |s| {
            [&s.a, &s.b].iter().all(|r| r.call_state() == "active" && r.frames_decoded() >= 5.0)
        });
    }

    fn hang_up(&self) {
        json(&self.a.bus, &["hangup"]);
        self.wait("both rooms idle after the hangup", 20 * SEC, |s| s.a.state() == "idle" && s.b.state() == "idle");
    }

    fn row(&mut self, point: &str, fa: &Figures, fb: &Figures) {
        let line = format!(
            "{:>8.0} s  {point:<24} | A {} | B {}",
            self.started.elapsed().as_secs_f64(),
            room_columns(&fa.cells()),
            room_columns(&fb.cells())
        );
        eprintln!("{line}");
        self.rows.push(line);
    }

    /// Both rooms' figures at idle, once settled: a call's pipelines and threads go away a moment
    /// after huisd reports idle, so the figures are taken once fds, threads and elements have
    /// stopped changing between two looks a second apart and (given `reference`) are back at
    /// its level, or after 15 s.
    fn idle_figures(&mut self, reference: Option<(Figures, Figures)>) -> (Figures, Figures) {
        let deadline = Instant::now() + 15 * SEC;
        let key = |f: &Figures| (f.fds, f.threads, f.elements);
        let back = |f: &Figures, r: &Figures| f.fds <= r.fds && f.threads <= r.threads && f.elements <= r.elements;
        let mut prev: Option<(Figures, Figures)> = None;
        loop {
            let (fa, fb) = (self.a.figures(), self.b.figures());
            let stable = prev.is_some_and(|(pa, pb)| key(&pa) == key(&fa) && key(&pb) == key(&fb));
            let done = match reference {
                Some((ra, rb)) => back(&fa, &ra) && back(&fb, &rb),
                None => stable,
            };
            if done || Instant::now() > deadline {
                return (fa, fb);
            }
            prev = Some((fa, fb));
            std::thread::sleep(SEC);
        }
    }
}

impl Figures {
    /// The table's cells for this room: VmRSS, RssAnon, heap in use, free, fds, threads, elements.
    fn cells(&self) -> [String; 7] {
        let or_dash = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
        [
            self.rss_kib.to_string(),
            self.rss_anon_kib.to_string(),
            or_dash(self.heap_kib.map(|h| h.0)),
            or_dash(self.heap_kib.map(|h| h.1)),
            self.fds.to_string(),
            self.threads.to_string(),
            or_dash(self.elements),
        ]
    }
}

/// One room's columns of the table, aligned under its header.
fn room_columns(c: &[String; 7]) -> String {
    format!("{:>8} {:>8} {:>7} {:>7} {:>5} {:>5} {:>6}", c[0], c[1], c[2], c[3], c[4], c[5], c[6])
}

/// Least-squares slope of `y` over `x`.
fn slope(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx = points.iter().map(|p| (p.0 - mx).powi(2)).sum::<f64>();
    let sxy = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum::<f64>();
    (sxx > 0.0).then(|| sxy / sxx)
}

#[test]
#[ignore = "hours by default: run by bench/soak.sh"]
fn soak_calls_back_to_back_then_one_long_call() {
    let calls = env_u64("HUIS_SOAK_CALLS", 1000).max(2);
    let hold = env_u64("HUIS_SOAK_HOLD_SECS", 28_800);
    let warmup = env_u64("HUIS_SOAK_WARMUP", (calls / 10).clamp(1, 50)).clamp(1, calls - 1);
    let every = env_u64("HUIS_SOAK_EVERY", (calls / 100).max(1)).max(1);
    let sample_secs = env_u64("HUIS_SOAK_SAMPLE_SECS", 60).max(1);
    let elements = env_u64("HUIS_SOAK_ELEMENTS", 1) != 0;
    // A call that hangs must not hold the machine for ever: a minute a call is far beyond any.
    let _w = watchdog("soak", calls * 60 + hold + 600);

    let ns = NetNs::new();
    let (port_a, port_b) = (ns.port(), ns.port());
    let a = Room::start(&ns, "A", &room_config("Studio 4", port_a, A_RTP_MIN, ""), elements);
    let b =
        Room::start(&ns, "B", &room_config("Board room", port_b, B_RTP_MIN, "[call]\nauto_answer = true\n"), elements);
    let mut s = Soak { a, b, uri_b: format!("sip:room@127.0.0.1:{port_b}"), rows: Vec::new(), started: Instant::now() };
    eprintln!(
        "soak: {calls} calls (warm-up {warmup}, figures every {every}), then one call held {hold} s \
         (figures every {sample_secs} s); room A pid {}, room B pid {}; live elements {}",
        s.a.pid(),
        s.b.pid(),
        if elements { "counted by the leaks tracer" } else { "not counted" }
    );
    let names = ["RSS KiB", "anon KiB", "heap", "free", "fds", "thr", "elems"].map(String::from);
    let header =
        format!("{:>10}  {:<24} | A {} | B {}", "elapsed", "point", room_columns(&names), room_columns(&names));
    eprintln!("{header}");
    let (fa, fb) = s.idle_figures(None);
    s.row("start (idle)", &fa, &fb);

    // Calls back to back.
    let mut reference: Option<(Figures, Figures)> = None;
    let mut rss_points: [Vec<(f64, f64)>; 2] = [Vec::new(), Vec::new()];
    // (call, heap in use KiB, free in the arenas KiB), from huisd's log after each trim.
    let mut heap_points: [Vec<(f64, f64, f64)>; 2] = [Vec::new(), Vec::new()];
    let mut failures = Vec::new();
    let mut call_secs = Vec::new();
    let mut warm_types = [String::new(), String::new()];
    let calls_started = Instant::now();
    for n in 1..=calls {
        let t = Instant::now();
        s.dial();
        s.hang_up();
        call_secs.push(t.elapsed().as_secs_f64());
        if n == warmup || (n > warmup && (n % every == 0 || n == calls)) {
            let (fa, fb) = s.idle_figures(reference);
            let point = if n == warmup { format!("call {n} idle (warm-up)") } else { format!("call {n} idle") };
            s.row(&point, &fa, &fb);
            rss_points[0].push((n as f64, fa.rss_kib as f64));
            rss_points[1].push((n as f64, fb.rss_kib as f64));
            for (i, f) in [&fa, &fb].into_iter().enumerate() {
                if let Some((used, free)) = f.heap_kib {
                    heap_points[i].push((n as f64, used as f64, free as f64));
                }
            }
            match reference {
                None => {
                    reference = Some((fa, fb));
                    warm_types = [s.a.element_types(), s.b.element_types()];
                }
                Some((ra, rb)) => {
                    for (room, f, r) in [("A", &fa, &ra), ("B", &fb, &rb)] {
                        if f.fds > r.fds || f.threads > r.threads || f.elements > r.elements {
                            failures.push(format!(
                                "room {room} after call {n}: {} fds, {} threads, {:?} elements at idle; \
                                 after warm-up {} fds, {} threads, {:?} elements",
                                f.fds, f.threads, f.elements, r.fds, r.threads, r.elements
                            ));
                        }
                    }
                }
            }
        }
    }
    let calls_elapsed = calls_started.elapsed().as_secs_f64();
    call_secs.sort_by(f64::total_cmp);
    let pct = |p: f64| call_secs[((call_secs.len() - 1) as f64 * p).round() as usize];
    let mut summary = vec![format!(
        "{calls} calls in {calls_elapsed:.0} s: {:.2} s a call on average (dial to both idle again), \
         median {:.2} s, 95th percentile {:.2} s, longest {:.2} s",
        calls_elapsed / calls as f64,
        pct(0.5),
        pct(0.95),
        pct(1.0)
    )];
    let (ra, rb) = reference.expect("figures after warm-up");
    for (i, (room, r)) in [("A", &ra), ("B", &rb)].into_iter().enumerate() {
        let end = rss_points[i].last().map_or(0.0, |p| p.1);
        let fitted = slope(&rss_points[i]).map(|k| k * 1000.0);
        let span = (calls - warmup) as f64;
        let straight = (end - r.rss_kib as f64) / span * 1000.0;
        summary.push(format!(
            "room {room}: VmRSS {} KiB after warm-up (call {warmup}), {end:.0} KiB after call {calls}: \
             {:+.0} KiB; {straight:+.0} KiB per 1000 calls end to end, {} KiB per 1000 calls fitted",
            r.rss_kib,
            end - r.rss_kib as f64,
            fitted.map_or("-".into(), |k| format!("{k:+.0}"))
        ));
        // Where a growth is: in live objects (a leak) or in what the arenas keep.
        let fit = |pick: fn(&(f64, f64, f64)) -> f64| {
            let pts: Vec<_> = heap_points[i].iter().map(|p| (p.0, pick(p))).collect();
            slope(&pts).map_or("-".into(), |k| format!("{:+.0}", k * 1000.0))
        };
        summary.push(format!(
            "room {room}: malloc after each call's trim, KiB per 1000 calls fitted: in use {}, free in the arenas {}",
            fit(|p| p.1),
            fit(|p| p.2)
        ));
        if let Some(k) = fitted
            && k > MAX_GROWTH_KIB_PER_1000
        {
            failures.push(format!(
                "room {room}: VmRSS grows {k:.0} KiB per 1000 calls after warm-up (limit {MAX_GROWTH_KIB_PER_1000} KiB)"
            ));
        }
    }

    // One long call.
    if hold > 0 {
        s.dial();
        let (fa, fb) = (s.a.figures(), s.b.figures());
        s.row("long call: start", &fa, &fb);
        let held = Instant::now();
        let mut in_call: [Vec<(f64, f64)>; 2] = [Vec::new(), Vec::new()];
        let mut frames = [s.a.frames_decoded(), s.b.frames_decoded()];
        let mut next = sample_secs;
        while held.elapsed().as_secs() < hold {
            std::thread::sleep(Duration::from_secs(next.min(hold).saturating_sub(held.elapsed().as_secs()).max(1)));
            if held.elapsed().as_secs() < next.min(hold) {
                continue;
            }
            next += sample_secs;
            for (i, r) in [&s.a, &s.b].into_iter().enumerate() {
                assert_eq!(r.call_state(), "active", "room {}: the long call ended by itself\n{}", r.name, s.logs());
                let f = r.frames_decoded();
                assert!(f > frames[i], "room {}: no video decoded in the last {sample_secs} s\n{}", r.name, s.logs());
                frames[i] = f;
            }
            let (fa, fb) = (s.a.figures(), s.b.figures());
            let m = held.elapsed().as_secs_f64() / 60.0;
            s.row(&format!("long call: {m:.0} min"), &fa, &fb);
            in_call[0].push((m, fa.rss_kib as f64));
            in_call[1].push((m, fb.rss_kib as f64));
        }
        s.hang_up();
        let (fa, fb) = s.idle_figures(Some((ra, rb)));
        s.row("long call over (idle)", &fa, &fb);
        for (i, (room, f, r)) in [("A", &fa, &ra), ("B", &fb, &rb)].into_iter().enumerate() {
            // The first minutes are warm-up of the call (jitter buffers, encoder pools).
            let settled: Vec<_> = in_call[i].iter().copied().filter(|p| p.0 >= 5.0 || in_call[i].len() < 6).collect();
            summary.push(format!(
                "room {room}: long call of {hold} s: VmRSS {} KiB per hour fitted over the call, \
                 {} KiB at idle afterwards ({:+} KiB against after warm-up)",
                slope(&settled).map_or("-".into(), |k| format!("{:+.0}", k * 60.0)),
                f.rss_kib,
                f.rss_kib as i64 - r.rss_kib as i64
            ));
            if f.fds > r.fds || f.threads > r.threads || f.elements > r.elements {
                failures.push(format!(
                    "room {room} after the long call: {} fds, {} threads, {:?} elements at idle; after warm-up \
                     {} fds, {} threads, {:?} elements",
                    f.fds, f.threads, f.elements, r.fds, r.threads, r.elements
                ));
            }
        }
    }

    if elements {
        summary.push(format!("room A elements alive after warm-up: {}", warm_types[0]));
        summary.push(format!("room A elements alive at the end:    {}", s.a.element_types()));
        summary.push(format!("room B elements alive after warm-up: {}", warm_types[1]));
        summary.push(format!("room B elements alive at the end:    {}", s.b.element_types()));
    }
    // huisd ends as it would on the board (SIGTERM), so tools attached to it (heaptrack) and
    // the leaks tracer's report at exit see a clean end.
    for r in [&mut s.a, &mut s.b] {
        if r.huisd.terminate(20 * SEC).is_none() {
            summary.push(format!("room {}: huisd did not exit within 20 s of SIGTERM", r.name));
        }
    }
    eprintln!("\n== soak figures ==\n{header}");
    for r in &s.rows {
        eprintln!("{r}");
    }
    for l in &summary {
        eprintln!("{l}");
    }
    assert!(failures.is_empty(), "soak limits broken:\n{}", failures.join("\n"));
    eprintln!("soak: every limit held");
}
