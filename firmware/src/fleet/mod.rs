//! The fleet agent: the room as a fleet service sees it, over MQTT 5 with mutual TLS.
//!
//! A second management surface beside D-Bus, and like D-Bus a reader of the status feed and a
//! sender of the room's commands, never a way into the room's insides. It publishes the room's
//! status (retained, and its Last Will with a delay, so short drops are never reported),
//! reported state (on change, at most once a second, and on every reconnect), telemetry and
//! events; it takes commands (answered on `ack`: accepted, then done, failed or expired) and the
//! desired configuration. The topics and payloads are `huis_fleet_proto`'s (ARCHITECTURE.md,
//! "The fleet contract").
//!
//! rumqttc carries MQTT; its outgoing window is capped (it otherwise reserves room for the
//! broker's receive maximum, 65,535 publishes, about 14 MB) and TCP_NODELAY is set.

pub mod identity;
pub mod saved;

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use huis_fleet_proto::msg::{
    self, Ack, AckState, BundleTarget, CallQuality, Desired, Event as FleetEvent, Reported, Status, Telemetry,
    UpdatePhase, UpdateReport,
};
use huis_fleet_proto::topic::{Kind, RoomId, Topic};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{LastWill, LastWillProperties, Packet};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use rumqttc::{NetworkOptions, TlsConfiguration, Transport};
use tokio::sync::{mpsc, oneshot};

use crate::config;
use crate::room::{Command as RoomCommand, RoomError};
use crate::status::{RoomState, StatusEvent, Subscriber};
use crate::text::excerpt;
use crate::update::Updater;
use identity::Identity;
use saved::{PendingUpdate, Saved, Sequence, Store};

/// Outgoing QoS 1 publishes in flight at once.
const INFLIGHT: u16 = 16;
/// Requests queued for the connection before publishes are dropped (and said).
const REQUEST_QUEUE: usize = 64;
/// Least time between two reported states.
const REPORT_EVERY: Duration = Duration::from_secs(1);
/// Command ids remembered, so that a command delivered twice is answered, not run, again.
const REMEMBERED_COMMANDS: usize = 256;
/// Longest a command may run before it is answered failed.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// Largest screenshot or log upload.
const MAX_UPLOAD: usize = 16 * 1024 * 1024;

/// Everything the agent is built from.
pub struct Setup {
    pub cfg: config::Fleet,
    pub state_dir: PathBuf,
    pub room: mpsc::Sender<RoomCommand>,
    pub feed: Subscriber,
    pub updater: Arc<Updater>,
    /// The room may reboot the machine (false for a development or test huisd).
    pub may_reboot: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("fleet: {0}")]
    Config(String),
    #[error("fleet: {0}")]
    Identity(#[from] identity::IdentityError),
}

