//! Headless Chromium as a browser participant of a Janus VideoRoom.
//!
//! [`Chromium::start`] serves our own page (`chromium_page.html`, next to
//! this file) from a small HTTP server on a thread (its socket inside the
//! test's [`NetNs`]) and starts `chromium --headless=new` on it inside the
//! namespace. The page talks to Janus over its plain HTTP API (a session,
//! long-polled events), joins the room as a publisher with the display name,
//! publishes Chromium's fake camera and a tone (when [`ChromiumOpts::tone_hz`]
//! is set), and subscribes to every other publisher, one subscriber handle
//! per feed. Every 500 ms it POSTs its state ([`PageStats`]) to our server;
//! the answer can ask it to leave ([`Chromium::leave`]). Its log lines are
//! POSTed too, and Chromium's own output (console included) goes to a file.
//!
//! Chromium runs in its own process group, killed as a whole on drop.
//! Quirks: `README-peers.md`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::netns::NetNs;
use super::tone;

const PAGE: &str = include_str!("chromium_page.html");

/// Options for [`Chromium::start`].
#[derive(Debug, Clone)]
pub struct ChromiumOpts {
    /// Janus's HTTP API, e.g. [`super::janus::Janus::http_url`].
    pub janus_url: String,
    pub room: u64,
    pub pin: Option<String>,
    /// The participant's display name.
    pub display: String,
    /// `Some(hz)`: publish the fake camera and a sine of `hz` as microphone.
    /// `None`: join without publishing (only subscribe to the others).
    pub tone_hz: Option<f32>,
    /// More command-line arguments for Chromium.
    pub extra_args: Vec<String>,
}

impl ChromiumOpts {
    /// Display `Chromium`, no pin, subscribe only.
    pub fn new(janus_url: &str, room: u64) -> ChromiumOpts {
        ChromiumOpts {
            janus_url: janus_url.to_string(),
            room,
            pin: None,
            display: "Chromium".into(),
            tone_hz: None,
            extra_args: Vec::new(),
        }
    }

    pub fn display(mut self, display: &str) -> Self {
        self.display = display.to_string();
        self
    }

    pub fn pin(mut self, pin: &str) -> Self {
        self.pin = Some(pin.to_string());
        self
    }

    /// Publish the fake camera and a sine of `hz`.
    pub fn tone(mut self, hz: f32) -> Self {
        self.tone_hz = Some(hz);
        self
    }
}

/// The page's latest report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PageStats {
    pub display: String,
    /// `starting`, `joining`, `joined`, `publishing`, `published`, `leaving`, `left`.
    pub phase: String,
    /// Janus session id.
    pub session: Option<u64>,
    /// Our participant id in the room.
    pub publisher_id: Option<u64>,
    pub joined: bool,
    /// True once the page left the room and destroyed its session.
    pub left: bool,
    /// Everything that failed in the page, in order.
    pub errors: Vec<String>,
    /// Report number, from 0.
    pub seq: u64,
    /// Our own publisher connection (all zero when not publishing).
    pub publish: PublishStats,
    /// One entry per remote publisher the page subscribed to.
    pub feeds: Vec<FeedStats>,
}

/// Outbound side, from the publisher RTCPeerConnection's `getStats()`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct PublishStats {
    /// `connectionState` (`none` before publishing).
    pub pc_state: String,
    pub ice_state: String,
    pub audio_packets_sent: u64,
    pub video_packets_sent: u64,
    pub frames_encoded: u64,
    /// e.g. `video/H264`.
    pub video_codec: String,
    pub audio_codec: String,
    /// The selected ICE candidate pair: `TYPE ADDR:PORT -> TYPE ADDR:PORT` (local, remote).
    pub route: String,
}

/// One remote feed, from its subscriber RTCPeerConnection's `getStats()` and
/// a WebAudio analyser on the received audio.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FeedStats {
    /// The publisher's id in the room.
    pub feed: u64,
    /// Milliseconds from the page's start to this feed's first frame on screen (-1: none yet).
    pub first_frame_ms: f64,
    pub display: String,
    /// The publisher left or unpublished (its counters then read 0).
    pub gone: bool,
    pub pc_state: String,
    pub frames_decoded: u64,
    pub frame_width: u32,
    pub frame_height: u32,
    pub video_packets_received: u64,
    pub video_codec: String,
    pub audio_packets_received: u64,
    /// `inbound-rtp` `totalAudioEnergy` (grows while sound plays out).
    pub total_audio_energy: f64,
    pub audio_level: f64,
    pub audio_codec: String,
    /// The loudest frequency of the received audio (analyser, 8192-point FFT,
    /// ~6 Hz bins at 48 kHz); 0 when silent.
    pub audio_peak_hz: f64,
    /// Its level in dB (analyser scale); -200 when silent.
    pub audio_peak_db: f64,
    /// The selected ICE candidate pair: `TYPE ADDR:PORT -> TYPE ADDR:PORT` (local, remote).
    pub route: String,
}

