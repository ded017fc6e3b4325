//! The fleet service's HTTPS upload endpoint (`upload_server.py`, Python's http.server and ssl)
//! in a test's namespace: screenshots and logs a room PUTs, kept by the name on the room's
//! certificate, which the server requires.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use anyhow::{Context, Result, bail};

use super::certs::{Ca, Issued};
use super::netns::NetNs;

pub struct UploadServer {
    child: Child,
    dir: tempfile::TempDir,
    pub port: u16,
}

impl UploadServer {
    pub fn start(ns: &NetNs, ca: &Ca, server: &Issued) -> Result<UploadServer> {
        let port = ns.port();
        let dir = tempfile::Builder::new().prefix("uploads-").tempdir()?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/peers/upload_server.py");
        let mut child = ns
            .cmd("python3")
            .arg(script)
            .arg(port.to_string())
            .args([&ca.cert, &server.cert, &server.key])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("start python3")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line)?;
        if line.trim() != "ready" {
            let _ = child.kill();
            bail!("the upload server did not start: {line:?}");
        }
        Ok(UploadServer { child, dir, port })
    }

    pub fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}/{path}", self.port)
    }

    /// What `room` uploaded to `path`, if it did.
    pub fn uploaded(&self, room: &str, path: &str) -> Option<Vec<u8>> {
        std::fs::read(self.file(room, path)).ok()
    }

    fn file(&self, room: &str, path: &str) -> PathBuf {
        self.dir.path().join(format!("{room}__{}", path.trim_matches('/').replace('/', "_")))
    }
}

impl Drop for UploadServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
