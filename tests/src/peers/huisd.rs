//! huisd inside a test's network namespace, so it reaches the peers on
//! that namespace's 127.0.0.1. Same as [`crate::Huisd::spawn`] /
//! [`crate::Huisd::start`] otherwise: the bus is the test's private
//! dbus-daemon, whose socket is a file path and so reachable from any
//! network namespace; `huisctl` needs no namespace.

use super::netns::NetNs;
use crate::{Bus, Huisd, bin_dir};

/// Starts `huisd --session --board sim` inside `ns` (does not wait).
pub fn spawn_in(ns: &NetNs, bus: &Bus, config_text: Option<&str>, extra: &[&str]) -> Huisd {
    Huisd::spawn_cmd(ns.cmd(bin_dir().join("huisd")), bus, config_text, extra)
}

/// Starts huisd inside `ns` and waits (up to 60 s) until it owns its bus name.
pub async fn start_in(ns: &NetNs, bus: &Bus, config_text: Option<&str>) -> Huisd {
    Huisd::wait_ready(spawn_in(ns, bus, config_text, &[]), bus).await
}

/// [`start_in`] for tests that are not async: runs it on a runtime of its own.
pub fn start_in_blocking(ns: &NetNs, bus: &Bus, config_text: &str) -> Huisd {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime");
    rt.block_on(start_in(ns, bus, Some(config_text)))
}
