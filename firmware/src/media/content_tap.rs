//! The content input handed from the [`super::screen::ContentFeed`] to the call's slides stream
//! without an inter channel's clock in between.
//!
//! `intervideosrc` reads its channel when it makes a frame and then waits for that frame's time
//! on the clock: every frame it gives is one to two frame periods old (100 to 200 ms at the
//! slides' 10 fps), measured by `bench/content-quality.sh`. So the feed also hands each frame to
//! an `appsink`, whose callback pushes it at once into the `appsrc` the slides session names
//! [`TAP_NAME`] (its source is [`TAP_SOURCE`]). One feed and one slides session run at a time
//! (one content input, one call presenting), so one process-wide slot joins them.

use std::sync::Mutex;

use gstreamer as gst;
use gstreamer_app as gst_app;

use gst::prelude::*;

/// The name of the slides session's `appsrc`.
pub const TAP_NAME: &str = "huis-content-tap";
/// The slides session's source: live, stamped on arrival, the freshest two frames at most.
pub const TAP_SOURCE: &str =
    "appsrc name=huis-content-tap is-live=true do-timestamp=true format=time max-buffers=2 leaky-type=downstream";

static TAP: Mutex<Option<gst::glib::WeakRef<gst_app::AppSrc>>> = Mutex::new(None);

/// Makes `el` (the `appsrc` named [`TAP_NAME`]) the receiver of the feed's frames.
pub(crate) fn attach(el: &gst::Element) {
    if let Some(src) = el.downcast_ref::<gst_app::AppSrc>() {
        *TAP.lock().unwrap_or_else(|e| e.into_inner()) = Some(src.downgrade());
    }
}

/// Passes one frame of the feed on, with its caps (the input may change size), restamped by the
/// receiving `appsrc` on arrival. Nothing happens while no slides session listens.
pub(crate) fn push(sample: &gst::Sample) {
    let src = TAP.lock().unwrap_or_else(|e| e.into_inner()).as_ref().and_then(|w| w.upgrade());
    let (Some(src), Some(buf)) = (src, sample.buffer()) else { return };
    if let Some(caps) = sample.caps()
        && src.caps().as_ref().is_none_or(|c| c.as_ref() != caps)
    {
        src.set_caps(Some(&caps.to_owned()));
    }
    let mut b = buf.copy();
    {
        let b = b.make_mut();
        b.set_pts(gst::ClockTime::NONE);
        b.set_dts(gst::ClockTime::NONE);
    }
    let _ = src.push_buffer(b);
}
