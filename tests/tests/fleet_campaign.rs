//! Update campaigns, run by the real fleet service over rooms that enrolled through its API:
//! simulated rooms (MQTT clients that play a room's update phases, since no RAUC runs here)
//! and two real huisd rooms.
//!
//! - 60 simulated rooms, the first group of 50 with 5 (10 %) failing their health check: the
//!   campaign halts by itself at its 5 % threshold within 10 s, counts those rooms as failed
//!   (never updated), and no room outside the first group is ever sent the bundle, the real
//!   huisd rooms included.
//! - The two real rooms in a campaign of their own: each takes the bundle from its desired state
//!   and reports honestly that it cannot install here (no RAUC on this machine), so the campaign
//!   counts them failed, not updated.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use huis_fleet_proto::msg::{self, CallQuality, Desired, Reported, Telemetry, UpdatePhase, UpdateReport};
use huis_fleet_proto::topic::{Kind, RoomId, Topic};
use huis_tests::peers::certs::Issued;
use huis_tests::peers::fleet::FleetService;
use huis_tests::peers::mqtt::{Client, Seen, tls};
use huis_tests::peers::postgres::Postgres;
use huis_tests::peers::webhook::Webhook;
use huis_tests::peers::*;
use huis_tests::{Bus, Huisd, stdout};
use rumqttc::v5::mqttbytes::QoS;
use serde_json::Value;

