//! An MQTT 5 client over mutual TLS (rumqttc on rustls with ring), as the fleet's tests use it
//! in the service's place: it publishes, subscribes and collects what its connection sees.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use rumqttc::{TlsConfiguration, Transport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::mpsc;

use super::certs::Issued;

/// Publishes kept for later [`Client::json_on`] calls.
const BACKLOG: usize = 10_000;

/// A client's TLS on ring, as huisd's own (`proto/sip/net.rs`, where the deprecation is explained).
#[allow(deprecated)]
pub fn tls(ca: &Path, client: Option<&Issued>) -> TlsConfiguration {
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
pub enum Seen {
    Publish(String, Vec<u8>),
    PubAck(PubAckReason),
    SubAck(Vec<String>),
    Error(String),
}

pub struct Client {
    pub mqtt: AsyncClient,
    /// Publishes received and not yet taken by [`Client::json_on`].
    backlog: Vec<(String, Vec<u8>)>,
    pub seen: mpsc::UnboundedReceiver<Seen>,
}

impl Client {
    pub fn connect(port: u16, id: &str, tls: TlsConfiguration) -> Client {
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
        Client { mqtt, seen, backlog: Vec::new() }
    }

    /// The next event matching `want` within `secs`, or None.
    pub async fn next(&mut self, secs: u64, want: impl Fn(&Seen) -> bool) -> Option<Seen> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            match tokio::time::timeout_at(deadline, self.seen.recv()).await {
                Ok(Some(s)) if want(&s) => return Some(s),
                Ok(Some(Seen::Error(e))) => panic!("the client's connection failed: {e}"),
                // Kept for `received` and `json_on`, so waiting for an acknowledgement loses
                // no message.
                Ok(Some(Seen::Publish(t, p))) => self.keep(t, p),
                Ok(Some(_)) => continue,
                _ => return None,
            }
        }
    }

    pub async fn publish(&mut self, topic: &str, payload: &str) -> PubAckReason {
        self.mqtt.publish(topic, QoS::AtLeastOnce, false, payload.as_bytes().to_vec()).await.unwrap();
        match self.next(5, |s| matches!(s, Seen::PubAck(_))).await {
            Some(Seen::PubAck(r)) => r,
            other => panic!("no PUBACK for {topic}: {other:?}"),
        }
    }

    pub async fn subscribe(&mut self, filter: &str) -> Vec<String> {
        self.mqtt.subscribe(filter, QoS::AtLeastOnce).await.unwrap();
        match self.next(5, |s| matches!(s, Seen::SubAck(_))).await {
            Some(Seen::SubAck(codes)) => codes,
            other => panic!("no SUBACK for {filter}: {other:?}"),
        }
    }

    fn keep(&mut self, topic: String, payload: Vec<u8>) {
        if self.backlog.len() >= BACKLOG {
            self.backlog.remove(0);
        }
        self.backlog.push((topic, payload));
    }

    /// A publish received on `topic` and not yet taken, or the next within `secs`.
    pub async fn received(&mut self, topic: &str, secs: u64) -> Option<Vec<u8>> {
        if let Some(i) = self.backlog.iter().position(|(t, _)| t == topic) {
            return Some(self.backlog.remove(i).1);
        }
        let t = topic.to_owned();
        match self.next(secs, move |s| matches!(s, Seen::Publish(got, _) if *got == t)).await {
            Some(Seen::Publish(_, p)) => Some(p),
            _ => None,
        }
    }
}

impl Client {
    /// Publishes `payload` retained (the service's desired state) and waits for its PUBACK.
    pub async fn publish_retained(&mut self, topic: &str, payload: &str) -> PubAckReason {
        self.mqtt.publish(topic, QoS::AtLeastOnce, true, payload.as_bytes().to_vec()).await.unwrap();
        match self.next(5, |s| matches!(s, Seen::PubAck(_))).await {
            Some(Seen::PubAck(r)) => r,
            other => panic!("no PUBACK for {topic}: {other:?}"),
        }
    }

    /// The first JSON payload on `topic` that `want` takes, among those received and not yet
    /// taken or within `secs`; what else was seen on that topic is in the panic message.
    /// Publishes on other topics are kept for later calls.
    pub async fn json_on(
        &mut self,
        topic: &str,
        secs: u64,
        want: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let parse = |p: &[u8]| -> serde_json::Value {
            serde_json::from_slice(p)
                .unwrap_or_else(|e| panic!("{topic}: not JSON ({e}): {}", String::from_utf8_lossy(p)))
        };
        if let Some(i) = self.backlog.iter().position(|(t, p)| t == topic && want(&parse(p))) {
            return parse(&self.backlog.remove(i).1);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.seen.recv()).await {
                Ok(Some(Seen::Publish(t, p))) => {
                    if t == topic && want(&parse(&p)) {
                        return parse(&p);
                    }
                    self.keep(t, p);
                }
                Ok(Some(Seen::Error(e))) => panic!("the client's connection failed: {e}"),
                Ok(Some(_)) => {}
                _ => {
                    let there: Vec<_> =
                        self.backlog.iter().filter(|(t, _)| t == topic).map(|(_, p)| parse(p)).collect();
                    let mut others: Vec<&str> = self.backlog.iter().map(|(t, _)| t.as_str()).collect();
                    others.dedup();
                    panic!(
                        "nothing as expected on {topic} within {secs} s; seen there: {there:?}; kept from elsewhere: {others:?}"
                    )
                }
            }
        }
    }
}
