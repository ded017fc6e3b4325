//! Call set-up benchmark: time from dial to established, and memory during
//! a call, for any dialer against the same auto-answering baresip.
//!
//! "Established" is measured at the callee, a baresip: the moment its
//! `CALL_ESTABLISHED` event (sent when the ACK arrives) reaches the harness,
//! minus the moment the dial was issued. That end point is the same for
//! every dialer, so a huisd row and a baresip row compare fairly. The callee
//! hangs up each call, so a dialer needs no hang-up command.
//!
//! A dialer is anything implementing [`Dialer`]: [`Baresip`] itself, or a
//! [`CommandDialer`] that runs a shell command inside the namespace (e.g.
//! `huisctl --session dial {uri}`), optionally after starting a long-running
//! process there (e.g. huisd) and waiting for a readiness command.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::baresip::{Baresip, rss_kib};
use super::netns::NetNs;

/// Something that places calls.
pub trait Dialer {
    /// Row label, e.g. `baresip → baresip`.
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
        "baresip → baresip".into()
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

/// A dialer driven by shell commands run inside the namespace.
pub struct CommandDialer {
    pub label: String,
    ns: NetNs,
    /// `sh -c` command; `{uri}` is replaced by the callee's URI.
    pub dial_cmd: String,
    /// Process name (as in /proc/PID/comm) whose RSS to report, e.g. `huisd`.
    pub process: Option<String>,
    setup: Option<Child>,
}

impl CommandDialer {
    /// With `setup`, starts that command in the background inside `ns` and
    /// polls `ready` (a command, every 200 ms, up to 60 s) until it succeeds.
    pub fn new(
        ns: &NetNs,
        label: &str,
        dial_cmd: &str,
        process: Option<&str>,
        setup: Option<&str>,
        ready: Option<&str>,
    ) -> Result<CommandDialer> {
        let setup = match setup {
            Some(s) => Some(
                ns.cmd("sh").args(["-c", s]).stdin(Stdio::null()).spawn().with_context(|| format!("start `{s}`"))?,
            ),
            None => None,
        };
        if let Some(r) = ready {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let ok = ns
                    .cmd("sh")
                    .args(["-c", r])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success());
                if ok {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("`{r}` did not succeed within 60 s");
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        Ok(CommandDialer {
            label: label.into(),
            ns: ns.clone(),
            dial_cmd: dial_cmd.into(),
            process: process.map(str::to_string),
            setup,
        })
    }
}

impl Dialer for CommandDialer {
    fn label(&self) -> String {
        self.label.clone()
    }
    fn dial(&mut self, uri: &str) -> Result<()> {
        let cmd = self.dial_cmd.replace("{uri}", uri);
        let out = self.ns.cmd("sh").args(["-c", &cmd]).output()?;
        if !out.status.success() {
            bail!("`{cmd}` failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        }
        Ok(())
    }
    fn pid(&self) -> Option<u32> {
        let name = self.process.as_deref()?;
        let procs = match self.ns.name() {
            Some(n) => {
                String::from_utf8(std::process::Command::new("ip").args(["netns", "pids", n]).output().ok()?.stdout)
                    .ok()?
            }
            None => {
                String::from_utf8(std::process::Command::new("pgrep").args(["-x", name]).output().ok()?.stdout).ok()?
            }
        };
        procs
            .split_whitespace()
            .filter_map(|p| p.parse::<u32>().ok())
            .find(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == name))
    }
}

impl Drop for CommandDialer {
    fn drop(&mut self) {
        if let Some(mut c) = self.setup.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            if super::baresip::wait_exit(&mut c, Duration::from_secs(3)).is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

/// One row of the table.
#[derive(Debug, Clone)]
pub struct Row {
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

/// Places `calls` calls from `dialer` to `callee` (auto-answer), one at a
/// time. Each call is held for `hold` (the last one at least 2 s, when RSS
/// is sampled), then the callee hangs up.
pub fn measure(dialer: &mut dyn Dialer, callee: &Baresip, calls: usize, hold: Duration) -> Result<Row> {
    let mut row =
        Row { label: dialer.label(), calls, failures: 0, times_ms: vec![], dialer_rss_kib: None, callee_rss_kib: None };
    let uri = callee.contact_uri();
    for i in 0..calls {
        let t0 = Instant::now();
        dialer.dial(&uri)?;
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
        "| dialer → callee | calls ok | median dial→established (ms) | p95 (ms) | max (ms) | dialer RSS in call (MiB) | callee baresip RSS (MiB) |\n\
         | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    let ms = |v: Option<f64>| v.map(|v| format!("{v:.1}")).unwrap_or_else(|| "–".into());
    let mib = |v: Option<u64>| v.map(|v| format!("{:.1}", v as f64 / 1024.0)).unwrap_or_else(|| "–".into());
    for r in rows {
        s += &format!(
            "| {} | {}/{} | {} | {} | {} | {} | {} |\n",
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
