//! The fleet service as its README starts it: `huis-fleet init` (CA, certificates, the first
//! admin token, huis-fleet.toml, mosquitto.conf), the shipped mosquitto on that configuration,
//! and `huis-fleet serve`, all in a test's namespace; `cli` runs the `huis-fleet` client there.

use std::path::PathBuf;
use std::process::{Child, Output, Stdio};

use anyhow::{Context, Result, bail};

use super::mosquitto::Mosquitto;
use super::netns::NetNs;
use crate::bin_dir;

pub struct FleetService {
    child: Child,
    /// More workers on the same database and broker ([`FleetService::start_worker`]).
    workers: Vec<(u16, Child)>,
    ns: NetNs,
    pub dir: tempfile::TempDir,
    /// HTTPS of the API.
    pub port: u16,
    pub broker: Mosquitto,
    pub broker_port: u16,
}

impl FleetService {
    /// On SQLite in its data directory (the embedded default).
    pub fn start(ns: &NetNs) -> Result<FleetService> {
        Self::start_on(ns, None)
    }

    /// On `database` (a `postgres://` URL), or SQLite with `None`.
    pub fn start_on(ns: &NetNs, database: Option<&str>) -> Result<FleetService> {
        Self::start_with(ns, database, None)
    }

    /// As [`FleetService::start_on`], with alerts POSTed to `webhook`.
    pub fn start_with(ns: &NetNs, database: Option<&str>, webhook: Option<&str>) -> Result<FleetService> {
        let dir = tempfile::Builder::new().prefix("huis-fleet-").tempdir()?;
        let (port, broker_port) = (ns.port(), ns.port());
        let exe = bin_dir().join("huis-fleet");
        let out = ns
            .cmd(&exe)
            .args(["init", "--host", "127.0.0.1", "--listen", &format!("127.0.0.1:{port}")])
            .args(["--broker-port", &broker_port.to_string(), "--data-dir"])
            .arg(dir.path())
            .args(database.map(|d| ["--database", d]).into_iter().flatten())
            .output()
            .context("run huis-fleet init")?;
        if !out.status.success() {
            bail!("huis-fleet init failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        if let Some(w) = webhook {
            let cfg = dir.path().join("huis-fleet.toml");
            let text =
                std::fs::read_to_string(&cfg)?.replace("alert_webhook = \"\"", &format!("alert_webhook = \"{w}\""));
            std::fs::write(&cfg, text)?;
        }
        let broker = Mosquitto::start_conf(ns, &dir.path().join("mosquitto/mosquitto.conf"), broker_port)?;
        let child = Self::serve(ns, dir.path())?;
        let mut f = FleetService { child, workers: Vec::new(), ns: ns.clone(), dir, port, broker, broker_port };
        f.wait_serving()?;
        Ok(f)
    }

    /// `huis-fleet serve` on the configuration in `dir`, its output appended to the log.
    fn serve(ns: &NetNs, dir: &std::path::Path) -> Result<Child> {
        Self::serve_on(ns, dir, &dir.join("huis-fleet.toml"))
    }

    fn serve_on(ns: &NetNs, dir: &std::path::Path, config: &std::path::Path) -> Result<Child> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("huis-fleet.log"))?;
        ns.cmd(bin_dir().join("huis-fleet"))
            .arg("serve")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info,huis_fleet=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start huis-fleet serve")
    }

    fn wait_serving(&mut self) -> Result<()> {
        let log = self.dir.path().join("huis-fleet.log");
        super::wait_listening(&self.ns, self.port, &mut self.child, "huis-fleet", 20, || {
            std::fs::read_to_string(&log).unwrap_or_default()
        })
    }

    /// Another worker on the same configuration, database and broker, its API on a port of its
    /// own (returned); its output goes to the same log.
    pub fn start_worker(&mut self) -> Result<u16> {
        let port = self.ns.port();
        let cfg = self.dir.path().join(format!("huis-fleet-{port}.toml"));
        let text = std::fs::read_to_string(self.dir.path().join("huis-fleet.toml"))?
            .replace(&format!("127.0.0.1:{}", self.port), &format!("127.0.0.1:{port}"));
        std::fs::write(&cfg, text)?;
        let mut child = Self::serve_on(&self.ns, self.dir.path(), &cfg)?;
        let log = self.dir.path().join("huis-fleet.log");
        super::wait_listening(&self.ns, port, &mut child, "huis-fleet worker", 20, || {
            std::fs::read_to_string(&log).unwrap_or_default()
        })?;
        self.workers.push((port, child));
        Ok(port)
    }

    /// Kills the first worker for good (SIGKILL) and talks to the worker on `port` from now on.
    pub fn kill_and_use(&mut self, port: u16) -> Result<()> {
        let i = self.workers.iter().position(|(p, _)| *p == port).context("no worker on that port")?;
        let (_, child) = self.workers.remove(i);
        let mut old = std::mem::replace(&mut self.child, child);
        let _ = old.kill();
        let _ = old.wait();
        self.port = port;
        Ok(())
    }

    /// Kills the service (SIGKILL: a crash, nothing saved on the way out) and starts it again
    /// on the same configuration, database and broker.
    pub fn kill_and_restart(&mut self) -> Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Self::serve(&self.ns, self.dir.path())?;
        self.wait_serving()
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("pki/ca.crt")
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// `huis-fleet ARGS` as the admin, inside the namespace.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_as(&self.dir.path().join("admin.token"), args)
    }

    /// `huis-fleet ARGS` with the token in `token_file`.
    pub fn cli_as(&self, token_file: &std::path::Path, args: &[&str]) -> Output {
        self.ns
            .cmd(bin_dir().join("huis-fleet"))
            .args(["--url", &self.url(), "--token-file"])
            .arg(token_file)
            .arg("--ca")
            .arg(self.ca())
            .args(args)
            .output()
            .expect("run the huis-fleet client")
    }

    /// `huis-fleet ARGS` that must succeed, its output as JSON.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.cli(args);
        assert!(
            out.status.success(),
            "huis-fleet {args:?} failed: {}\nservice log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log_text()
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("huis-fleet {args:?}: not JSON ({e})"))
    }

    /// A screenshot (PNG) of console page `next`, as headless Chromium shows it to a person
    /// signed in with a one-time link. Chromium trusts exactly the service's key (its SPKI
    /// hash), not every certificate.
    pub fn screenshot(&self, next: &str, out: &std::path::Path) -> Result<()> {
        let link = self.json(&["login-link", "--next", next]);
        let url = link["url"].as_str().context("no url")?.to_owned();
        let spki = std::process::Command::new("sh")
            .arg("-c")
            .arg("openssl x509 -pubkey -noout -in \"$1\" | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64")
            .arg("sh")
            .arg(self.dir.path().join("pki/service.crt"))
            .output()?;
        let spki = String::from_utf8(spki.stdout)?.trim().to_owned();
        let profile = self.dir.path().join(format!("chromium-{}", std::process::id()));
        let out_arg = format!("--screenshot={}", out.display());
        let log = self.dir.path().join("chromium.log");
        let mut cmd = self.ns.cmd("chromium");
        let st = cmd
            .args(["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"])
            .args(["--disable-background-networking", "--disable-component-update", "--disable-sync"])
            .args([
                "--disable-extensions",
                "--hide-scrollbars",
                "--window-size=1280,800",
                "--enable-logging=stderr",
                "--v=0",
            ])
            .arg(format!("--ignore-certificate-errors-spki-list={spki}"))
            // The namespace hands out ports from 5060 up, which Chromium refuses as SIP's
            // (ERR_UNSAFE_PORT) unless allowed.
            .arg(format!("--explicitly-allowed-ports={}", self.port))
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(out_arg)
            .arg(url)
            .env("HOME", &profile)
            .env("XDG_CONFIG_HOME", profile.join("config"))
            .env("XDG_CACHE_HOME", profile.join("cache"))
            .stdout(std::fs::File::create(self.dir.path().join("chromium.out"))?)
            .stderr(std::fs::File::create(&log)?)
            .status()
            .context("run chromium")?;
        if !st.success() || !out.exists() {
            bail!(
                "chromium made no screenshot ({st}):\n{}{}",
                std::fs::read_to_string(self.dir.path().join("chromium.out")).unwrap_or_default(),
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        Ok(())
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("huis-fleet.log")).unwrap_or_default()
    }
}

impl Drop for FleetService {
    fn drop(&mut self) {
        for (_, c) in &mut self.workers {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
