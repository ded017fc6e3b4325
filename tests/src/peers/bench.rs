//! Call set-up benchmark: time from dial to established, and memory during
//! a call, for any dialer against the same auto-answering baresip; and the
//! CPU cost of media encryption in a call (see [`cpu_in_call`]).
//!
//! Cases ([`Case`]): plain SIP over UDP with RTP, straight to the callee;
//! SIP over TLS with SDES-SRTP through Kamailio, where every party is
//! registered over TLS and calls go over the registration's connection
//! ([`TlsProxy`]); DTLS-SRTP with SIP over UDP, straight to the callee (huisd
//! offers SDES whenever its SIP runs over TLS, so DTLS-SRTP is what it offers
//! over UDP). Every case has a baresip row and a huisd row against the same
//! callee, in the same run.
//!
//! "Established" is measured at the callee, a baresip: the moment its
//! `CALL_ESTABLISHED` event (sent when the ACK arrives) reaches the harness,
//! minus the moment the dial was issued. That end point is the same for
//! every dialer, so a huisd row and a baresip row compare fairly. The callee
//! hangs up each call, so a dialer needs no hang-up command.
//!
//! A dialer is anything implementing [`Dialer`]: [`Baresip`] itself, or
//! [`HuisdDialer`], huisd driven by `huisctl dial`. baresip is told to dial
//! over its open ctrl_tcp socket; huisd by starting the huisctl process,
//! which connects to the bus first. So huisd's times include a client
//! start-up that baresip's do not: the comparison leans against huisd.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::baresip::{Baresip, BaresipOpts, rss_kib};
use super::certs::Ca;
use super::kamailio::{Kamailio, KamailioOpts, KamailioTls};
use super::netns::NetNs;

/// Something that places calls.
pub trait Dialer {
    /// Who dials, e.g. `baresip`.
    fn label(&self) -> String;
    /// Starts a call to `uri`; returns as soon as the dial is issued.
    fn dial(&mut self, uri: &str) -> Result<()>;
    /// The process whose RSS is reported, if any.
    fn pid(&self) -> Option<u32>;
    /// Called after the callee hung up (e.g. to wait until the dialer is idle).
    fn after_call(&mut self) -> Result<()> {
        Ok(())
    }
}

impl Dialer for Baresip {
    fn label(&self) -> String {
        "baresip".into()
    }
    fn dial(&mut self, uri: &str) -> Result<()> {
        Baresip::dial(self, uri)
    }
    fn pid(&self) -> Option<u32> {
        Some(Baresip::pid(self))
    }
    fn after_call(&mut self) -> Result<()> {
        self.wait_event("CALL_CLOSED", Duration::from_secs(5)).map(drop)
    }
}

/// How the benchmark tells huisd to dial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HuisdDial {
    /// `Room1.Dial` over a D-Bus connection the harness keeps open: the
    /// same footing as baresip, which is told over its open ctrl_tcp socket.
    OpenConnection,
    /// `huisctl dial URI`: a person's or a script's way, including the
    /// client's process start and bus connection (a few ms).
    Huisctl,
}

/// huisd as the dialer: started in the namespace on the test's private bus;
/// the next call is placed only once Room1.State is `idle` again.
pub struct HuisdDialer<'a> {
    bus: &'a crate::Bus,
    huisd: crate::Huisd,
    how: HuisdDial,
    rt: tokio::runtime::Runtime,
    room: huis_firmware::dbus::client::Room1Proxy<'static>,
}

