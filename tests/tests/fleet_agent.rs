//! The room's fleet agent, in two real huisd rooms, against a real mosquitto with the fleet's
//! shipped configuration, and an MQTT client in the fleet service's place: the rooms come online
//! and report their state, take a dial, a mute and a screenshot command (uploaded over HTTPS with
//! the room's certificate), take a desired configuration, answer a repeated command without
//! running it again, refuse an expired or unknown one, keep the fleet's value of a key changed
//! in the room, and are reported offline by their Last Will when huisd dies.
//!
//! The rooms use certificates of the organisation's own CA here (`fleet.cert_file`, …);
//! enrolment by claim code is tested with the fleet service.

use std::time::Duration;

use huis_fleet_proto::topic::{Kind, RoomId, Topic};
use huis_tests::peers::certs::{Ca, Issued};
use huis_tests::peers::mqtt::{Client, tls};
use huis_tests::peers::upload::UploadServer;
use huis_tests::peers::*;
use huis_tests::{Bus, huisctl, huisctl_json, stdout};
use rumqttc::v5::mqttbytes::v5::PubAckReason;
use serde_json::Value;

fn topic(room: &str, kind: Kind) -> String {
    Topic::new(RoomId::new(room).unwrap(), kind).to_string()
}

fn room_config(id: &str, port: u16, ca: &Ca, own: &Issued) -> String {
    format!(
        "[room]\nname = \"Room {id}\"\n[call]\nauto_answer = true\n[fleet]\nbroker = \"mqtts://127.0.0.1:{port}\"\n\
         room_id = \"{id}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\nca_file = \"{}\"\nwill_delay_s = 2\nconnect_spread_s = 0\n\
         telemetry_interval_s = 5\n",
        own.cert.display(),
        own.key.display(),
        ca.cert.display()
    )
}

fn command(id: &str, expires_at_ms: u64, args: &[(&str, &str)]) -> String {
    let args: serde_json::Map<String, Value> = args.iter().map(|(k, v)| ((*k).into(), Value::from(*v))).collect();
    serde_json::json!({ "id": id, "expires_at_ms": expires_at_ms, "args": args }).to_string()
}

fn in_a_minute() -> u64 {
    (std::time::SystemTime::now() + Duration::from_secs(60)).duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
        as u64
}

/// Sends command `name` to `room` and returns its final acknowledgement, after checking it was
/// first accepted.
async fn run_command(svc: &mut Client, room: &str, name: &str, id: &str, args: &[(&str, &str)]) -> Value {
    let ack = topic(room, Kind::Ack);
    let r = svc.publish(&topic(room, Kind::Command(name.into())), &command(id, in_a_minute(), args)).await;
    assert_eq!(r, PubAckReason::Success, "the service may command {room}");
    let first = svc.json_on(&ack, 10, |a| a["id"] == id).await;
    assert_eq!(first["state"], "accepted", "{name}: {first}");
    svc.json_on(&ack, 30, |a| a["id"] == id && a["state"] != "accepted").await
}