/// Starts the agent when `[fleet]` names a broker.
pub fn start(s: Setup) -> Option<tokio::task::JoinHandle<()>> {
    if s.cfg.broker.is_empty() {
        return None;
    }
    Some(tokio::spawn(async move {
        if let Err(e) = run(s).await {
            tracing::error!("{e}; the fleet agent stops (the room goes on)");
        }
    }))
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// A random time in `0..=window`, from the OS's random source.
fn jitter(window: Duration) -> Duration {
    let mut b = [0u8; 2];
    let _ = getrandom::getrandom(&mut b);
    window.mul_f64(u16::from_le_bytes(b) as f64 / u16::MAX as f64)
}

/// How long to wait before attempt `attempt + 1`: a random time up to `floor`, 2 s, 4 s …
/// `max` ("full jitter"). Rooms that lost their broker together spread their attempts over
/// the whole window instead of coming back in waves, which a broker taking TLS handshakes one
/// at a time answers far sooner (BENCHMARKS.md, "Fleet at scale").
fn backoff(attempt: u32, floor: Duration, max: Duration) -> Duration {
    let cap = Duration::from_secs(1u64 << attempt.min(16)).max(floor).min(max);
    Duration::from_millis(100) + jitter(cap)
}

async fn identity(s: &Setup) -> Result<Identity, FleetError> {
    let mut attempt = 0;
    loop {
        if let Some(id) = identity::load(&s.cfg, &s.state_dir)? {
            return Ok(id);
        }
        match identity::enrol(&s.cfg, &s.state_dir).await {
            Ok(id) => {
                tracing::info!(room_id = %s.cfg.room_id, "enrolled in the fleet");
                return Ok(id);
            }
            Err(e) => {
                let wait = backoff(attempt, Duration::ZERO, Duration::from_secs(600));
                tracing::warn!("{e}; trying again in {} s", wait.as_secs());
                attempt += 1;
                tokio::time::sleep(wait).await;
            }
        }
    }
}

/// What the connection's task tells the agent.
enum Incoming {
    Connected,
    Lost,
    Publish(String, Vec<u8>),
}

/// A command's end, from its task.
struct Finished {
    id: String,
    state: AckState,
    detail: String,
}

async fn run(s: Setup) -> Result<(), FleetError> {
    let room_id = RoomId::new(&s.cfg.room_id).map_err(|e| FleetError::Config(e.to_string()))?;
    let (host, port) = s.cfg.broker_address().map_err(FleetError::Config)?;
    let id = identity(&s).await?;
    let tls = identity::client_tls(&id)?;
    let topic = |k: Kind| Topic::new(room_id.clone(), k).to_string();

    let mut o = MqttOptions::new(room_id.as_str(), host.clone(), port);
    o.set_keep_alive(Duration::from_secs(30));
    // The session outlives short drops, so commands sent meanwhile still arrive.
    o.set_clean_start(false);
    o.set_session_expiry_interval(Some(3600));
    o.set_outgoing_inflight_upper_limit(INFLIGHT);
    o.set_max_packet_size(Some((huis_fleet_proto::MAX_PAYLOAD + 1024) as u32));
    o.set_transport(Transport::Tls(TlsConfiguration::Rustls(tls)));
    // From TCP connect to CONNACK (rumqttc's default is 5 s). A broker taking a whole fleet back
    // handshakes one connection after another; a connection given up on halfway is work thrown
    // away on both sides and one more attempt later (BENCHMARKS.md, "Fleet at scale").
    o.set_connection_timeout(60);
    let will = msg::encode(&Status { online: false, at_ms: 0 });
    o.set_last_will(LastWill {
        topic: topic(Kind::Status).into(),
        message: will.into(),
        qos: QoS::AtLeastOnce,
        retain: true,
        properties: Some(LastWillProperties {
            delay_interval: Some(s.cfg.will_delay_s),
            payload_format_indicator: Some(1),
            message_expiry_interval: None,
            content_type: Some("application/json".into()),
            response_topic: None,
            correlation_data: None,
            user_properties: Vec::new(),
        }),
    });
    let mut net = NetworkOptions::new();
    net.set_tcp_nodelay(true);
    net.set_connection_timeout(15);
    o.set_network_options(net);
    let (client, mut eventloop) = AsyncClient::new(o, REQUEST_QUEUE);

    let (in_tx, mut incoming) = mpsc::channel::<Incoming>(64);
    let broker = format!("{host}:{port}");
    let spread = Duration::from_secs(s.cfg.connect_spread_s.into());
    tokio::spawn(async move {
        tokio::time::sleep(jitter(spread)).await;
        let mut attempt = 0;
        loop {
            let m = match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    attempt = 0;
                    Incoming::Connected
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    Incoming::Publish(String::from_utf8_lossy(&p.topic).into_owned(), p.payload.to_vec())
                }
                Ok(_) => continue,
                Err(e) => {
                    let wait = backoff(attempt, spread, Duration::from_secs(60));
                    attempt += 1;
                    tracing::warn!(broker = %broker, "fleet broker: {}; again in {} ms", identity::error_chain(&e), wait.as_millis());
                    if in_tx.send(Incoming::Lost).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(wait).await;
                    continue;
                }
            };
            if in_tx.send(m).await.is_err() {
                return;
            }
        }
    });

    // Uploads and the fleet's bundles go to the fleet service only: its CA is the one trusted,
    // not the system's roots (which would also be parsed again for every client).
    let http = fleet_client(&id, Some(Duration::from_secs(60)))?;
    // A bundle takes minutes: no overall limit, but a stalled transfer ends.
    let bundles = Bundles { client: fleet_client(&id, None)?, origin: origin(&s.cfg.enrol_url) };

    let (upd_tx, mut upd_rx) = mpsc::channel::<Result<(), String>>(4);
    let store = Store::new(&s.state_dir);
    let (saved, problem) = store.load();
    if let Some(p) = problem {
        tracing::warn!("fleet: {p}");
    }
    let mut agent = Agent {
        room_id: room_id.clone(),
        client,
        room: s.room.clone(),
        updater: s.updater.clone(),
        http,
        bundles,
        seq: Sequence::resume(&saved),
        saved,
        store,
        connected: false,
        last_report: None,
        report_due: true,
        commands: HashMap::new(),
        order: VecDeque::new(),
        own_changes: Arc::new(Mutex::new(HashSet::new())),
        precedence_local: s.cfg.config_precedence == "local",
        may_reboot: s.may_reboot,
        cpu: CpuMeter::new(),
        known_calls: HashSet::new(),
        last_error: String::new(),
        window: config::parse_window(&s.cfg.maintenance_window).ok().flatten(),
        installing: false,
        update_done: upd_tx,
    };
    let mut feed = s.feed;
    let running = feed.room.borrow().version.clone();
    agent.after_restart(&running);
    let (done_tx, mut done_rx) = mpsc::channel::<Finished>(32);
    let mut report_tick = tokio::time::interval(REPORT_EVERY);
    report_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut telemetry = tokio::time::interval(Duration::from_secs(s.cfg.telemetry_interval_s.into()));
    telemetry.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    agent.known_calls = feed.calls.borrow().keys().map(|k| k.to_string()).collect();

    loop {
        tokio::select! {
            m = incoming.recv() => match m {
                Some(Incoming::Connected) => agent.on_connected(&feed).await,
                Some(Incoming::Lost) => agent.connected = false,
                Some(Incoming::Publish(t, p)) => agent.on_publish(&t, &p, &done_tx).await,
                None => return Ok(()),
            },
            Ok(()) = feed.room.changed() => {
                agent.report_due = true;
                let err = feed.room.borrow_and_update().last_error.clone();
                if err != agent.last_error {
                    if !err.is_empty() {
                        agent.event("error", [("message", err.clone())]);
                    }
                    agent.last_error = err;
                }
            }
            Ok(()) = feed.update.changed() => agent.report_due = true,
            Ok(()) = feed.calls.changed() => {
                agent.report_due = true;
                let calls = feed.calls.borrow_and_update().clone();
                for (id, c) in &calls {
                    if agent.known_calls.insert(id.to_string()) {
                        agent.event("call_started", [
                            ("call", id.to_string()),
                            ("remote", c.info.remote.clone()),
                            ("direction", format!("{:?}", c.info.direction).to_lowercase()),
                        ]);
                    }
                }
                agent.known_calls.retain(|k| calls.keys().any(|id| id.to_string() == *k));
            }
            e = feed.events.recv() => match e {
                Ok(e) => agent.on_status_event(e).await,
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!("fleet: {n} room events were lost (the broker is slow)");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
            },
            _ = report_tick.tick() => {
                agent.drive_update(&feed).await;
                if agent.report_due && agent.connected {
                    agent.publish_reported(&feed);
                }
            }
            Some(r) = upd_rx.recv() => agent.install_finished(r).await,
            _ = telemetry.tick() => if agent.connected { agent.publish_telemetry(&feed) },
            Some(f) = done_rx.recv() => agent.finish(f),
        }
    }
}