impl PageStats {
    /// The first feed still present whose display is `display`.
    pub fn feed(&self, display: &str) -> Option<&FeedStats> {
        self.feeds.iter().find(|f| f.display == display && !f.gone)
    }
}

#[derive(Default)]
struct Shared {
    last: Option<PageStats>,
    last_raw: String,
    reports: u64,
    page_log: Vec<String>,
    leave: bool,
}

type SharedState = Arc<(Mutex<Shared>, Condvar)>;

/// A running headless Chromium on our page.
pub struct Chromium {
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
    shared: SharedState,
    stop_server: Arc<AtomicBool>,
    ns: NetNs,
    pub display: String,
    /// Our page server's port (inside the namespace).
    pub page_port: u16,
}

impl Chromium {
    /// Starts the page server and Chromium, and waits (up to 20 s) until the
    /// page has joined the room (it reports `joined`). Publishing and
    /// subscribing go on after that: wait for them with [`Chromium::wait_until`].
    pub fn start(ns: &NetNs, opts: ChromiumOpts) -> Result<Chromium> {
        let dir = tempfile::Builder::new().prefix("chromium-").tempdir()?;
        let shared: SharedState = Arc::default();
        let stop_server = Arc::new(AtomicBool::new(false));
        let listener = ns.enter(|| TcpListener::bind("127.0.0.1:0"))?.context("bind the page server")?;
        let page_port = listener.local_addr()?.port();
        listener.set_nonblocking(true)?;
        {
            let shared = shared.clone();
            let stop = stop_server.clone();
            std::thread::spawn(move || serve(listener, shared, stop));
        }

        let mut url = format!(
            "http://127.0.0.1:{page_port}/page.html?janus={}&room={}&display={}&publish={}",
            url_encode(&opts.janus_url),
            opts.room,
            url_encode(&opts.display),
            if opts.tone_hz.is_some() { 1 } else { 0 }
        );
        if let Some(pin) = &opts.pin {
            url.push_str(&format!("&pin={}", url_encode(pin)));
        }
        let profile = dir.path().join("profile");
        std::fs::create_dir_all(&profile)?;
        let mut args: Vec<String> = [
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--allow-loopback-in-peer-connection",
            "--disable-features=WebRtcHideLocalIpsWithMdns",
            "--autoplay-policy=no-user-gesture-required",
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            "--enable-logging=stderr",
            "--v=0",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        if let Some(hz) = opts.tone_hz {
            let wav = dir.path().join("tone.wav");
            // Chromium loops the file (no `%noloop`), so a few seconds last forever.
            tone::write_sine_wav(&wav, hz, 5.0, 48000, 1, 0.5)?;
            args.push(format!("--use-file-for-fake-audio-capture={}", wav.display()));
        }
        args.extend(opts.extra_args.iter().cloned());
        args.push(url);

        let log = std::fs::File::create(dir.path().join("chromium.log"))?;
        let child = ns
            .cmd("chromium")
            .args(&args)
            .env("HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .env("XDG_CACHE_HOME", dir.path().join("cache"))
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start chromium (Debian package chromium)")?;
        let mut c = Chromium {
            child: Some(child),
            dir: Some(dir),
            shared,
            stop_server,
            ns: ns.clone(),
            display: opts.display.clone(),
            page_port,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(s) = c.latest() {
                if !s.errors.is_empty() {
                    bail!("the page of {} failed:\n{}", c.display, c.explain());
                }
                if s.joined {
                    return Ok(c);
                }
            }
            if let Some(Ok(Some(st))) = c.child.as_mut().map(|ch| ch.try_wait()) {
                bail!("chromium ({}) exited with {st}:\n{}", c.display, c.explain());
            }
            if Instant::now() > deadline {
                bail!("the page of {} did not join room {} within 20 s:\n{}", c.display, opts.room, c.explain());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn latest(&self) -> Option<PageStats> {
        self.shared.0.lock().unwrap().last.clone()
    }

    /// The latest report (default values before the first one).
    pub fn stats(&self) -> PageStats {
        self.latest().unwrap_or_default()
    }

    /// Waits until a report satisfies `pred` and returns it. The error holds
    /// the last report, the page's log and Chromium's output.
    pub fn wait_until(&self, pred: impl Fn(&PageStats) -> bool, timeout: Duration) -> Result<PageStats, String> {
        let deadline = Instant::now() + timeout;
        let (lock, cv) = &*self.shared;
        let mut g = lock.lock().unwrap();
        loop {
            if let Some(s) = &g.last {
                if pred(s) {
                    return Ok(s.clone());
                }
            }
            let now = Instant::now();
            if now >= deadline {
                drop(g);
                return Err(format!(
                    "{}: condition not met within {:.1} s\n{}",
                    self.display,
                    timeout.as_secs_f32(),
                    self.explain()
                ));
            }
            g = cv.wait_timeout(g, deadline - now).unwrap().0;
        }
    }

    /// Asks the page to leave the room (VideoRoom `leave`, handles detached,
    /// session destroyed) and waits (up to 10 s) until it reports `left`.
    pub fn leave(&self) -> Result<PageStats, String> {
        self.shared.0.lock().unwrap().leave = true;
        self.wait_until(|s| s.left, Duration::from_secs(10))
    }

    /// The last report (pretty JSON), the page's log lines and the tail of
    /// Chromium's output: for failure messages.
    pub fn explain(&self) -> String {
        let (raw, reports, page_log) = {
            let g = self.shared.0.lock().unwrap();
            let raw = serde_json::from_str::<serde_json::Value>(&g.last_raw)
                .and_then(|v| serde_json::to_string_pretty(&v))
                .unwrap_or_else(|_| g.last_raw.clone());
            (raw, g.reports, g.page_log.join("\n"))
        };
        let out = self.log_text();
        // Without a system bus Chromium logs a dozen D-Bus failures at start: noise here.
        let lines: Vec<&str> = out.lines().filter(|l| !l.contains(":dbus/") && !l.contains("bluez_dbus")).collect();
        let tail = lines[lines.len().saturating_sub(80)..].join("\n");
        format!(
            "--- {} page: last of {reports} reports:\n{raw}\n--- {} page log:\n{page_log}\n--- {} chromium output (last 80 lines, D-Bus noise left out):\n{tail}\n",
            self.display, self.display, self.display
        )
    }

    /// The page's own log lines (also printed to the console).
    pub fn page_log(&self) -> Vec<String> {
        self.shared.0.lock().unwrap().page_log.clone()
    }

    pub fn dir(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir().join("chromium.log")
    }

    /// Chromium's stdout and stderr (its own log and the page's console).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// True while Chromium's main process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Kills Chromium's whole process group (browser, renderers, utilities).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
        }
        self.stop_server.store(true, Ordering::SeqCst);
    }

    pub fn netns(&self) -> &NetNs {
        &self.ns
    }
}

impl Drop for Chromium {
    fn drop(&mut self) {
        self.stop();
        if std::env::var_os("HUIS_KEEP_PEERS").is_some() {
            if let Some(d) = self.dir.take() {
                eprintln!("kept chromium {} files in {}", self.display, d.keep().display());
            }
        }
    }
}

/// Accepts until `stop`; one thread per connection (Chromium opens spare
/// connections it may never use).
fn serve(listener: TcpListener, shared: SharedState, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((s, _)) => {
                let shared = shared.clone();
                std::thread::spawn(move || {
                    let _ = handle(s, &shared);
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(20)),
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// One request: `GET /page.html`, `POST /report`, `POST /log`; then close.
fn handle(mut s: TcpStream, shared: &SharedState) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut words = head.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let body = String::from_utf8_lossy(&buf[head_end..]).to_string();
    let route = path.split('?').next().unwrap_or("");
    let (status, ctype, answer) = match (method, route) {
        ("GET", "/page.html") => ("200 OK", "text/html; charset=utf-8", PAGE.to_string()),
        ("POST", "/report") => {
            let (lock, cv) = &**shared;
            let mut g = lock.lock().unwrap();
            match serde_json::from_str::<PageStats>(&body) {
                Ok(st) => g.last = Some(st),
                Err(e) => g.page_log.push(format!("(harness) unreadable report: {e}: {body}")),
            }
            g.last_raw = body;
            g.reports += 1;
            let answer = if g.leave { r#"{"leave":true}"# } else { "{}" };
            cv.notify_all();
            ("200 OK", "application/json", answer.to_string())
        }
        ("POST", "/log") => {
            shared.0.lock().unwrap().page_log.push(body);
            ("200 OK", "application/json", "{}".to_string())
        }
        _ => ("404 Not Found", "text/plain", "not here\n".to_string()),
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{answer}",
        answer.len()
    );
    s.write_all(reply.as_bytes())
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn url_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
