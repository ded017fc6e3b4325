//! huisd inside a test's network namespace, so it reaches the peers on
//! that namespace's 127.0.0.1. Same as [`crate::Huisd::spawn`] /
//! [`crate::Huisd::start`] otherwise: the bus is the test's private
//! dbus-daemon, whose socket is a file path and so reachable from any
//! network namespace; `huisctl` needs no namespace.

use std::process::Stdio;
use std::time::{Duration, Instant};

use super::netns::NetNs;
use crate::{Bus, Huisd, bin_dir};

/// Starts `huisd --session --board sim` inside `ns` (does not wait).
pub fn spawn_in(ns: &NetNs, bus: &Bus, config_text: Option<&str>, extra: &[&str]) -> Huisd {
    let root = tempfile::Builder::new().prefix("huisd").tempdir_in(bus.dir.path()).unwrap().keep();
    let config = root.join("huis.toml");
    // As on main's Huisd::spawn: unless the test chose, SIP takes a free port.
    // Peer tests should choose (`[sip] listen = "127.0.0.1:<ns.port()>"`), so
    // the peers know where to call.
    let text = config_text.unwrap_or("");
    let text =
        if text.contains("[sip]") { text.to_owned() } else { format!("{text}\n[sip]\nlisten = \"127.0.0.1:0\"\n") };
    std::fs::write(&config, text).unwrap();
    let state_dir = root.join("state");
    crate::seed_room_recording(&state_dir);
    let log = root.join("huisd.log");
    let child = ns
        .cmd(bin_dir().join("huisd"))
        .args(["--session", "--board", "sim", "--config"])
        .arg(&config)
        .arg("--state-dir")
        .arg(&state_dir)
        .args(extra)
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .env("RUST_LOG", std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()))
        .env_remove("JOURNAL_STREAM")
        .env_remove("NOTIFY_SOCKET")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("start huisd in the test namespace");
    Huisd { child, config, state_dir, log }
}

/// Starts huisd inside `ns` and waits (up to 60 s) until it owns its bus name.
pub async fn start_in(ns: &NetNs, bus: &Bus, config_text: Option<&str>) -> Huisd {
    let mut d = spawn_in(ns, bus, config_text, &[]);
    let conn = bus.connect().await;
    let dbus = zbus::fdo::DBusProxy::new(&conn).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if dbus.name_has_owner("org.huis.Room1".try_into().unwrap()).await.unwrap_or(false) {
            return d;
        }
        if let Ok(Some(st)) = d.child.try_wait() {
            panic!("huisd exited with {st} before it was ready:\n{}", d.log_text());
        }
        assert!(Instant::now() < deadline, "huisd not ready within 60 s:\n{}", d.log_text());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