struct Agent {
    room_id: RoomId,
    client: AsyncClient,
    room: mpsc::Sender<RoomCommand>,
    updater: Arc<Updater>,
    http: reqwest::Client,
    bundles: Bundles,
    saved: Saved,
    store: Store,
    seq: Sequence,
    connected: bool,
    /// The last reported state sent, without its number and time.
    last_report: Option<Reported>,
    report_due: bool,
    /// Commands seen: their last answer.
    commands: HashMap<String, Ack>,
    order: VecDeque<String>,
    /// Configuration keys the agent is changing itself, so their change events are not taken
    /// for changes made in the room.
    own_changes: Arc<Mutex<HashSet<String>>>,
    precedence_local: bool,
    may_reboot: bool,
    cpu: CpuMeter,
    known_calls: HashSet<String>,
    last_error: String,
    /// The daily maintenance window, minutes of the local day.
    window: Option<(u16, u16)>,
    /// An install of the fleet's bundle running off the loop.
    installing: bool,
    update_done: mpsc::Sender<Result<(), String>>,
}

impl Agent {
    /// Queues a publish; never waits. A full queue (the broker is away) drops it and says so:
    /// state is sent again whole on reconnect, and events are best effort beyond the queue.
    fn publish(&self, kind: Kind, payload: Vec<u8>) {
        let t = Topic::new(self.room_id.clone(), kind);
        let qos = if t.qos() == 0 { QoS::AtMostOnce } else { QoS::AtLeastOnce };
        if let Err(e) = self.client.try_publish(t.to_string(), qos, t.retained(), payload) {
            tracing::warn!(topic = %t, "fleet: not sent: {e}");
        }
    }

    fn next_seq(&mut self) -> u64 {
        let (n, reserve) = self.seq.take();
        if let Some(r) = reserve {
            self.saved.seq_reserved = r;
            self.save();
        }
        n
    }

    fn save(&self) {
        if let Err(e) = self.store.save(&self.saved) {
            tracing::warn!("fleet: cannot save the agent's state: {e}");
        }
    }

    fn event<const N: usize>(&mut self, kind: &str, fields: [(&str, String); N]) {
        let ev = FleetEvent {
            seq: self.next_seq(),
            at_ms: now_ms(),
            fields: fields.into_iter().map(|(k, v)| (k.to_owned(), excerpt_field(&v))).collect(),
        };
        self.publish(Kind::Event(kind.to_owned()), msg::encode(&ev));
    }

    async fn on_connected(&mut self, feed: &Subscriber) {
        self.connected = true;
        tracing::info!(room_id = %self.room_id, "connected to the fleet broker");
        self.publish(Kind::Status, msg::encode(&Status { online: true, at_ms: now_ms() }));
        // One SUBSCRIBE for both: a packet and a round trip less per room for the broker.
        let filters = huis_fleet_proto::topic::room_subscriptions(&self.room_id)
            .into_iter()
            .map(|f| rumqttc::v5::mqttbytes::v5::Filter::new(f, QoS::AtLeastOnce));
        if let Err(e) = self.client.try_subscribe_many(filters) {
            tracing::warn!("fleet: cannot subscribe: {e}");
        }
        self.last_report = None;
        self.publish_reported(feed);
    }

    fn reported(&self, feed: &Subscriber) -> Reported {
        let room = feed.room.borrow().clone();
        let update = feed.update.borrow().clone();
        let video = feed.video.borrow();
        let mut peripherals = BTreeMap::new();
        for (k, v) in [
            ("camera", video.camera.clone()),
            ("encoder", video.encoder.clone()),
            ("content_input", room.content_input.clone()),
            ("registration", room.registration.clone()),
            ("room_name", room.room_name.clone()),
        ] {
            if !v.is_empty() {
                peripherals.insert(k.to_owned(), excerpt_field(&v));
            }
        }
        let phase = match update.operation.as_str() {
            "downloading" => UpdatePhase::Downloading,
            "installing" => UpdatePhase::Installing,
            _ => UpdatePhase::Idle,
        };
        let mut config_sources: BTreeMap<String, String> =
            self.saved.fleet_keys.keys().map(|k| (k.clone(), "fleet".to_owned())).collect();
        for k in &self.saved.local_keys {
            config_sources.insert(k.clone(), "local".into());
        }
        Reported {
            seq: 0,
            at_ms: 0,
            version: room.version,
            slot: update.boot_slot,
            board: room.board,
            in_call: room.state != RoomState::Idle,
            config_version: self.saved.config_version,
            update: match &self.saved.update {
                Some(u) => UpdateReport {
                    phase: u.phase,
                    campaign: Some(u.campaign.clone()),
                    target_version: u.version.clone(),
                    detail: excerpt_field(&u.detail),
                },
                None => UpdateReport {
                    phase,
                    campaign: None,
                    target_version: String::new(),
                    detail: excerpt_field(&update.last_error),
                },
            },
            peripherals,
            config_sources,
        }
    }

    fn publish_reported(&mut self, feed: &Subscriber) {
        self.report_due = false;
        let r = self.reported(feed);
        if self.last_report.as_ref() == Some(&r) {
            return;
        }
        let sent = Reported { seq: self.next_seq(), at_ms: now_ms(), ..r.clone() };
        self.publish(Kind::Reported, msg::encode(&sent));
        self.last_report = Some(r);
    }

