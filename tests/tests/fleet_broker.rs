//! The fleet's broker as shipped (`fleet/broker/mosquitto.conf.in` and `fleet/broker/acl`) on a
//! real mosquitto in a test namespace, with MQTT 5 clients over mutual TLS (rumqttc on rustls),
//! each with a certificate of the test's CA named as the fleet names them: rooms by their room
//! id, the service `fleet.service`. What must hold for a fleet of rooms IT does not trust blindly:
//! a room's certificate reaches its own topics only, never another room's, and never the desired
//! state the service writes for it; a client without a certificate of the fleet's CA gets nowhere.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use huis_fleet_proto::topic::{Kind, RoomId, Topic};
use huis_tests::peers::certs::{Ca, Issued};
use huis_tests::peers::*;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use rumqttc::{TlsConfiguration, Transport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::mpsc;

/// A client's TLS on ring, as huisd's own (`proto/sip/net.rs`, where the deprecation is explained).
#[allow(deprecated)]
fn tls(ca: &Path, client: Option<&Issued>) -> TlsConfiguration {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let b = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let cfg = match client {
        Some(i) => {
            let chain: Vec<CertificateDer<'static>> =
                CertificateDer::pem_file_iter(&i.cert).unwrap().map(|c| c.unwrap()).collect();
            b.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(&i.key).unwrap()).unwrap()
        }
        None => b.with_no_client_auth(),
    };
    TlsConfiguration::Rustls(Arc::new(cfg))
}

/// What a client's event loop saw: publishes received (topic, payload) and acknowledgements of
/// its own QoS 1 publishes (reason).
#[derive(Debug)]
enum Seen {
    Publish(String, Vec<u8>),
    PubAck(PubAckReason),
    SubAck(Vec<String>),
    Error(String),
}

struct Client {
    mqtt: AsyncClient,
    seen: mpsc::UnboundedReceiver<Seen>,
}

impl Client {
    fn connect(port: u16, id: &str, tls: TlsConfiguration) -> Client {
        let mut o = MqttOptions::new(id, "127.0.0.1", port);
        o.set_keep_alive(Duration::from_secs(10));
        o.set_transport(Transport::Tls(tls));
        let (mqtt, mut ev) = AsyncClient::new(o, 16);
        let (tx, seen) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let s = match ev.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        Seen::Publish(String::from_utf8_lossy(&p.topic).into_owned(), p.payload.to_vec())
                    }
                    Ok(Event::Incoming(Packet::PubAck(a))) => Seen::PubAck(a.reason),
                    Ok(Event::Incoming(Packet::SubAck(a))) => {
                        Seen::SubAck(a.return_codes.iter().map(|c| format!("{c:?}")).collect())
                    }
                    Ok(_) => continue,
                    Err(e) => {
                        let _ = tx.send(Seen::Error(e.to_string()));
                        return;
                    }
                };
                if tx.send(s).is_err() {
                    return;
                }
            }
        });
        Client { mqtt, seen }
    }

    /// The next event matching `want` within `secs`, or None.
    async fn next(&mut self, secs: u64, want: impl Fn(&Seen) -> bool) -> Option<Seen> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            match tokio::time::timeout_at(deadline, self.seen.recv()).await {
                Ok(Some(s)) if want(&s) => return Some(s),
                Ok(Some(Seen::Error(e))) => panic!("the client's connection failed: {e}"),
                Ok(Some(_)) => continue,
                _ => return None,
            }
        }
    }

    async fn publish(&mut self, topic: &str, payload: &str) -> PubAckReason {
        self.mqtt.publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec()).await.unwrap();
        match self.next(5, |s| matches!(s, Seen::PubAck(_))).await {
            Some(Seen::PubAck(r)) => r,
            other => panic!("no PUBACK for {topic}: {other:?}"),
        }
    }

    async fn subscribe(&mut self, filter: &str) -> Vec<String> {
        self.mqtt.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        match self.next(5, |s| matches!(s, Seen::SubAck(_))).await {
            Some(Seen::SubAck(codes)) => codes,
            other => panic!("no SUBACK for {filter}: {other:?}"),
        }
    }

    /// Publishes received on `topic` within `secs`.
    async fn received(&mut self, topic: &str, secs: u64) -> Option<Vec<u8>> {
        let t = topic.to_owned();
        match self.next(secs, move |s| matches!(s, Seen::Publish(got, _) if *got == t)).await {
            Some(Seen::Publish(_, p)) => Some(p),
            _ => None,
        }
    }
}

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
