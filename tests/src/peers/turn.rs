//! coturn (Debian package `coturn`) as the TURN relay of a test's namespace: long-term
//! credentials for one user, listening either on UDP or on TLS only (TURN over TLS, with a
//! certificate of the test's CA), relaying on the namespace's ICE address (see
//! [`super::netns::add_ice_interface`]), loopback peers allowed (everything here is in the
//! namespace), nothing else: no CLI, no multicast, no STUN towards anything outside.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::netns::{ICE_ADDR as ADDRESS, NetNs};

pub struct Turn {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub port: u16,
    tls: bool,
}

impl Turn {
    /// Starts coturn in `ns` for `user`/`password` (realm `huis.test`) on a free UDP port.
    pub fn start(ns: &NetNs, user: &str, password: &str) -> Result<Turn> {
        Self::spawn(ns, user, password, None)
    }

    /// Like [`Turn::start`], but TURN over TLS only (no UDP or TCP listener), with `cert`.
    pub fn start_tls(ns: &NetNs, user: &str, password: &str, cert: &super::certs::Issued) -> Result<Turn> {
        Self::spawn(ns, user, password, Some(cert))
    }

    fn spawn(ns: &NetNs, user: &str, password: &str, tls: Option<&super::certs::Issued>) -> Result<Turn> {
        if ns.name().is_none() {
            bail!("coturn needs a private network namespace (run as root)");
        }
        super::netns::add_ice_interface(ns)?;
        let port = ns.port();
        let dir = tempfile::Builder::new().prefix("coturn-").tempdir()?;
        let log = std::fs::File::create(dir.path().join("coturn.log"))?;
        let mut cmd = ns.cmd("turnserver");
        match tls {
            None => cmd.args(["--no-tls", "--no-dtls"]).arg(format!("--listening-port={port}")),
            Some(c) => cmd
                .args(["--no-udp", "--no-tcp", "--no-dtls"])
                .arg(format!("--cert={}", c.cert.display()))
                .arg(format!("--pkey={}", c.key.display()))
                .arg(format!("--tls-listening-port={port}")),
        };
        let child = cmd
            .args(["-n", "--no-cli", "--lt-cred-mech", "--fingerprint"])
            .args(["--realm=huis.test", "--allow-loopback-peers", "--no-multicast-peers", "--simple-log"])
            .args(["--log-file=stdout", "--verbose", "--pidfile="])
            .arg(format!("--user={user}:{password}"))
            .arg(format!("--listening-ip={ADDRESS}"))
            .arg(format!("--relay-ip={ADDRESS}"))
            .arg(format!("--min-port={}", 49152))
            .arg(format!("--max-port={}", 49252))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start turnserver (Debian package coturn)")?;
        let mut t = Turn { child: Some(child), dir, port, tls: tls.is_some() };
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

    /// `turn(s)://user:password@address:port` for huisd's `webrtc.turn_servers`.
    pub fn uri(&self, user: &str, password: &str) -> String {
        let scheme = if self.tls { "turns" } else { "turn" };
        format!("{scheme}://{user}:{password}@{ADDRESS}:{}", self.port)
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
