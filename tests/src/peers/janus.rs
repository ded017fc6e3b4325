//! Janus 1.1 (Debian package `janus`) as the WebRTC server of a test: one
//! VideoRoom, reached over Janus's plain HTTP API, everything inside the
//! test's [`NetNs`].
//!
//! [`Janus::start`] writes a minimal configuration into a temp dir — the
//! VideoRoom plugin and the HTTP transport only (every other plugin,
//! transport, logger and event handler disabled), HTTP on
//! `127.0.0.1:PORT/janus`, no admin API, no STUN/TURN, no mDNS — and runs
//! `janus -F DIR -C DIR/janus.jcfg` in the foreground inside the namespace.
//!
//! Janus gathers ICE candidates only on non-loopback interfaces, so the
//! namespace gets a veth pair (`huisice0`/`huisice1`, both ends inside)
//! with `127.0.0.42/32` on `huisice0`, and `ice_enforce_list` names it.
//! Hence Janus needs a real namespace (root). See `README-peers.md`.
//!
//! [`http_request`] is the tiny blocking HTTP/1.1 client the harness uses to
//! talk to Janus (loopback only, `Connection: close`; Janus answers chunked).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

use super::baresip::wait_exit;
use super::netns::{NetNs, add_ice_interface};

/// The interface Janus gathers its ICE candidates on, and its address.
pub use super::netns::{ICE_ADDR, ICE_IFACE};

/// Plugins of the Debian package other than the VideoRoom: all disabled.
const OTHER_PLUGINS: &[&str] = &[
    "audiobridge",
    "duktape",
    "echotest",
    "lua",
    "nosip",
    "recordplay",
    "sip",
    "streaming",
    "textroom",
    "videocall",
    "voicemail",
];
/// Transports other than HTTP: all disabled.
const OTHER_TRANSPORTS: &[&str] = &["mqtt", "nanomsg", "pfunix", "rabbitmq", "websockets"];
const LOGGERS: &[&str] = &["jsonlog"];
const EVENT_HANDLERS: &[&str] = &["gelfevh", "mqttevh", "nanomsgevh", "rabbitmqevh", "sampleevh", "wsevh"];

/// Ports from 5060 up that Chromium will not fetch from (its "restricted ports").
const BROWSER_BLOCKED_PORTS: &[u16] = &[5060, 5061, 6000, 6566, 6665, 6666, 6667, 6668, 6669, 6679, 6697, 10080];

static TRANSACTION: AtomicU64 = AtomicU64::new(1);

/// A participant of a room, as `listparticipants` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Participant {
    pub id: u64,
    pub display: String,
    /// True while it publishes media.
    pub publisher: bool,
}

/// A running Janus.
pub struct Janus {
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
    ns: NetNs,
    /// The HTTP API's port on 127.0.0.1.
    pub port: u16,
}

