//! The payloads: JSON objects, decoded with [`decode`] (at most [`crate::MAX_PAYLOAD`] bytes,
//! every string and map bounded, checked after decoding). Unknown fields are ignored, so a
//! newer room or service may add fields within version 1; a change of meaning is a new version
//! of the topic tree.
//!
//! Times are milliseconds since the Unix epoch by the sender's clock. Reports carry a sequence
//! number that only grows (kept across reboots by the room), so a worker that sees an older
//! report after a newer one, or the same one twice, drops it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::topic::excerpt;

/// Longest string in any payload.
pub const MAX_STRING: usize = 4096;
/// Most entries in a map (configuration, command arguments, event fields).
pub const MAX_ENTRIES: usize = 256;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MsgError {
    #[error("payload of {0} bytes is over the limit of {max}", max = crate::MAX_PAYLOAD)]
    TooLarge(usize),
    #[error("payload is not a valid {what}: {reason}")]
    Json { what: &'static str, reason: String },
    #[error("{what}: {field} is {len} long, over the limit of {limit}")]
    Bound { what: &'static str, field: String, len: usize, limit: usize },
    #[error("{what}: {0}", what = .1)]
    Invalid(String, &'static str),
}

/// A payload type of the contract.
pub trait Payload: Serialize + for<'de> Deserialize<'de> {
    /// Its name in error messages.
    const WHAT: &'static str;
    /// Checks the bounds serde cannot express.
    fn check(&self) -> Result<(), MsgError>;
}

/// Decodes and checks one payload received from the broker.
pub fn decode<T: Payload>(payload: &[u8]) -> Result<T, MsgError> {
    if payload.len() > crate::MAX_PAYLOAD {
        return Err(MsgError::TooLarge(payload.len()));
    }
    let v: T = serde_json::from_slice(payload)
        .map_err(|e| MsgError::Json { what: T::WHAT, reason: excerpt(&e.to_string()) })?;
    v.check()?;
    Ok(v)
}

/// Encodes a payload for the broker.
pub fn encode<T: Payload>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("the contract's payloads always serialise")
}

fn bound_str(what: &'static str, field: &str, s: &str) -> Result<(), MsgError> {
    if s.len() > MAX_STRING {
        return Err(MsgError::Bound { what, field: field.to_owned(), len: s.len(), limit: MAX_STRING });
    }
    Ok(())
}

/// A map of strings: at most [`MAX_ENTRIES`] entries, each key and value within [`MAX_STRING`].
fn bound_map(what: &'static str, field: &str, m: &BTreeMap<String, String>) -> Result<(), MsgError> {
    if m.len() > MAX_ENTRIES {
        return Err(MsgError::Bound { what, field: field.to_owned(), len: m.len(), limit: MAX_ENTRIES });
    }
    for (k, v) in m {
        bound_str(what, field, k)?;
        if v.len() > MAX_STRING {
            let field = format!("{field}.{}", excerpt(k));
            return Err(MsgError::Bound { what, field, len: v.len(), limit: MAX_STRING });
        }
    }
    Ok(())
}

/// `huis/v1/ROOM/status`, retained; also the room's Last Will (with `online: false`), which the
/// broker publishes when the room's connection is lost for longer than the will delay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Status {
    pub online: bool,
    #[serde(default)]
    pub at_ms: u64,
}

impl Payload for Status {
    const WHAT: &'static str = "status";
    fn check(&self) -> Result<(), MsgError> {
        Ok(())
    }
}

/// Where a room is in an update. A room reports `Succeeded` only once the new slot booted and
/// passed huisd's health check, and `RolledBack` when the bootloader fell back to the old slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdatePhase {
    Idle,
    /// Waiting for the end of a call or for the maintenance window.
    Deferred,
    Downloading,
    Installing,
    /// Written to the other slot; the reboot comes next.
    Installed,
    Rebooting,
    /// Booted into the new slot; huisd's health check runs.
    HealthCheck,
    Succeeded,
    Failed,
    RolledBack,
}

impl UpdatePhase {
    /// An end: no report after it changes what the campaign counts.
    pub fn is_final(self) -> bool {
        matches!(self, UpdatePhase::Succeeded | UpdatePhase::Failed | UpdatePhase::RolledBack)
    }
}

/// The update part of a room's reported state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UpdateReport {
    pub phase: UpdatePhase,
    /// The campaign this is about; `None` for an update that did not come from the fleet.
    #[serde(default)]
    pub campaign: Option<String>,
    #[serde(default)]
    pub target_version: String,
    /// Why it failed, in words (huisd's Update1.LastError).
    #[serde(default)]
    pub detail: String,
}