    fn publish_telemetry(&mut self, feed: &Subscriber) {
        let audio = feed.audio.borrow().clone();
        let call = feed.calls.borrow().values().next().map(|c| {
            let a = &c.stats.audio;
            let v = &c.stats.video;
            let get = |m: &HashMap<String, f64>, k: &str| m.get(k).copied().unwrap_or(0.0);
            let (lost, got) = (get(a, "packets_lost"), get(a, "packets_received"));
            CallQuality {
                loss_percent: if lost + got > 0.0 { (lost / (lost + got) * 100.0) as f32 } else { 0.0 },
                jitter_ms: get(a, "jitter_ms") as f32,
                rtt_ms: get(a, "rtt_ms") as f32,
                kbps: (get(a, "bitrate_kbps") + get(v, "bitrate_kbps")) as f32,
            }
        });
        let t = Telemetry {
            at_ms: now_ms(),
            cpu_percent: self.cpu.percent(),
            temperature_c: temperature(),
            input_level_dbfs: audio.input_level as f32,
            output_level_dbfs: audio.output_level as f32,
            call,
        };
        self.publish(Kind::Telemetry, msg::encode(&t));
    }

    async fn on_status_event(&mut self, e: StatusEvent) {
        tracing::info!(event = ?e, "fleet: room event");
        match e {
            StatusEvent::IncomingCall { remote } => self.event("call_incoming", [("remote", remote)]),
            StatusEvent::CallEnded { reason } => self.event("call_ended", [("reason", reason)]),
            StatusEvent::UpdateCompleted { result, message } => {
                let phase = if result == 0 { "installed" } else { "failed" };
                self.event("update", [("phase", phase.to_owned()), ("detail", message)]);
            }
            StatusEvent::ConfigChanged { key, .. } => self.on_config_changed(key).await,
        }
    }

    /// A configuration key changed: by the agent itself, or in the room (D-Bus, huisctl).
    async fn on_config_changed(&mut self, key: String) {
        let own = self.own_changes.lock().unwrap_or_else(|e| e.into_inner()).remove(&key);
        if own {
            self.event("config_changed", [("key", key), ("source", "fleet".into())]);
            return;
        }
        let Some(fleet_value) = self.saved.fleet_keys.get(&key).cloned() else {
            self.event("config_changed", [("key", key), ("source", "local".into())]);
            return;
        };
        if self.precedence_local {
            self.saved.local_keys.insert(key.clone());
            self.save();
            self.report_due = true;
            self.event("config_changed", [("key", key), ("source", "local".into())]);
        } else {
            // The fleet's value wins: the room's change is undone, and said.
            let r = set_config(&self.room, &self.own_changes, &key, &fleet_value).await;
            let detail = match r {
                Ok(()) => "changed in the room; the fleet's value was put back (fleet.config_precedence = \"fleet\")"
                    .to_owned(),
                Err(e) => format!("changed in the room; putting the fleet's value back failed: {e}"),
            };
            self.event("config_changed", [("key", key), ("source", "local".into()), ("detail", detail)]);
        }
    }

    async fn on_publish(&mut self, topic: &str, payload: &[u8], done: &mpsc::Sender<Finished>) {
        let t = match Topic::parse(topic) {
            Ok(t) if t.room == self.room_id => t,
            Ok(_) | Err(_) => {
                tracing::warn!(topic = %excerpt(topic), "fleet: a message on a topic that is not this room's; ignored");
                return;
            }
        };
        match t.kind {
            Kind::Desired => match msg::decode::<Desired>(payload) {
                Ok(d) => self.apply_desired(d).await,
                Err(e) => {
                    tracing::warn!("fleet: desired state refused: {e}");
                    self.event("error", [("message", format!("desired state refused: {e}"))]);
                }
            },
            Kind::Command(name) => match msg::decode::<msg::Command>(payload) {
                Ok(c) => self.on_command(name, c, done),
                Err(e) => {
                    // Without a readable id there is no one to answer; the event says it.
                    tracing::warn!(command = %name, "fleet: command refused: {e}");
                    self.event("error", [("message", format!("command {name} refused: {e}"))]);
                }
            },
            _ => {}
        }
    }

    /// Applies a newer desired configuration, key by key, with the precedence setting.
    async fn apply_desired(&mut self, d: Desired) {
        if let Some(b) = &d.bundle {
            self.on_bundle(b.clone());
        }
        if d.config_version <= self.saved.config_version {
            return;
        }
        let (mut applied, mut kept, mut failed) = (0, Vec::new(), Vec::new());
        for (k, v) in &d.config {
            if k.starts_with("fleet.") {
                failed.push(format!("{k}: the fleet settings are set in the room only"));
                continue;
            }
            if self.precedence_local && self.saved.local_keys.contains(k) {
                kept.push(k.clone());
                continue;
            }
            match set_config(&self.room, &self.own_changes, k, v).await {
                Ok(()) => {
                    applied += 1;
                    self.saved.fleet_keys.insert(k.clone(), v.clone());
                    self.saved.local_keys.remove(k);
                }
                Err(e) => failed.push(format!("{k}: {e}")),
            }
        }
        self.saved.config_version = d.config_version;
        self.save();
        self.report_due = true;
        tracing::info!(
            version = d.config_version,
            applied,
            kept = kept.len(),
            failed = failed.len(),
            "fleet configuration applied"
        );
        self.event(
            "config_applied",
            [
                ("version", d.config_version.to_string()),
                ("applied", applied.to_string()),
                ("kept_local", kept.join(",")),
                ("failed", failed.join("; ")),
            ],
        );
    }

    /// The fleet's update moves on: said in the reported state and as an event, and saved
    /// first, so a restart (or the reboot into the new slot) goes on from here.
    fn set_update(&mut self, phase: UpdatePhase, detail: String) {
        let Some(u) = self.saved.update.as_mut() else { return };
        if u.phase == phase && u.detail == detail {
            return;
        }
        u.phase = phase;
        u.detail = detail.clone();
        let (campaign, version) = (u.campaign.clone(), u.version.clone());
        self.save();
        self.report_due = true;
        let name = serde_json::to_value(phase).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
        tracing::info!(campaign = %campaign, version = %version, phase = %name, detail = %detail, "fleet update");
        self.event("update", [("campaign", campaign), ("version", version), ("phase", name), ("detail", detail)]);
    }

