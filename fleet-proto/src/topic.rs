//! The topic tree, version 1. Every room has its own subtree, named by its room id, which is
//! also the common name of its certificate: the broker's pattern ACLs (`%u` with
//! `use_identity_as_username`) then confine a room to `huis/v1/<its id>/#`.
//!
//! | topic | from | retained | QoS | what |
//! | --- | --- | --- | --- | --- |
//! | `huis/v1/ROOM/status` | room (and its Last Will) | yes | 1 | online or offline |
//! | `huis/v1/ROOM/state/reported` | room | yes | 1 | version, slots, board, in a call, config version, update phase |
//! | `huis/v1/ROOM/state/desired` | service | yes | 1 | configuration and target bundle; the room never writes it |
//! | `huis/v1/ROOM/telemetry` | room | no | 0 | levels, CPU, temperature, per-call quality |
//! | `huis/v1/ROOM/event/KIND` | room | no | 1 | call started/ended, errors, update steps |
//! | `huis/v1/ROOM/cmd/NAME` | service | no | 1 | a command, with correlation data and an expiry |
//! | `huis/v1/ROOM/ack` | room | no | 1 | accepted, then done or failed, per command |

use std::fmt;

/// The first two levels of every topic of this contract.
pub const PREFIX: &str = "huis/v1/";

/// Longest room id: the name of a certificate and of a topic level, so short and plain.
pub const MAX_ROOM_ID: usize = 64;

/// Longest event kind or command name.
pub const MAX_NAME: usize = 32;

/// A room id: 1–64 characters of `a-z`, `0-9` and `-`, not starting or ending with `-`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RoomId(String);

impl RoomId {
    pub fn new(id: &str) -> Result<RoomId, TopicError> {
        let ok = !id.is_empty()
            && id.len() <= MAX_ROOM_ID
            && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !id.starts_with('-')
            && !id.ends_with('-');
        if ok { Ok(RoomId(id.to_owned())) } else { Err(TopicError::RoomId(excerpt(id))) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a topic of the contract is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Status,
    Reported,
    Desired,
    Telemetry,
    Event(String),
    Command(String),
    Ack,
}

/// A topic of the contract: a room and what about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topic {
    pub room: RoomId,
    pub kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic '{0}' is not under huis/v1/")]
    NotOurs(String),
    #[error("'{0}' is not a room id (1–64 characters of a-z, 0-9 and '-')")]
    RoomId(String),
    #[error("topic '{0}' names nothing of version 1 of the contract")]
    Unknown(String),
    #[error("'{0}' is not an event kind or command name (1–32 characters of a-z, 0-9 and '_')")]
    Name(String),
}

/// At most 80 characters of outside text, control characters escaped, for error messages.
pub(crate) fn excerpt(s: &str) -> String {
    let mut out: String = s.chars().take(80).flat_map(char::escape_debug).collect();
    if s.chars().count() > 80 {
        out.push('…');
    }
    out
}

fn name(s: &str) -> Result<String, TopicError> {
    let ok = !s.is_empty()
        && s.len() <= MAX_NAME
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok { Ok(s.to_owned()) } else { Err(TopicError::Name(excerpt(s))) }
}

impl Topic {
    pub fn new(room: RoomId, kind: Kind) -> Topic {
        Topic { room, kind }
    }

    /// Parses a topic a client received. Refuses anything outside the contract, wildcards
    /// included, without looking further than the contract's deepest level.
    pub fn parse(topic: &str) -> Result<Topic, TopicError> {
        let rest = topic.strip_prefix(PREFIX).ok_or_else(|| TopicError::NotOurs(excerpt(topic)))?;
        let mut levels = rest.splitn(4, '/');
        let room = RoomId::new(levels.next().unwrap_or_default())?;
        let kind = match (levels.next(), levels.next(), levels.next()) {
            (Some("status"), None, None) => Kind::Status,
            (Some("state"), Some("reported"), None) => Kind::Reported,
            (Some("state"), Some("desired"), None) => Kind::Desired,
            (Some("telemetry"), None, None) => Kind::Telemetry,
            (Some("event"), Some(k), None) => Kind::Event(name(k)?),
            (Some("cmd"), Some(c), None) => Kind::Command(name(c)?),
            (Some("ack"), None, None) => Kind::Ack,
            _ => return Err(TopicError::Unknown(excerpt(topic))),
        };
        Ok(Topic { room, kind })
    }

    /// Whether the room itself may publish here (the broker's ACL says the same: a room writes
    /// its status, reported state, telemetry, events and acks, and reads the rest).
    pub fn written_by_room(&self) -> bool {
        matches!(self.kind, Kind::Status | Kind::Reported | Kind::Telemetry | Kind::Event(_) | Kind::Ack)
    }