/// `huis/v1/ROOM/state/reported`, retained: sent on every change (rate-limited) and on every
/// reconnect.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reported {
    /// Grows with every report, across reboots.
    pub seq: u64,
    pub at_ms: u64,
    pub version: String,
    /// The booted slot (A or B).
    pub slot: String,
    pub board: String,
    pub in_call: bool,
    /// The version of the desired configuration last applied.
    pub config_version: u64,
    pub update: UpdateReport,
    #[serde(default)]
    pub peripherals: BTreeMap<String, String>,
    /// Configuration keys set by the fleet or changed in the room since, and which
    /// (`fleet` or `local`), as the precedence setting left them.
    #[serde(default)]
    pub config_sources: BTreeMap<String, String>,
}

impl Payload for Reported {
    const WHAT: &'static str = "reported state";
    fn check(&self) -> Result<(), MsgError> {
        for (f, s) in [
            ("version", &self.version),
            ("slot", &self.slot),
            ("board", &self.board),
            ("update.target_version", &self.update.target_version),
            ("update.detail", &self.update.detail),
        ] {
            bound_str(Self::WHAT, f, s)?;
        }
        bound_str(Self::WHAT, "update.campaign", self.update.campaign.as_deref().unwrap_or_default())?;
        bound_map(Self::WHAT, "peripherals", &self.peripherals)?;
        bound_map(Self::WHAT, "config_sources", &self.config_sources)
    }
}

/// The bundle a room should run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BundleTarget {
    pub campaign: String,
    pub version: String,
    /// An https:// URL; the room's RAUC checks the bundle's signature against its own keyring.
    pub url: String,
}

/// `huis/v1/ROOM/state/desired`, retained, written only by the service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Desired {
    pub config_version: u64,
    /// Dotted keys of huis.toml and their values, as `huisctl config set` takes them.
    #[serde(default)]
    pub config: BTreeMap<String, String>,
    #[serde(default)]
    pub bundle: Option<BundleTarget>,
}

impl Payload for Desired {
    const WHAT: &'static str = "desired state";
    fn check(&self) -> Result<(), MsgError> {
        bound_map(Self::WHAT, "config", &self.config)?;
        if let Some(b) = &self.bundle {
            for (f, s) in [("bundle.campaign", &b.campaign), ("bundle.version", &b.version), ("bundle.url", &b.url)] {
                bound_str(Self::WHAT, f, s)?;
            }
            if !b.url.starts_with("https://") {
                return Err(MsgError::Invalid(format!("bundle.url '{}' is not https://", excerpt(&b.url)), Self::WHAT));
            }
        }
        Ok(())
    }
}

/// `huis/v1/ROOM/cmd/NAME`: one command. The room answers on `ack` with the same `id`:
/// `accepted`, then `done` or `failed`; a command past its expiry is answered `expired` and not
/// run, and one whose id was seen before is answered again, not run again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Command {
    pub id: String,
    pub expires_at_ms: u64,
    #[serde(default)]
    pub args: BTreeMap<String, String>,
}

impl Payload for Command {
    const WHAT: &'static str = "command";
    fn check(&self) -> Result<(), MsgError> {
        if self.id.is_empty() || self.id.len() > 64 {
            return Err(MsgError::Invalid("id must be 1–64 characters".into(), Self::WHAT));
        }
        bound_map(Self::WHAT, "args", &self.args)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckState {
    Accepted,
    Done,
    Failed,
    Expired,
}

/// `huis/v1/ROOM/ack`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    pub id: String,
    pub state: AckState,
    #[serde(default)]
    pub detail: String,
}

impl Payload for Ack {
    const WHAT: &'static str = "acknowledgement";
    fn check(&self) -> Result<(), MsgError> {
        bound_str(Self::WHAT, "id", &self.id)?;
        bound_str(Self::WHAT, "detail", &self.detail)
    }
}

/// The quality of the call in progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallQuality {
    pub loss_percent: f32,
    pub jitter_ms: f32,
    pub rtt_ms: f32,
    pub kbps: f32,
}

/// `huis/v1/ROOM/telemetry`, QoS 0, periodic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Telemetry {
    pub at_ms: u64,
    pub cpu_percent: f32,
    #[serde(default)]
    pub temperature_c: Option<f32>,
    pub input_level_dbfs: f32,
    pub output_level_dbfs: f32,
    #[serde(default)]
    pub call: Option<CallQuality>,
}

