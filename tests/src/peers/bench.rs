//! Call set-up benchmark: time from dial to established, and memory during
//! a call, for any dialer against the same auto-answering baresip.
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

use anyhow::{Result, bail};

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
}

impl Dialer for HuisdDialer<'_> {
    fn label(&self) -> String {
        match self.how {
            HuisdDial::OpenConnection => "huisd → baresip (Dial on an open D-Bus connection)".into(),
            HuisdDial::Huisctl => "huisd → baresip (`huisctl dial`, client start included)".into(),
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
