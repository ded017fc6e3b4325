//! PostgreSQL (Debian's `postgresql`) as the fleet service's database for more than one worker:
//! a private cluster made with `initdb` in a temporary directory, run by an unprivileged user
//! (PostgreSQL refuses root) on 127.0.0.1 of a test's namespace and a socket in that directory.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use super::netns::NetNs;

pub struct Postgres {
    child: Child,
    dir: tempfile::TempDir,
    pub port: u16,
}

/// The newest PostgreSQL's programs.
fn bin_dir() -> Result<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .context("PostgreSQL is not installed (Debian package postgresql)")?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().context("no initdb under /usr/lib/postgresql")
}

impl Postgres {
    pub fn start(ns: &NetNs) -> Result<Postgres> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new().prefix("postgres-").tempdir()?;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777))?;
        let data = dir.path().join("data");
        let user = "nobody";
        let out = std::process::Command::new("runuser")
            .args(["-u", user, "--"])
            .arg(bin.join("initdb"))
            .args(["-A", "trust", "-U", "fleet", "-E", "UTF8", "--no-sync", "-D"])
            .arg(&data)
            .output()
            .context("run initdb")?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let port = ns.port();
        let log = std::fs::File::create(dir.path().join("postgres.log"))?;
        std::fs::set_permissions(dir.path().join("postgres.log"), std::fs::Permissions::from_mode(0o666))?;
        let child = ns
            .cmd("runuser")
            .args(["-u", user, "--"])
            .arg(bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-k"])
            .arg(dir.path())
            .args(["-c", "fsync=off"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("start postgres")?;
        let mut pg = Postgres { child, dir, port };
        let log = pg.dir.path().join("postgres.log");
        super::wait_listening(ns, port, &mut pg.child, "postgres", 20, || {
            std::fs::read_to_string(&log).unwrap_or_default()
        })?;
        Ok(pg)
    }

    /// The URL the fleet service connects with.
    pub fn url(&self) -> String {
        format!("postgres://fleet@127.0.0.1:{}/postgres", self.port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // runuser passes SIGTERM on to postgres, which then shuts down fast.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
