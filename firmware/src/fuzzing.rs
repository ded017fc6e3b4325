//! Entry points for `cargo fuzz` (see `../fuzz/`): the firmware's own parsers of outside input
//! on arbitrary bytes. None of them may panic, hang or allocate without bound, whatever the
//! bytes hold; the fuzz targets and their kept crash inputs check it.

/// The configuration file, and `huis.Room1.SetConfig`-style `key=value` edits of it.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(c) = crate::config::Config::parse("fuzz.toml", text) {
        let _ = c.validate();
    }
    // First line: `key=value` applied to the rest as the current file.
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    if let Some((key, value)) = first.split_once('=') {
        let _ = crate::config::apply_set(rest, key, value);
    }
}

/// Dial strings and destinations as D-Bus callers and the configuration give them.
pub fn destination(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::call::Destination::parse(text);
    }
}

/// RTCP feedback we parse ourselves: REMB, TMMBR entries, and the TMMBN we build from them.
pub fn rtcp_feedback(data: &[u8]) {
    let ssrc = data.get(..4).map_or(0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]));
    let fci = data.get(4..).unwrap_or_default();
    let _ = crate::media::video::fuzz_tmmbr(fci, ssrc);
}

/// What conference servers send: Janus events (JSON) and WHIP/WHEP SDP answers.
pub fn webrtc_signalling(data: &[u8]) {
    crate::proto::webrtc::fuzz_signalling(data);
}