    /// Whether messages here are retained by the broker.
    pub fn retained(&self) -> bool {
        matches!(self.kind, Kind::Status | Kind::Reported | Kind::Desired)
    }

    /// The MQTT QoS of this topic: telemetry is QoS 0, everything else QoS 1.
    pub fn qos(&self) -> u8 {
        if self.kind == Kind::Telemetry { 0 } else { 1 }
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = &self.room;
        match &self.kind {
            Kind::Status => write!(f, "{PREFIX}{r}/status"),
            Kind::Reported => write!(f, "{PREFIX}{r}/state/reported"),
            Kind::Desired => write!(f, "{PREFIX}{r}/state/desired"),
            Kind::Telemetry => write!(f, "{PREFIX}{r}/telemetry"),
            Kind::Event(k) => write!(f, "{PREFIX}{r}/event/{k}"),
            Kind::Command(c) => write!(f, "{PREFIX}{r}/cmd/{c}"),
            Kind::Ack => write!(f, "{PREFIX}{r}/ack"),
        }
    }
}

/// The service's subscriptions: every room's reports, shared between the service's workers
/// (MQTT 5 shared subscriptions, so each message goes to one worker of the group).
pub fn service_subscriptions(group: &str) -> Vec<String> {
    ["status", "state/reported", "telemetry", "event/+", "ack"]
        .iter()
        .map(|t| format!("$share/{group}/{PREFIX}+/{t}"))
        .collect()
}

/// A room's subscriptions: its desired state and its commands.
pub fn room_subscriptions(room: &RoomId) -> Vec<String> {
    vec![format!("{PREFIX}{room}/state/desired"), format!("{PREFIX}{room}/cmd/+")]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_round_trips_and_says_who_writes_it() {
        let room = RoomId::new("paris-4-12").unwrap();
        for (kind, text, by_room, retained, qos) in [
            (Kind::Status, "huis/v1/paris-4-12/status", true, true, 1),
            (Kind::Reported, "huis/v1/paris-4-12/state/reported", true, true, 1),
            (Kind::Desired, "huis/v1/paris-4-12/state/desired", false, true, 1),
            (Kind::Telemetry, "huis/v1/paris-4-12/telemetry", true, false, 0),
            (Kind::Event("call_ended".into()), "huis/v1/paris-4-12/event/call_ended", true, false, 1),
            (Kind::Command("dial".into()), "huis/v1/paris-4-12/cmd/dial", false, false, 1),
            (Kind::Ack, "huis/v1/paris-4-12/ack", true, false, 1),
        ] {
            let t = Topic::new(room.clone(), kind);
            assert_eq!(t.to_string(), text);
            assert_eq!(Topic::parse(text), Ok(t.clone()));
            assert_eq!((t.written_by_room(), t.retained(), t.qos()), (by_room, retained, qos), "{text}");
        }
    }

    #[test]
    fn topics_outside_the_contract_are_refused_with_a_reason() {
        for (topic, want) in [
            ("huis/v2/a/status", "not under huis/v1/"),
            ("huis/v1/+/status", "not a room id"),
            ("huis/v1/#", "not a room id"),
            ("huis/v1/Room/status", "not a room id"),
            ("huis/v1/-a/status", "not a room id"),
            ("huis/v1/a/state", "names nothing"),
            ("huis/v1/a/state/reported/x", "names nothing"),
            ("huis/v1/a/cmd/", "not an event kind or command name"),
            ("huis/v1/a/cmd/Reboot", "not an event kind or command name"),
            ("huis/v1/a/event/x/y", "names nothing"),
        ] {
            let e = Topic::parse(topic).unwrap_err().to_string();
            assert!(e.contains(want), "{topic}: {e}");
        }
        let long = format!("huis/v1/{}/status", "a".repeat(65));
        assert!(Topic::parse(&long).is_err());
        let e = Topic::parse(&format!("x{}", "\n".repeat(10_000))).unwrap_err().to_string();
        assert!(e.len() < 200 && !e.contains('\n'), "{e}");
    }

    #[test]
    fn subscriptions_cover_what_each_side_reads() {
        let subs = service_subscriptions("workers");
        assert!(subs.contains(&"$share/workers/huis/v1/+/ack".to_string()));
        let room = RoomId::new("r1").unwrap();
        assert_eq!(room_subscriptions(&room), ["huis/v1/r1/state/desired", "huis/v1/r1/cmd/+"]);
    }
}