impl Janus {
    /// Adds the ICE interface to `ns`, writes the configuration, starts Janus
    /// and waits (up to 10 s) until `GET /janus/info` answers `server_info`.
    pub fn start(ns: &NetNs) -> Result<Janus> {
        if !ns.is_isolated() {
            bail!("Janus needs a private network namespace for its ICE interface (run as root)");
        }
        add_ice_interface(ns)?;
        let dir = tempfile::Builder::new().prefix("janus-").tempdir()?;
        // Browsers refuse some ports ("unsafe ports"), SIP's 5060 and 5061 among
        // them, which is where a namespace's ports start.
        let port = loop {
            let p = ns.port();
            if !BROWSER_BLOCKED_PORTS.contains(&p) && !BROWSER_BLOCKED_PORTS.contains(&(p + 1)) {
                break p;
            }
        };
        write_config(dir.path(), port)?;
        let log = std::fs::File::create(dir.path().join("janus.log"))?;
        let child = ns
            .cmd("janus")
            .arg("-F")
            .arg(dir.path())
            .arg("-C")
            .arg(dir.path().join("janus.jcfg"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start janus (Debian package janus)")?;
        let mut j = Janus { child: Some(child), dir: Some(dir), ns: ns.clone(), port };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok((200, body)) = http_request(ns, port, "GET", "/janus/info", None) {
                if serde_json::from_str::<Value>(&body).is_ok_and(|v| v["janus"] == "server_info") {
                    return Ok(j);
                }
            }
            if let Some(Ok(Some(st))) = j.child.as_mut().map(|c| c.try_wait()) {
                bail!("janus exited with {st}:\n{}", j.log_text());
            }
            if Instant::now() > deadline {
                bail!("janus not answering GET /janus/info within 10 s:\n{}", j.log_text());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `http://127.0.0.1:PORT/janus`, the API's base URL (reachable inside the namespace).
    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}/janus", self.port)
    }

    /// One Janus API request: POSTs `msg` (a `transaction` is added) to
    /// `/janus{path}` and returns the reply; a `"janus":"error"` reply is an error.
    pub fn api(&self, path: &str, mut msg: Value) -> Result<Value> {
        msg["transaction"] = json!(format!("huis-{}", TRANSACTION.fetch_add(1, Ordering::Relaxed)));
        let (code, body) = http_request(&self.ns, self.port, "POST", &format!("/janus{path}"), Some(&msg.to_string()))?;
        let v: Value = serde_json::from_str(&body).with_context(|| format!("janus answered {code}: {body}"))?;
        if v["janus"] == "error" {
            bail!("janus: {} answered {}", msg["janus"], v["error"]);
        }
        Ok(v)
    }

    /// A synchronous VideoRoom request (`create`, `destroy`, `list`,
    /// `listparticipants`, `exists`, …) on a fresh session and handle, which are
    /// destroyed afterwards. Returns the plugin's `data`; its `error` is an error.
    pub fn videoroom(&self, body: Value) -> Result<Value> {
        let s = self.api("", json!({"janus": "create"}))?;
        let session = s["data"]["id"].as_u64().ok_or_else(|| anyhow!("no session id in {s}"))?;
        let result = (|| {
            let a = self.api(&format!("/{session}"), json!({"janus": "attach", "plugin": "janus.plugin.videoroom"}))?;
            let handle = a["data"]["id"].as_u64().ok_or_else(|| anyhow!("no handle id in {a}"))?;
            let r = self.api(&format!("/{session}/{handle}"), json!({"janus": "message", "body": body}))?;
            let data = r["plugindata"]["data"].clone();
            if r["janus"] != "success" || data.is_null() {
                bail!("videoroom {}: unexpected answer {r}", body["request"]);
            }
            if !data["error"].is_null() {
                bail!("videoroom {}: {} {}", body["request"], data["error_code"], data["error"]);
            }
            Ok(data)
        })();
        let _ = self.api(&format!("/{session}"), json!({"janus": "destroy"}));
        result
    }

    /// Creates room `room` for H.264 or VP8 video and Opus audio, with audio
    /// level events, up to 16 publishers, optionally protected by `pin`.
    pub fn create_room(&self, room: u64, pin: Option<&str>, description: &str) -> Result<()> {
        self.create_room_with_codecs(room, pin, description, "h264,vp8")
    }

    /// [`Janus::create_room`] with the room's video codecs in order of preference
    /// (`"vp8,h264"`: a browser publishes VP8, a publisher offering only H.264 still gets in).
    pub fn create_room_with_codecs(
        &self,
        room: u64,
        pin: Option<&str>,
        description: &str,
        videocodec: &str,
    ) -> Result<()> {
        let mut body = json!({
            "request": "create",
            "room": room,
            "description": description,
            "publishers": 16,
            "videocodec": videocodec,
            "audiocodec": "opus",
            "audiolevel_event": true,
            "permanent": false,
        });
        if let Some(pin) = pin {
            body["pin"] = json!(pin);
        }
        let d = self.videoroom(body)?;
        if d["videoroom"] != "created" {
            bail!("create room {room}: {d}");
        }
        Ok(())
    }

    /// The room's participants (`listparticipants`).
    pub fn participants(&self, room: u64) -> Result<Vec<Participant>> {
        let d = self.videoroom(json!({"request": "listparticipants", "room": room}))?;
        let list = d["participants"].as_array().ok_or_else(|| anyhow!("listparticipants: {d}"))?;
        Ok(list
            .iter()
            .map(|p| Participant {
                id: p["id"].as_u64().unwrap_or(0),
                display: p["display"].as_str().unwrap_or_default().to_string(),
                publisher: p["publisher"].as_bool().unwrap_or(false),
            })
            .collect())
    }

    pub fn dir(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir().join("janus.log")
    }

    /// Janus's output so far (for failure messages).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Same as [`Janus::log_text`].
    pub fn log(&self) -> String {
        self.log_text()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    /// True while Janus runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// SIGTERM, then SIGKILL after 3 s.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        if let Some(st) = wait_exit(&mut child, Duration::from_secs(3)) {
            return Some(st);
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    pub fn netns(&self) -> &NetNs {
        &self.ns
    }
}

impl Drop for Janus {
    fn drop(&mut self) {
        self.stop();
        if std::env::var_os("HUIS_KEEP_PEERS").is_some() {
            if let Some(d) = self.dir.take() {
                eprintln!("kept janus files in {}", d.keep().display());
            }
        }
    }
}

fn write_config(dir: &Path, port: u16) -> Result<()> {
    let so = |names: &[&str]| names.iter().map(|n| format!("libjanus_{n}.so")).collect::<Vec<_>>().join(",");
    // Folders for plugins, transports, loggers and event handlers are left
    // to Janus's built-in defaults (the package's own).
    std::fs::write(
        dir.join("janus.jcfg"),
        format!(
            r#"# Generated by huis-tests (tests/src/peers/janus.rs): VideoRoom over HTTP, loopback only.
general: {{
	configs_folder = "{dir}"
	debug_level = 4
	debug_timestamps = true
	debug_colors = false
	session_timeout = 60
	server_name = "huis-tests"
}}
media: {{
	ipv6 = false
}}
nat: {{
	nice_debug = false
	ice_enforce_list = "{ICE_IFACE}"
	ignore_mdns = true
	full_trickle = false
}}
plugins: {{
	disable = "{plugins}"
}}
transports: {{
	disable = "{transports}"
}}
loggers: {{
	disable = "{loggers}"
}}
events: {{
	broadcast = false
	disable = "{events}"
}}
"#,
            dir = dir.display(),
            plugins = so(OTHER_PLUGINS),
            transports = so(OTHER_TRANSPORTS),
            loggers = so(LOGGERS),
            events = so(EVENT_HANDLERS),
        ),
    )?;
    // No `allow_origin`: Janus then answers any Origin, which the browser
    // page (served from another port) needs.
    std::fs::write(
        dir.join("janus.transport.http.jcfg"),
        format!(
            "general: {{\n\tjson = \"compact\"\n\tbase_path = \"/janus\"\n\thttp = true\n\tport = {port}\n\
             \tip = \"127.0.0.1\"\n\thttps = false\n}}\nadmin: {{\n\tadmin_http = false\n\tadmin_https = false\n}}\n"
        ),
    )?;
    // No static rooms: tests create theirs with `Janus::create_room`.
    std::fs::write(dir.join("janus.plugin.videoroom.jcfg"), "general: {\n}\n")?;
    Ok(())
}

/// A blocking HTTP/1.1 request to `127.0.0.1:port` inside `ns` (loopback test
/// code: `Connection: close`, the body read to the end, chunked answers decoded).
/// Returns the status code and the body.
pub fn http_request(ns: &NetNs, port: u16, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String)> {
    let mut s = ns
        .enter(move || std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2)))?
        .with_context(|| format!("connect to 127.0.0.1:{port}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).with_context(|| format!("read the answer to {method} {path}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, rest) = text.split_once("\r\n\r\n").ok_or_else(|| anyhow!("no HTTP header end in {text:?}"))?;
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("bad status line in {head:?}"))?;
    // Janus (libmicrohttpd) answers chunked.
    if head.lines().any(|l| l.to_ascii_lowercase().starts_with("transfer-encoding: chunked")) {
        return Ok((code, dechunk(rest).with_context(|| format!("chunked answer to {method} {path}: {rest:?}"))?));
    }
    Ok((code, rest.to_string()))
}

/// The body of a `Transfer-Encoding: chunked` message (extensions and trailers ignored).
fn dechunk(mut rest: &str) -> Result<String> {
    let mut body = String::new();
    loop {
        let (line, after) = rest.split_once("\r\n").ok_or_else(|| anyhow!("no chunk size line"))?;
        let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)?;
        if size == 0 {
            return Ok(body);
        }
        body.push_str(after.get(..size).ok_or_else(|| anyhow!("chunk shorter than {size}"))?);
        rest = after[size..].strip_prefix("\r\n").ok_or_else(|| anyhow!("no CRLF after a chunk"))?;
    }
}