    /// A campaign's bundle in the desired state: taken once per campaign.
    fn on_bundle(&mut self, b: BundleTarget) {
        if self.saved.update.as_ref().is_some_and(|u| u.campaign == b.campaign) {
            return;
        }
        self.saved.update = Some(PendingUpdate {
            campaign: b.campaign,
            version: b.version.clone(),
            url: b.url,
            phase: UpdatePhase::Idle,
            detail: String::new(),
            boot_id: String::new(),
        });
        self.set_update(UpdatePhase::Deferred, "received".into());
    }

    /// At start: where an update left off before huisd (or the machine) restarted.
    fn after_restart(&mut self, running: &str) {
        let Some(u) = self.saved.update.clone() else { return };
        match u.phase {
            UpdatePhase::Rebooting | UpdatePhase::Installed if !u.boot_id.is_empty() && u.boot_id != boot_id() => {
                if running == u.version {
                    self.check_in_this_boot();
                    self.set_update(UpdatePhase::HealthCheck, format!("booted version {running}"));
                } else {
                    self.set_update(
                        UpdatePhase::RolledBack,
                        format!(
                            "booted version {running}, not {}: the bootloader went back to the previous slot",
                            u.version
                        ),
                    );
                }
            }
            // The machine restarted before the health check's verdict was reported: a failed
            // check that rebooted into the old slot at once, a watchdog, a power cut.
            UpdatePhase::HealthCheck if u.boot_id != boot_id() => {
                if running == u.version {
                    self.check_in_this_boot();
                    self.set_update(
                        UpdatePhase::HealthCheck,
                        format!("booted version {running} again; its health check runs again"),
                    );
                } else {
                    self.set_update(
                        UpdatePhase::RolledBack,
                        format!(
                            "version {} did not pass its health check before the machine restarted; \
                             the bootloader went back to version {running}",
                            u.version
                        ),
                    );
                }
            }
            // Cut off while downloading or writing: RAUC's state says what is left; the
            // install is tried again (RAUC refuses to run two at once).
            UpdatePhase::Downloading | UpdatePhase::Installing => {
                self.set_update(UpdatePhase::Deferred, "interrupted by a restart; trying again".into())
            }
            _ => {}
        }
    }

    /// The health check of the new slot runs in this boot (kept, so a restart tells a new boot).
    fn check_in_this_boot(&mut self) {
        if let Some(u) = self.saved.update.as_mut() {
            u.boot_id = boot_id();
        }
    }

    fn in_window(&self) -> bool {
        let Some((start, end)) = self.window else { return true };
        let now = local_minute();
        if start < end { (start..end).contains(&now) } else { now >= start || now < end }
    }

    /// Moves the fleet's update along; called every second.
    async fn drive_update(&mut self, feed: &Subscriber) {
        let Some(u) = self.saved.update.clone() else { return };
        let room = feed.room.borrow().clone();
        match u.phase {
            UpdatePhase::Deferred if !self.installing => {
                if room.version == u.version {
                    self.set_update(UpdatePhase::Succeeded, format!("already runs version {}", u.version));
                } else if room.state != RoomState::Idle {
                    self.set_update(UpdatePhase::Deferred, "waiting for the call to end".into());
                } else if !self.in_window() {
                    self.set_update(UpdatePhase::Deferred, "waiting for the maintenance window".into());
                } else {
                    self.installing = true;
                    // Restarted while RAUC writes: that install is waited for, nothing downloaded.
                    let phase = if feed.update.borrow().operation == "installing" {
                        UpdatePhase::Installing
                    } else {
                        UpdatePhase::Downloading
                    };
                    self.set_update(phase, String::new());
                    let (updater, done) = (self.updater.clone(), self.update_done.clone());
                    let fetch = self.bundles.for_url(&u.url);
                    tokio::spawn(async move {
                        let _ = done.send(install(updater, u.url, fetch, Some(u.version)).await).await;
                    });
                }
            }
            UpdatePhase::Downloading if feed.update.borrow().operation == "installing" => {
                self.set_update(UpdatePhase::Installing, String::new());
            }
            UpdatePhase::HealthCheck => {
                let health = feed.update.borrow().health.clone();
                if health == "passed" {
                    self.set_update(UpdatePhase::Succeeded, "the new slot passed huisd's health check".into());
                } else if let Some(why) = health.strip_prefix("failed: ") {
                    self.set_update(UpdatePhase::Failed, format!("health check failed: {why}"));
                }
            }
            _ => {}
        }
    }

    async fn install_finished(&mut self, r: Result<(), String>) {
        self.installing = false;
        match r {
            Err(e) => self.set_update(UpdatePhase::Failed, e),
            Ok(()) if !self.may_reboot => {
                self.set_update(UpdatePhase::Installed, "written to the other slot; reboot to start it".into());
            }
            Ok(()) => {
                if let Some(u) = self.saved.update.as_mut() {
                    u.boot_id = boot_id();
                }
                self.set_update(UpdatePhase::Rebooting, "written to the other slot; rebooting into it".into());
                if let Err(e) = self.updater.reboot().await {
                    self.set_update(UpdatePhase::Failed, e);
                }
            }
        }
    }

    fn ack(&mut self, id: &str, state: AckState, detail: String) {
        let a = Ack { id: id.to_owned(), state, detail: excerpt_field(&detail) };
        self.publish(Kind::Ack, msg::encode(&a));
        if !self.commands.contains_key(id) {
            self.order.push_back(id.to_owned());
            if self.order.len() > REMEMBERED_COMMANDS
                && let Some(old) = self.order.pop_front()
            {
                self.commands.remove(&old);
            }
        }
        self.commands.insert(id.to_owned(), a);
    }

