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