/// Enrols `id` through the service's API as a room does: a new key and request (openssl), a
/// claim code from the admin, the certificate the service signs.
fn enrol(ns: &NetNs, f: &FleetService, id: &str) -> Issued {
    let dir = f.dir.path().join("sim").join(id);
    std::fs::create_dir_all(&dir).unwrap();
    let (key, csr, cert) = (dir.join("room.key"), dir.join("room.csr"), dir.join("room.crt"));
    let out = std::process::Command::new("openssl")
        .args(["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj"])
        .arg(format!("/CN={id}"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&csr)
        .output()
        .unwrap();
    assert!(out.status.success(), "openssl: {}", huis_tests::stderr(&out));
    let code = f.json(&["claim", id])["claim_code"].as_str().unwrap().to_owned();
    let body =
        serde_json::json!({ "room_id": id, "claim_code": code, "csr_pem": std::fs::read_to_string(&csr).unwrap() });
    let out = ns
        .cmd("curl")
        .args(["-sf", "--cacert"])
        .arg(f.ca())
        .args(["-H", "content-type: application/json", "-d", &body.to_string()])
        .arg(format!("{}/api/v1/enrol", f.url()))
        .output()
        .unwrap();
    assert!(out.status.success(), "enrolment of {id} failed: {}\n{}", stdout(&out), f.log_text());
    let answer: Value = serde_json::from_slice(&out.stdout).unwrap();
    std::fs::write(&cert, answer["certificate_pem"].as_str().unwrap()).unwrap();
    Issued { cert, key, both: dir.join("unused") }
}

/// What a simulated room saw and did.
#[derive(Default)]
struct SimLog {
    /// It was sent a bundle (any campaign).
    touched: AtomicBool,
    /// When it reported its end.
    ended_at: Mutex<Option<Instant>>,
}

fn reported(seq: u64, phase: UpdatePhase, campaign: Option<&str>, detail: &str) -> Vec<u8> {
    msg::encode(&Reported {
        seq,
        at_ms: 0,
        version: "1.0.0".into(),
        slot: "A".into(),
        board: "sim-rauc-less".into(),
        in_call: false,
        config_version: 0,
        update: UpdateReport {
            phase,
            campaign: campaign.map(str::to_owned),
            target_version: if campaign.is_some() { "1.1.0".into() } else { String::new() },
            detail: detail.into(),
        },
        peripherals: Default::default(),
        config_sources: Default::default(),
    })
}

/// A RAUC-less room: online, reports (with telemetry of a call of quality `call`, if given),
/// and on a bundle plays the update's phases, ending succeeded, or failed at its health check
/// when `fails`.
async fn sim_room(
    port: u16,
    ca: std::path::PathBuf,
    id: String,
    cert: Issued,
    (fails, call): (bool, Option<CallQuality>),
    log: Arc<SimLog>,
) {
    let room = RoomId::new(&id).unwrap();
    let t = |k: Kind| Topic::new(room.clone(), k).to_string();
    let mut c = Client::connect(port, &id, tls(&ca, Some(&cert)));
    c.subscribe(&t(Kind::Desired)).await;
    let pub_retained = |c: &Client, kind: Kind, p: Vec<u8>| {
        let m = c.mqtt.clone();
        let topic = Topic::new(room.clone(), kind).to_string();
        async move { m.publish(topic, QoS::AtLeastOnce, true, p).await.unwrap() }
    };
    pub_retained(&c, Kind::Status, br#"{"online":true}"#.to_vec()).await;
    pub_retained(&c, Kind::Reported, reported(1, UpdatePhase::Idle, None, "")).await;
    if let Some(call) = call {
        let t = Telemetry {
            at_ms: 0,
            cpu_percent: 20.0,
            temperature_c: None,
            input_level_dbfs: -30.0,
            output_level_dbfs: -25.0,
            call: Some(call),
        };
        let topic = Topic::new(room.clone(), Kind::Telemetry).to_string();
        c.mqtt.publish(topic, QoS::AtMostOnce, false, msg::encode(&t)).await.unwrap();
    }
    let mut seq = 1;
    loop {
        let Some(seen) = c.seen.recv().await else { return };
        let Seen::Publish(_, payload) = seen else { continue };
        let Ok(d) = msg::decode::<Desired>(&payload) else { continue };
        let Some(b) = d.bundle else { continue };
        log.touched.store(true, Ordering::SeqCst);
        let mut steps = vec![UpdatePhase::Downloading, UpdatePhase::Installing, UpdatePhase::Installed];
        steps.extend([UpdatePhase::Rebooting, UpdatePhase::HealthCheck]);
        for p in steps {
            tokio::time::sleep(Duration::from_millis(100)).await;
            seq += 1;
            pub_retained(&c, Kind::Reported, reported(seq, p, Some(&b.campaign), "")).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        seq += 1;
        let end = if fails {
            reported(seq, UpdatePhase::Failed, Some(&b.campaign), "health check failed: no audio from the mic array")
        } else {
            reported(seq, UpdatePhase::Succeeded, Some(&b.campaign), "")
        };
        pub_retained(&c, Kind::Reported, end).await;
        *log.ended_at.lock().unwrap() = Some(Instant::now());
    }
}

fn campaign(f: &FleetService, id: &str) -> Value {
    f.json(&["campaign-status", id])
}

#[test]
fn a_campaign_halts_at_its_failure_threshold_and_touches_no_room_beyond_the_group() {
    let _w = watchdog("fleet_campaign", 240);
    let ns = NetNs::new();
    let hook = Webhook::start(&ns).unwrap();
    let f = FleetService::start_with(&ns, None, Some(&hook.url())).unwrap();

    // Two real rooms, enrolled by claim code.
    let (bus_a, bus_b) = (Bus::start(), Bus::start());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut real = Vec::new();
    for (id, bus) in [("room-a", &bus_a), ("room-b", &bus_b)] {
        let code = f.json(&["claim", id])["claim_code"].as_str().unwrap().to_owned();
        let cfg = format!(
            "[room]\nname = \"{id}\"\n[fleet]\nbroker = \"mqtts://127.0.0.1:{}\"\nroom_id = \"{id}\"\n\
             enrol_url = \"{}/api/v1/enrol\"\nclaim_code = \"{code}\"\nca_file = \"{}\"\nwill_delay_s = 1\nconnect_spread_s = 0\n",
            f.broker_port,
            f.url(),
            f.ca().display()
        );
        let d: Huisd = rt.block_on(huisd::start_in(&ns, bus, Some(&cfg)));
        real.push(d);
    }

    // 60 simulated rooms; in the first 50, every tenth fails its health check.
    let ids: Vec<String> = (0..60).map(|i| format!("sim-{i:03}")).collect();
    let certs: Vec<Issued> = ids.iter().map(|id| enrol(&ns, &f, id)).collect();
    let logs: Vec<Arc<SimLog>> = ids.iter().map(|_| Arc::new(SimLog::default())).collect();
    let (port, ca) = (f.broker_port, f.ca());
    let sims = {
        let (ids, logs) = (ids.clone(), logs.clone());
        ns.enter(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            for (i, ((id, cert), log)) in ids.into_iter().zip(certs).zip(logs).enumerate() {
                let fails = i < 50 && i % 10 == 3;
                // Two rooms in a call: sim-055's is poor (12 % loss), sim-056's is fine.
                let call = |loss_percent| CallQuality { loss_percent, jitter_ms: 18.0, rtt_ms: 60.0, kbps: 1800.0 };
                let call = match i {
                    55 => Some(call(12.0)),
                    56 => Some(call(0.4)),
                    _ => None,
                };
                rt.spawn(sim_room(port, ca.clone(), id, cert, (fails, call), log));
            }
            rt
        })
        .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rooms = f.json(&["rooms"]);
        let ready =
            rooms.as_array().unwrap().iter().filter(|r| r["online"] == true && !r["reported"].is_null()).count();
        if ready == 62 {
            break;
        }
        assert!(Instant::now() < deadline, "{ready} of 62 rooms online and reporting\n{}", f.log_text());
        std::thread::sleep(Duration::from_millis(250));
    }

    // The campaign: 50 simulated rooms first, then 10 more and the real rooms.
    let mut order: Vec<&str> = ids.iter().map(String::as_str).collect();
    order.extend(["room-a", "room-b"]);
    let mut args = vec![
        "campaign",
        "--id",
        "c-halt",
        "--version",
        "1.1.0",
        "--bundle-url",
        "https://updates.example.org/1.1.0.raucb",
    ];
    args.extend(["--first-group", "50", "--failure-threshold", "0.05", "--room-timeout-s", "60"]);
    args.extend(order.iter());
    let started = Instant::now();
    f.json(&args);
    let halted = loop {
        let c = campaign(&f, "c-halt");
        if c["phase"] == "halted" {
            break c;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "not halted within 10 s: {c}\n{}", f.log_text());
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!("campaign halted {} ms after it started: {}", started.elapsed().as_millis(), halted["detail"]);
    assert_eq!(halted["group"], 0, "{halted}");

    // Let the first group's rooms finish, then look at every room.
    std::thread::sleep(Duration::from_secs(3));
    let c = campaign(&f, "c-halt");
    for (i, id) in ids.iter().enumerate() {
        let state = c["rooms"][id].as_str().unwrap_or_default().to_owned();
        if i >= 50 {
            assert_eq!(state, "waiting", "{id} is outside the first group: {c}");
            assert!(!logs[i].touched.load(Ordering::SeqCst), "{id} was sent the bundle");
        } else if i % 10 == 3 {
            assert!(state.starts_with("failed: health check failed"), "{id} failed its health check: {state}");
        } else {
            assert_eq!(state, "succeeded", "{id}: {c}");
        }
    }
    for (d, id) in real.iter().zip(["room-a", "room-b"]) {
        assert_eq!(c["rooms"][id], "waiting", "{c}");
        let r = &f.json(&["room", id])["room"];
        assert!(r["reported"]["update"]["campaign"].is_null(), "{id} was touched: {r}\n{}", d.log_text());
    }
    let g0 = &c["groups"][0];
    assert_eq!((g0["succeeded"].as_u64(), g0["failed"].as_u64()), (Some(45), Some(5)), "{c}");

    // The real rooms in a campaign of their own: they take the bundle and say why they cannot
    // install it here; the campaign counts them failed.
    f.json(&[
        "campaign",
        "--id",
        "c-real",
        "--version",
        "1.1.0",
        "--bundle-url",
        "https://updates.example.org/1.1.0.raucb",
        "--first-group",
        "2",
        "--room-timeout-s",
        "60",
        "room-a",
        "room-b",
    ]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let c = loop {
        let c = campaign(&f, "c-real");
        if ["room-a", "room-b"].iter().all(|id| c["rooms"][id].as_str().is_some_and(|s| s.starts_with("failed"))) {
            break c;
        }
        assert!(
            Instant::now() < deadline,
            "the real rooms did not end: {c}\nroom A's log:\n{}\nservice log:\n{}",
            real[0].log_text(),
            f.log_text()
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    eprintln!("real rooms: {} / {}", c["rooms"]["room-a"], c["rooms"]["room-b"]);
    let events = f.json(&["room", "room-a"])["events"].clone();
    assert!(
        events.as_array().unwrap().iter().any(|e| e["kind"] == "update" && e["fields"]["phase"] == "downloading"),
        "room A never started the install: {events}"
    );
    // Alerts reached the webhook: the halt, each failed update, and a room gone offline.
    let mut real = real;
    let _ = real[0].child.kill();
    let _ = real[0].child.wait();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let alerts = hook.alerts();
        let has = |kind: &str, target: &str| alerts.iter().any(|a| a["kind"] == kind && a["target"] == target);
        if has("campaign_halted", "c-halt")
            && has("update_failed", "sim-003")
            && has("update_failed", "room-b")
            && has("room_offline", "room-a")
            && has("call_quality", "sim-055")
        {
            assert!(!has("call_quality", "sim-056"), "a good call raised an alert: {alerts:?}");
            let poor = alerts.iter().find(|a| a["kind"] == "call_quality").unwrap();
            assert!(poor["detail"].as_str().unwrap().contains("loss 12.0 %"), "{poor}");
            break;
        }
        assert!(Instant::now() < deadline, "alerts missing; received: {alerts:?}\n{}", f.log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
    drop(sims);
    drop(real);
}

/// A simulated room that, like huisd's agent, comes back after a lost connection and sends its
/// state again; its agent may die for good after reporting `stop_after`.
async fn sim_room_reconnecting(
    port: u16,
    ca: std::path::PathBuf,
    id: String,
    cert: Issued,
    stop_after: Option<UpdatePhase>,
) {
    let room = RoomId::new(&id).unwrap();
    // (seq, phase, campaign) as last reported.
    let state = Arc::new(Mutex::new((1u64, UpdatePhase::Idle, None::<String>)));
    let current = |s: &(u64, UpdatePhase, Option<String>)| reported(s.0, s.1, s.2.as_deref(), "");
    // The connection of the moment: the update's steps go out on whichever is up.
    let conn: Arc<Mutex<Option<rumqttc::v5::AsyncClient>>> = Arc::new(Mutex::new(None));
    loop {
        let mut c = Client::connect(port, &id, tls(&ca, Some(&cert)));
        *conn.lock().unwrap() = Some(c.mqtt.clone());
        let topic = |k: Kind| Topic::new(room.clone(), k).to_string();
        let _ = c.mqtt.subscribe(topic(Kind::Desired), QoS::AtLeastOnce).await;
        let _ = c.mqtt.publish(topic(Kind::Status), QoS::AtLeastOnce, true, br#"{"online":true}"#.to_vec()).await;
        let now = current(&state.lock().unwrap());
        let _ = c.mqtt.publish(topic(Kind::Reported), QoS::AtLeastOnce, true, now).await;
        loop {
            match c.seen.recv().await {
                Some(Seen::Publish(_, payload)) => {
                    let Ok(d) = msg::decode::<Desired>(&payload) else { continue };
                    let Some(b) = d.bundle else { continue };
                    if state.lock().unwrap().2.is_some() {
                        continue;
                    }
                    state.lock().unwrap().2 = Some(b.campaign.clone());
                    // The update goes on whatever the connection does; each step is sent when
                    // it can be, and the latest again after every reconnect.
                    let (st, conn, t) = (state.clone(), conn.clone(), topic(Kind::Reported));
                    tokio::spawn(async move {
                        for p in [
                            UpdatePhase::Downloading,
                            UpdatePhase::Installing,
                            UpdatePhase::Installed,
                            UpdatePhase::Rebooting,
                            UpdatePhase::HealthCheck,
                            UpdatePhase::Succeeded,
                        ] {
                            tokio::time::sleep(Duration::from_millis(250)).await;
                            let payload = {
                                let mut s = st.lock().unwrap();
                                s.0 += 1;
                                s.1 = p;
                                current(&s)
                            };
                            let mqtt = conn.lock().unwrap().clone();
                            if let Some(m) = mqtt {
                                let _ = m.publish(t.clone(), QoS::AtLeastOnce, true, payload).await;
                            }
                            if Some(p) == stop_after {
                                // The agent dies here and never comes back.
                                st.lock().unwrap().0 = u64::MAX;
                                return;
                            }
                        }
                    });
                }
                Some(Seen::Error(_)) | None => break,
                Some(_) => {}
            }
            if state.lock().unwrap().0 == u64::MAX {
                return;
            }
        }
        if state.lock().unwrap().0 == u64::MAX {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[test]
fn agents_and_the_broker_killed_mid_update_leave_no_room_unknown() {
    let _w = watchdog("fleet_campaign_kill", 180);
    let ns = NetNs::new();
    let mut f = FleetService::start(&ns).unwrap();
    let stops = [
        Some(UpdatePhase::Downloading),
        Some(UpdatePhase::Installing),
        Some(UpdatePhase::Installed),
        Some(UpdatePhase::Rebooting),
        Some(UpdatePhase::HealthCheck),
    ];
    let ids: Vec<String> = (0..12).map(|i| format!("kill-{i:02}")).collect();
    let certs: Vec<Issued> = ids.iter().map(|id| enrol(&ns, &f, id)).collect();
    let (port, ca) = (f.broker_port, f.ca());
    let sims = {
        let ids = ids.clone();
        ns.enter(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            for (i, (id, cert)) in ids.into_iter().zip(certs).enumerate() {
                rt.spawn(sim_room_reconnecting(port, ca.clone(), id, cert, stops.get(i).copied().flatten()));
            }
            rt
        })
        .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while f.json(&["rooms"]).as_array().unwrap().iter().filter(|r| !r["reported"].is_null()).count() < ids.len() {
        assert!(Instant::now() < deadline, "the simulated rooms did not all report\n{}", f.log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut args = vec![
        "campaign",
        "--id",
        "c-kill",
        "--version",
        "1.1.0",
        "--bundle-url",
        "https://updates.example.org/1.1.0.raucb",
    ];
    args.extend([
        "--first-group",
        "12",
        "--failure-threshold",
        "1",
        "--success-share",
        "0.5",
        "--room-timeout-s",
        "10",
    ]);
    args.extend(ids.iter().map(String::as_str));
    f.json(&args);
    // The broker dies in the middle of the rooms' updates (SIGKILL) and comes back.
    std::thread::sleep(Duration::from_millis(700));
    f.broker.kill_and_restart(&ns).unwrap();

    let deadline = Instant::now() + Duration::from_secs(45);
    let c = loop {
        let c = campaign(&f, "c-kill");
        let open: Vec<&str> = c["rooms"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(_, s)| s.as_str().is_some_and(|s| s == "waiting" || s.starts_with("updating")))
            .map(|(k, _)| k.as_str())
            .collect();
        if open.is_empty() {
            break c;
        }
        assert!(Instant::now() < deadline, "rooms still without an end: {open:?}\n{c}\n{}", f.log_text());
        std::thread::sleep(Duration::from_millis(250));
    };
    for (i, id) in ids.iter().enumerate() {
        let s = c["rooms"][id].as_str().unwrap();
        if i < stops.len() {
            assert_eq!(s, "timed_out", "{id}'s agent died after {:?}: {c}", stops[i]);
        } else {
            assert_eq!(s, "succeeded", "{id} lived through the broker's restart: {c}");
        }
    }
    drop(sims);
}

#[test]
fn a_campaign_goes_on_after_the_service_running_it_is_killed() {
    let _w = watchdog("fleet_campaign_resume", 180);
    let ns = NetNs::new();
    let f = FleetService::start(&ns).unwrap();
    campaign_outlives_its_worker(&ns, f, None);
}

#[test]
fn on_postgresql_a_second_worker_takes_a_campaign_over_from_one_that_died() {
    let _w = watchdog("fleet_campaign_workers", 180);
    let ns = NetNs::new();
    let pg = Postgres::start(&ns).unwrap();
    let mut f = FleetService::start_on(&ns, Some(&pg.url())).unwrap();
    let second = f.start_worker().unwrap();
    campaign_outlives_its_worker(&ns, f, Some(second));
}

/// 20 simulated rooms and a campaign of two groups (4, then 16); the worker running it is killed
/// while the first group updates. With `second`, that worker is gone for good and the other one
/// (already running beside it) must take the campaign over; without, the same service restarts.
fn campaign_outlives_its_worker(ns: &NetNs, mut f: FleetService, second: Option<u16>) {
    let ids: Vec<String> = (0..20).map(|i| format!("res-{i:02}")).collect();
    let certs: Vec<Issued> = ids.iter().map(|id| enrol(ns, &f, id)).collect();
    let (port, ca) = (f.broker_port, f.ca());
    let sims = {
        let ids = ids.clone();
        ns.enter(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
            for (id, cert) in ids.into_iter().zip(certs) {
                rt.spawn(sim_room_reconnecting(port, ca.clone(), id, cert, None));
            }
            rt
        })
        .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while f.json(&["rooms"]).as_array().unwrap().iter().filter(|r| !r["reported"].is_null()).count() < ids.len() {
        assert!(Instant::now() < deadline, "the simulated rooms did not all report\n{}", f.log_text());
        std::thread::sleep(Duration::from_millis(200));
    }
    let mut args = vec!["campaign", "--id", "c-resume", "--version", "1.1.0"];
    args.extend(["--bundle-url", "https://updates.example.org/1.1.0.raucb", "--first-group", "4", "--growth", "4"]);
    args.extend(ids.iter().map(String::as_str));
    f.json(&args);
    // The service dies while the first group (4 rooms, 1.5 s each) is updating, perhaps before
    // it saved that the group started (all 20 waiting then; sending the bundle again is harmless).
    match second {
        Some(port) => f.kill_and_use(port).unwrap(),
        None => f.kill_and_restart().unwrap(),
    }
    let view = campaign(&f, "c-resume");
    let waiting = view["rooms"].as_object().unwrap().values().filter(|s| *s == "waiting").count();
    assert!(waiting >= 16, "the second group started before the service was killed: {view}");
    // A new worker takes the campaign up once the dead one's lease has run out, and finishes it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let view = loop {
        let view = campaign(&f, "c-resume");
        if view["phase"] == "completed" {
            break view;
        }
        assert!(Instant::now() < deadline, "the campaign did not go on after the restart: {view}\n{}", f.log_text());
        std::thread::sleep(Duration::from_millis(500));
    };
    let rooms = view["rooms"].as_object().unwrap();
    assert!(rooms.values().all(|s| s == "succeeded"), "{view}");
    assert_eq!(rooms.len(), 20);
    assert!(f.log_text().contains("campaign taken up"), "{}", f.log_text());
    drop(sims);
}