    fn on_command(&mut self, name: String, c: msg::Command, done: &mpsc::Sender<Finished>) {
        if let Some(last) = self.commands.get(&c.id).cloned() {
            // Delivered again (QoS 1, a reconnect): answered again, never run twice.
            self.publish(Kind::Ack, msg::encode(&last));
            return;
        }
        if c.expires_at_ms != 0 && c.expires_at_ms < now_ms() {
            self.ack(&c.id, AckState::Expired, format!("expired {} ms ago; not run", now_ms() - c.expires_at_ms));
            return;
        }
        tracing::info!(command = %name, id = %c.id, "fleet command");
        let ctx = CommandCtx {
            room: self.room.clone(),
            updater: self.updater.clone(),
            http: self.http.clone(),
            bundles: self.bundles.clone(),
            own_changes: self.own_changes.clone(),
            may_reboot: self.may_reboot,
        };
        let job = match ctx.prepare(&name, &c.args) {
            Ok(job) => job,
            Err(e) => {
                self.ack(&c.id, AckState::Failed, e);
                return;
            }
        };
        self.ack(&c.id, AckState::Accepted, String::new());
        let (id, done) = (c.id.clone(), done.clone());
        tokio::spawn(async move {
            let (state, detail) = match tokio::time::timeout(COMMAND_TIMEOUT, job).await {
                Ok(Ok(d)) => (AckState::Done, d),
                Ok(Err(e)) => (AckState::Failed, e),
                Err(_) => (AckState::Failed, format!("not done within {} s", COMMAND_TIMEOUT.as_secs())),
            };
            let _ = done.send(Finished { id, state, detail }).await;
        });
    }

    fn finish(&mut self, f: Finished) {
        tracing::info!(id = %f.id, state = ?f.state, detail = %f.detail, "fleet command finished");
        self.ack(&f.id, f.state, f.detail);
    }
}

/// A command's work, run off the agent's loop.
type Job = std::pin::Pin<Box<dyn std::future::Future<Output = Result<String, String>> + Send>>;

struct CommandCtx {
    room: mpsc::Sender<RoomCommand>,
    updater: Arc<Updater>,
    http: reqwest::Client,
    bundles: Bundles,
    own_changes: Arc<Mutex<HashSet<String>>>,
    may_reboot: bool,
}

/// Where bundles come from: the fleet service's are fetched with the room's certificate and
/// the fleet's CA; others by Update1 (curl, the system's roots).
#[derive(Clone)]
struct Bundles {
    /// No overall time limit: a bundle takes minutes.
    client: reqwest::Client,
    /// `https://host:port` of the fleet service, from `enrol_url`.
    origin: Option<String>,
}

impl Bundles {
    /// The client to fetch `url` with, when it is on the fleet service.
    fn for_url(&self, url: &str) -> Option<reqwest::Client> {
        let o = self.origin.as_deref()?;
        url.strip_prefix(o).is_some_and(|rest| rest.starts_with('/')).then(|| self.client.clone())
    }
}

/// Sends the room a command and waits for its answer.
async fn ask<T>(
    room: &mpsc::Sender<RoomCommand>,
    make: impl FnOnce(oneshot::Sender<Result<T, RoomError>>) -> RoomCommand,
) -> Result<T, String> {
    let (tx, rx) = oneshot::channel();
    room.send(make(tx)).await.map_err(|_| "huisd is shutting down".to_owned())?;
    match rx.await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err("huisd is shutting down".to_owned()),
    }
}

async fn set_config(
    room: &mpsc::Sender<RoomCommand>,
    own: &Arc<Mutex<HashSet<String>>>,
    key: &str,
    value: &str,
) -> Result<(), String> {
    own.lock().unwrap_or_else(|e| e.into_inner()).insert(key.to_owned());
    let r = ask(room, |r| RoomCommand::ConfigSet(key.to_owned(), value.to_owned(), r)).await;
    if r.is_err() {
        own.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
    r.map(|_| ())
}

/// An argument a command needs.
fn arg<'a>(args: &'a BTreeMap<String, String>, name: &str) -> Result<&'a str, String> {
    args.get(name).map(String::as_str).filter(|v| !v.is_empty()).ok_or_else(|| format!("needs the argument '{name}'"))
}

fn https_url(args: &BTreeMap<String, String>) -> Result<String, String> {
    let u = arg(args, "upload_url")?;
    if !u.starts_with("https://") {
        return Err(format!("upload_url '{}' is not https://", excerpt(u)));
    }
    Ok(u.to_owned())
}

