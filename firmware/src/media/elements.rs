//! GStreamer plumbing shared by the call's audio ([`super::session`]) and video
//! ([`super::video`]) pipelines and their RTP transport ([`super::rtp`]): creating elements
//! with an error that names the Debian package to install, linking, SSRCs.

use gstreamer as gst;

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
        "srtpenc" | "srtpdec" | "dtlssrtpenc" | "dtlssrtpdec" | "h264parse" | "intervideosink" | "intervideosrc"
        | "compositor" => "gstreamer1.0-plugins-bad",
        _ => "gstreamer1.0-plugins-good",
    }
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

pub(super) fn request_pad(el: &gst::Element, name: &str) -> Result<gst::Pad, MediaError> {
    el.request_pad_simple(name).ok_or_else(|| MediaError::Pipeline(format!("{} has no pad {name}", el.name())))
}

pub(super) fn static_pad(el: &gst::Element, name: &str) -> Result<gst::Pad, MediaError> {
    el.static_pad(name).ok_or_else(|| MediaError::Pipeline(format!("{} has no pad {name}", el.name())))
}

/// A random SSRC (RFC 3550 §8.1), different for every stream of the process.
pub(super) fn random_ssrc() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos());
    h.finish() as u32
}
