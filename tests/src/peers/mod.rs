//! Real SIP peers for end-to-end tests: baresip, Kamailio and SIPp in a
//! private network namespace per test, plus tone analysis and a sender of
//! malformed SIP; and WebRTC peers: Janus's VideoRoom with headless Chromium
//! participants, and our own WHIP/WHEP server on aiortc. See `README-peers.md` here for how each peer is configured
//! and the quirks found on the way.

pub mod baresip;
pub mod bench;
pub mod bfcp_peer;
pub mod capture;
pub mod certs;
pub mod chromium;
pub mod dnsmasq;
pub mod fleet;
pub mod huisd;
pub mod impair;
pub mod janus;
pub mod kamailio;
pub mod malformed;
pub mod mosquitto;
pub mod mqtt;
pub mod netfault;
pub mod netns;
pub mod picture;
pub mod postgres;
pub mod sipp;
pub mod tone;
pub mod turn;
pub mod upload;
pub mod webhook;
pub mod whip;

pub use baresip::{AnswerMode, AudioSource, Baresip, BaresipOpts, MediaEnc, VideoDebug};
pub use capture::{Udp, capture};
pub use certs::{Ca, Issued};
pub use chromium::{Chromium, ChromiumOpts, FeedStats, PageStats, PublishStats};
pub use dnsmasq::Dnsmasq;
pub use impair::{ImpairedLink, Impairment};
pub use janus::{Janus, Participant};
pub use kamailio::{Algorithm, Kamailio, KamailioOpts, KamailioTls};
pub use malformed::{Transport, options_ping, options_ping_uri};
pub use mosquitto::Mosquitto;
pub use netfault::{Nft, fd_count, tcp_flood};
pub use netns::NetNs;
pub use sipp::{Sipp, SippOpts, SippResult};
pub use turn::Turn;
pub use whip::{WhipServer, WhipSession, WhipStats};

/// Aborts the whole test binary if one test runs past `secs`: a hung peer
/// must fail CI, not stall it. Keep the returned sender alive for the test's
/// length (dropping it disarms the watchdog). Stale namespaces are removed by
/// the next run.
pub fn watchdog(name: &'static str, secs: u64) -> std::sync::mpsc::Sender<()> {
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    std::thread::spawn(move || {
        let limit = std::time::Duration::from_secs(secs);
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
            eprintln!("test {name} ran past its hard limit of {secs} s: aborting");
            std::process::abort();
        }
    });
    tx
}

/// Waits until something listens on 127.0.0.1:`port` inside `ns`, for at most `secs`; fails
/// with `log()` (the daemon's own words) if `child` exits or time runs out first.
pub fn wait_listening(
    ns: &NetNs,
    port: u16,
    child: &mut std::process::Child,
    what: &str,
    secs: u64,
    log: impl Fn() -> String,
) -> anyhow::Result<()> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    loop {
        let timeout = std::time::Duration::from_millis(200);
        if ns.enter(move || std::net::TcpStream::connect_timeout(&addr, timeout).is_ok())? {
            return Ok(());
        }
        if let Ok(Some(st)) = child.try_wait() {
            anyhow::bail!("{what} exited with {st}:\n{}", log());
        }
        if std::time::Instant::now() > deadline {
            anyhow::bail!("{what} not listening on port {port} within {secs} s:\n{}", log());
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Starts `cmd` (a helper that prints `ready` on its first line once it serves) and waits for
/// that line.
pub fn spawn_ready(mut cmd: std::process::Command, what: &str) -> anyhow::Result<std::process::Child> {
    use std::io::BufRead;
    let mut child = cmd
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| anyhow::anyhow!("start {what}: {e}"))?;
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
    if line.trim() != "ready" {
        let _ = child.kill();
        let _ = child.wait();
        anyhow::bail!("{what} did not start: {line:?}");
    }
    Ok(child)
}