impl<'a> HuisdDialer<'a> {
    /// Starts huisd in `ns` with `config` and waits until it owns its bus name.
    pub fn start(ns: &NetNs, bus: &'a crate::Bus, config: &str, how: HuisdDial) -> Result<HuisdDialer<'a>> {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
        let huisd = rt.block_on(super::huisd::start_in(ns, bus, Some(config)));
        let room = rt.block_on(async {
            let conn = bus.connect().await;
            huis_firmware::dbus::client::Room1Proxy::builder(&conn)
                .cache_properties(zbus::proxy::CacheProperties::No)
                .build()
                .await
        })?;
        Ok(HuisdDialer { bus, huisd, how, rt, room })
    }

    fn state(&self) -> Result<String> {
        Ok(self.rt.block_on(self.room.state())?)
    }

    /// huisd's log so far (for a failure's message, and to count TLS handshakes).
    pub fn log_text(&self) -> String {
        self.huisd.log_text()
    }

    /// TLS connections huisd opened and whose certificate it accepted.
    pub fn tls_handshakes(&self) -> usize {
        self.huisd.log_text().matches("TLS connection up").count()
    }
}

impl Dialer for HuisdDialer<'_> {
    fn label(&self) -> String {
        match self.how {
            HuisdDial::OpenConnection => "huisd (Dial on an open D-Bus connection)".into(),
            HuisdDial::Huisctl => "huisd (`huisctl dial`, client start included)".into(),
        }
    }
    fn dial(&mut self, uri: &str) -> Result<()> {
        match self.how {
            HuisdDial::OpenConnection => Ok(self.rt.block_on(self.room.dial(uri, Default::default()))?),
            HuisdDial::Huisctl => {
                let out = crate::huisctl(self.bus, &["dial", uri]);
                if !out.status.success() {
                    bail!("huisctl dial {uri}: {}", crate::stderr(&out));
                }
                Ok(())
            }
        }
    }
    fn pid(&self) -> Option<u32> {
        Some(self.huisd.child.id())
    }
    fn after_call(&mut self) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let state = self.state()?;
            if state == "idle" {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("huisd not idle 5 s after the callee hung up (state {state})");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone)]
pub struct Row {
    /// Signalling and media, e.g. `SIP/UDP, RTP`.
    pub case: String,
    /// `dialer → callee`.
    pub label: String,
    pub calls: usize,
    pub failures: usize,
    /// Dial-to-established times of the successful calls, ms, sorted.
    pub times_ms: Vec<f64>,
    /// VmRSS of the dialer / the callee baresip during the last call, KiB.
    pub dialer_rss_kib: Option<u64>,
    pub callee_rss_kib: Option<u64>,
}

impl Row {
    /// Nearest-rank percentile of the successful calls, ms.
    pub fn percentile(&self, p: f64) -> Option<f64> {
        if self.times_ms.is_empty() {
            return None;
        }
        let rank = ((p / 100.0) * self.times_ms.len() as f64).ceil() as usize;
        Some(self.times_ms[rank.clamp(1, self.times_ms.len()) - 1])
    }
}

/// Places `calls` calls from `dialer` to `callee` (auto-answer) at `uri`
/// (its own address, or its AOR at a proxy), one at a time. Each call is
/// held for `hold` (the last one at least 2 s, when RSS is sampled), then the
/// callee hangs up. `case` names signalling and media for the table.
pub fn measure(
    dialer: &mut dyn Dialer,
    callee: &Baresip,
    uri: &str,
    case: &str,
    calls: usize,
    hold: Duration,
) -> Result<Row> {
    let mut row = Row {
        case: case.into(),
        label: format!("{} → baresip", dialer.label()),
        calls,
        failures: 0,
        times_ms: vec![],
        dialer_rss_kib: None,
        callee_rss_kib: None,
    };
    for i in 0..calls {
        let t0 = Instant::now();
        dialer.dial(uri)?;
        match callee.wait_event("CALL_ESTABLISHED", Duration::from_secs(10)) {
            Ok(ev) => row.times_ms.push(ev.at.saturating_duration_since(t0).as_secs_f64() * 1000.0),
            Err(e) => {
                eprintln!("{}: call {i} failed: {e}", row.label);
                row.failures += 1;
                let _ = callee.hangup();
                let _ = dialer.after_call();
                continue;
            }
        }
        if i + 1 == calls {
            std::thread::sleep(hold.max(Duration::from_secs(2)));
            row.dialer_rss_kib = dialer.pid().and_then(rss_kib);
            row.callee_rss_kib = callee.rss_kib();
        } else {
            std::thread::sleep(hold);
        }
        callee.hangup()?;
        callee.wait_event("CALL_CLOSED", Duration::from_secs(5))?;
        dialer.after_call()?;
        std::thread::sleep(Duration::from_millis(100));
    }
    row.times_ms.sort_by(|a, b| a.total_cmp(b));
    Ok(row)
}

