//! A private network namespace per test, so peers only ever see loopback
//! and ports never clash between tests running at the same time.
//!
//! As root (CI), [`NetNs::new`] runs `ip netns add huis-<pid>-<n>`, brings
//! `lo` up inside and deletes the namespace when the last clone is dropped.
//! Programs are started inside with [`NetNs::cmd`] (`ip netns exec NAME …`,
//! which execs the program, so the child's PID is the program's), and the
//! test's own sockets are opened inside with [`NetNs::enter`] (a helper
//! thread calls `setns(2)`; a socket stays in the namespace it was created
//! in, whichever thread uses it later).
//!
//! Not root: there is no namespace; everything runs on the host's
//! 127.0.0.1 and [`NetNs::port`] hands out ports that were free when asked
//! (checked by binding UDP and TCP), unique within the test process. Such
//! runs can still collide with other programs on the host; CI runs as root.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, bail};

static COUNTER: AtomicUsize = AtomicUsize::new(0);
/// Ports for the no-namespace fallback, shared by every `NetNs` of the process.
static HOST_PORT: AtomicU16 = AtomicU16::new(0);

struct Inner {
    name: Option<String>,
    next_port: Mutex<u16>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(name) = &self.name {
            // Processes still inside keep the namespace alive; `ip netns del`
            // only removes its name. Peers are stopped by their own Drop,
            // which runs first because each holds a clone of this `NetNs`.
            let _ = Command::new("ip").args(["netns", "del", name]).status();
        }
    }
}

/// A network namespace with only `lo` up (or the host, when not root).
/// Cheap to clone; the namespace goes away with the last clone.
#[derive(Clone)]
pub struct NetNs {
    inner: Arc<Inner>,
}

/// True when the process can create network namespaces (is root).
pub fn is_root() -> bool {
    unsafe { libc::geteuid() == 0 }
}

impl NetNs {
    /// Creates `huis-<pid>-<n>` with `lo` up; falls back to the host when not
    /// root (see the module docs). Panics if root and `ip netns add` fails.
    pub fn new() -> NetNs {
        Self::try_new().expect("create a test network namespace")
    }

    pub fn try_new() -> Result<NetNs> {
        if !is_root() {
            return Ok(NetNs { inner: Arc::new(Inner { name: None, next_port: Mutex::new(0) }) });
        }
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        if n == 0 {
            remove_stale();
        }
        let name = format!("huis-{}-{n}", std::process::id());
        let st = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .context("run `ip netns add` (Debian package iproute2)")?;
        if !st.success() {
            bail!("`ip netns add {name}` failed: {st}");
        }
        let ns = NetNs { inner: Arc::new(Inner { name: Some(name.clone()), next_port: Mutex::new(5060) }) };
        let st = ns.cmd("ip").args(["link", "set", "lo", "up"]).status()?;
        if !st.success() {
            bail!("bringing lo up in {name} failed: {st}");
        }
        Ok(ns)
    }

    /// The namespace's name, or `None` when running on the host.
    pub fn name(&self) -> Option<&str> {
        self.inner.name.as_deref()
    }

    /// True when this is a real, private namespace.
    pub fn is_isolated(&self) -> bool {
        self.inner.name.is_some()
    }

    /// A `Command` that runs `program` inside the namespace.
    pub fn cmd(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        match &self.inner.name {
            Some(name) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", name]).arg(program);
                c
            }
            None => Command::new(program),
        }
    }

    /// Runs `f` on a thread that has entered the namespace and returns its
    /// result. Sockets created in `f` belong to the namespace for good.
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
        let Some(name) = self.inner.name.clone() else {
            return Ok(f());
        };
        std::thread::spawn(move || -> Result<T> {
            let path = PathBuf::from("/run/netns").join(&name);
            let file = std::fs::File::open(&path).with_context(|| format!("open {}", path.display()))?;
            use std::os::fd::AsRawFd;
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                bail!("setns into {name}: {}", std::io::Error::last_os_error());
            }
            Ok(f())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("thread inside the namespace panicked"))?
    }

    /// A port on 127.0.0.1 for a peer, together with `port + 1` (baresip
    /// also listens on the next port for TLS). Inside a namespace ports are
    /// handed out from 5060 upwards in steps of 2; on the host (no root) a
    /// pair that binds for both UDP and TCP right now.
    pub fn port(&self) -> u16 {
        if self.is_isolated() {
            let mut p = self.inner.next_port.lock().unwrap();
            let got = *p;
            *p += 2;
            return got;
        }
        let _ = HOST_PORT.compare_exchange(
            0,
            20000 + (std::process::id() % 400) as u16 * 100,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
        for _ in 0..2000 {
            let p = HOST_PORT.fetch_add(2, Ordering::SeqCst);
            if p > 64000 {
                HOST_PORT.store(20000, Ordering::SeqCst);
                continue;
            }
            if [p, p + 1].iter().all(|&q| {
                std::net::UdpSocket::bind(("127.0.0.1", q)).is_ok()
                    && std::net::TcpListener::bind(("127.0.0.1", q)).is_ok()
            }) {
                return p;
            }
        }
        panic!("no free port pair on 127.0.0.1");
    }
}

/// Removes `huis-<pid>-*` namespaces left by test processes that no longer
/// exist (e.g. aborted by a watchdog), killing what still runs inside.
fn remove_stale() {
    let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let Some(pid) =
            name.strip_prefix("huis-").and_then(|r| r.split('-').next()).and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if let Ok(p) = Command::new("ip").args(["netns", "pids", name]).output() {
            for pid in String::from_utf8_lossy(&p.stdout).split_whitespace() {
                if let Ok(pid) = pid.parse::<i32>() {
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
            }
        }
        let _ = Command::new("ip").args(["netns", "del", name]).status();
    }
}

/// The interface ICE agents (libnice in webrtcbin and Janus, aioice in aiortc) gather their
/// candidates on inside a namespace: they skip loopback interfaces, so `lo` alone gives none.
pub const ICE_IFACE: &str = "huisice0";
/// [`ICE_IFACE`]'s address: in the loopback range, so traffic never leaves the machine.
pub const ICE_ADDR: &str = "127.0.0.42";
/// The other end of the veth pair (up, no address).
const ICE_PEER: &str = "huisice1";

/// A veth pair inside `ns` (both ends stay there) with [`ICE_ADDR`] on
/// [`ICE_IFACE`]. A `dummy` link would do, but not every kernel has that
/// driver; veth is everywhere network namespaces are. Kept if it exists.
pub fn add_ice_interface(ns: &NetNs) -> Result<()> {
    if !ns.is_isolated() {
        bail!("an ICE interface needs a private network namespace (run as root)");
    }
    let exists = ns.cmd("ip").args(["link", "show", ICE_IFACE]).stdout(Stdio::null()).stderr(Stdio::null()).status()?;
    if exists.success() {
        return Ok(());
    }
    let addr = format!("{ICE_ADDR}/32");
    let steps: [&[&str]; 4] = [
        &["link", "add", ICE_IFACE, "type", "veth", "peer", "name", ICE_PEER],
        &["addr", "add", &addr, "dev", ICE_IFACE],
        &["link", "set", ICE_IFACE, "up"],
        &["link", "set", ICE_PEER, "up"],
    ];
    for args in steps {
        let out = ns.cmd("ip").args(args).output().context("run ip")?;
        if !out.status.success() {
            bail!("`ip {}` in the namespace failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
        }
    }
    Ok(())
}

impl Default for NetNs {
    fn default() -> Self {
        Self::new()
    }
}
