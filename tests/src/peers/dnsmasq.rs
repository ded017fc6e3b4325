//! dnsmasq (Debian package `dnsmasq-base`) as the DNS server of a test's namespace, for RFC 3263
//! tests: it answers only the records given (`--no-resolv --no-hosts`: `--host-record`,
//! `--srv-host`, `--naptr-record`) on 127.0.0.1:53.
//!
//! The namespace's programs find it through `/etc/netns/NAME/resolv.conf`, which
//! `ip netns exec` (how [`NetNs::cmd`] starts them) mounts over `/etc/resolv.conf` in their
//! own mount namespace: the same path a real device reads, nothing of the host's changed. The
//! file is removed again when the `Dnsmasq` is dropped.

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::baresip::wait_exit;
use super::netns::NetNs;

pub struct Dnsmasq {
    child: Option<Child>,
    dir: tempfile::TempDir,
    resolv_dir: Option<PathBuf>,
}

impl Dnsmasq {
    /// Starts dnsmasq in `ns` with `records` (each a dnsmasq option such as
    /// `--srv-host=_sips._tcp.pbx.test,pbx.test,5061,10,0`) and points the namespace's
    /// resolv.conf at it. Needs a real namespace (root).
    pub fn start(ns: &NetNs, records: &[String]) -> Result<Dnsmasq> {
        let Some(name) = ns.name() else { bail!("dnsmasq needs a private network namespace (run as root)") };
        let dir = tempfile::Builder::new().prefix("dnsmasq-").tempdir()?;
        let log = std::fs::File::create(dir.path().join("dnsmasq.log"))?;
        let child = ns
            .cmd("dnsmasq")
            .args([
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--listen-address=127.0.0.1",
                "--bind-interfaces",
                "--port=53",
                "--pid-file=",
                "--log-queries",
                "--log-facility=-",
            ])
            .args(records)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start dnsmasq (Debian package dnsmasq-base)")?;
        let resolv_dir = PathBuf::from("/etc/netns").join(name);
        std::fs::create_dir_all(&resolv_dir).with_context(|| format!("create {}", resolv_dir.display()))?;
        std::fs::write(resolv_dir.join("resolv.conf"), "nameserver 127.0.0.1\noptions timeout:1 attempts:2\n")?;
        let mut d = Dnsmasq { child: Some(child), dir, resolv_dir: Some(resolv_dir) };
        // Up when it answers on TCP 53.
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Ok(Ok(_)) = ns.enter(|| std::net::TcpStream::connect("127.0.0.1:53")) {
                return Ok(d);
            }
            if let Some(Ok(Some(st))) = d.child.as_mut().map(|c| c.try_wait()) {
                bail!("dnsmasq exited with {st}:\n{}", d.log_text());
            }
            if Instant::now() > deadline {
                bail!("dnsmasq not listening within 5 s:\n{}", d.log_text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dnsmasq.log")).unwrap_or_default()
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            if wait_exit(&mut c, Duration::from_secs(3)).is_none() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        if let Some(d) = self.resolv_dir.take() {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}
