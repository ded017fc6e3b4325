//! baresip 1.0 as a real SIP peer, driven over its `ctrl_tcp` socket.
//!
//! [`Baresip::start`] writes a config directory into a temp dir (`config`,
//! `accounts`, `contacts`), starts `baresip -f DIR` inside a [`NetNs`],
//! connects ONE control client right away and keeps it: baresip's
//! `ctrl_tcp` serves a single client, a second connection silently replaces
//! the first, and events only go to the client connected at that moment.
//! Every command goes over that connection and events are collected from the
//! start, so [`Baresip::wait_event`] sees everything after the connect.
//!
//! The API is blocking (plain threads). From a `#[tokio::test]` call it from
//! `tokio::task::spawn_blocking` or use `flavor = "multi_thread"`.
//!
//! Quirks found with baresip 1.0.0 (Debian 12) are collected in
//! `README-peers.md` next to this file.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;

use super::netns::NetNs;
use super::tone;

/// What baresip sends as its microphone.
#[derive(Debug, Clone, PartialEq)]
pub enum AudioSource {
    /// A sine from the `ausine` module: endless, costs no memory. The
    /// harness sets `ausrc_srate 48000` / `ausrc_channels 2`, which `ausine`
    /// requires; baresip resamples to the codec.
    Sine(f32),
    /// A WAV the harness writes (48 kHz stereo, -6 dBFS sine of `hz`),
    /// played by `aufile`. baresip HANGS UP THE CALL when the file ends
    /// (`menu: audio error (0,end of file)`), so make `seconds` longer than
    /// the call; `aufile` loads the whole file into memory (~190 KB/s).
    ToneWav { hz: f32, seconds: f32 },
    /// A WAV of your own, played by `aufile`. It must be 48 kHz stereo
    /// (the harness fixes `ausrc_srate`/`ausrc_channels` at 48000/2; without
    /// them aufile refuses a file whose rate differs from the codec's).
    Wav(PathBuf),
}

/// How baresip answers incoming calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnswerMode {
    /// Answers at once (`;answermode=auto`).
    Auto,
    /// Rings (`CALL_INCOMING`) until [`Baresip::answer`] (`;answermode=manual`).
    Manual,
}

/// A registrar account: AOR `sip:USER@REGISTRAR` with digest credentials.
#[derive(Debug, Clone, PartialEq)]
pub struct Registrar {
    /// `host:port` of the registrar, e.g. `127.0.0.1:5060` (also the AOR's domain).
    pub host_port: String,
    pub password: String,
    /// Registration interval in seconds (`;regint=`).
    pub regint: u32,
}

/// Options for [`Baresip::start`].
#[derive(Debug, Clone)]
pub struct BaresipOpts {
    /// The user part of the AOR.
    pub user: String,
    /// SIP port on 127.0.0.1 (UDP and TCP; baresip also takes port+1 for
    /// TLS). `None`: one from [`NetNs::port`].
    pub sip_port: Option<u16>,
    /// `None`: direct calls only (`;regint=0`), AOR `sip:USER@127.0.0.1:PORT`.
    pub registrar: Option<Registrar>,
    pub answer: AnswerMode,
    /// `;audio_codecs=`, e.g. `["opus/48000/2", "PCMU/8000/1"]`; empty: all loaded.
    pub audio_codecs: Vec<String>,
    pub source: AudioSource,
    /// Extra `;key=value` account parameters, e.g. `";mediaenc=srtp-mand"`.
    pub extra_account: String,
    /// URI parameters inside the AOR's `<>`, e.g. `";transport=tcp"`.
    pub uri_params: String,
    /// Extra config lines.
    pub extra_config: Vec<String>,
    /// Video: H.264 through `avcodec` (libx264), the `fakevideo` source and display at this
    /// size. `None`: audio only (no video modules loaded, no m=video offered).
    pub video: Option<(u32, u32)>,
    /// Media encryption (`;mediaenc=` on the account, and its module loaded).
    pub mediaenc: MediaEnc,
    /// `rtcp_mux yes`: offer and accept RFC 5761 rtcp-mux (baresip's default is no).
    pub rtcp_mux: bool,
}

