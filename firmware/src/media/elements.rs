//! GStreamer plumbing shared by the call's audio ([`super::session`]) and video
//! ([`super::video`]) pipelines: creating elements with an error that names the Debian
//! package to install, UDP elements on sockets we bound ourselves, linking, SSRCs.

use std::net::SocketAddr;
use std::os::fd::OwnedFd;

use gstreamer as gst;

use gio::prelude::*;
use gst::prelude::*;

use super::MediaError;

/// Creates `factory`; if GStreamer lacks it, the error says what it was for and which
/// Debian package provides it.
pub(super) fn make(factory: &'static str, purpose: &'static str) -> Result<gst::Element, MediaError> {
    gst::ElementFactory::make(factory).build().map_err(|_| MediaError::MissingElement {
        element: factory,
        purpose,
        package: package_of(factory),
    })
}

/// The Debian 12 package that ships `factory`, for the elements huis uses.
fn package_of(factory: &str) -> &'static str {
    match factory {
        "avenc_g722" | "avdec_g722" | "avdec_h264" => "gstreamer1.0-libav",
        "x264enc" => "gstreamer1.0-plugins-ugly",
        "opusenc" | "opusdec" | "audioconvert" | "audioresample" | "appsrc" | "appsink" | "videoconvert"
        | "videoscale" | "videotestsrc" => "gstreamer1.0-plugins-base",
        "textoverlay" | "clockoverlay" => "gstreamer1.0-x",
        "valve" | "funnel" | "fakesink" => "libgstreamer1.0-0",
        "srtpenc" | "srtpdec" | "h264parse" | "intervideosink" | "intervideosrc" | "compositor" => {
            "gstreamer1.0-plugins-bad"
        }
        _ => "gstreamer1.0-plugins-good",
    }
}

/// A GIO socket over a UDP socket we bound (so the port is the one SDP announced).
pub(super) fn gio_socket(s: std::net::UdpSocket) -> Result<gio::Socket, MediaError> {
    let addr = s.local_addr().map_err(MediaError::pipeline)?;
    gio::Socket::from_fd(OwnedFd::from(s)).map_err(|e| MediaError::Bind { addr, reason: e.to_string() })
}

/// `udpsink` sending from `socket` to `to`, without clock sync or multicast.
pub(super) fn udp_sink(socket: &gio::Socket, to: SocketAddr) -> Result<gst::Element, MediaError> {
    let sink = make("udpsink", "UDP sender")?;
    sink.set_property(if to.is_ipv4() { "socket" } else { "socket-v6" }, socket);
    sink.set_property("close-socket", false);
    sink.set_property("host", to.ip().to_string());
    sink.set_property("port", i32::from(to.port()));
    sink.set_property("sync", false);
    sink.set_property("async", false);
    sink.set_property("auto-multicast", false);
    Ok(sink)
}

/// `udpsrc` reading `socket`, its packets typed as `caps`.
pub(super) fn udp_src(socket: &gio::Socket, caps: &gst::Caps) -> Result<gst::Element, MediaError> {
    let src = make("udpsrc", "UDP receiver")?;
    src.set_property("socket", socket);
    src.set_property("close-socket", false);
    src.set_property("caps", caps);
    Ok(src)
}

/// `rtpbin` as both call pipelines use it: jitter buffer of `jitter`, sessions removed with
/// their sources, and our CNAME (RFC 3550 SDES) with the tool name.
pub(super) fn rtpbin(jitter: std::time::Duration, cname: &str) -> Result<gst::Element, MediaError> {
    let rtpbin = make("rtpbin", "RTP session manager")?;
    rtpbin.set_property("latency", jitter.as_millis().clamp(1, 10_000) as u32);
    rtpbin.set_property("autoremove", true);
    rtpbin.set_property(
        "sdes",
        gst::Structure::builder("application/x-rtp-source-sdes").field("cname", cname).field("tool", "huis").build(),
    );
    Ok(rtpbin)
}

pub(super) fn link(a: &gst::Element, b: &gst::Element) -> Result<(), MediaError> {
    a.link(b).map_err(|_| MediaError::Pipeline(format!("cannot link {} to {}", a.name(), b.name())))
}

pub(super) fn link_chain(els: &[&gst::Element]) -> Result<(), MediaError> {
    els.windows(2).try_for_each(|w| link(w[0], w[1]))
}

pub(super) fn link_pads(src: &gst::Pad, sink: &gst::Pad) -> Result<(), MediaError> {
    src.link(sink)
        .map(|_| ())
        .map_err(|e| MediaError::Pipeline(format!("cannot link pad {} to {}: {e:?}", src.name(), sink.name())))
}

/// A random SSRC (RFC 3550 §8.1), different for every stream of the process.
pub(super) fn random_ssrc() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    h.finish() as u32
}
