//! Harness for the integration tests: a private `dbus-daemon`, huisd and
//! huisctl as real processes, and helpers to wait for what a person would
//! see. Nothing here is a mock: the bus, the daemon and the client are the
//! programs that ship.

pub mod peers;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

/// The workspace's target directory holding huisd and huisctl.
pub fn bin_dir() -> PathBuf {
    static BUILD: Once = Once::new();
    // The test binary lives in target/<profile>/deps; the daemons one level up.
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target/<profile>").to_path_buf();
    BUILD.call_once(|| {
        // scripts/run-tests.sh builds every target first and says so; a build
        // here would resolve features for huis-firmware alone and rebuild deps.
        if std::env::var_os("HUIS_TESTS_PREBUILT").is_some() {
            return;
        }
        // Make sure the binaries under test are the current ones.
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let release = dir.file_name().is_some_and(|n| n == "release");
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-q", "-p", "huis-firmware", "-p", "huis-fleet", "--bins"]);
        if release {
            cmd.arg("--release");
        }
        let st = cmd.status().expect("run cargo build for huisd, huisctl and huis-fleet");
        assert!(st.success(), "building huisd, huisctl and huis-fleet failed");
    });
    dir
}

/// A private session bus, torn down on drop.
pub struct Bus {
    child: Child,
    pub address: String,
    pub dir: tempfile::TempDir,
}

impl Bus {
    pub fn start() -> Bus {
        Self::start_with_policy(None)
    }

    /// A bus under the D-Bus policy huis ships (`rootfs-overlay/…/org.huis.Room1.conf`), for
    /// tests that call as another user; `None` (the caller says it skipped) unless run as root,
    /// which switching users needs.
    pub fn start_with_shipped_policy() -> Option<Bus> {
        if unsafe { libc::geteuid() } != 0 {
            return None;
        }
        let policy = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../rootfs-overlay/usr/share/dbus-1/system.d/org.huis.Room1.conf");
        Some(Self::start_with_policy(Some(&policy)))
    }

