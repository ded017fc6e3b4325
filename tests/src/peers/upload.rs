//! The fleet service's HTTPS upload endpoint (`upload_server.py`, Python's http.server and ssl)
//! in a test's namespace: screenshots and logs a room PUTs, kept by the name on the room's
//! certificate, which the server requires.

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use anyhow::Result;

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
        let mut cmd = ns.cmd("python3");
        cmd.arg(script).arg(port.to_string()).args([&ca.cert, &server.cert, &server.key]).arg(dir.path());
        cmd.stderr(Stdio::inherit());
        let child = super::spawn_ready(cmd, "the upload server")?;
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
