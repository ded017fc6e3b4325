//! `huis-fleet-sim`: the fleet at scale on one machine (issue 20; run by `bench/fleet-scale.sh`).
//!
//! Many rooms in one process, each running the fleet agent huisd runs (`huis_firmware::fleet`,
//! unchanged) over its own mutual-TLS connection with its own P-256 key and certificate, on a
//! simulated room: a status feed and a task that answers the room's commands as huisd's room
//! does (mute, dial, hang up, screenshot, configuration). Against them run a real mosquitto on
//! the shipped configuration and the real `huis-fleet serve` (SQLite), both set up by
//! `huis-fleet init`, and an observer holding the fleet service's certificate, which measures:
//!
//! 1. connect: every room online (its status seen) from a cold start, all rooms at once;
//! 2. the broker's memory with every room connected;
//! 3. commands at a fixed rate, each answered `accepted` then `done`: latency and any lost;
//! 4. a broker crash (SIGKILL) and restart: until every room has published its status and
//!    reported state anew, and a new subscriber is given every room's retained state;
//! 5. one room cut off (its TCP connection held open with nothing passing, by a proxy in this
//!    process): until the broker publishes its Last Will, and until the service's API says it
//!    is offline.
//!
//! It prints each figure beside its goal and exits 1 when one is missed. It binds fixed ports
//! (8443, 8883, 18883) on 127.0.0.1, so it runs in a network namespace of its own.
//!
//!   huis-fleet-sim --fleet-bin PATH [--rooms N] [--rate PER_S] [--command-secs S]
//!                  [--work DIR] [--no-service]

use std::collections::{BTreeMap, HashMap};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail};
use huis_firmware::config;
use huis_firmware::fleet;
use huis_firmware::room::{Command as RoomCommand, RoomError};
use huis_firmware::status::{AudioStatus, Feed, RoomState, RoomStatus, VideoStatus, set};
use huis_firmware::update::Updater;
use huis_fleet_proto::msg::{self, Ack, AckState, Command, Reported, Status};
use huis_fleet_proto::topic::{Kind, Topic};
use huis_tests::peers::certs::Issued;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use rumqttc::{NetworkOptions, TlsConfiguration, Transport};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

const API_PORT: u16 = 8443;
const BROKER_PORT: u16 = 8883;
/// Where the room that is cut off connects: a proxy to the broker in this process.
const PROXY_PORT: u16 = 18883;
/// The agent's keepalive (firmware/src/fleet/mod.rs) and the `[fleet]` default will delay.
const KEEPALIVE_S: u64 = 30;
const WILL_DELAY_S: u32 = 30;

struct Args {
    fleet_bin: PathBuf,
    rooms: usize,
    rate: u32,
    command_secs: u64,
    work: PathBuf,
    service: bool,
    /// Stop after the connect and memory figures.
    connect_only: bool,
}

fn args() -> Result<Args> {
    let mut a = Args {
        fleet_bin: PathBuf::new(),
        rooms: 10_000,
        rate: 500,
        command_secs: 20,
        work: PathBuf::from("/dev/shm/huis-fleet-sim"),
        service: true,
        connect_only: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let mut v = || it.next().with_context(|| format!("{k} needs a value"));
        match k.as_str() {
            "--fleet-bin" => a.fleet_bin = v()?.into(),
            "--rooms" => a.rooms = v()?.parse().context("--rooms")?,
            "--rate" => a.rate = v()?.parse().context("--rate")?,
            "--command-secs" => a.command_secs = v()?.parse().context("--command-secs")?,
            "--work" => a.work = v()?.into(),
            "--no-service" => a.service = false,
            "--connect-only" => a.connect_only = true,
            _ => bail!("unknown argument {k}"),
        }
    }
    if a.fleet_bin.as_os_str().is_empty() {
        bail!("--fleet-bin (the huis-fleet binary) is needed");
    }
    if a.rooms == 0 || a.rate == 0 {
        bail!("--rooms and --rate must be above 0");
    }
    Ok(a)
}

