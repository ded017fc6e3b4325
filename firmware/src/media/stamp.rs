//! Capture-time stamps for glass-to-glass benchmarks (`firmware/examples/video_latency.rs`, the
//! conference benchmark in `tests/tests/conference_latency.rs`): [`write`] puts the wall-clock
//! time (ms) into a captured I420 picture as 32 black/white blocks on the luma plane (24 bits of
//! time, 8 check bits); [`read`] gets it back from a picture further down the line, and
//! [`latency_ms`] turns it into a latency sample. Calls never use it.
//!
//! The blocks' place and size are fractions of the picture (24-px blocks at x = 64, y = 200 in
//! 1280×720), so they are still found after the picture was scaled to fill the screen.

use std::time::{SystemTime, UNIX_EPOCH};

use gstreamer as gst;
use gstreamer_video as gst_video;
use gstreamer_video::prelude::*;

const BITS: usize = 32;

/// Left edge, top edge and size of the blocks in a `w`×`h` picture.
fn geometry(w: usize, h: usize) -> (usize, usize, usize) {
    (w * 64 / 1280, h * 200 / 720, (w * 24 / 1280).max(4))
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as u64
}

fn code_of(ms: u64) -> u32 {
    let t = (ms & 0xff_ffff) as u32;
    t | ((((t & 0xff) ^ ((t >> 8) & 0xff) ^ 0xa5) & 0xff) << 24)
}

fn decode(code: u32) -> Option<u32> {
    let t = code & 0xff_ffff;
    ((code >> 24) == ((t & 0xff) ^ ((t >> 8) & 0xff) ^ 0xa5)).then_some(t)
}

/// Writes the time now into `buf` (an I420 picture described by `info`); the signature of a
/// [`super::video::CaptureHook`].
pub fn write(buf: &mut gst::BufferRef, info: &gst_video::VideoInfo) {
    let code = code_of(now_ms());
    let (x0, y0, block) = geometry(info.width() as usize, info.height() as usize);
    let Ok(mut frame) = gst_video::VideoFrameRef::from_buffer_ref_writable(buf, info) else { return };
    let stride = frame.comp_stride(0) as usize;
    let Ok(y) = frame.plane_data_mut(0) else { return };
    for bit in 0..BITS {
        let v = if code >> bit & 1 == 1 { 235 } else { 16 };
        for row in y0..y0 + block {
            let start = row * stride + x0 + bit * block;
            if let Some(px) = y.get_mut(start..start + block) {
                px.fill(v);
            }
        }
    }
}

/// The stamp (ms, modulo 2^24) in an I420 picture, if its check bits match.
pub fn read(buf: &gst::BufferRef, caps: &gst::Caps) -> Option<u32> {
    let info = gst_video::VideoInfo::from_caps(caps).ok()?;
    if info.format() != gst_video::VideoFormat::I420 {
        return None;
    }
    let (x0, y0, block) = geometry(info.width() as usize, info.height() as usize);
    let frame = gst_video::VideoFrameRef::from_buffer_ref_readable(buf, &info).ok()?;
    let stride = frame.comp_stride(0) as usize;
    let y = frame.plane_data(0).ok()?;
    let mut code = 0u32;
    for bit in 0..BITS {
        let centre = (y0 + block / 2) * stride + x0 + bit * block + block / 2;
        if *y.get(centre)? > 128 {
            code |= 1 << bit;
        }
    }
    decode(code)
}

/// Milliseconds from the stamp in `buf` to now; `None` without a readable stamp (or an
/// implausible one, 10 s or more).
pub fn latency_ms(buf: &gst::BufferRef, caps: &gst::Caps) -> Option<u32> {
    let t = read(buf, caps)?;
    let now = (now_ms() & 0xff_ffff) as u32;
    let d = now.wrapping_sub(t) & 0xff_ffff;
    (d < 10_000).then_some(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamp_reads_back_at_720p_and_360p() {
        gst::init().unwrap();
        for (w, h) in [(1280u32, 720u32), (640, 360)] {
            let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, w, h).build().unwrap();
            let mut buf = gst::Buffer::with_size(info.size()).unwrap();
            write(buf.get_mut().unwrap(), &info);
            let caps = info.to_caps().unwrap();
            let d = latency_ms(&buf, &caps).expect("stamp read back");
            assert!(d < 1000, "{d}");
        }
        // A black picture: the check bits do not match.
        let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, 640, 360).build().unwrap();
        let buf = gst::Buffer::from_mut_slice(vec![0u8; info.size()]);
        assert_eq!(read(&buf, &info.to_caps().unwrap()), None);
    }
}