impl Payload for Telemetry {
    const WHAT: &'static str = "telemetry";
    fn check(&self) -> Result<(), MsgError> {
        Ok(())
    }
}

/// `huis/v1/ROOM/event/KIND`, QoS 1: what happened, with its fields (call ended: `reason`;
/// update step: `phase`, `detail`; error: `message`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u64,
    pub at_ms: u64,
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

impl Payload for Event {
    const WHAT: &'static str = "event";
    fn check(&self) -> Result<(), MsgError> {
        bound_map(Self::WHAT, "fields", &self.fields)
    }
}

/// Decodes a payload by the topic it came on, as a worker or the fuzzer does; returns its name.
pub fn decode_any(kind: &crate::topic::Kind, payload: &[u8]) -> Result<&'static str, MsgError> {
    use crate::topic::Kind;
    Ok(match kind {
        Kind::Status => decode::<Status>(payload).map(|_| Status::WHAT)?,
        Kind::Reported => decode::<Reported>(payload).map(|_| Reported::WHAT)?,
        Kind::Desired => decode::<Desired>(payload).map(|_| Desired::WHAT)?,
        Kind::Telemetry => decode::<Telemetry>(payload).map(|_| Telemetry::WHAT)?,
        Kind::Event(_) => decode::<Event>(payload).map(|_| Event::WHAT)?,
        Kind::Command(_) => decode::<Command>(payload).map(|_| Command::WHAT)?,
        Kind::Ack => decode::<Ack>(payload).map(|_| Ack::WHAT)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reported() -> Reported {
        Reported {
            seq: 7,
            at_ms: 1_700_000_000_000,
            version: "0.2.0".into(),
            slot: "B".into(),
            board: "rpi5".into(),
            in_call: false,
            config_version: 3,
            update: UpdateReport {
                phase: UpdatePhase::HealthCheck,
                campaign: Some("c1".into()),
                target_version: "0.2.0".into(),
                detail: String::new(),
            },
            peripherals: BTreeMap::from([("camera".into(), "UVC 1080p".into())]),
            config_sources: BTreeMap::from([("audio.output_volume".into(), "fleet".into())]),
        }
    }

    #[test]
    fn payloads_round_trip() {
        let r = reported();
        assert_eq!(decode::<Reported>(&encode(&r)), Ok(r));
        let text = br#"{"seq":1,"at_ms":2,"version":"v","slot":"A","board":"sim","in_call":true,
            "config_version":0,"update":{"phase":"rolled_back","detail":"slot B failed its health check"},
            "field_of_a_newer_room":42}"#;
        let r: Reported = decode(text).unwrap();
        assert_eq!(r.update.phase, UpdatePhase::RolledBack);
        let c: Command = decode(br#"{"id":"c-1","expires_at_ms":5,"args":{"uri":"sip:a@b"}}"#).unwrap();
        assert_eq!(c.args["uri"], "sip:a@b");
    }

    #[test]
    fn bad_payloads_are_refused_and_named() {
        let too_big = vec![b' '; crate::MAX_PAYLOAD + 1];
        assert_eq!(decode::<Status>(&too_big), Err(MsgError::TooLarge(crate::MAX_PAYLOAD + 1)));
        let e = decode::<Reported>(b"{\"seq\":1}").unwrap_err().to_string();
        assert!(e.starts_with("payload is not a valid reported state: missing field"), "{e}");
        let e = decode::<Ack>(br#"{"id":"x","state":"maybe"}"#).unwrap_err().to_string();
        assert!(e.contains("unknown variant"), "{e}");
        let mut r = reported();
        r.update.detail = "x".repeat(MAX_STRING + 1);
        let e = decode::<Reported>(&encode(&r)).unwrap_err().to_string();
        assert!(e.contains("update.detail is 4097 long"), "{e}");
        let e = decode::<Desired>(
            br#"{"config_version":1,"bundle":{"campaign":"c","version":"v","url":"http://x/b.raucb"}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("is not https://"), "{e}");
        let args: BTreeMap<String, String> = (0..=MAX_ENTRIES).map(|i| (i.to_string(), String::new())).collect();
        let c = Command { id: "1".into(), expires_at_ms: 0, args };
        assert!(matches!(decode::<Command>(&encode(&c)), Err(MsgError::Bound { .. })));
        // Deep nesting stops at serde_json's recursion limit, never a stack overflow.
        let deep =
            format!("{{\"id\":\"1\",\"expires_at_ms\":0,\"args\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(decode::<Command>(deep.as_bytes()).is_err());
    }
}