/// baresip's media encryption for an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaEnc {
    /// Plain RTP/AVP.
    None,
    /// `dtls_srtp`: DTLS-SRTP (UDP/TLS/RTP/SAVP, a=fingerprint, a=setup), module `dtls_srtp`.
    DtlsSrtp,
    /// `srtp-mand`: SDES-SRTP required (RTP/SAVP, a=crypto), module `srtp`.
    SrtpMand,
    /// `srtp`: SDES-SRTP offered on RTP/AVP, plain accepted.
    Srtp,
}

impl MediaEnc {
    fn module_and_param(self) -> Option<(&'static str, &'static str)> {
        match self {
            MediaEnc::None => None,
            MediaEnc::DtlsSrtp => Some(("dtls_srtp.so", "dtls_srtp")),
            MediaEnc::SrtpMand => Some(("srtp.so", "srtp-mand")),
            MediaEnc::Srtp => Some(("srtp.so", "srtp")),
        }
    }
}

impl BaresipOpts {
    /// A direct (no registrar) auto-answering peer sending a 1 kHz sine.
    pub fn new(user: &str) -> BaresipOpts {
        BaresipOpts {
            user: user.into(),
            sip_port: None,
            registrar: None,
            answer: AnswerMode::Auto,
            audio_codecs: vec![],
            source: AudioSource::Sine(1000.0),
            extra_account: String::new(),
            uri_params: String::new(),
            extra_config: vec![],
            video: None,
            mediaenc: MediaEnc::None,
            rtcp_mux: false,
        }
    }
    /// Media encryption for the account (`;mediaenc=`).
    pub fn mediaenc(mut self, m: MediaEnc) -> Self {
        self.mediaenc = m;
        self
    }
    /// Offer and accept rtcp-mux.
    pub fn rtcp_mux(mut self, on: bool) -> Self {
        self.rtcp_mux = on;
        self
    }
    /// Send and receive H.264 video at `width`×`height` (see [`BaresipOpts::video`]).
    pub fn video(mut self, width: u32, height: u32) -> Self {
        self.video = Some((width, height));
        self
    }
    /// Use TCP for SIP (`;transport=tcp` on the AOR): registrations and calls.
    pub fn tcp(mut self) -> Self {
        self.uri_params = ";transport=tcp".into();
        self
    }
    pub fn answer(mut self, m: AnswerMode) -> Self {
        self.answer = m;
        self
    }
    pub fn codecs(mut self, c: &[&str]) -> Self {
        self.audio_codecs = c.iter().map(|s| s.to_string()).collect();
        self
    }
    pub fn source(mut self, s: AudioSource) -> Self {
        self.source = s;
        self
    }
    pub fn registrar(mut self, host_port: &str, password: &str) -> Self {
        self.registrar = Some(Registrar { host_port: host_port.into(), password: password.into(), regint: 600 });
        self
    }
    pub fn port(mut self, p: u16) -> Self {
        self.sip_port = Some(p);
        self
    }
}

/// One event from baresip's `ctrl_tcp`, e.g. `CALL_ESTABLISHED`.
#[derive(Debug, Clone)]
pub struct Event {
    /// `type`: CALL_INCOMING, CALL_RINGING, CALL_PROGRESS, CALL_ESTABLISHED,
    /// CALL_CLOSED, CALL_DTMF_START, CALL_DTMF_END, CALL_RTPESTAB, CALL_RTCP,
    /// CALL_LOCAL_SDP, CALL_REMOTE_SDP, REGISTER_OK, REGISTER_FAIL, ...
    pub kind: String,
    /// `param`: the peer URI for call events, the digit for CALL_DTMF_START,
    /// the reason for CALL_CLOSED, `offer`/`answer` for SDP events.
    pub param: String,
    pub direction: String,
    pub peer_uri: String,
    /// baresip's call id (the SIP Call-ID for incoming calls).
    pub call_id: String,
    /// When the harness received it.
    pub at: Instant,
    pub json: Value,
}

/// A command's reply.
#[derive(Debug, Clone)]
pub struct Reply {
    pub ok: bool,
    pub data: String,
}

