//! coturn (Debian package `coturn`) as the TURN relay of a test's namespace: long-term
//! credentials for one user, UDP only, listening and relaying on the namespace's ICE address
//! (see [`super::netns::add_ice_interface`]), loopback peers allowed (everything here is in the
//! namespace), nothing else: no TLS, no CLI, no multicast, no STUN towards anything outside.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::netns::{ICE_ADDR as ADDRESS, NetNs};

pub struct Turn {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub port: u16,
}

impl Turn {
    /// Starts coturn in `ns` for `user`/`password` (realm `huis.test`) on a free port.
    pub fn start(ns: &NetNs, user: &str, password: &str) -> Result<Turn> {
        if ns.name().is_none() {
            bail!("coturn needs a private network namespace (run as root)");
        }
        super::netns::add_ice_interface(ns)?;
        let port = ns.port();
        let dir = tempfile::Builder::new().prefix("coturn-").tempdir()?;
        let log = std::fs::File::create(dir.path().join("coturn.log"))?;
        let child = ns
            .cmd("turnserver")
            .args(["-n", "--no-cli", "--no-tls", "--no-dtls", "--lt-cred-mech", "--fingerprint"])
            .args(["--realm=huis.test", "--allow-loopback-peers", "--no-multicast-peers", "--simple-log"])
            .args(["--log-file=stdout", "--verbose", "--pidfile="])
            .arg(format!("--user={user}:{password}"))
            .arg(format!("--listening-ip={ADDRESS}"))
            .arg(format!("--relay-ip={ADDRESS}"))
            .arg(format!("--listening-port={port}"))
            .arg(format!("--min-port={}", 49152))
            .arg(format!("--max-port={}", 49252))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start turnserver (Debian package coturn)")?;
        let mut t = Turn { child: Some(child), dir, port };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if t.log_text().contains("listener opened on") || t.log_text().contains("IPv4. UDP listener opened") {
                return Ok(t);
            }
            if let Some(Ok(Some(st))) = t.child.as_mut().map(|c| c.try_wait()) {
                bail!("turnserver exited with {st}:\n{}", t.log_text());
            }
            if Instant::now() > deadline {
                bail!("turnserver not listening within 5 s:\n{}", t.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `turn://user:password@address:port` for huisd's `webrtc.turn_servers`.
    pub fn uri(&self, user: &str, password: &str) -> String {
        format!("turn://{user}:{password}@{ADDRESS}:{}", self.port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("coturn.log")).unwrap_or_default()
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
