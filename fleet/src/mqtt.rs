//! The service's side of the broker: one MQTT 5 connection per worker, the rooms' topics taken
//! through shared subscriptions (`$share/<group>/…`, so several workers split the load), and
//! every message written to the database idempotently. Commands and desired state go out here.

use std::sync::Arc;
use std::time::Duration;

use huis_fleet_proto::msg::{self, Ack, Event, Reported, Status, Telemetry, UpdatePhase};
use huis_fleet_proto::topic::{Kind, Topic};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event as MqttEvent, MqttOptions};
use rumqttc::{NetworkOptions, TlsConfiguration, Transport};

use crate::db::Db;
use crate::now_ms;

#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error("the broker address '{0}' is not mqtts://host:port")]
    Address(String),
    #[error("cannot queue for the broker: {0}")]
    Queue(String),
}

#[derive(Clone)]
pub struct Broker {
    client: AsyncClient,
}

impl Broker {
    /// Connects (and keeps reconnecting) to `url` as `client_id`, with the service's TLS.
    pub fn start(
        url: &str,
        client_id: &str,
        group: &str,
        tls: Arc<rustls::ClientConfig>,
        db: Db,
        alerts: Arc<crate::alerts::Alerts>,
    ) -> Result<Broker, MqttError> {
        let (host, port) = crate::config::Config::host_port(url).ok_or_else(|| MqttError::Address(url.to_owned()))?;
        let mut o = MqttOptions::new(client_id, host, port);
        o.set_keep_alive(Duration::from_secs(30));
        o.set_outgoing_inflight_upper_limit(64);
        o.set_max_packet_size(Some((huis_fleet_proto::MAX_PAYLOAD + 1024) as u32));
        o.set_transport(Transport::Tls(TlsConfiguration::Rustls(tls)));
        let mut net = NetworkOptions::new();
        net.set_tcp_nodelay(true);
        net.set_connection_timeout(15);
        o.set_network_options(net);
        let (client, mut eventloop) = AsyncClient::new(o, 1024);
        let subscriber = client.clone();
        let group = group.to_owned();
        tokio::spawn(async move {
            let mut failures = 0u32;
            loop {
                match eventloop.poll().await {
                    Ok(MqttEvent::Incoming(Packet::ConnAck(_))) => {
                        failures = 0;
                        tracing::info!("connected to the broker");
                        for f in huis_fleet_proto::topic::service_subscriptions(&group) {
                            if let Err(e) = subscriber.subscribe(f, QoS::AtLeastOnce).await {
                                tracing::error!("cannot subscribe: {e}");
                            }
                        }
                    }
                    Ok(MqttEvent::Incoming(Packet::Publish(p))) => {
                        let topic = String::from_utf8_lossy(&p.topic).into_owned();
                        if let Err(e) = handle(&db, &alerts, &topic, &p.payload).await {
                            tracing::warn!(topic = %topic, "message not kept: {e}");
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        failures += 1;
                        let wait = Duration::from_secs(1u64 << failures.min(5));
                        tracing::warn!("broker: {e}; again in {} s", wait.as_secs());
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        });
        Ok(Broker { client })
    }

    /// Sends a room a command (QoS 1, not retained: a room that is away gets it from its session
    /// or not at all, and its expiry says until when it may still run).
    pub async fn command(&self, topic: &Topic, payload: Vec<u8>) -> Result<(), MqttError> {
        self.client
            .publish(topic.to_string(), QoS::AtLeastOnce, false, payload)
            .await
            .map_err(|e| MqttError::Queue(e.to_string()))
    }

    /// Sets a room's desired state (retained: the room reads it whenever it connects).
    pub async fn desired(&self, topic: &Topic, payload: Vec<u8>) -> Result<(), MqttError> {
        self.client
            .publish(topic.to_string(), QoS::AtLeastOnce, true, payload)
            .await
            .map_err(|e| MqttError::Queue(e.to_string()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum HandleError {
    #[error(transparent)]
    Topic(#[from] huis_fleet_proto::topic::TopicError),
    #[error(transparent)]
    Payload(#[from] msg::MsgError),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
}

/// Writes one message from a room to the database.
pub async fn handle(db: &Db, alerts: &crate::alerts::Alerts, topic: &str, payload: &[u8]) -> Result<(), HandleError> {
    let t = Topic::parse(topic)?;
    let room = t.room.as_str();
    let now = now_ms();
    match &t.kind {
        Kind::Status => {
            let s: Status = msg::decode(payload)?;
            let was_online = db.room(room).await?.is_some_and(|r| r.online);
            db.set_status(room, s.online, s.at_ms as i64, now).await?;
            if was_online && !s.online {
                alerts.send("room_offline", room, "the room's connection to the broker is lost").await;
            }
        }
        Kind::Reported => {
            let r: Reported = msg::decode(payload)?;
            let before = db.room(room).await?.and_then(|r| r.reported).and_then(|v| crate::campaigns::report_of(&v));
            let newer = db.set_reported(room, r.seq as i64, &String::from_utf8_lossy(payload), now).await?;
            let failed = matches!(r.update.phase, UpdatePhase::Failed | UpdatePhase::RolledBack);
            if newer && failed && before.is_none_or(|b| b.phase != r.update.phase || b.campaign != r.update.campaign) {
                let what = format!("{:?} {}: {}", r.update.phase, r.update.target_version, r.update.detail);
                alerts.send("update_failed", room, &what).await;
            }
        }
        Kind::Event(kind) => {
            let e: Event = msg::decode(payload)?;
            let fields = serde_json::to_string(&e.fields).expect("serialises");
            db.add_event(room, e.seq as i64, kind, e.at_ms as i64, &fields).await?;
        }
        Kind::Ack => {
            let a: Ack = msg::decode(payload)?;
            let state =
                serde_json::to_value(a.state).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default();
            db.ack(room, &a.id, &state, &a.detail, now).await?;
        }
        Kind::Telemetry => {
            let t: Telemetry = msg::decode(payload)?;
            db.set_telemetry(room, &serde_json::to_string(&t).expect("serialises"), now).await?;
            if let Some(q) = &t.call {
                alerts.call_quality(room, q).await;
            }
        }
        // Written by the service, read back only through a shared subscription's overlap.
        Kind::Desired | Kind::Command(_) => {}
    }
    Ok(())
}