/// The rows as a Markdown table.
pub fn markdown(rows: &[Row]) -> String {
    let mut s = String::from(
        "| signalling, media | dialer → callee | calls ok | median dial→established (ms) | p95 (ms) | max (ms) | dialer RSS in call (MiB) | callee baresip RSS (MiB) |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    let ms = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "–".into());
    let mib = |v: Option<u64>| v.map(|v| format!("{:.1}", v as f64 / 1024.0)).unwrap_or_else(|| "–".into());
    for r in rows {
        s += &format!(
            "| {} | {} | {}/{} | {} | {} | {} | {} | {} |\n",
            r.case,
            r.label,
            r.calls - r.failures,
            r.calls,
            ms(r.percentile(50.0)),
            ms(r.percentile(95.0)),
            ms(r.times_ms.last().copied()),
            mib(r.dialer_rss_kib),
            mib(r.callee_rss_kib)
        );
    }
    s
}

/// Kamailio as registrar and proxy with its TLS listener, and a test CA: the realistic set-up
/// for calls over TLS. Parties register over TLS and call through Kamailio, each over the
/// connection its registration opened.
pub struct TlsProxy {
    pub ca: Ca,
    pub kamailio: Kamailio,
    pub tls_port: u16,
    // Holds the CA's and the certificates' files; dropped last.
    dir: tempfile::TempDir,
}

impl TlsProxy {
    /// A CA, a certificate for 127.0.0.1 and Kamailio with TLS knowing `users` (user, password).
    pub fn start(ns: &NetNs, users: &[(&str, &str)]) -> Result<TlsProxy> {
        let dir = tempfile::Builder::new().prefix("bench-tls-").tempdir()?;
        let ca = Ca::new(dir.path(), "bench")?;
        let server = ca.issue("kamailio", &["IP:127.0.0.1"])?;
        let mut o = KamailioOpts::new(users);
        o.tls = Some(KamailioTls { port: None, cert: server.cert, key: server.key, ca: ca.cert.clone() });
        let kamailio = Kamailio::start_with(ns, o)?;
        let tls_port = kamailio.tls_port.context("Kamailio started without its TLS port")?;
        Ok(TlsProxy { ca, kamailio, tls_port, dir })
    }

    /// `sip:USER@127.0.0.1:TLS_PORT;transport=tls`: a user's AOR at the proxy, reached over TLS.
    pub fn aor(&self, user: &str) -> String {
        format!("sip:{user}@127.0.0.1:{};transport=tls", self.tls_port)
    }

    /// baresip with `opts`, registered over TLS as `opts.user` (waits for the registration).
    /// It trusts the CA and has a certificate of its own (its TLS listener is on its SIP
    /// port + 1; both ports are taken from `ns`).
    pub fn baresip(&self, ns: &NetNs, opts: BaresipOpts, password: &str) -> Result<Baresip> {
        let port = ns.port();
        let _tls_listener = ns.port();
        let cert = self.ca.issue(&format!("baresip-{}", opts.user), &["IP:127.0.0.1"])?;
        let mut o = opts.port(port).registrar(&format!("127.0.0.1:{}", self.tls_port), password);
        o.uri_params = ";transport=tls".into();
        o.extra_config.push(format!("sip_certificate\t{}", cert.both.display()));
        o.extra_config.push(format!("sip_cafile\t{}", self.ca.cert.display()));
        let b = Baresip::start(ns, o)?;
        b.wait_registered(Duration::from_secs(10)).with_context(|| {
            format!(
                "baresip {} not registered over TLS\n{}\n--- kamailio:\n{}",
                b.user,
                b.log_text(),
                self.kamailio.log_text()
            )
        })?;
        Ok(b)
    }

    /// huisd's configuration: SIP on 127.0.0.1:`port`, registered as `user` over TLS only
    /// (`sip_tls = "required"`), media encryption required, `extra` appended.
    pub fn huisd_config(&self, port: u16, user: &str, password: &str, extra: &str) -> String {
        format!(
            "[sip]\nlisten = \"127.0.0.1:{port}\"\ntls_ca_file = \"{}\"\n\
             [call]\nsip_tls = \"required\"\nmedia_encryption = \"required\"\n\
             [account]\nregistrar = \"sips:127.0.0.1:{}\"\nuser = \"{user}\"\npassword = \"{password}\"\n{extra}",
            self.ca.cert.display(),
            self.tls_port
        )
    }

    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }
}

