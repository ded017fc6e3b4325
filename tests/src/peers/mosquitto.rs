//! mosquitto (Debian package `mosquitto`) as the fleet's MQTT broker in a test's namespace, with
//! the configuration the fleet ships (`fleet/broker/mosquitto.conf.in` and `fleet/broker/acl`):
//! MQTT over mutual TLS only, clients named by their certificates, access by the ACL.

use std::path::Path;
use std::process::{Child, Stdio};

use anyhow::{Context, Result};

use super::certs::{Ca, Issued};
use super::netns::NetNs;

pub struct Mosquitto {
    child: Option<Child>,
    dir: tempfile::TempDir,
    pub port: u16,
}

impl Mosquitto {
    /// Starts the broker in `ns` on 127.0.0.1 and a free port, trusting `ca` for clients and
    /// presenting `server`.
    pub fn start(ns: &NetNs, ca: &Ca, server: &Issued) -> Result<Mosquitto> {
        let port = ns.port();
        let dir = tempfile::Builder::new().prefix("mosquitto-").tempdir()?;
        let broker = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fleet/broker");
        std::fs::create_dir(dir.path().join("data"))?;
        let conf = std::fs::read_to_string(broker.join("mosquitto.conf.in"))?
            .replace("@PORT@", &port.to_string())
            .replace("@BIND@", "127.0.0.1")
            .replace("@CA@", &ca.cert.display().to_string())
            .replace("@CERT@", &server.cert.display().to_string())
            .replace("@KEY@", &server.key.display().to_string())
            .replace("@ACL@", &broker.join("acl").display().to_string())
            .replace("@DATA@", &dir.path().join("data").display().to_string())
            // Started as root, mosquitto would drop to its own user, who cannot read the test's
            // private files; the fleet service runs it as its own unprivileged user instead.
            + "user root\n";
        let conf_file = dir.path().join("mosquitto.conf");
        std::fs::write(&conf_file, conf)?;
        Self::run(ns, dir, &conf_file, port)
    }

    /// Starts the broker in `ns` with a configuration written elsewhere (by `huis-fleet init`),
    /// listening on `port`.
    pub fn start_conf(ns: &NetNs, conf: &Path, port: u16) -> Result<Mosquitto> {
        let dir = tempfile::Builder::new().prefix("mosquitto-").tempdir()?;
        let text = std::fs::read_to_string(conf)? + "user root\n";
        let conf_file = dir.path().join("mosquitto.conf");
        std::fs::write(&conf_file, text)?;
        Self::run(ns, dir, &conf_file, port)
    }

    /// Kills the broker at once (SIGKILL: no goodbye to its clients, as a crash or a power cut)
    /// and starts it again on the same port, configuration and persistence.
    pub fn kill_and_restart(&mut self, ns: &NetNs) -> Result<()> {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir()?);
        let conf = dir.path().join("mosquitto.conf");
        let m = Self::run(ns, dir, &conf, self.port)?;
        *self = m;
        Ok(())
    }

    fn run(ns: &NetNs, dir: tempfile::TempDir, conf_file: &Path, port: u16) -> Result<Mosquitto> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.path().join("mosquitto.log"))?;
        let child = ns
            .cmd("mosquitto")
            .arg("-c")
            .arg(conf_file)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start mosquitto (Debian package mosquitto)")?;
        let mut m = Mosquitto { child: Some(child), dir, port };
        let log = m.dir.path().join("mosquitto.log");
        let child = m.child.as_mut().expect("just started");
        // mosquitto's stdout is block-buffered into the log: its port says when it is up.
        super::wait_listening(ns, port, child, "mosquitto", 5, || std::fs::read_to_string(&log).unwrap_or_default())?;
        Ok(m)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("mosquitto.log")).unwrap_or_default()
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
