//! A webhook receiver for the fleet's alerts: Python's http.server in a test's namespace that
//! keeps every POSTed JSON body, one per line.

use std::process::Child;

use anyhow::Result;

use super::netns::NetNs;

const SERVER: &str = r#"
import http.server, sys
out = sys.argv[2]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(min(int(self.headers.get("Content-Length", "0")), 65536))
        with open(out, "ab") as f:
            f.write(body.replace(b"\n", b" ") + b"\n")
        self.send_response(204)
        self.end_headers()
    def log_message(self, *a):
        pass
s = http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H)
print("ready", flush=True)
s.serve_forever()
"#;

pub struct Webhook {
    child: Child,
    dir: tempfile::TempDir,
    pub port: u16,
}

impl Webhook {
    pub fn start(ns: &NetNs) -> Result<Webhook> {
        let port = ns.port();
        let dir = tempfile::Builder::new().prefix("webhook-").tempdir()?;
        let mut cmd = ns.cmd("python3");
        cmd.args(["-c", SERVER, &port.to_string()]).arg(dir.path().join("alerts.jsonl"));
        let child = super::spawn_ready(cmd, "the webhook receiver")?;
        Ok(Webhook { child, dir, port })
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/alerts", self.port)
    }

    /// Every alert received so far.
    pub fn alerts(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.path().join("alerts.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