#[test]
fn rooms_report_take_commands_and_configuration_and_go_offline_by_their_will() {
    let _w = watchdog("fleet_agent", 180);
    let ns = NetNs::new();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "fleet").unwrap();
    let server = ca.issue("broker", &["IP:127.0.0.1"]).unwrap();
    let service = ca.issue("service", &["DNS:fleet.service"]).unwrap();
    let broker = Mosquitto::start(&ns, &ca, &server).unwrap();
    let uploads = UploadServer::start(&ns, &ca, &server).unwrap();
    let port = broker.port;
    let (bus_a, bus_b) = (Bus::start(), Bus::start());
    let cfg_a = room_config("room-a", port, &ca, &ca.issue("room-a", &["DNS:room-a"]).unwrap());
    let cfg_b = room_config("room-b", port, &ca, &ca.issue("room-b", &["DNS:room-b"]).unwrap());
    let ca_file = ca.cert.clone();
    let shot_url = uploads.url("api/v1/rooms/room-a/screenshots/s1.png");
    let ns2 = ns.clone();
    // One runtime for the whole test, made inside the namespace: the service's connection
    // lives on it from one step to the next.
    let rt = ns
        .enter(|| tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap())
        .unwrap();
    let rt = std::sync::Arc::new(rt);
    let rt2 = rt.clone();
    let result = ns.enter(move || {
        rt2.block_on(async move {
            let mut svc = Client::connect(port, "fleet-worker-1", tls(&ca_file, Some(&service)));
            svc.subscribe("huis/v1/#").await;
            let a = huisd::start_in(&ns2, &bus_a, Some(&cfg_a)).await;
            let b = huisd::start_in(&ns2, &bus_b, Some(&cfg_b)).await;
            let logs = |what: &str| format!("{what}\nroom A's log:\n{}\nroom B's log:\n{}", a.log_text(), b.log_text());

            // Both rooms come online and report who they are.
            for room in ["room-a", "room-b"] {
                svc.json_on(&topic(room, Kind::Status), 20, |s| s["online"] == true).await;
                let r = svc.json_on(&topic(room, Kind::Reported), 10, |_| true).await;
                assert_eq!(r["board"], "sim", "{r}");
                assert_eq!(r["in_call"], false, "{r}");
                assert_eq!(r["peripherals"]["room_name"], format!("Room {room}"), "{r}");
                assert!(r["version"].as_str().is_some_and(|v| !v.is_empty()), "{r}");
            }

            // Dial: room A calls room B, which answers by itself; both report being in a call.
            let b_uri = huisctl_json(&bus_b, &["status"])["sip_uri"].as_str().unwrap().to_owned();
            let done = run_command(&mut svc, "room-a", "dial", "c-dial", &[("uri", &b_uri)]).await;
            assert_eq!(done["state"], "done", "{done}\n{}", logs("dial"));
            for room in ["room-a", "room-b"] {
                svc.json_on(&topic(room, Kind::Reported), 20, |r| r["in_call"] == true).await;
            }
            svc.json_on(&topic("room-a", Kind::Event("call_started".into())), 5, |e| {
                e["fields"]["remote"].as_str().is_some_and(|r| r.contains(b_uri.trim_start_matches("sip:")))
            })
            .await;

            // Mute, as D-Bus sees it.
            let done = run_command(&mut svc, "room-a", "mute", "c-mute", &[("on", "true")]).await;
            assert_eq!(done["state"], "done", "{done}");
            assert_eq!(huisctl_json(&bus_a, &["status"])["muted"], true, "{}", logs("mute"));

            // A screenshot, uploaded to the service under the room's certificate name.
            let done = run_command(&mut svc, "room-a", "screenshot", "c-shot", &[("upload_url", &shot_url)]).await;
            assert_eq!(done["state"], "done", "{done}\n{}", logs("screenshot"));
            (a, b, svc, bus_a, bus_b)
        })
    });
    let (a, b, svc, bus_a, bus_b) = match result {
        Ok(v) => v,
        Err(e) => panic!("{e}\nbroker log:\n{}", broker.log_text()),
    };
    let png = uploads.uploaded("room-a", "api/v1/rooms/room-a/screenshots/s1.png").expect("no screenshot uploaded");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000, "not a PNG: {} bytes", png.len());

    let ns2 = ns.clone();
    let rt2 = rt.clone();
    let a_pid = a.child.id() as i32;
    let (bus_a, bus_b) = (std::sync::Arc::new(bus_a), std::sync::Arc::new(bus_b));
    let (ba, bb) = (bus_a.clone(), bus_b.clone());
    let result = ns.enter(move || {
        let (bus_a, bus_b) = (ba, bb);
        rt2.block_on(async move {
            let mut svc = svc;
            // Hang up, then the same command id again: answered with its end, not run again.
            let done = run_command(&mut svc, "room-a", "hangup", "c-hangup", &[]).await;
            assert_eq!(done["state"], "done", "{done}");
            let ack = topic("room-a", Kind::Ack);
            svc.publish(&topic("room-a", Kind::Command("hangup".into())), &command("c-hangup", in_a_minute(), &[]))
                .await;
            let again = svc.json_on(&ack, 10, |a| a["id"] == "c-hangup").await;
            assert_eq!(again["state"], "done", "a repeated command is answered with its end: {again}");
            let events = topic("room-a", Kind::Event("call_ended".into()));
            svc.json_on(&events, 10, |_| true).await;

            // Expired and unknown commands: answered, not run.
            svc.publish(&topic("room-a", Kind::Command("reboot".into())), &command("c-old", 1_000, &[])).await;
            let old = svc.json_on(&ack, 10, |a| a["id"] == "c-old").await;
            assert_eq!(old["state"], "expired", "{old}");
            svc.publish(&topic("room-a", Kind::Command("format_disk".into())), &command("c-x", in_a_minute(), &[]))
                .await;
            let x = svc.json_on(&ack, 10, |a| a["id"] == "c-x").await;
            assert_eq!(x["state"], "failed", "{x}");
            assert!(x["detail"].as_str().unwrap().contains("unknown command"), "{x}");

            // The desired configuration: applied, reported with its version and source, and seen
            // over D-Bus. A fleet.* key is refused (the room's own settings).
            let desired = serde_json::json!({
                "config_version": 3,
                "config": { "audio.output_volume": "55", "room.name": "Salle Jaurès", "fleet.broker": "mqtts://evil" },
            });
            let r = svc.publish_retained(&topic("room-b", Kind::Desired), &desired.to_string()).await;
            assert_eq!(r, PubAckReason::Success);
            let applied = svc.json_on(&topic("room-b", Kind::Event("config_applied".into())), 10, |_| true).await;
            assert_eq!(applied["fields"]["applied"], "2", "{applied}");
            assert!(applied["fields"]["failed"].as_str().unwrap().contains("fleet.broker"), "{applied}");
            let r = svc.json_on(&topic("room-b", Kind::Reported), 10, |r| r["config_version"] == 3).await;
            assert_eq!(r["config_sources"]["audio.output_volume"], "fleet", "{r}");
            let vol = stdout(&huisctl(&bus_b, &["config", "get", "audio.output_volume"]));
            assert!(vol.contains("55"), "Config.Get says {vol}");
            assert_eq!(huisctl_json(&bus_b, &["status"])["room"], "Salle Jaurès");

            // Changed in the room: with the fleet's precedence (the default), put back and said.
            let out = huisctl(&bus_b, &["config", "set", "audio.output_volume", "20"]);
            assert!(out.status.success(), "{}", huis_tests::stderr(&out));
            let ev = svc
                .json_on(&topic("room-b", Kind::Event("config_changed".into())), 10, |e| {
                    e["fields"]["source"] == "local"
                })
                .await;
            assert!(ev["fields"]["detail"].as_str().unwrap().contains("put back"), "{ev}");
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            loop {
                let vol = stdout(&huisctl(&bus_b, &["config", "get", "audio.output_volume"]));
                if vol.contains("55") {
                    break;
                }
                assert!(tokio::time::Instant::now() < deadline, "the fleet's value was not put back: {vol}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }

            // Telemetry comes by itself.
            let t = svc.json_on(&topic("room-a", Kind::Telemetry), 10, |_| true).await;
            assert!(t["cpu_percent"].as_f64().is_some(), "{t}");

            // Room A dies: after the will delay, the broker says it is offline.
            unsafe { libc::kill(a_pid, libc::SIGKILL) };
            let off = svc.json_on(&topic("room-a", Kind::Status), 15, |s| s["online"] == false).await;
            assert_eq!(off["online"], false);
            drop((bus_a, bus_b, ns2));
        })
    });
    if let Err(e) = result {
        panic!(
            "{e}\nroom A's log:\n{}\nroom B's log:\n{}\nbroker log:\n{}",
            a.log_text(),
            b.log_text(),
            broker.log_text()
        );
    }
}