impl CommandCtx {
    /// Checks a command's name and arguments before it is accepted, and returns its work.
    fn prepare(self, name: &str, args: &BTreeMap<String, String>) -> Result<Job, String> {
        let room = self.room.clone();
        Ok(match name {
            "dial" => {
                let to = arg(args, "uri")?.to_owned();
                Box::pin(async move { ask(&room, |r| RoomCommand::Dial(to, r)).await })
            }
            "hangup" => Box::pin(async move { ask(&room, RoomCommand::Hangup).await.map(|_| "hung up".into()) }),
            "answer" => Box::pin(async move { ask(&room, RoomCommand::Answer).await.map(|_| "answered".into()) }),
            "mute" => {
                let on = match args.get("on").map(String::as_str).unwrap_or("true") {
                    "true" => true,
                    "false" => false,
                    other => return Err(format!("'on' must be true or false, not '{}'", excerpt(other))),
                };
                Box::pin(async move {
                    ask(&room, |r| RoomCommand::SetMuted(on, r)).await?;
                    Ok(if on { "muted" } else { "unmuted" }.into())
                })
            }
            "screenshot" => {
                let url = https_url(args)?;
                let http = self.http.clone();
                Box::pin(async move {
                    let png = ask(&room, RoomCommand::Screenshot).await?;
                    upload(&http, &url, png, "image/png").await
                })
            }
            "logs" => {
                let url = https_url(args)?;
                let http = self.http.clone();
                Box::pin(async move {
                    let text = crate::logring::snapshot().into_bytes();
                    upload(&http, &url, text, "text/plain; charset=utf-8").await
                })
            }
            "apply_config" => {
                if args.is_empty() {
                    return Err("needs at least one key = value".into());
                }
                if let Some(k) = args.keys().find(|k| k.starts_with("fleet.")) {
                    return Err(format!("{k}: the fleet settings are set in the room only"));
                }
                let args = args.clone();
                let own = self.own_changes.clone();
                Box::pin(async move {
                    let mut failed = Vec::new();
                    for (k, v) in &args {
                        if let Err(e) = set_config(&room, &own, k, v).await {
                            failed.push(format!("{k}: {e}"));
                        }
                    }
                    if failed.is_empty() { Ok(format!("{} keys set", args.len())) } else { Err(failed.join("; ")) }
                })
            }
            "install_update" => {
                let url = arg(args, "url")?.to_owned();
                if !url.starts_with("https://") {
                    return Err(format!("url '{}' is not https://", excerpt(&url)));
                }
                let (updater, fetch) = (self.updater.clone(), self.bundles.for_url(&url));
                Box::pin(async move {
                    install(updater, url, fetch, None).await?;
                    Ok("installed; the room boots into it at its next restart".into())
                })
            }
            "reboot" => {
                if !self.may_reboot {
                    return Err("this huisd does not reboot its machine (it runs on the session bus)".into());
                }
                let updater = self.updater.clone();
                Box::pin(async move {
                    // Answered before the machine goes down.
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        if let Err(e) = updater.reboot().await {
                            tracing::warn!("fleet reboot: {e}");
                        }
                    });
                    Ok("rebooting".into())
                })
            }
            other => return Err(format!("unknown command '{}'", excerpt(other))),
        })
    }
}

/// PUTs `body` to the fleet service, which knows the room by its certificate.
async fn upload(http: &reqwest::Client, url: &str, body: Vec<u8>, kind: &str) -> Result<String, String> {
    if body.len() > MAX_UPLOAD {
        return Err(format!("{} bytes is over the upload limit", body.len()));
    }
    let n = body.len();
    let resp = http
        .put(url)
        .header(reqwest::header::CONTENT_TYPE, kind)
        .body(body)
        .send()
        .await
        .map_err(|e| format!("upload to {}: {}", excerpt(url), identity::error_chain(&e)))?;
    if !resp.status().is_success() {
        return Err(format!("upload to {}: the service answered {}", excerpt(url), resp.status()));
    }
    Ok(format!("uploaded {n} bytes"))
}

/// A field of an event or report: within the contract's string bound.
fn excerpt_field(s: &str) -> String {
    if s.len() <= msg::MAX_STRING {
        return s.to_owned();
    }
    let mut end = msg::MAX_STRING;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// The hottest thermal zone, in °C; `None` where the machine has none.
fn temperature() -> Option<f32> {
    let dir = std::fs::read_dir("/sys/class/thermal").ok()?;
    dir.filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("thermal_zone"))
        .filter_map(|e| std::fs::read_to_string(e.path().join("temp")).ok())
        .filter_map(|t| t.trim().parse::<f32>().ok())
        .map(|m| m / 1000.0)
        .reduce(f32::max)
}

/// huisd's own share of one core since the last reading, from /proc/self/stat.
struct CpuMeter {
    last: Option<(u64, std::time::Instant)>,
}

impl CpuMeter {
    fn new() -> CpuMeter {
        CpuMeter { last: None }
    }

    fn ticks() -> Option<u64> {
        let s = std::fs::read_to_string("/proc/self/stat").ok()?;
        // The fields after the command's closing parenthesis; utime and stime are 14 and 15.
        let rest = s.rsplit_once(')')?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
    }

    fn percent(&mut self) -> f32 {
        let Some(t) = Self::ticks() else { return 0.0 };
        let now = std::time::Instant::now();
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let p = match self.last {
            Some((t0, at)) if now > at => (t - t0) as f64 / hz / (now - at).as_secs_f64() * 100.0,
            _ => 0.0,
        };
        self.last = Some((t, now));
        p as f32
    }
}

/// Installs `url` through Update1's engine and waits for RAUC's end. When huisd restarted
/// while RAUC was writing this bundle, that install is waited for, not started again (RAUC
/// runs one at a time, and the room would be counted failed for an install that succeeds).
/// `adopt` is the campaign's version, for which an install already running is taken as its own.
async fn install(
    updater: Arc<Updater>,
    url: String,
    fetch: Option<reqwest::Client>,
    adopt: Option<String>,
) -> Result<(), String> {
    let mut status = updater.subscribe();
    let waiting = match adopt {
        Some(v) if updater.rauc_operation().await? == "installing" => {
            tracing::info!(
                "fleet update: RAUC is already installing (huisd restarted during the install); waiting for it"
            );
            Waiting::Adopted(v)
        }
        _ => {
            // What a huisd killed mid-download or mid-install left behind: a bundle fills a
            // data partition quickly.
            remove_fetched();
            let source = match fetch {
                Some(client) => fetch_bundle(&client, &url).await?.to_string_lossy().into_owned(),
                None => url,
            };
            let before = status.borrow_and_update().completed;
            if let Err(e) = updater.install(source).await {
                remove_fetched();
                return Err(e.to_string());
            }
            Waiting::Own { completed_before: before }
        }
    };
    let r = loop {
        match tokio::time::timeout(Duration::from_secs(10), status.changed()).await {
            Ok(Err(_)) => break Err("huisd is shutting down".to_owned()),
            Ok(Ok(())) => {
                let u = status.borrow_and_update().clone();
                if let Waiting::Own { completed_before } = waiting
                    && u.completed > completed_before
                {
                    break if u.last_error.is_empty() { Ok(()) } else { Err(u.last_error) };
                }
            }
            Err(_) => {}
        }
        // An install huisd did not start may end before huisd follows RAUC's signals: asked.
        if let Waiting::Adopted(v) = &waiting
            && updater.rauc_operation().await? == "idle"
        {
            break updater.installed(v).await;
        }
    };
    // Also when the install was another huisd's: its download is this one's to remove.
    remove_fetched();
    r
}