fn room_id(i: usize) -> String {
    format!("sim-{i:05}")
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// `huis-fleet init` in `dir`, as the README's one command does; the broker stays on loopback
/// and runs as the user who started it.
fn init_fleet(a: &Args, dir: &Path) -> Result<()> {
    let out = Process::new(&a.fleet_bin)
        .args(["init", "--host", "127.0.0.1", "--listen", &format!("127.0.0.1:{API_PORT}")])
        .args(["--broker-port", &BROKER_PORT.to_string(), "--data-dir"])
        .arg(dir)
        .output()
        .context("run huis-fleet init")?;
    if !out.status.success() {
        bail!("huis-fleet init: {}", String::from_utf8_lossy(&out.stderr));
    }
    let conf = dir.join("mosquitto/mosquitto.conf");
    let text = std::fs::read_to_string(&conf)?.replace("0.0.0.0", "127.0.0.1") + "user root\n";
    std::fs::write(&conf, text)?;
    Ok(())
}

/// Each room's key and certificate (named by its id, signed by the fleet's CA), where an
/// enrolled huisd keeps them: `<state>/fleet/room.crt`, `room.key` (0600) and `ca.crt`.
fn issue_rooms(fleet_dir: &Path, rooms: usize, state: &Path) -> Result<()> {
    use rcgen::{CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, Issuer, KeyPair, SanType};
    use std::os::unix::fs::OpenOptionsExt;
    let ca_pem = std::fs::read_to_string(fleet_dir.join("pki/ca.crt"))?;
    let ca_key = KeyPair::from_pem(&std::fs::read_to_string(fleet_dir.join("pki/ca.key"))?)?;
    let issuer = Issuer::from_ca_cert_pem(&ca_pem, ca_key)?;
    for i in 0..rooms {
        let id = room_id(i);
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, id.as_str());
        p.subject_alt_names = vec![SanType::DnsName(id.clone().try_into()?)];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let cert = p.signed_by(&key, &issuer)?;
        let d = state.join(&id).join("fleet");
        std::fs::create_dir_all(&d)?;
        std::fs::write(d.join("room.crt"), format!("{}{}", cert.pem(), ca_pem))?;
        std::fs::write(d.join("ca.crt"), &ca_pem)?;
        let mut f =
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(d.join("room.key"))?;
        std::io::Write::write_all(&mut f, key.serialize_pem().as_bytes())?;
    }
    Ok(())
}

fn spawn_logged(cmd: &mut Process, log: &Path) -> Result<Child> {
    let f = std::fs::File::create(log)?;
    Ok(cmd.stdin(Stdio::null()).stdout(f.try_clone()?).stderr(f).spawn()?)
}

