//! Our own WHIP/WHEP server (`whip_server.py` beside this file, on Debian's `python3-aiortc`)
//! as the far end of a test, inside the test's [`NetNs`].
//!
//! [`WhipServer::start`] adds the ICE interface to the namespace (aioice, like libnice, gathers
//! no candidates on loopback interfaces), runs the script with Debian's Python on a port of
//! the namespace and waits until `GET /stats` answers. [`WhipServer::stats`] reads what the
//! server received and sent; [`WhipServer::log_text`] is its log, for failure messages. Dropping
//! it stops the server. See `README-peers.md`.

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use super::baresip::wait_exit;
use super::janus::http_request;
use super::netns::{NetNs, add_ice_interface};

/// The Python that has Debian's `python3-aiortc` (not a pyenv or venv one on `PATH`);
/// `HUIS_PYTHON` overrides it.
fn python() -> String {
    std::env::var("HUIS_PYTHON").unwrap_or_else(|_| "/usr/bin/python3".into())
}

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/peers/whip_server.py")
}

/// One session the server answered (a POST), as `GET /stats` reports it.
#[derive(Debug, Clone, Deserialize)]
pub struct WhipSession {
    pub id: u64,
    /// `whip` (we publish to it) or `whep` (it sends to us).
    pub kind: String,
    pub name: String,
    /// aiortc's connection state (`new`, `connecting`, `connected`, `closed`, …; `none` when
    /// the answer was the malformed one).
    pub state: String,
    pub ice_state: String,
    /// A DELETE of its resource came.
    pub deleted: bool,
    /// Video frames decoded from what we publish.
    pub frames_decoded: u64,
    pub audio_frames: u64,
    /// Dominant frequency of the last second of audio received (0 when none).
    pub audio_peak_hz: f64,
    pub audio_level_dbfs: f64,
    /// WHEP: video frames and audio samples sent to us.
    pub frames_sent: u64,
    pub audio_samples_sent: u64,
    /// The negotiated codecs (`audio/opus`, `video/H264`, `video/VP8`), empty before.
    pub audio_codec: String,
    pub video_codec: String,
}

/// What `GET /stats` answers.
#[derive(Debug, Clone, Deserialize)]
pub struct WhipStats {
    pub sessions: Vec<WhipSession>,
    pub posts: u64,
    /// Requests refused for a wrong or missing token.
    pub refused: u64,
}

impl WhipStats {
    /// The last session of `kind` (`whip` or `whep`).
    pub fn last(&self, kind: &str) -> Option<&WhipSession> {
        self.sessions.iter().rev().find(|s| s.kind == kind)
    }
}

/// A running WHIP/WHEP server.
pub struct WhipServer {
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
    ns: NetNs,
    pub port: u16,
}

impl WhipServer {
    /// Starts the server on `127.0.0.1:PORT` in `ns`; with a non-empty `token`, requests need it.
    /// Waits (up to 15 s) until it answers.
    pub fn start(ns: &NetNs, token: &str) -> Result<WhipServer> {
        add_ice_interface(ns)?;
        let py = python();
        let probe = std::process::Command::new(&py)
            .args(["-c", "import aiortc, aiohttp, av, numpy"])
            .output()
            .with_context(|| format!("run {py}"))?;
        if !probe.status.success() {
            bail!(
                "{py} cannot import aiortc (install Debian's python3-aiortc: scripts/deps.sh test): {}",
                String::from_utf8_lossy(&probe.stderr)
            );
        }
        let dir = tempfile::Builder::new().prefix("whip-").tempdir()?;
        let port = ns.port();
        let log = std::fs::File::create(dir.path().join("whip-server.log"))?;
        let mut cmd = ns.cmd(&py);
        cmd.arg("-u").arg(script()).args(["--port", &port.to_string()]);
        if !token.is_empty() {
            cmd.args(["--token", token]);
        }
        let child =
            cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).spawn().context("start whip_server.py")?;
        let mut s = WhipServer { child: Some(child), dir: Some(dir), ns: ns.clone(), port };
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if s.stats().is_ok() {
                return Ok(s);
            }
            if let Some(Ok(Some(st))) = s.child.as_mut().map(|c| c.try_wait()) {
                bail!("whip_server.py exited with {st}:\n{}", s.log_text());
            }
            if Instant::now() > deadline {
                bail!("whip_server.py not answering GET /stats within 15 s:\n{}", s.log_text());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `http://127.0.0.1:PORT/whip/<name>`.
    pub fn whip_url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/whip/{name}", self.port)
    }

    /// `http://127.0.0.1:PORT/whep/<name>`.
    pub fn whep_url(&self, name: &str) -> String {
        format!("http://127.0.0.1:{}/whep/{name}", self.port)
    }

    pub fn stats(&self) -> Result<WhipStats> {
        let (code, body) = http_request(&self.ns, self.port, "GET", "/stats", None)?;
        if code != 200 {
            bail!("GET /stats answered {code}: {body}");
        }
        serde_json::from_str(&body).with_context(|| format!("GET /stats: {body}"))
    }

    /// Polls the figures until `pred` holds; the last figures (or the error) otherwise.
    pub fn wait_until(&self, pred: impl Fn(&WhipStats) -> bool, within: Duration) -> Result<WhipStats, String> {
        let deadline = Instant::now() + within;
        loop {
            let s = self.stats();
            if let Ok(s) = &s
                && pred(s)
            {
                return Ok(s.clone());
            }
            if Instant::now() > deadline {
                return Err(format!("not within {within:?}; last figures: {s:?}"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The server's log so far (aiortc's warnings included).
    pub fn log_text(&self) -> String {
        self.dir
            .as_ref()
            .and_then(|d| std::fs::read_to_string(d.path().join("whip-server.log")).ok())
            .unwrap_or_default()
    }

    /// SIGTERM, then SIGKILL after 3 s.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else { return };
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        if wait_exit(&mut child, Duration::from_secs(3)).is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for WhipServer {
    fn drop(&mut self) {
        self.stop();
        if std::env::var_os("HUIS_KEEP_PEERS").is_some()
            && let Some(d) = self.dir.take()
        {
            eprintln!("kept the WHIP server's files in {}", d.keep().display());
        }
    }
}