/// Parsed from the `audio_debug` command (only while a call exists).
#[derive(Debug, Clone, Default)]
pub struct AudioDebug {
    /// `sendrecv`, `sendonly`, `recvonly` or `inactive`: what baresip
    /// negotiated. While the far end holds, baresip shows `recvonly` or
    /// `inactive`.
    pub dir: String,
    /// RTP packets received from the far end (RTCP member `rcvd=`).
    pub rx_packets: Option<u64>,
    /// RTP packets sent (`TX: packets=`).
    pub tx_packets: Option<u64>,
    pub raw: String,
}

/// Parsed from `video_debug` (only while a call with video exists).
#[derive(Debug, Clone, Default)]
pub struct VideoDebug {
    /// Size and count of the frames baresip decoded and handed to its display.
    pub display_width: u32,
    pub display_height: u32,
    pub display_frames: u64,
    /// `n_keyframes` and `n_picup` as baresip counts them.
    pub keyframes: u64,
    pub picture_updates: u64,
    pub raw: String,
}

#[derive(Default)]
struct Shared {
    events: Vec<(Event, bool)>,
    replies: VecDeque<(String, Value)>,
    closed: bool,
}

/// A running baresip.
pub struct Baresip {
    ns: NetNs,
    child: Option<Child>,
    dir: Option<tempfile::TempDir>,
    pub user: String,
    pub sip_port: u16,
    pub ctrl_port: u16,
    registrar: Option<Registrar>,
    stream: Mutex<TcpStream>,
    shared: Arc<(Mutex<Shared>, Condvar)>,
    token: AtomicU64,
    started: Instant,
}

const CMD_TIMEOUT: Duration = Duration::from_secs(10);