    /// Starts a bus; with `policy`, a system-bus-like configuration that
    /// denies by default and includes the given policy file.
    pub fn start_with_policy(policy: Option<&Path>) -> Bus {
        let dir = tempfile::tempdir().expect("temp dir");
        let sock = dir.path().join("bus");
        let conf = dir.path().join("bus.conf");
        let body = match policy {
            None => "<policy context=\"default\"><allow send_destination=\"*\" eavesdrop=\"true\"/><allow eavesdrop=\"true\"/><allow own=\"*\"/></policy>".to_string(),
            Some(p) => format!(
                "<policy context=\"default\"><allow user=\"*\"/><deny send_type=\"method_call\"/><allow send_destination=\"org.freedesktop.DBus\"/><allow send_type=\"signal\"/><allow send_requested_reply=\"true\" send_type=\"method_return\"/><allow send_requested_reply=\"true\" send_type=\"error\"/><allow receive_type=\"method_call\"/><allow receive_type=\"method_return\"/><allow receive_type=\"error\"/><allow receive_type=\"signal\"/></policy><include>{}</include>",
                p.display()
            ),
        };
        std::fs::write(
            &conf,
            format!(
                "<!DOCTYPE busconfig PUBLIC \"-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN\" \"http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd\">\n<busconfig><type>session</type><listen>unix:path={}</listen><auth>EXTERNAL</auth>{body}</busconfig>\n",
                sock.display()
            ),
        )
        .unwrap();
        if policy.is_some() {
            // Other users must reach the socket for policy tests.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let mut child = Command::new("dbus-daemon")
            .arg(format!("--config-file={}", conf.display()))
            .args(["--nofork", "--print-address=1", "--nopidfile"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("dbus-daemon (Debian package dbus-daemon) must be installed");
        let mut out = child.stdout.take().unwrap();
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        use std::io::Read;
        while out.read(&mut byte).unwrap_or(0) == 1 && byte[0] != b'\n' {
            buf.push(byte[0]);
        }
        let address = String::from_utf8(buf).unwrap().trim().to_owned();
        assert!(address.starts_with("unix:"), "dbus-daemon printed no address");
        Bus { child, address, dir }
    }

    pub async fn connect(&self) -> zbus::Connection {
        zbus::connection::Builder::address(self.address.as_str()).build().await.expect("connect to the test bus")
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const ROOM_RECORDING: &str = "room-6ch-16000hz.wav";

/// huisd renders the sim board's default room recording into a fresh state
/// directory at first start (seconds of acoustics simulation). Tests start many
/// huisds: the first rendering is kept beside the binaries and copied into
/// later state directories, so each start is quick. The file is the same
/// huisd would render (a fixed seed).
pub fn seed_room_recording(state_dir: &Path) {
    let cached = bin_dir().join(format!("test-{ROOM_RECORDING}"));
    let _ = std::fs::create_dir_all(state_dir);
    if cached.exists() {
        let _ = std::fs::copy(&cached, state_dir.join(ROOM_RECORDING));
    }
}

/// Keeps huisd's rendering for later tests (atomically: temp file, rename).
fn keep_room_recording(state_dir: &Path) {
    let cached = bin_dir().join(format!("test-{ROOM_RECORDING}"));
    let rendered = state_dir.join(ROOM_RECORDING);
    if !cached.exists() && rendered.exists() {
        let tmp = cached.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::copy(&rendered, &tmp).is_ok() {
            let _ = std::fs::rename(&tmp, &cached);
        }
    }
}

/// A running huisd.
pub struct Huisd {
    pub child: Child,
    pub config: PathBuf,
    pub state_dir: PathBuf,
    pub log: PathBuf,
}

impl Huisd {
    /// Starts `huisd --session --board sim` on `bus` with `config_text` as its configuration.
    pub fn spawn(bus: &Bus, config_text: Option<&str>, extra: &[&str]) -> Huisd {
        Self::spawn_cmd(Command::new(bin_dir().join("huisd")), bus, config_text, extra)
    }

    /// Like [`Huisd::spawn`], with `cmd` as the huisd command (e.g. one that
    /// runs it inside a network namespace).
    pub fn spawn_cmd(mut cmd: Command, bus: &Bus, config_text: Option<&str>, extra: &[&str]) -> Huisd {
        let root = tempfile::Builder::new().prefix("huisd").tempdir_in(bus.dir.path()).unwrap().keep();
        let config = root.join("huis.toml");
        // Tests run side by side: unless the test chose, SIP takes a free port.
        let text = config_text.unwrap_or("");
        let text =
            if text.contains("[sip]") { text.to_owned() } else { format!("{text}\n[sip]\nlisten = \"127.0.0.1:0\"\n") };
        std::fs::write(&config, text).unwrap();
        let state_dir = root.join("state");
        seed_room_recording(&state_dir);
        let log = root.join("huisd.log");
        let child = cmd
            .args(["--session", "--board", "sim", "--config"])
            .arg(&config)
            .arg("--state-dir")
            .arg(&state_dir)
            .args(extra)
            .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
            .env("RUST_LOG", "info")
            .env_remove("JOURNAL_STREAM")
            .env_remove("NOTIFY_SOCKET")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start huisd");
        Huisd { child, config, state_dir, log }
    }

    /// Starts huisd and waits until it owns its bus name.
    pub async fn start(bus: &Bus, config_text: Option<&str>) -> Huisd {
        Self::wait_ready(Self::spawn(bus, config_text, &[]), bus).await
    }

    /// Waits until `d` owns its bus name (up to 60 s).
    pub async fn wait_ready(mut d: Huisd, bus: &Bus) -> Huisd {
        let conn = bus.connect().await;
        let dbus = zbus::fdo::DBusProxy::new(&conn).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if dbus.name_has_owner("org.huis.Room1".try_into().unwrap()).await.unwrap_or(false) {
                keep_room_recording(&d.state_dir);
                return d;
            }
            if let Ok(Some(st)) = d.child.try_wait() {
                panic!("huisd exited with {st} before it was ready:\n{}", d.log_text());
            }
            assert!(Instant::now() < deadline, "huisd not ready within 60 s:\n{}", d.log_text());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends SIGTERM and waits up to `within` for the exit status.
    pub fn terminate(&mut self, within: Duration) -> Option<ExitStatus> {
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        wait_exit(&mut self.child, within)
    }

    /// Waits for huisd to exit on its own.
    pub fn wait(&mut self, within: Duration) -> Option<ExitStatus> {
        wait_exit(&mut self.child, within)
    }
}

fn wait_exit(child: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            return Some(st);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Huisd {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs huisctl against `bus`.
pub fn huisctl(bus: &Bus, args: &[&str]) -> Output {
    Command::new(bin_dir().join("huisctl"))
        .arg("--session")
        .args(args)
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .output()
        .expect("run huisctl")
}

/// `huisctl --json ARGS…` parsed; a failing huisctl fails the test with its stderr.
pub fn huisctl_json(bus: &Bus, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    let out = huisctl(bus, &a);
    assert!(out.status.success(), "huisctl {args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("huisctl {args:?} printed no JSON ({e}): {}", stdout(&out)))
}

/// Polls `huisctl status` until `pred` holds and returns that status. On failure: the status
/// (with `last_error`, Room1.LastError) and huisd's log.
pub fn wait_status(
    bus: &Bus,
    d: &Huisd,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    loop {
        let s = huisctl_json(bus, &["status"]);
        if pred(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {timeout:?}; status: {s}\nLastError: {}\nhuisd log:\n{}",
            s["last_error"],
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// huisd's "registration failed (…, N in a row): next attempt in M ms" log lines, as
/// (failures in a row, wait in ms): the registration back-off as the room logged it.
pub fn backoff_lines(log: &str) -> Vec<(u32, u64)> {
    log.lines()
        .filter_map(|l| {
            let rest = l.split("registration failed (").nth(1)?;
            let n = rest.split(" in a row").next()?.rsplit(", ").next()?.parse().ok()?;
            let ms = rest.split("next attempt in ").nth(1)?.split(" ms").next()?.parse().ok()?;
            Some((n, ms))
        })
        .collect()
}

/// The status says the account is registered.
pub fn registered(s: &serde_json::Value) -> bool {
    s["registration"].as_str().unwrap_or("").starts_with("registered")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Keeps `bytes`, a message a real peer sent, as a fuzz seed of `target` when the run was asked
/// to (`HUIS_KEEP_SEEDS=1`, as `bench/fuzz-seeds.sh` does): `fuzz/seeds/TARGET/real-PEER-HASH`,
/// named by a hash of the content so that a message seen again is kept once. Returns whether it
/// was new.
pub fn keep_seed(target: &str, peer: &str, bytes: &[u8]) -> bool {
    if std::env::var_os("HUIS_KEEP_SEEDS").is_none() || bytes.is_empty() {
        return false;
    }
    // FNV-1a, 64 bits: a stable name, not a security property.
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3));
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds").join(target);
    let file = dir.join(format!("real-{peer}-{hash:016x}"));
    if file.exists() {
        return false;
    }
    std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&file, bytes)).is_ok()
}
