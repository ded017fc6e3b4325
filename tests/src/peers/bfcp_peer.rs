//! An independent BFCP peer on libre's BFCP (Debian `libre-dev`): the small C program
//! `bfcp_peer.c` next to this file, compiled once per test binary with the system's `cc` and
//! driven line by line over stdin and stdout (see the program's head for its commands and
//! what it prints). Without libre's headers [`peer_binary`] says so and returns `None`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use super::netns::NetNs;

/// How long [`BfcpPeer::wait_line`] waits.
const WAIT: Duration = Duration::from_secs(10);

/// Builds the peer once per test binary; `None` when libre is not installed.
pub fn peer_binary() -> Option<PathBuf> {
    static BIN: OnceLock<Option<PathBuf>> = OnceLock::new();
    BIN.get_or_init(build_peer).clone()
}

fn build_peer() -> Option<PathBuf> {
    if !Path::new("/usr/include/re/re_bfcp.h").exists() {
        eprintln!("SKIPPED: libre-dev is not installed (re_bfcp.h missing); `scripts/deps.sh test` installs it");
        return None;
    }
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/peers/bfcp_peer.c");
    let out = std::env::temp_dir().join(format!("huis-bfcp_peer-{}", std::process::id()));
    let status = Command::new("cc")
        .args(["-Wall", "-O1", "-o"])
        .arg(&out)
        .arg(&src)
        .args(["-I/usr/include/re", "-lre"])
        .status()
        .expect("run cc");
    assert!(status.success(), "cc failed to build {}", src.display());
    Some(out)
}

pub struct BfcpPeer {
    /// Every line printed and not consumed by [`BfcpPeer::wait_line`].
    pub seen: Vec<String>,
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl BfcpPeer {
    /// Starts the peer with `args` (see `bfcp_peer.c`), in `ns` when given; returns it and the
    /// port it listens on.
    pub fn start(bin: &Path, ns: Option<&NetNs>, args: &[&str]) -> (BfcpPeer, u16) {
        let mut cmd = match ns {
            Some(ns) => ns.cmd(bin),
            None => Command::new(bin),
        };
        let mut child = cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("start bfcp_peer");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for l in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut p = BfcpPeer { child, stdin, lines, seen: Vec::new() };
        let ready = p.wait_line("READY port=");
        let port = ready.trim_start_matches("READY port=").parse().unwrap();
        (p, port)
    }

    /// Writes a command line to the peer.
    pub fn send(&mut self, cmd: &str) {
        writeln!(self.stdin, "{cmd}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Lines printed so far without waiting.
    pub fn drain(&mut self) {
        while let Ok(l) = self.lines.try_recv() {
            self.seen.push(l);
        }
    }

    /// Waits for (and consumes up to) a line starting with `prefix`.
    pub fn wait_line(&mut self, prefix: &str) -> String {
        let end = Instant::now() + WAIT;
        loop {
            if let Some(i) = self.seen.iter().position(|l| l.starts_with(prefix)) {
                let l = self.seen[i].clone();
                self.seen.drain(..=i);
                return l;
            }
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => self.seen.push(l),
                Err(_) => panic!("bfcp_peer printed no {prefix:?}; it printed {:?}", self.seen),
            }
        }
    }

    /// True when a line starting with `prefix` was printed (and not consumed).
    pub fn has_line(&mut self, prefix: &str) -> bool {
        self.drain();
        self.seen.iter().any(|l| l.starts_with(prefix))
    }
}

impl Drop for BfcpPeer {
    fn drop(&mut self) {
        let _ = writeln!(self.stdin, "quit");
        let _ = self.stdin.flush();
        let end = Instant::now() + Duration::from_secs(2);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
