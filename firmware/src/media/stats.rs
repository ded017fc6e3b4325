//! Per-call statistics from the RTP session (rtpbin's internal `RTPSession` and its sources).

use gstreamer as gst;

use super::AudioCodec;

/// Statistics of one call's audio, for the `Stats` property of `org.huis.Call1`.
#[derive(Debug, Clone, PartialEq)]
pub struct CallStats {
    pub codec: AudioCodec,
    /// RTP packets we sent (audio and telephone-events).
    pub packets_sent: u64,
    pub octets_sent: u64,
    /// RTP packets received from the remote.
    pub packets_received: u64,
    pub octets_received: u64,
    /// Packets of the remote's stream that never arrived (expected minus received, RFC 3550 A.3).
    pub packets_lost: u64,
    /// Interarrival jitter of the remote's stream as we measure it, in ms.
    pub jitter_ms: f64,
    /// Round-trip time from the remote's last receiver report about us (LSR/DLSR), in ms.
    pub rtt_ms: Option<f64>,
    /// Our sending bitrate estimate in kbit/s (RTP payload and headers).
    pub bitrate_kbps: f64,
    /// What the remote's last receiver report says it lost of our stream.
    pub remote_packets_lost: Option<u64>,
    /// What the remote's last receiver report says is the jitter of our stream, in ms.
    pub remote_jitter_ms: Option<f64>,
    /// RTCP packets received: they keep arriving on hold, and their absence means the peer is gone.
    pub rtcp_received: u64,
    /// Packets padded with silence because the DSP thread was late delivering near-end audio.
    pub tx_underruns: u64,
    /// Times far-end playout ran dry and re-buffered (audible as a short gap).
    pub rx_underruns: u64,
}

impl CallStats {
    pub(crate) fn empty(codec: AudioCodec) -> Self {
        CallStats {
            codec,
            packets_sent: 0,
            octets_sent: 0,
            packets_received: 0,
            octets_received: 0,
            packets_lost: 0,
            jitter_ms: 0.0,
            rtt_ms: None,
            bitrate_kbps: 0.0,
            remote_packets_lost: None,
            remote_jitter_ms: None,
            rtcp_received: 0,
            tx_underruns: 0,
            rx_underruns: 0,
        }
    }

    /// Fold the `stats` structure of an `RTPSession` into call statistics.
    /// `send_clock_rate` converts the remote's report of our jitter (in our RTP clock units).
    pub(crate) fn from_session_stats(codec: AudioCodec, stats: &gst::StructureRef, send_clock_rate: u32) -> Self {
        let mut out = CallStats::empty(codec);
        let Ok(sources) = stats.get::<gst::glib::ValueArray>("source-stats") else {
            return out;
        };
        for v in sources.as_slice() {
            let Ok(s) = v.get::<gst::Structure>() else {
                continue;
            };
            if flag(&s, "internal") {
                out.packets_sent += num(&s, "packets-sent").unwrap_or(0.0) as u64;
                out.octets_sent += num(&s, "octets-sent").unwrap_or(0.0) as u64;
                out.bitrate_kbps += num(&s, "bitrate").unwrap_or(0.0) / 1000.0;
                continue;
            }
            out.packets_received += num(&s, "packets-received").unwrap_or(0.0) as u64;
            out.octets_received += num(&s, "octets-received").unwrap_or(0.0) as u64;
            out.packets_lost += num(&s, "packets-lost").unwrap_or(0.0).max(0.0) as u64;
            if let (Some(j), Some(rate)) = (num(&s, "jitter"), num(&s, "clock-rate"))
                && rate > 0.0
            {
                out.jitter_ms = out.jitter_ms.max(j * 1000.0 / rate);
            }
            if flag(&s, "have-rb") {
                // Compact NTP: 1/65536 s. 0 means the remote had no SR of ours to refer to yet.
                if let Some(rtt) = num(&s, "rb-round-trip").filter(|&r| r > 0.0) {
                    out.rtt_ms = Some(rtt * 1000.0 / 65536.0);
                }
                if let Some(lost) = num(&s, "rb-packetslost") {
                    out.remote_packets_lost = Some(lost.max(0.0) as u64);
                }
                if let Some(j) = num(&s, "rb-jitter")
                    && send_clock_rate > 0
                {
                    out.remote_jitter_ms = Some(j * 1000.0 / f64::from(send_clock_rate));
                }
            }
        }
        out
    }
}

fn flag(s: &gst::StructureRef, field: &str) -> bool {
    s.get::<bool>(field).unwrap_or(false)
}

/// A numeric field whatever its integer type (the fields mix guint, gint, guint64 and gint64).
fn num(s: &gst::StructureRef, field: &str) -> Option<f64> {
    let v = s.value(field).ok()?;
    v.get::<u64>()
        .map(|x| x as f64)
        .or_else(|_| v.get::<u32>().map(f64::from))
        .or_else(|_| v.get::<i32>().map(f64::from))
        .or_else(|_| v.get::<i64>().map(|x| x as f64))
        .or_else(|_| v.get::<f64>())
        .ok()
}