fn wait_port(port: u16, secs: u64, what: &str, log: &Path) -> Result<()> {
    let end = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < end {
        if TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!(
        "{what} is not listening on {port} after {secs} s; its log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    )
}

/// A process's resident memory (VmRSS) and its peak (VmHWM), in MiB.
fn memory_mib(pid: u32) -> (f64, f64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map(|kb| kb / 1024.0)
            .unwrap_or(f64::NAN)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// CPU seconds a process has used (user + system).
fn cpu_secs(pid: u32) -> f64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = text.rsplit_once(')').map(|x| x.1).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 11 and 12 after the name; in ticks of
    // 1/100 s (USER_HZ on Linux).
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (ticks(11) + ticks(12)) / 100.0
}

struct Broker {
    child: Child,
    conf: PathBuf,
    log: PathBuf,
}

impl Broker {
    fn start(conf: &Path, log: &Path) -> Result<Broker> {
        let child = spawn_logged(Process::new("mosquitto").arg("-c").arg(conf), log)
            .context("start mosquitto (Debian package mosquitto)")?;
        wait_port(BROKER_PORT, 10, "mosquitto", log)?;
        Ok(Broker { child, conf: conf.to_owned(), log: log.to_owned() })
    }

    /// SIGKILL, as a crash or a power cut: no goodbye to any client.
    fn crash_and_restart(&mut self) -> Result<()> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let log = self.log.with_extension("restarted.log");
        *self = Broker::start(&self.conf, &log)?;
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// The simulated rooms.

/// A room as the agent sees it: its status feed and the answers huisd's room gives.
async fn sim_room(mut rx: mpsc::Receiver<RoomCommand>, feed: Feed) {
    let mut settings: HashMap<String, String> = HashMap::new();
    while let Some(c) = rx.recv().await {
        match c {
            RoomCommand::SetMuted(on, r) => {
                feed.room(|s| set(&mut s.muted, on));
                let _ = r.send(Ok(String::new()));
            }
            RoomCommand::Dial(to, r) => {
                feed.room(|s| set(&mut s.state, RoomState::InCall));
                let _ = r.send(Ok(format!("calling {to}")));
            }
            RoomCommand::Hangup(r) => {
                feed.room(|s| set(&mut s.state, RoomState::Idle));
                let _ = r.send(Ok(String::new()));
            }
            RoomCommand::Answer(r) => {
                let _ = r.send(Err(RoomError::InvalidState("no call is ringing".into())));
            }
            RoomCommand::ConfigGet(k, r) => {
                let _ = r.send(Ok(settings.get(&k).cloned().unwrap_or_default()));
            }
            RoomCommand::ConfigSet(k, v, r) => {
                settings.insert(k, v);
                let _ = r.send(Ok(String::new()));
            }
            RoomCommand::Screenshot(r) => {
                let _ = r.send(Err(RoomError::NotAvailable("the simulated room has no screen".into())));
            }
            // Nothing else is asked of a room by its fleet agent; a dropped reply says so.
            _ => {}
        }
    }
}

/// Starts room `i`'s agent; `broker_port` is the broker's or the proxy's.
fn start_room(i: usize, state: &Path, broker_port: u16) {
    let id = room_id(i);
    let feed = Feed::new(
        RoomStatus {
            room_name: format!("Simulated room {i}"),
            board: "sim".into(),
            version: "sim-1.0".into(),
            registration: "none".into(),
            leds: "idle".into(),
            content_input: "none".into(),
            presentation: "none".into(),
            ..Default::default()
        },
        AudioStatus::default(),
        VideoStatus::default(),
    );
    let (tx, rx) = mpsc::channel(8);
    let setup = fleet::Setup {
        cfg: config::Fleet {
            broker: format!("mqtts://127.0.0.1:{broker_port}"),
            room_id: id.clone(),
            will_delay_s: WILL_DELAY_S,
            ..Default::default()
        },
        state_dir: state.join(&id),
        room: tx,
        feed: feed.subscribe(),
        updater: Updater::new(feed.clone()),
        may_reboot: false,
    };
    // The room task holds the feed: the agent stops when its feed closes.
    tokio::spawn(sim_room(rx, feed));
    fleet::start(setup);
}

/// One room's way to the broker through this process, which can cut it: from then on nothing
/// passes either way, and the connections stay open (a pulled cable, not a closed socket).
async fn proxy(cut: Arc<AtomicBool>) -> Result<()> {
    let l = tokio::net::TcpListener::bind(("127.0.0.1", PROXY_PORT)).await?;
    loop {
        let (inside, _) = l.accept().await?;
        let cut = cut.clone();
        tokio::spawn(async move {
            let Ok(outside) = tokio::net::TcpStream::connect(("127.0.0.1", BROKER_PORT)).await else { return };
            let (ri, wi) = inside.into_split();
            let (ro, wo) = outside.into_split();
            tokio::join!(pipe(ri, wo, cut.clone()), pipe(ro, wi, cut));
        });
    }
}

async fn pipe(mut r: tokio::net::tcp::OwnedReadHalf, mut w: tokio::net::tcp::OwnedWriteHalf, cut: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if cut.load(Ordering::SeqCst) {
            // Held, never closed: both halves live on in this future.
            std::future::pending::<()>().await;
        }
        if w.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The observer: the fleet service's certificate, reading what every room publishes.

#[derive(Default)]
struct Seen {
    /// Each room's last status: online or not, when it arrived.
    status: HashMap<String, (bool, Instant)>,
    /// Offline statuses (Last Wills) that came after the room's online status, by room.
    offline_after_online: HashMap<String, usize>,
    /// When each room's reported state last arrived.
    reported: HashMap<String, Instant>,
    /// Each command's answers: accepted, done (or failed: its detail).
    acks: HashMap<String, (Option<Instant>, Option<Instant>)>,
    failed: Vec<String>,
    /// Retained messages sent before this (ms since the epoch) are not counted.
    retained_after_ms: u64,
}

/// When a room sent a status or a reported state, from its payload (0 for a Last Will).
fn sent_at_ms(kind: &Kind, payload: &[u8]) -> u64 {
    match kind {
        Kind::Status => msg::decode::<Status>(payload).map(|s| s.at_ms).unwrap_or(0),
        Kind::Reported => msg::decode::<Reported>(payload).map(|r| r.at_ms).unwrap_or(0),
        _ => 0,
    }
}

impl Seen {
    fn online_since(&self, t: Instant) -> usize {
        self.status.values().filter(|(on, at)| *on && *at >= t).count()
    }

    fn reported_since(&self, t: Instant) -> usize {
        self.reported.values().filter(|at| **at >= t).count()
    }
}

/// The fleet service's own certificate (made by `huis-fleet init`), with the fleet's CA.
fn service_tls(fleet_dir: &Path) -> TlsConfiguration {
    let pki = fleet_dir.join("pki");
    let service = Issued { cert: pki.join("service.crt"), key: pki.join("service.key"), both: PathBuf::new() };
    huis_tests::peers::mqtt::tls(&pki.join("ca.crt"), Some(&service))
}

fn mqtt_options(client_id: &str, tls: TlsConfiguration) -> MqttOptions {
    let mut o = MqttOptions::new(client_id, "127.0.0.1", BROKER_PORT);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_transport(Transport::Tls(tls));
    o.set_outgoing_inflight_upper_limit(1000);
    let mut net = NetworkOptions::new();
    net.set_tcp_nodelay(true);
    o.set_network_options(net);
    o
}

/// Connects the observer and keeps it connected (it resubscribes after every reconnect).
fn observe(tls: TlsConfiguration, seen: Arc<Mutex<Seen>>) -> AsyncClient {
    let (client, mut ev) = AsyncClient::new(mqtt_options("bench-observer", tls), 100_000);
    let sub = client.clone();
    tokio::spawn(async move {
        loop {
            match ev.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    for t in ["status", "state/reported", "ack"] {
                        let _ = sub.subscribe(format!("huis/v1/+/{t}"), QoS::AtLeastOnce).await;
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let at = Instant::now();
                    let Ok(t) = Topic::parse(&String::from_utf8_lossy(&p.topic)) else { continue };
                    let room = t.room.as_str().to_owned();
                    let mut s = seen.lock().unwrap();
                    // A retained message handed over on (re)subscribing is what a room sent
                    // before, maybe before the broker restarted: it counts only if the room sent
                    // it after `retained_after_ms` (a room that came back before this observer
                    // resubscribed is seen that way). Live ones always count (MQTT 5 clears
                    // their retain flag, the subscription not asking to keep it).
                    if p.retain && sent_at_ms(&t.kind, &p.payload) < s.retained_after_ms {
                        continue;
                    }
                    match t.kind {
                        Kind::Status => {
                            if let Ok(st) = msg::decode::<Status>(&p.payload) {
                                if !st.online && s.status.get(&room).is_some_and(|(on, _)| *on) {
                                    *s.offline_after_online.entry(room.clone()).or_default() += 1;
                                }
                                s.status.insert(room, (st.online, at));
                            }
                        }
                        Kind::Reported => {
                            s.reported.insert(room, at);
                        }
                        Kind::Ack => {
                            if let Ok(a) = msg::decode::<Ack>(&p.payload) {
                                let e = s.acks.entry(a.id.clone()).or_default();
                                match a.state {
                                    AckState::Accepted => e.0 = e.0.or(Some(at)),
                                    AckState::Done => e.1 = e.1.or(Some(at)),
                                    AckState::Failed | AckState::Expired => {
                                        s.failed.push(format!("{room} {}: {:?} {}", a.id, a.state, a.detail))
                                    }
                                }
                            }
                        }
                        _ => {}
                    }
                }
                Ok(_) => {}
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    });
    client
}

/// Waits until `done(seen)` or `secs` pass; returns the time taken, or None.
async fn wait_for(seen: &Mutex<Seen>, secs: u64, done: impl Fn(&Seen) -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(secs) {
        if done(&seen.lock().unwrap()) {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    None
}

/// Subscribes afresh and counts the rooms whose retained reported state was published at or
/// after `since_ms`, within `secs`.
async fn retained_reported_since(tls: TlsConfiguration, since_ms: u64, rooms: usize, secs: u64) -> (usize, usize) {
    let (client, mut ev) = AsyncClient::new(mqtt_options("bench-retained", tls), 1000);
    let mut fresh = std::collections::HashSet::new();
    let mut all = std::collections::HashSet::new();
    let mut stale = Vec::new();
    let end = tokio::time::Instant::now() + Duration::from_secs(secs);
    while fresh.len() < rooms {
        match tokio::time::timeout_at(end, ev.poll()).await {
            Err(_) => break,
            Ok(Ok(Event::Incoming(Packet::ConnAck(_)))) => {
                let _ = client.subscribe("huis/v1/+/state/reported", QoS::AtLeastOnce).await;
            }
            Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                let topic = String::from_utf8_lossy(&p.topic).into_owned();
                if p.retain
                    && let Ok(r) = msg::decode::<Reported>(&p.payload)
                    && r.at_ms >= since_ms
                {
                    fresh.insert(topic.clone());
                } else if stale.len() < 5 {
                    stale.push(format!("{topic}: {}", String::from_utf8_lossy(&p.payload)));
                }
                all.insert(topic);
            }
            Ok(Ok(_)) => {}
            Ok(Err(_)) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let _ = client.disconnect().await;
    for s in stale {
        eprintln!("retained, older than the restart: {s}");
    }
    (fresh.len(), all.len())
}

/// The service's answer to `huis-fleet ARGS`, through its CLI (as a script would ask it).
fn fleet_cli(fleet_bin: &Path, fleet_dir: &Path, args: &[&str]) -> Option<serde_json::Value> {
    let out = Process::new(fleet_bin)
        .args(["--url", &format!("https://127.0.0.1:{API_PORT}"), "--token-file"])
        .arg(fleet_dir.join("admin.token"))
        .arg("--ca")
        .arg(fleet_dir.join("pki/ca.crt"))
        .args(args)
        .output()
        .ok()?;
    serde_json::from_slice(&out.stdout).ok()
}

/// How many rooms the service's inventory shows online.
async fn service_online(fleet_bin: &Path, fleet_dir: &Path) -> usize {
    let (b, d) = (fleet_bin.to_owned(), fleet_dir.to_owned());
    let v = tokio::task::spawn_blocking(move || fleet_cli(&b, &d, &["rooms"])).await.ok().flatten();
    v.and_then(|v| v.as_array().map(|a| a.iter().filter(|r| r["online"] == true).count())).unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

struct Report {
    lines: Vec<String>,
    missed: Vec<String>,
}

impl Report {
    fn figure(&mut self, what: &str, value: String, goal: &str, met: bool) {
        let mark = if goal.is_empty() {
            ""
        } else if met {
            "met"
        } else {
            "MISSED"
        };
        let line = format!("| {what} | {value} | {goal} | {mark} |");
        println!("{line}");
        if !goal.is_empty() && !met {
            self.missed.push(what.to_owned());
        }
        self.lines.push(line);
    }
}

fn main() -> Result<()> {
    let a = args()?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(run(a))
}

async fn run(a: Args) -> Result<()> {
    let _ = std::fs::remove_dir_all(&a.work);
    std::fs::create_dir_all(&a.work)?;
    let fleet_dir = a.work.join("fleet");
    let state = a.work.join("rooms");
    let log = std::fs::File::create(a.work.join("agents.log"))?;
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()))
        .with_writer(Mutex::new(log))
        .with_ansi(false)
        .init();

    init_fleet(&a, &fleet_dir)?;
    let t = Instant::now();
    issue_rooms(&fleet_dir, a.rooms, &state)?;
    eprintln!("{} room keys and certificates made in {:.1} s", a.rooms, t.elapsed().as_secs_f64());

    let mut broker = Broker::start(&fleet_dir.join("mosquitto/mosquitto.conf"), &a.work.join("mosquitto.log"))?;
    let service = if a.service {
        let log = a.work.join("huis-fleet.log");
        let mut cmd = Process::new(&a.fleet_bin);
        cmd.arg("serve").arg("--config").arg(fleet_dir.join("huis-fleet.toml")).env("RUST_LOG", "warn");
        let c = spawn_logged(&mut cmd, &log)?;
        wait_port(API_PORT, 20, "huis-fleet serve", &log)?;
        Some(c)
    } else {
        None
    };
    let tls = service_tls(&fleet_dir);
    let seen = Arc::new(Mutex::new(Seen { retained_after_ms: u64::MAX, ..Default::default() }));
    // The observer runs on a thread of its own, so that the rooms' work cannot starve it and
    // make the broker drop what it should see.
    let observer = {
        let (tx, rx) = std::sync::mpsc::channel();
        let (tls, seen) = (tls.clone(), seen.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async move {
                let _ = tx.send(observe(tls, seen));
                std::future::pending::<()>().await
            })
        });
        rx.recv()?
    };
    let cut = Arc::new(AtomicBool::new(false));
    tokio::spawn(proxy(cut.clone()));
    tokio::time::sleep(Duration::from_secs(1)).await;

    let n = a.rooms;
    let mut rep = Report { lines: Vec::new(), missed: Vec::new() };
    println!(
        "\n{n} rooms, one process; machine: {} cores, {} MiB; mosquitto {}\n",
        std::thread::available_parallelism().map(|p| p.get()).unwrap_or(0),
        std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| m.lines().next()?.split_whitespace().nth(1)?.parse::<u64>().ok())
            .unwrap_or(0)
            / 1024,
        mosquitto_version()
    );
    println!("| figure | measured | goal | |\n|---|---|---|---|");

    // 1. Every room at once, as after a power cut of the whole building.
    let t0 = Instant::now();
    for i in 0..n {
        start_room(i, &state, if i == 0 { PROXY_PORT } else { BROKER_PORT });
    }
    let connect = wait_for(&seen, 300, |s| s.online_since(t0) == n).await;
    let online = seen.lock().unwrap().online_since(t0);
    {
        let s = seen.lock().unwrap();
        let never: Vec<String> = (0..n).map(room_id).filter(|r| !s.status.contains_key(r)).collect();
        let wills = s.offline_after_online.len();
        if connect.is_none() {
            eprintln!(
                "not online: {} rooms never seen (first: {:?}); {wills} rooms' Last Will came after their online status",
                never.len(),
                never.iter().take(3).collect::<Vec<_>>()
            );
        }
    }
    rep.figure(
        "all rooms connected (mutual TLS) and online",
        match connect {
            Some(d) => format!("{:.1} s", d.as_secs_f64()),
            None => format!("{online} of {n} after 300 s"),
        },
        "< 60 s",
        connect.is_some_and(|d| d < Duration::from_secs(60)),
    );
    let reported = wait_for(&seen, 60, |s| s.reported_since(t0) == n).await;
    rep.figure(
        "every room's reported state seen",
        match reported {
            Some(_) => format!("{:.1} s after the start", t0.elapsed().as_secs_f64()),
            None => format!("{} of {n}", seen.lock().unwrap().reported_since(t0)),
        },
        "",
        true,
    );

    if a.service {
        let (shown, took) = loop {
            let shown = service_online(&a.fleet_bin, &fleet_dir).await;
            if shown == n || t0.elapsed() > Duration::from_secs(300) {
                break (shown, t0.elapsed());
            }
            tokio::time::sleep(Duration::from_secs(2)).await;
        };
        rep.figure(
            "the service's inventory shows every room online",
            if shown == n { format!("{:.0} s after the start", took.as_secs_f64()) } else { format!("{shown} of {n}") },
            "",
            true,
        );
    }

    // 2. Memory, once the connection storm has settled.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (rss, hwm) = memory_mib(broker.child.id());
    rep.figure(
        "broker memory, all rooms connected (VmRSS)",
        format!("{rss:.0} MiB (peak {hwm:.0})"),
        "< 400 MB",
        rss * 1.048_576 < 400.0,
    );
    rep.figure("broker CPU so far", format!("{:.1} s", cpu_secs(broker.child.id())), "", true);
    let (sim_rss, _) = memory_mib(std::process::id());
    rep.figure(
        "simulator memory (all agents)",
        format!("{sim_rss:.0} MiB, {:.0} KiB a room", sim_rss * 1024.0 / n as f64),
        "",
        true,
    );
    if let Some(s) = &service {
        rep.figure("fleet service memory", format!("{:.0} MiB", memory_mib(s.id()).0), "", true);
    }

    if a.connect_only {
        let _ = broker.child.kill();
        std::process::exit(if rep.missed.is_empty() { 0 } else { 1 });
    }

    // 3. Commands at a fixed rate, each to the next room; each must be accepted then done.
    let total = a.rate as u64 * a.command_secs;
    let mut sent: Vec<(String, Instant)> = Vec::with_capacity(total as usize);
    let every = Duration::from_secs_f64(1.0 / a.rate as f64);
    let start = tokio::time::Instant::now();
    for k in 0..total {
        tokio::time::sleep_until(start + every.mul_f64(k as f64)).await;
        let id = format!("b{k}");
        let room = room_id(k as usize % n);
        let cmd = Command {
            id: id.clone(),
            expires_at_ms: now_ms() + 60_000,
            args: BTreeMap::from([("on".to_owned(), if k % 2 == 0 { "true" } else { "false" }.to_owned())]),
        };
        let topic = Topic::new(huis_fleet_proto::topic::RoomId::new(&room)?, Kind::Command("mute".into()));
        sent.push((id, Instant::now()));
        observer.publish(topic.to_string(), QoS::AtLeastOnce, false, msg::encode(&cmd)).await?;
    }
    let send_secs = start.elapsed().as_secs_f64();
    let all_done = |s: &Seen| sent.iter().all(|(id, _)| s.acks.get(id).is_some_and(|a| a.1.is_some()));
    wait_for(&seen, 15, all_done).await;
    {
        let s = seen.lock().unwrap();
        let mut accepted: Vec<f64> = Vec::new();
        let mut done: Vec<f64> = Vec::new();
        for (id, at) in &sent {
            if let Some((acc, dn)) = s.acks.get(id) {
                accepted.extend(acc.map(|t| (t - *at).as_secs_f64() * 1000.0));
                done.extend(dn.map(|t| (t - *at).as_secs_f64() * 1000.0));
            }
        }
        accepted.sort_by(f64::total_cmp);
        done.sort_by(f64::total_cmp);
        let lost = total as usize - done.len();
        rep.figure(
            "commands sent",
            format!("{total} mute commands in {send_secs:.1} s ({:.0}/s)", total as f64 / send_secs),
            &format!("{}/s", a.rate),
            total as f64 / send_secs >= a.rate as f64 * 0.98,
        );
        rep.figure(
            "command → accepted, p50 / p99 / max",
            format!(
                "{:.0} / {:.0} / {:.0} ms",
                percentile(&accepted, 0.5),
                percentile(&accepted, 0.99),
                percentile(&accepted, 1.0)
            ),
            "",
            true,
        );
        let p99 = percentile(&done, 0.99);
        rep.figure(
            "command → done, p50 / p99 / max",
            format!("{:.0} / {p99:.0} / {:.0} ms", percentile(&done, 0.5), percentile(&done, 1.0)),
            "p99 < 250 ms",
            p99 < 250.0,
        );
        rep.figure("commands lost (no done within 15 s)", lost.to_string(), "0", lost == 0);
        for f in s.failed.iter().take(5) {
            eprintln!("failed: {f}");
        }
    }

    // 4. The broker crashes and comes back.
    let down_ms = now_ms();
    seen.lock().unwrap().retained_after_ms = down_ms;
    broker.crash_and_restart()?;
    let t_up = Instant::now();
    let back = wait_for(&seen, 300, |s| s.online_since(t_up) == n && s.reported_since(t_up) == n).await;
    let (on, rp) = {
        let s = seen.lock().unwrap();
        (s.online_since(t_up), s.reported_since(t_up))
    };
    rep.figure(
        "broker crash (SIGKILL) and restart: every room back with status and reported state",
        match back {
            Some(d) => format!("{:.1} s after the broker listened again", d.as_secs_f64()),
            None => format!("{on} online, {rp} reported of {n} after 300 s"),
        },
        "< 120 s",
        back.is_some_and(|d| d < Duration::from_secs(120)),
    );
    let (fresh, all) = retained_reported_since(tls.clone(), down_ms, n, 60).await;
    rep.figure(
        "retained reported states a new subscriber gets, published since the restart",
        format!("{fresh} of {n} (of {all} received)"),
        &format!("{n}"),
        fresh == n,
    );
    let (rss, hwm) = memory_mib(broker.child.id());
    rep.figure(
        "broker memory after the reconnection storm",
        format!("{rss:.0} MiB (peak {hwm:.0})"),
        "< 400 MB",
        rss * 1.048_576 < 400.0,
    );

    // 5. One room's network is cut.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let bound = Duration::from_secs(KEEPALIVE_S * 3 / 2 + WILL_DELAY_S as u64);
    let cut_at = Instant::now();
    cut.store(true, Ordering::SeqCst);
    let room0 = room_id(0);
    let mut broker_says = None;
    let mut service_says = None;
    while cut_at.elapsed() < bound + Duration::from_secs(60)
        && (broker_says.is_none() || (a.service && service_says.is_none()))
    {
        if broker_says.is_none() && seen.lock().unwrap().status.get(&room0).is_some_and(|(on, at)| !on && *at > cut_at)
        {
            broker_says = Some(cut_at.elapsed());
        }
        if a.service && service_says.is_none() {
            let (a2, dir, r) = (a.fleet_bin.clone(), fleet_dir.clone(), room0.clone());
            let v = tokio::task::spawn_blocking(move || fleet_cli(&a2, &dir, &["room", &r])).await?;
            let online = v.and_then(|v| v["room"]["online"].as_bool());
            if online == Some(false) {
                service_says = Some(cut_at.elapsed());
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let goal = format!("≤ {} s (keepalive {KEEPALIVE_S} s × 1.5 + will delay {WILL_DELAY_S} s)", bound.as_secs());
    let say = |d: Option<Duration>| d.map(|d| format!("{:.1} s", d.as_secs_f64())).unwrap_or_else(|| "never".into());
    rep.figure(
        "a room cut off: its Last Will published",
        say(broker_says),
        &goal,
        broker_says.is_some_and(|d| d <= bound),
    );
    if a.service {
        rep.figure(
            "a room cut off: the service's API shows it offline",
            say(service_says),
            &goal,
            service_says.is_some_and(|d| d <= bound + Duration::from_secs(1)),
        );
    }

    if let Some(mut s) = service {
        let _ = s.kill();
        let _ = s.wait();
    }
    let _ = broker.child.kill();
    let _ = broker.child.wait();
    std::fs::write(a.work.join("report.md"), rep.lines.join("\n") + "\n")?;
    if rep.missed.is_empty() {
        println!("\nevery goal met");
        Ok(())
    } else {
        println!("\nmissed: {}", rep.missed.join("; "));
        std::process::exit(1);
    }
}

fn mosquitto_version() -> String {
    let out = Process::new("mosquitto").arg("-h").output().map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    out.unwrap_or_default()
        .lines()
        .next()
        .and_then(|l| {
            l.split_whitespace().find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit())).map(str::to_owned)
        })
        .unwrap_or_else(|| "?".into())
}
