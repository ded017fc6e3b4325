//! The fleet's broker as shipped (`fleet/broker/mosquitto.conf.in` and `fleet/broker/acl`) on a
//! real mosquitto in a test namespace, with MQTT 5 clients over mutual TLS (rumqttc on rustls),
//! each with a certificate of the test's CA named as the fleet names them: rooms by their room
//! id, the service `fleet.service`. What must hold for a fleet of rooms IT does not trust blindly:
//! a room's certificate reaches its own topics only, never another room's, and never the desired
//! state the service writes for it; a client without a certificate of the fleet's CA gets nowhere.

use std::time::Duration;

use huis_fleet_proto::topic::{Kind, RoomId, Topic};
use huis_tests::peers::certs::Ca;
use huis_tests::peers::mqtt::{Client, Seen, tls};
use huis_tests::peers::*;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::PubAckReason;

fn topic(room: &str, kind: Kind) -> String {
    Topic::new(RoomId::new(room).unwrap(), kind).to_string()
}

#[test]
fn a_room_certificate_reaches_its_own_topics_and_nothing_else() {
    let _w = watchdog("fleet_broker", 60);
    let ns = NetNs::new();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new(dir.path(), "fleet").unwrap();
    let server = ca.issue("broker", &["IP:127.0.0.1"]).unwrap();
    let service = ca.issue("service", &["DNS:fleet.service"]).unwrap();
    let room_a = ca.issue("room-a", &["DNS:room-a"]).unwrap();
    let room_b = ca.issue("room-b", &["DNS:room-b"]).unwrap();
    let other_dir = tempfile::tempdir().unwrap();
    let other_ca = Ca::new(other_dir.path(), "other").unwrap();
    let stranger = other_ca.issue("room-c", &["DNS:room-c"]).unwrap();
    let broker = Mosquitto::start(&ns, &ca, &server).unwrap();
    let port = broker.port;
    let ca_file = ca.cert.clone();
    let result = ns.enter(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async move {
            let mut svc = Client::connect(port, "fleet-worker-1", tls(&ca_file, Some(&service)));
            let codes = svc.subscribe("huis/v1/#").await;
            assert_eq!(codes, ["Success(AtLeastOnce)"], "the service may read every room");
            let mut a = Client::connect(port, "room-a", tls(&ca_file, Some(&room_a)));
            let mut b = Client::connect(port, "room-b", tls(&ca_file, Some(&room_b)));
            assert_eq!(b.subscribe(&topic("room-b", Kind::Command("+".into()))).await.len(), 1);

            // Its own status: accepted and delivered to the service.
            let own = topic("room-a", Kind::Status);
            assert_eq!(a.publish(&own, r#"{"online":true}"#).await, PubAckReason::Success);
            assert_eq!(svc.received(&own, 5).await.as_deref(), Some(&br#"{"online":true}"#[..]));

            // Another room's reported state, and its own desired state: refused by the broker,
            // and nobody receives them.
            for (t, what) in [
                (topic("room-b", Kind::Reported), "room B's reported state"),
                (topic("room-b", Kind::Status), "room B's status"),
                (topic("room-a", Kind::Desired), "its own desired state"),
                (topic("room-b", Kind::Command("reboot".into())), "a command to room B"),
            ] {
                let r = a.publish(&t, r#"{"forged":true}"#).await;
                assert_eq!(r, PubAckReason::NotAuthorized, "room A publishing {what}");
                assert_eq!(svc.received(&t, 1).await, None, "{what} reached the service");
            }
            assert_eq!(b.received(&topic("room-b", Kind::Command("reboot".into())), 1).await, None);

            // Room A cannot listen in on room B's commands; room B gets them. (mosquitto grants
            // the subscription and checks the ACL at each delivery, so what counts is delivery.)
            a.subscribe(&topic("room-b", Kind::Command("+".into()))).await;
            let cmd = topic("room-b", Kind::Command("dial".into()));
            assert_eq!(svc.publish(&cmd, r#"{"id":"c1","expires_at_ms":1}"#).await, PubAckReason::Success);
            assert!(b.received(&cmd, 5).await.is_some(), "room B did not get its command");
            assert_eq!(a.received(&cmd, 1).await, None, "room A received room B's command");

            // A certificate of another CA, and no certificate: no session at all.
            for (id, t) in [("room-c", tls(&ca_file, Some(&stranger))), ("anonymous", tls(&ca_file, None))] {
                let mut c = Client::connect(port, id, t);
                c.mqtt.publish(topic("room-c", Kind::Status), QoS::AtLeastOnce, false, b"{}".to_vec()).await.unwrap();
                let got = tokio::time::timeout(Duration::from_secs(5), c.seen.recv()).await;
                assert!(
                    matches!(got, Ok(Some(Seen::Error(_))) | Ok(None)),
                    "{id} without a certificate of the fleet's CA got: {got:?}"
                );
            }
        })
    });
    if let Err(e) = result {
        panic!("{e}\nbroker log:\n{}", broker.log_text());
    }
}
