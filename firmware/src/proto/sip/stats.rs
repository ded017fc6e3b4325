//! The figures of a call's media under the names `Call1.Stats` and `Video1.Stats` use.

use std::collections::HashMap;

use crate::media::{CallStats, VideoStats};

pub fn stats_map(s: &CallStats) -> HashMap<String, f64> {
    let mut m = HashMap::new();
    m.insert("packets_sent".into(), s.packets_sent as f64);
    m.insert("packets_received".into(), s.packets_received as f64);
    m.insert("packets_lost".into(), s.packets_lost as f64);
    m.insert("jitter_ms".into(), s.jitter_ms);
    m.insert("bitrate_kbps".into(), s.bitrate_kbps);
    m.insert("rtcp_received".into(), s.rtcp_received as f64);
    if let Some(r) = s.rtt_ms {
        m.insert("rtt_ms".into(), r);
    }
    if let Some(l) = s.remote_packets_lost {
        m.insert("remote_packets_lost".into(), l as f64);
    }
    m
}

/// The figures of a call's video, for Video1.Stats and (prefixed `video_`) Call1.Stats.
pub fn video_stats_map(s: &VideoStats) -> HashMap<String, f64> {
    let mut m = HashMap::new();
    for (k, v) in [
        ("send_width", f64::from(s.send_width)),
        ("send_height", f64::from(s.send_height)),
        ("frames_sent", s.frames_sent as f64),
        ("keyframes_sent", s.keyframes_sent as f64),
        ("frames_decoded", s.frames_decoded as f64),
        ("recv_width", f64::from(s.recv_width)),
        ("recv_height", f64::from(s.recv_height)),
        ("keyframe_requests_received", s.keyframe_requests_received as f64),
        ("keyframe_requests_answered", s.keyframe_requests_answered as f64),
        ("keyframe_answer_max_ms", s.keyframe_answer_max_ms as f64),
        ("keyframe_requests_sent", s.keyframe_requests_sent as f64),
        ("bitrate_kbps", f64::from(s.bitrate_kbps)),
        ("remb_kbps", f64::from(s.remb_kbps)),
        ("tmmbr_kbps", f64::from(s.tmmbr_kbps)),
        ("remote_loss_percent", s.remote_loss_percent),
        ("packets_received", s.packets_received as f64),
        ("bytes_received", s.bytes_received as f64),
        ("packets_lost", s.packets_lost as f64),
        ("retransmissions_requested", s.retransmissions_requested as f64),
        ("retransmissions_received", s.retransmissions_received as f64),
        ("packets_unrepaired", s.packets_unrepaired as f64),
        ("retransmission_rtt_ms", s.retransmission_rtt_ms),
        ("retransmission_requests_received", s.retransmission_requests_received as f64),
        ("retransmissions_sent", s.retransmissions_sent as f64),
        ("packets_late", s.packets_late as f64),
        ("jitter_buffer_ms", f64::from(s.jitter_buffer_ms)),
    ] {
        m.insert(k.to_string(), v);
    }
    m
}