/// The install [`install`] waits for.
enum Waiting {
    /// Started by this call: it ended when Update1 counts more completed installs than before.
    Own { completed_before: u64 },
    /// RAUC's, running when huisd (re)started: judged by whether the other slot holds this version.
    Adopted(String),
}

/// Where bundles from the fleet service are downloaded to, and their partial download.
fn fetched_files() -> [PathBuf; 2] {
    let f = std::path::Path::new(crate::update::DOWNLOAD_DIR).join("fleet-bundle.raucb");
    [f.with_extension("part"), f]
}

fn remove_fetched() {
    for f in fetched_files() {
        match std::fs::remove_file(&f) {
            Ok(()) => tracing::info!(file = %f.display(), "fleet update: downloaded bundle removed"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(file = %f.display(), "fleet update: cannot remove: {e}"),
        }
    }
}

/// The largest bundle taken from the fleet service.
const MAX_BUNDLE: u64 = 8 << 30;

/// Downloads a bundle from the fleet service (the room's certificate, the fleet's CA) into
/// the data partition, where no update writes.
async fn fetch_bundle(client: &reqwest::Client, url: &str) -> Result<PathBuf, String> {
    use tokio::io::AsyncWriteExt;
    let fail = |why: String| format!("cannot download {}: {why}", excerpt(url));
    let dir = std::path::Path::new(crate::update::DOWNLOAD_DIR);
    tokio::fs::create_dir_all(dir).await.map_err(|e| fail(format!("{}: {e}", dir.display())))?;
    let [tmp, file] = fetched_files();
    let mut resp = client.get(url).send().await.map_err(|e| fail(identity::error_chain(&e)))?;
    if !resp.status().is_success() {
        return Err(fail(format!("the fleet service answered {}", resp.status())));
    }
    if let Some(n) = resp.content_length() {
        if n > MAX_BUNDLE {
            return Err(fail(format!("{n} bytes is over the {MAX_BUNDLE}-byte limit")));
        }
        // Said before a byte is written, not as "no space left" half-way.
        if let Some(free) = free_bytes(dir)
            && n > free
        {
            return Err(fail(format!(
                "the bundle is {} MiB and {} has {} MiB free",
                n >> 20,
                dir.display(),
                free >> 20
            )));
        }
    }
    let mut out = tokio::fs::File::create(&tmp).await.map_err(|e| fail(format!("{}: {e}", tmp.display())))?;
    let mut n = 0u64;
    let r: Result<(), String> = async {
        while let Some(chunk) = resp.chunk().await.map_err(|e| fail(identity::error_chain(&e)))? {
            n += chunk.len() as u64;
            if n > MAX_BUNDLE {
                return Err(fail(format!("over the {MAX_BUNDLE}-byte limit")));
            }
            out.write_all(&chunk).await.map_err(|e| fail(format!("{}: {e}", tmp.display())))?;
        }
        out.sync_all().await.map_err(|e| fail(format!("{}: {e}", tmp.display())))
    }
    .await;
    if let Err(e) = r {
        let _ = tokio::fs::remove_file(&tmp).await;
        return Err(e);
    }
    tokio::fs::rename(&tmp, &file).await.map_err(|e| fail(format!("{}: {e}", file.display())))?;
    tracing::info!(url = %excerpt(url), bytes = n, "fleet update: bundle downloaded");
    Ok(file)
}

/// Bytes free for an unprivileged writer in the file system holding `dir`.
fn free_bytes(dir: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is a valid C string and st a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_bavail as u64 * st.f_frsize as u64)
}

/// An HTTPS client towards the fleet service: the room's certificate, the fleet's CA only.
fn fleet_client(id: &Identity, total: Option<Duration>) -> Result<reqwest::Client, FleetError> {
    let b = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .https_only(true)
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(60))
        .identity(reqwest::Identity::from_pem(&id.pem).map_err(|e| FleetError::Config(format!("identity: {e}")))?);
    let b = match total {
        Some(t) => b.timeout(t),
        None => b,
    };
    reqwest::Certificate::from_pem_bundle(&id.ca_pem)
        .unwrap_or_default()
        .into_iter()
        .fold(b, |b, c| b.add_root_certificate(c))
        .build()
        .map_err(|e| FleetError::Config(e.to_string()))
}

/// `scheme://host[:port]` of an address, None for "".
fn origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next().filter(|h| !h.is_empty())?;
    Some(format!("{scheme}://{host}"))
}

/// This boot of the machine.
fn boot_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").map(|s| s.trim().to_owned()).unwrap_or_default()
}

/// Minutes since local midnight.
fn local_minute() -> u16 {
    let t = unsafe { libc::time(std::ptr::null_mut()) };
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    if unsafe { libc::localtime_r(&t, &mut tm) }.is_null() {
        return 0;
    }
    (tm.tm_hour * 60 + tm.tm_min) as u16
}

#[cfg(test)]
mod tests {
    use super::origin;

    #[test]
    fn a_bundle_is_the_fleet_services_when_it_has_the_enrolment_address_origin() {
        assert_eq!(origin("https://fleet.example:8443/api/v1/enrol").as_deref(), Some("https://fleet.example:8443"));
        assert_eq!(origin("https://10.0.2.2:8443").as_deref(), Some("https://10.0.2.2:8443"));
        assert_eq!(origin("https://h?x=1").as_deref(), Some("https://h"));
        assert_eq!(origin(""), None);
        assert_eq!(origin("https:///path"), None);
    }
}