impl Baresip {
    /// Writes the config, starts baresip in `ns` and connects the control
    /// client (waits up to 10 s for it).
    pub fn start(ns: &NetNs, opts: BaresipOpts) -> Result<Baresip> {
        let dir = tempfile::Builder::new().prefix(&format!("baresip-{}-", opts.user)).tempdir()?;
        let sip_port = opts.sip_port.unwrap_or_else(|| ns.port());
        let ctrl_port = ns.port();
        let rec = dir.path().join("rec");
        std::fs::create_dir_all(&rec)?;
        let source = match &opts.source {
            AudioSource::Sine(hz) => format!("ausine,{}", hz.round() as u32),
            AudioSource::ToneWav { hz, seconds } => {
                let p = dir.path().join(format!("tone-{hz}.wav"));
                tone::write_sine_wav(&p, *hz, *seconds, 48000, 2, 0.5)?;
                format!("aufile,{}", p.display())
            }
            AudioSource::Wav(p) => format!("aufile,{}", p.display()),
        };
        let mut config = format!(
            "poll_method\tepoll\n\
             sip_listen\t127.0.0.1:{sip_port}\n\
             net_interface\t127.0.0.1\n\
             dns_server\t127.0.0.1:53\n\
             call_local_timeout\t120\n\
             audio_player\talsa,null\n\
             audio_alert\talsa,null\n\
             audio_source\t{source}\n\
             ausrc_srate\t48000\n\
             ausrc_channels\t2\n\
             audio_buffer\t20-160\n\
             jitter_buffer_delay\t5-10\n\
             rtp_timeout\t0\n\
             module_path\t/usr/lib/baresip/modules\n\
             module\tg711.so\n\
             module\tg722.so\n\
             module\topus.so\n\
             module\tausine.so\n\
             module\taufile.so\n\
             module\talsa.so\n\
             module\tsndfile.so\n\
             module_tmp\taccount.so\n\
             module_app\tmenu.so\n\
             module_app\tctrl_tcp.so\n\
             ctrl_tcp_listen\t127.0.0.1:{ctrl_port}\n\
             snd_path\t{}\n\
             opus_bitrate\t64000\n",
            rec.display()
        );
        if let Some((w, h)) = opts.video {
            config.push_str(&format!(
                "module\tavcodec.so\n\
                 module\tfakevideo.so\n\
                 video_source\tfakevideo,nil\n\
                 video_display\tfakevideo,nil\n\
                 video_size\t{w}x{h}\n\
                 video_bitrate\t1000000\n\
                 video_fps\t30\n\
                 avcodec_h264enc\tlibx264\n\
                 avcodec_h264dec\th264\n"
            ));
        }
        if let Some((module, _)) = opts.mediaenc.module_and_param() {
            config.push_str(&format!("module\t{module}\n"));
        }
        config.push_str(if opts.rtcp_mux { "rtcp_mux\tyes\n" } else { "rtcp_mux\tno\n" });
        for l in &opts.extra_config {
            config.push_str(l);
            config.push('\n');
        }
        std::fs::write(dir.path().join("config"), config)?;
        let answer = match opts.answer {
            AnswerMode::Auto => "auto",
            AnswerMode::Manual => "manual",
        };
        let mediaenc = opts.mediaenc.module_and_param().map(|(_, p)| format!(";mediaenc={p}")).unwrap_or_default();
        let codecs = if opts.audio_codecs.is_empty() {
            String::new()
        } else {
            format!(";audio_codecs={}", opts.audio_codecs.join(","))
        };
        let account = match &opts.registrar {
            None => format!(
                "<sip:{}@127.0.0.1:{sip_port}{}>;regint=0;answermode={answer}{codecs}{mediaenc}{}\n",
                opts.user, opts.uri_params, opts.extra_account
            ),
            Some(r) => format!(
                "<sip:{}@{}{}>;auth_pass={};regint={};answermode={answer}{codecs}{mediaenc}{}\n",
                opts.user, r.host_port, opts.uri_params, r.password, r.regint, opts.extra_account
            ),
        };
        std::fs::write(dir.path().join("accounts"), account)?;
        std::fs::write(dir.path().join("contacts"), "")?;
        let log = std::fs::File::create(dir.path().join("baresip.log"))?;
        let child = ns
            .cmd("baresip")
            .arg("-f")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start baresip (Debian package baresip)")?;

        // Connect the one control client, from inside the namespace.
        let deadline = Instant::now() + Duration::from_secs(10);
        let stream = loop {
            let got = ns.enter(move || TcpStream::connect(("127.0.0.1", ctrl_port)))?;
            match got {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => {
                    let text = std::fs::read_to_string(dir.path().join("baresip.log")).unwrap_or_default();
                    let mut child = child;
                    let _ = child.kill();
                    let _ = child.wait();
                    bail!("baresip's ctrl_tcp on port {ctrl_port} not reachable in 10 s: {e}\n{text}");
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        stream.set_nodelay(true).ok();
        let shared = Arc::new((Mutex::new(Shared::default()), Condvar::new()));
        let reader = stream.try_clone()?;
        let sh = shared.clone();
        std::thread::spawn(move || read_loop(reader, sh));
        let b = Baresip {
            ns: ns.clone(),
            child: Some(child),
            dir: Some(dir),
            user: opts.user,
            sip_port,
            ctrl_port,
            registrar: opts.registrar,
            stream: Mutex::new(stream),
            shared,
            token: AtomicU64::new(1),
            started: Instant::now(),
        };
        // baresip accepts the connection before it is fully up; a first
        // round trip proves the UA is ready for commands.
        b.command("reginfo", "")?;
        Ok(b)
    }

    /// The AOR: `sip:USER@127.0.0.1:PORT` (direct) or `sip:USER@REGISTRAR`.
    pub fn aor(&self) -> String {
        match &self.registrar {
            None => format!("sip:{}@127.0.0.1:{}", self.user, self.sip_port),
            Some(r) => format!("sip:{}@{}", self.user, r.host_port),
        }
    }

    /// Where baresip itself listens: `sip:USER@127.0.0.1:PORT` (dial this
    /// for a direct call even when it is registered somewhere).
    pub fn contact_uri(&self) -> String {
        format!("sip:{}@127.0.0.1:{}", self.user, self.sip_port)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn dir(&self) -> &Path {
        self.dir.as_ref().unwrap().path()
    }

    pub fn log_text(&self) -> String {
        let t = std::fs::read_to_string(self.dir().join("baresip.log")).unwrap_or_default();
        // The menu module redraws a status line many times a second; drop it.
        let mut out = String::new();
        for line in t.lines() {
            let l: String = line
                .split("    [")
                .filter(|p| !(p.starts_with("0:") && p.contains("audio=")))
                .collect::<Vec<_>>()
                .join("    [");
            let l = l.trim();
            if !l.is_empty() && !(l.starts_with("[0:") && l.contains("audio=")) {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// Sends `command` with `params` and waits up to 10 s for its reply.
    /// A reply with `"ok":false` is an error carrying baresip's text.
    pub fn command(&self, command: &str, params: &str) -> Result<Reply> {
        let token = self.token.fetch_add(1, Ordering::SeqCst).to_string();
        let body = serde_json::json!({"command": command, "params": params, "token": token}).to_string();
        let frame = format!("{}:{},", body.len(), body);
        self.stream
            .lock()
            .unwrap()
            .write_all(frame.as_bytes())
            .with_context(|| format!("send `{command}` to baresip {}", self.user))?;
        let (lock, cv) = &*self.shared;
        let deadline = Instant::now() + CMD_TIMEOUT;
        let mut g = lock.lock().unwrap();
        loop {
            if let Some(i) = g.replies.iter().position(|(t, _)| *t == token) {
                let (_, v) = g.replies.remove(i).unwrap();
                let ok = v["ok"].as_bool().unwrap_or(false);
                let data = v["data"].as_str().unwrap_or_default().to_string();
                if !ok {
                    bail!("baresip {}: `{command} {params}` failed: {data}", self.user);
                }
                return Ok(Reply { ok, data });
            }
            if g.closed {
                bail!("baresip {}: control connection closed during `{command}`\n{}", self.user, self.log_text());
            }
            let now = Instant::now();
            if now >= deadline {
                bail!("baresip {}: no reply to `{command}` within 10 s", self.user);
            }
            g = cv.wait_timeout(g, deadline - now).unwrap().0;
        }
    }

    /// Dials `uri` (`dial`). The call is up when `CALL_ESTABLISHED` arrives.
    pub fn dial(&self, uri: &str) -> Result<()> {
        self.command("dial", uri).map(drop)
    }
    /// Hangs up the current call (`hangup`).
    pub fn hangup(&self) -> Result<()> {
        self.command("hangup", "").map(drop)
    }
    /// Answers the ringing call (`accept`).
    pub fn answer(&self) -> Result<()> {
        self.command("accept", "").map(drop)
    }
    /// Puts the current call on hold (`hold`: a re-INVITE with a=sendonly).
    pub fn hold(&self) -> Result<()> {
        self.command("hold", "").map(drop)
    }
    /// Resumes the held call (`resume`).
    pub fn resume(&self) -> Result<()> {
        self.command("resume", "").map(drop)
    }
    /// Sends DTMF as RFC 4733 events, one `sndcode` per digit (0-9 * # A-D).
    pub fn send_dtmf(&self, digits: &str) -> Result<()> {
        for d in digits.chars() {
            self.command("sndcode", &d.to_string())?;
            std::thread::sleep(Duration::from_millis(250));
        }
        Ok(())
    }
    /// `callstat`: baresip's text dump of the current call (SDP, state).
    pub fn callstat(&self) -> Result<String> {
        self.command("callstat", "").map(|r| r.data)
    }
    /// `reginfo`: the text table of user agents and their registration.
    pub fn reginfo(&self) -> Result<String> {
        self.command("reginfo", "").map(|r| r.data)
    }
    /// `audio_debug`, parsed. Fails when there is no call.
    pub fn audio_debug(&self) -> Result<AudioDebug> {
        let raw = self.command("audio_debug", "")?.data;
        let grab = |key: &str| -> Option<String> {
            raw.rfind(key)
                .map(|i| raw[i + key.len()..].chars().take_while(|c| !c.is_whitespace() && *c != ',').collect())
        };
        Ok(AudioDebug {
            dir: grab("audio dir=").unwrap_or_default(),
            rx_packets: grab("rcvd=").and_then(|s| s.parse().ok()),
            tx_packets: grab("TX: packets=").and_then(|s| s.parse().ok()),
            raw,
        })
    }

    /// `video_debug`: what baresip's display got (frames and size) and keyframe figures.
    pub fn video_debug(&self) -> Result<VideoDebug> {
        let raw = self.command("video_debug", "")?.data;
        let mut v = VideoDebug { raw: raw.clone(), ..Default::default() };
        for line in raw.lines() {
            let l = line.trim();
            // "vidisp: fakevideo 1280 x 720 frames=123"
            if let Some(rest) = l.strip_prefix("vidisp:") {
                let f: Vec<&str> = rest.split_whitespace().collect();
                if f.len() >= 5 && f[2] == "x" {
                    v.display_width = f[1].parse().unwrap_or(0);
                    v.display_height = f[3].parse().unwrap_or(0);
                    v.display_frames = f[4].trim_start_matches("frames=").parse().unwrap_or(0);
                }
            }
            if let Some(rest) = l.strip_prefix("n_keyframes=") {
                let mut it = rest.split(", n_picup=");
                v.keyframes = it.next().and_then(|x| x.trim().parse().ok()).unwrap_or(0);
                v.picture_updates = it.next().and_then(|x| x.trim().parse().ok()).unwrap_or(0);
            }
        }
        Ok(v)
    }

    /// True when `reginfo` shows the account registered (status `OK`).
    pub fn is_registered(&self) -> Result<bool> {
        let r = self.reginfo()?;
        Ok(r.lines().any(|l| l.contains(&self.aor()) && l.contains("OK ")))
    }

    /// Polls `reginfo` until registered (registration may complete before the
    /// control client connects, so REGISTER_OK can't be relied on).
    pub fn wait_registered(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.is_registered()? {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "baresip {} not registered within {timeout:?}: {}\n{}",
                    self.user,
                    self.reginfo().unwrap_or_default(),
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the first not yet taken event of `kind` (e.g.
    /// `CALL_ESTABLISHED`) and takes it. Events that arrived before the call
    /// count too, so take each one you expect in order.
    pub fn wait_event(&self, kind: &str, timeout: Duration) -> Result<Event> {
        self.wait_event_where(|e| e.kind == kind, timeout)
            .map_err(|e| anyhow!("baresip {}: waiting for {kind}: {e}", self.user))
    }

    /// Like [`Baresip::wait_event`] with any predicate.
    pub fn wait_event_where(&self, pred: impl Fn(&Event) -> bool, timeout: Duration) -> Result<Event> {
        let (lock, cv) = &*self.shared;
        let deadline = Instant::now() + timeout;
        let mut g = lock.lock().unwrap();
        loop {
            if let Some((e, taken)) = g.events.iter_mut().find(|(e, t)| !*t && pred(e)) {
                *taken = true;
                return Ok(e.clone());
            }
            if g.closed {
                bail!("control connection closed");
            }
            let now = Instant::now();
            if now >= deadline {
                let seen: Vec<String> = g
                    .events
                    .iter()
                    .filter(|(e, _)| e.kind != "CALL_RTCP")
                    .map(|(e, _)| format!("{}({})", e.kind, e.param))
                    .collect();
                bail!("none within {timeout:?}; events so far: {}", seen.join(" "));
            }
            g = cv.wait_timeout(g, deadline - now).unwrap().0;
        }
    }

    /// All events so far (CALL_RTCP included), oldest first.
    pub fn events(&self) -> Vec<Event> {
        let g = self.shared.0.lock().unwrap();
        g.events.iter().map(|(e, _)| e.clone()).collect()
    }

    /// Digits received so far, from CALL_DTMF_START events, in order.
    pub fn received_dtmf(&self) -> String {
        self.events().iter().filter(|e| e.kind == "CALL_DTMF_START").map(|e| e.param.as_str()).collect()
    }

    /// Newest WAV of received (decoded) audio written by `sndfile`
    /// (`dump-<time>-dec.wav`, one per call, in the codec's rate and
    /// channels). It stops growing at the call's first hold (a baresip bug).
    pub fn received_wav_path(&self) -> Option<PathBuf> {
        self.newest_wav("-dec.wav")
    }

    /// Polls the received-audio WAV (every 200 ms, up to `timeout`) until it
    /// holds `min_voiced` voiced 100 ms windows after its first 300 ms, and
    /// returns the [`tone::ToneReport`] for `hz` ± 25 Hz. Judge `fraction`
    /// yourself (e.g. ≥ 0.8). Errors if too little audio arrives in time.
    /// The recording lags the call by up to seconds on a loaded machine, so
    /// poll like this rather than sleeping a fixed time.
    pub fn wait_received_tone(&self, hz: f32, min_voiced: usize, timeout: Duration) -> Result<tone::ToneReport> {
        let deadline = Instant::now() + timeout;
        loop {
            let r = match self.received_wav_path() {
                Some(p) => Some(tone::tone_fraction(&p, hz, 25.0, 100, 300)?),
                None => None,
            };
            match r {
                Some(r) if r.voiced >= min_voiced => return Ok(r),
                r if Instant::now() > deadline => bail!(
                    "baresip {}: only {} voiced windows of received audio after {timeout:?} ({:?})",
                    self.user,
                    r.as_ref().map_or(0, |r| r.voiced),
                    r
                ),
                _ => std::thread::sleep(Duration::from_millis(200)),
            }
        }
    }

    /// Newest WAV of what baresip sent (`dump-<time>-enc.wav`).
    pub fn sent_wav_path(&self) -> Option<PathBuf> {
        self.newest_wav("-enc.wav")
    }

    fn newest_wav(&self, suffix: &str) -> Option<PathBuf> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(self.dir().join("rec"))
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().ends_with(suffix))
            .collect();
        v.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).unwrap_or(std::time::SystemTime::UNIX_EPOCH));
        v.pop()
    }

    /// Resident set size (VmRSS, KiB) from /proc, if running.
    pub fn rss_kib(&self) -> Option<u64> {
        rss_kib(self.pid())
    }

    /// Seconds since start.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// True while the process runs.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// `quit`, then SIGTERM after 2 s, then SIGKILL after 2 s more.
    /// Returns the exit status (None if it had to be killed).
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        let _ = self.send_only("quit");
        if let Some(st) = wait_exit(&mut child, Duration::from_secs(2)) {
            return Some(st);
        }
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        if let Some(st) = wait_exit(&mut child, Duration::from_secs(2)) {
            return Some(st);
        }
        let _ = child.kill();
        let _ = child.wait();
        None
    }

    fn send_only(&self, command: &str) -> std::io::Result<()> {
        let body = serde_json::json!({"command": command, "params": "", "token": "bye"}).to_string();
        let frame = format!("{}:{},", body.len(), body);
        self.stream.lock().unwrap().write_all(frame.as_bytes())
    }

    /// Keeps the temp dir (config, log, recordings) after drop; returns it.
    pub fn keep_dir(&mut self) -> PathBuf {
        self.dir.take().map(|d| d.keep()).unwrap_or_default()
    }

    /// The namespace it runs in.
    pub fn netns(&self) -> &NetNs {
        &self.ns
    }
}

impl Drop for Baresip {
    fn drop(&mut self) {
        self.stop();
        if std::env::var_os("HUIS_KEEP_PEERS").is_some() {
            if let Some(d) = self.dir.take() {
                eprintln!("kept baresip {} files in {}", self.user, d.keep().display());
            }
        }
    }
}

pub(crate) fn wait_exit(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// VmRSS of `pid` in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// Reads netstrings (`LEN:JSON,`) and files them as replies or events.
fn read_loop(mut s: TcpStream, shared: Arc<(Mutex<Shared>, Condvar)>) {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        let n = match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        loop {
            let Some(colon) = buf.iter().position(|&b| b == b':') else {
                break;
            };
            let Some(len) = std::str::from_utf8(&buf[..colon]).ok().and_then(|l| l.parse::<usize>().ok()) else {
                // Not a netstring: drop the connection's state honestly.
                buf.clear();
                break;
            };
            if buf.len() < colon + 1 + len + 1 {
                break;
            }
            let body = buf[colon + 1..colon + 1 + len].to_vec();
            buf.drain(..colon + 1 + len + 1);
            let Ok(v) = serde_json::from_slice::<Value>(&body) else {
                continue;
            };
            let (lock, cv) = &*shared;
            let mut g = lock.lock().unwrap();
            if v["response"].as_bool() == Some(true) {
                let t = v["token"].as_str().unwrap_or_default().to_string();
                g.replies.push_back((t, v));
            } else if v["event"].as_bool() == Some(true) {
                let st = |k: &str| v[k].as_str().unwrap_or_default().to_string();
                let e = Event {
                    kind: st("type"),
                    param: st("param"),
                    direction: st("direction"),
                    peer_uri: st("peeruri"),
                    call_id: st("id"),
                    at: Instant::now(),
                    json: v.clone(),
                };
                g.events.push((e, false));
            }
            cv.notify_all();
        }
    }
    let (lock, cv) = &*shared;
    lock.lock().unwrap().closed = true;
    cv.notify_all();
}