impl HuisdDialer<'_> {
    /// Waits until huisd's registration reads `registered…`; fails with its status and log.
    pub fn wait_registered(&self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let reg = self.rt.block_on(self.room.registration())?;
            if reg.starts_with("registered") {
                return Ok(());
            }
            if Instant::now() > deadline {
                let last = self.rt.block_on(self.room.last_error()).unwrap_or_default();
                bail!(
                    "huisd not registered within {timeout:?}: registration {reg:?}, LastError {last:?}\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// CPU time (user + system) a process has used so far, in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: count fields after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of proc(5); `rest` starts at field 3.
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// Clock ticks per second (`sysconf(_SC_CLK_TCK)`).
pub fn ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

/// One measured window of an established call.
#[derive(Debug, Clone)]
pub struct CpuWindow {
    /// e.g. `plain RTP (SIP/UDP)`.
    pub mode: String,
    pub round: usize,
    pub secs: f64,
    /// CPU of huisd and of the peer baresip over the window, % of one core.
    pub huisd_pct: f64,
    pub peer_pct: f64,
    /// What `Call1.MediaEncryption` said, and huisd's RTP figures over the window.
    pub media_encryption: String,
    pub audio_packets_per_s: f64,
    pub video_frames_per_s: f64,
    pub video_kbps: f64,
}

/// CPU of `huisd` and `peer` over `window` of a call that is up: user + system time from
/// /proc/PID/stat at both ends. `stats` reads huisd's call figures (Call1.Stats as JSON)
/// at both ends, for the packet and frame rates.
pub fn cpu_in_call(
    mode: &str,
    round: usize,
    huisd: u32,
    peer: u32,
    window: Duration,
    stats: &dyn Fn() -> Result<serde_json::Value>,
) -> Result<CpuWindow> {
    let (s0, h0, p0, t0) = (stats()?, cpu_ticks(huisd), cpu_ticks(peer), Instant::now());
    std::thread::sleep(window);
    let (h1, p1, secs, s1) = (cpu_ticks(huisd), cpu_ticks(peer), t0.elapsed().as_secs_f64(), stats()?);
    let (Some(h0), Some(h1), Some(p0), Some(p1)) = (h0, h1, p0, p1) else {
        bail!("{mode}: huisd ({huisd}) or baresip ({peer}) is gone: no /proc/PID/stat");
    };
    let pct = |a: u64, b: u64| (b - a) as f64 / ticks_per_second() / secs * 100.0;
    let num = |s: &serde_json::Value, k: &str| s["stats"][k].as_f64().unwrap_or(0.0);
    let rate = |k: &str| (num(&s1, k) - num(&s0, k)) / secs;
    Ok(CpuWindow {
        mode: mode.into(),
        round,
        secs,
        huisd_pct: pct(h0, h1),
        peer_pct: pct(p0, p1),
        media_encryption: s1["media_encryption"].as_str().unwrap_or("").into(),
        audio_packets_per_s: rate("packets_sent") + rate("packets_received"),
        video_frames_per_s: rate("video_frames_sent") + rate("video_frames_decoded"),
        video_kbps: num(&s1, "video_bitrate_kbps"),
    })
}

/// The CPU windows as a Markdown table, then the mean of each mode and its difference to the
/// first mode (the plain one).
pub fn cpu_markdown(windows: &[CpuWindow]) -> String {
    let mut s = String::from(
        "| mode | round | window (s) | MediaEncryption | huisd CPU (% of one core) | baresip CPU (%) | audio packets/s (sent + received) | video frames/s (sent + decoded) | video send kbit/s |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for w in windows {
        s += &format!(
            "| {} | {} | {:.0} | {} | {:.2} | {:.2} | {:.0} | {:.0} | {:.0} |\n",
            w.mode,
            w.round,
            w.secs,
            if w.media_encryption.is_empty() { "–" } else { &w.media_encryption },
            w.huisd_pct,
            w.peer_pct,
            w.audio_packets_per_s,
            w.video_frames_per_s,
            w.video_kbps
        );
    }
    let mut modes: Vec<&str> = Vec::new();
    for w in windows {
        if !modes.contains(&w.mode.as_str()) {
            modes.push(&w.mode);
        }
    }
    let mean = |m: &str, f: fn(&CpuWindow) -> f64| {
        let v: Vec<f64> = windows.iter().filter(|w| w.mode == m).map(f).collect();
        v.iter().sum::<f64>() / v.len().max(1) as f64
    };
    let spread = |m: &str| {
        let v: Vec<f64> = windows.iter().filter(|w| w.mode == m).map(|w| w.huisd_pct).collect();
        let (lo, hi) = v.iter().fold((f64::MAX, f64::MIN), |(l, h), x| (l.min(*x), h.max(*x)));
        hi - lo
    };
    s += "\n| mode | huisd CPU, mean (% of one core) | spread between rounds | difference to the first mode |\n| --- | --- | --- | --- |\n";
    let base = modes.first().map(|m| mean(m, |w| w.huisd_pct)).unwrap_or(0.0);
    for m in &modes {
        let v = mean(m, |w| w.huisd_pct);
        s += &format!("| {m} | {v:.2} | {:.2} | {:+.2} |\n", spread(m), v - base);
    }
    s
}
