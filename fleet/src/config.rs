//! `huis-fleet.toml`: where the service listens, its database, its broker and its files.
//! `huis-fleet init` writes one on embedded defaults (SQLite in the data directory, a local
//! mosquitto).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// HTTPS for the API, the console, enrolment and uploads.
    pub listen: String,
    /// The address rooms and people reach the service at (upload addresses are built from it).
    pub public_url: String,
    /// The data directory: the CA and certificates (`pki/`), uploads, the update bundles it hands out (`bundles/`), the SQLite database.
    pub data_dir: PathBuf,
    /// `sqlite://PATH` (the default, one worker) or `postgres://user:password@host/db`.
    pub database: String,
    /// The broker as the service reaches it, `mqtts://host:port`.
    pub broker: String,
    /// The broker's address as rooms reach it (told to them at enrolment).
    pub room_broker: String,
    /// The shared-subscription group of this service's workers.
    #[serde(default = "default_group")]
    pub group: String,
    /// Alerts (a room offline, a failed update, a poor call) are POSTed here as JSON; "" none.
    #[serde(default)]
    pub alert_webhook: String,
    /// A call is poor, and alerted, beyond any of these.
    #[serde(default)]
    pub call_quality: CallThresholds,
}

/// `[call_quality]`: the limits of a good call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallThresholds {
    pub max_loss_percent: f32,
    pub max_jitter_ms: f32,
    pub max_rtt_ms: f32,
}

impl Default for CallThresholds {
    fn default() -> Self {
        Self { max_loss_percent: 5.0, max_jitter_ms: 60.0, max_rtt_ms: 400.0 }
    }
}

fn default_group() -> String {
    "huis-fleet".into()
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct ConfigError {
    pub path: String,
    pub reason: String,
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let err = |reason: String| ConfigError { path: path.display().to_string(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| err(format!("cannot be read: {e}")))?;
        let c: Config = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
        for (k, v, scheme) in [
            ("public_url", &c.public_url, "https://"),
            ("broker", &c.broker, "mqtts://"),
            ("room_broker", &c.room_broker, "mqtts://"),
        ] {
            if !v.starts_with(scheme) {
                return Err(err(format!("{k} '{v}' must start with {scheme}")));
            }
        }
        if !(c.database.starts_with("sqlite://") || c.database.starts_with("postgres://")) {
            return Err(err("database must be sqlite://PATH or postgres://…".into()));
        }
        c.listen
            .parse::<std::net::SocketAddr>()
            .map_err(|_| err(format!("listen '{}' is not address:port", c.listen)))?;
        let q = &c.call_quality;
        for (k, v) in
            [("max_loss_percent", q.max_loss_percent), ("max_jitter_ms", q.max_jitter_ms), ("max_rtt_ms", q.max_rtt_ms)]
        {
            if !(v.is_finite() && v >= 0.0) {
                return Err(err(format!("call_quality.{k} must be a number of 0 or more, not {v}")));
            }
        }
        huis_fleet_proto::topic::RoomId::new(&c.group.replace('_', "-"))
            .map_err(|_| err(format!("group '{}' must be a-z, 0-9, - and _", c.group)))?;
        Ok(c)
    }

    pub fn pki(&self) -> PathBuf {
        self.data_dir.join("pki")
    }

    /// Host and port of an `mqtts://` address.
    pub fn host_port(url: &str) -> Option<(String, u16)> {
        let rest = url.strip_prefix("mqtts://")?.trim_end_matches('/');
        match rest.rsplit_once(':') {
            Some((h, p)) => Some((h.trim_matches(['[', ']']).to_owned(), p.parse().ok()?)),
            None => Some((rest.to_owned(), 8883)),
        }
    }
}
