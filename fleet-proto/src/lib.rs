//! The huis fleet's contract and its update campaign, without I/O.
//!
//! Two programs speak MQTT 5 to each other through a broker: the fleet agent inside each room's
//! huisd, and the fleet service's workers. What they may say, and where, is this crate:
//!
//! - [`topic`]: the versioned topic tree `huis/v1/<room-id>/…`, parsed and built, bounded.
//! - [`msg`]: the payloads (status, reported and desired state, telemetry, events, commands and
//!   their acknowledgements) as typed JSON, decoded with a size limit and checked.
//! - [`campaign`]: a staged update campaign as a state machine fed with the rooms' reports and
//!   the clock: which rooms to update next, when a group is done, when to halt.
//!
//! Like `huis-sip` and `huis-bfcp` it does no I/O (no sockets, files, tasks or clock), so that the
//! room agent, the service, the fleet simulator and the tests all drive the same code.

pub mod campaign;
pub mod msg;
pub mod topic;

/// Every payload on the fleet's topics is at most this long; larger ones are refused unread.
/// (Screenshots and logs go to the fleet service over HTTPS, not through the broker.)
pub const MAX_PAYLOAD: usize = 64 * 1024;

/// The fuzz target's entry (`fuzz/fuzz_targets/fleet.rs`): a topic, a newline, a payload, as the
/// broker delivers them to a worker or a room. Decodes both; a decoded payload must encode again.
pub fn fuzz(data: &[u8]) {
    let (topic, payload) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let Ok(topic) = std::str::from_utf8(topic) else { return };
    if let Ok(t) = topic::Topic::parse(topic) {
        assert_eq!(topic::Topic::parse(&t.to_string()).as_ref(), Ok(&t), "a parsed topic prints back the same");
        let _ = msg::decode_any(&t.kind, payload);
    }
    if let Ok(r) = msg::decode::<msg::Reported>(payload) {
        assert_eq!(msg::decode::<msg::Reported>(&msg::encode(&r)).map(|x| x.seq), Ok(r.seq));
    }
}
