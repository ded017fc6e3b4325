//! The content input: a laptop's screen coming in over HDMI, to be shared
//! into calls and shown on the room's screen.
//!
//! Two kinds of hardware carry it, both V4L2 capture devices:
//!
//! - an HDMI-to-CSI bridge (Toshiba TC358743 on a Raspberry Pi): the driver
//!   reports the incoming timings (`VIDIOC_QUERY_DV_TIMINGS`) and raises
//!   `V4L2_EVENT_SOURCE_CHANGE` when a cable is plugged, pulled or the laptop
//!   changes resolution ([`V4l2Content`] with [`V4l2Kind::DvTimings`]);
//! - a USB (UVC) capture dongle, which has no timings: its signal is the
//!   device being there, its modes are what it enumerates
//!   ([`V4l2Kind::Uvc`]).
//!
//! [`SimContent`] is the simulation: a slide deck of pages rendered here,
//! pixel for pixel reproducible from the page index ([`render_page`]), with
//! plug, unplug and resolution changes driven by methods. Its frames go
//! through the same GStreamer element kind as the real one (a live source of
//! raw video), so what is measured on the sim (sharpness of shared slides
//! after encoding) is measured on the same path.
//!
//! Signal changes are delivered to [`SignalSink`] callbacks (from a backend
//! thread, or from the sim's methods), like the buttons: the crate has no
//! async runtime.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gst::prelude::*;
use gstreamer as gst;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;

use crate::{HalError, Result};

// ---------------------------------------------------------------------------
// The model.

/// What kind of device carries the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentKind {
    /// An HDMI-to-CSI bridge with DV timings (TC358743).
    V4l2Dv,
    /// A USB (UVC) capture dongle.
    Uvc,
    /// The simulated slide deck.
    Sim,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentInfo {
    pub kind: ContentKind,
    /// Device path, or `sim`.
    pub device: String,
    /// What the driver calls the device (`unicam`, `USB Video: USB Video`).
    pub card: String,
    pub driver: String,
}

/// A video mode on the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoMode {
    pub width: u32,
    pub height: u32,
    /// Frames per second as a fraction: `fps_num / fps_den` (60000/1001 for 59.94).
    pub fps_num: u32,
    pub fps_den: u32,
    pub interlaced: bool,
}

impl VideoMode {
    pub fn progressive(width: u32, height: u32, fps: u32) -> Self {
        Self { width, height, fps_num: fps, fps_den: 1, interlaced: false }
    }

    /// Frames per second times 1000, rounded (59940 for 59.94).
    pub fn fps_milli(&self) -> u32 {
        if self.fps_den == 0 {
            return 0;
        }
        ((u64::from(self.fps_num) * 1000 + u64::from(self.fps_den) / 2) / u64::from(self.fps_den)) as u32
    }

    /// The time between two frames.
    pub fn frame_period(&self) -> Duration {
        if self.fps_num == 0 {
            return Duration::from_secs(1);
        }
        Duration::from_nanos(u64::from(self.fps_den) * 1_000_000_000 / u64::from(self.fps_num))
    }
}

/// What is on the input now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signal {
    /// Nothing plugged in, the source asleep, or a signal not yet stable.
    NoSignal,
    Active(VideoMode),
    /// A signal the device or the board cannot take (out of the bridge's
    /// range, beyond the board's limits); `reason` is for people.
    Unsupported {
        reason: String,
    },
}

/// Receives every change of [`Signal`]. Called from a backend thread, or
/// from the thread calling the sim's methods; it must not call back into
/// the source.
pub type SignalSink = Arc<dyn Fn(Signal) + Send + Sync>;

/// Limits the board puts on the input (a bridge on two CSI lanes cannot
/// take 1080p60; an encoder may not take 4K). `None` = no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ContentLimits {
    pub max_width: Option<u32>,
    pub max_height: Option<u32>,
    pub max_fps: Option<u32>,
}

impl ContentLimits {
    /// `Ok` when `mode` is within the limits, else why not.
    pub fn check(&self, mode: &VideoMode) -> std::result::Result<(), String> {
        if let Some(w) = self.max_width.filter(|&w| mode.width > w) {
            return Err(format!("{}x{} is wider than this board takes ({w} pixels)", mode.width, mode.height));
        }
        if let Some(h) = self.max_height.filter(|&h| mode.height > h) {
            return Err(format!("{}x{} is taller than this board takes ({h} lines)", mode.width, mode.height));
        }
        if let Some(f) = self.max_fps.filter(|&f| u64::from(mode.fps_milli()) > u64::from(f) * 1000 + 500) {
            return Err(format!(
                "{}.{:03} frames per second is more than this board takes ({f})",
                mode.fps_milli() / 1000,
                mode.fps_milli() % 1000
            ));
        }
        Ok(())
    }

    fn apply(&self, signal: Signal) -> Signal {
        match signal {
            Signal::Active(mode) => match self.check(&mode) {
                Ok(()) => Signal::Active(mode),
                Err(reason) => Signal::Unsupported { reason },
            },
            other => other,
        }
    }
}

pub trait ContentSource: Send + Sync {
    fn info(&self) -> Result<ContentInfo>;
    /// What is on the input now (asks the device).
    fn signal(&self) -> Result<Signal>;
    /// Calls `sink` at once with the current signal, then on every change,
    /// until the source is dropped.
    fn watch(&self, sink: SignalSink) -> Result<()>;
    /// A live GStreamer source of raw video of the current signal; fails
    /// with [`HalError::NoSignal`] when there is none. After a resolution
    /// change the element renegotiates (the sim) or must be rebuilt (V4L2:
    /// the caller tears the pipeline down on the change and builds a new one).
    fn gst_source(&self) -> Result<gst::Element>;
}

// ---------------------------------------------------------------------------
// Frames and the slide deck.

/// One I420 frame in GStreamer's default layout for `video/x-raw,format=I420`
/// (rows padded to 4 bytes, the luma plane padded to an even number of rows),
/// so its bytes are exactly a buffer's.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Frame({}x{}, {} bytes)", self.width, self.height, self.data.len())
    }
}

/// Strides and offsets of the three planes of an I420 frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct I420Layout {
    pub stride: [usize; 3],
    pub offset: [usize; 3],
    pub size: usize,
}

impl I420Layout {
    pub fn new(width: u32, height: u32) -> Self {
        let (w, h) = (width as usize, height as usize);
        let round4 = |x: usize| (x + 3) & !3;
        let h2 = (h + 1) & !1;
        let ys = round4(w);
        let cs = round4(w.div_ceil(2));
        let o1 = ys * h2;
        let o2 = o1 + cs * (h2 / 2);
        Self { stride: [ys, cs, cs], offset: [0, o1, o2], size: o2 + cs * (h2 / 2) }
    }
}

/// Limited-range colours (Y, Cb, Cr).
type Yuv = (u8, u8, u8);
const WHITE: Yuv = (235, 128, 128);
const BLACK: Yuv = (16, 128, 128);
const GREY: Yuv = (126, 128, 128);
/// Title bar and swatch colours, one per page in turn.
const PALETTE: [Yuv; 6] =
    [(50, 180, 110), (120, 90, 80), (80, 100, 200), (140, 70, 180), (70, 170, 170), (110, 150, 70)];

impl Frame {
    pub fn new(width: u32, height: u32) -> Self {
        let l = I420Layout::new(width, height);
        let mut data = vec![0u8; l.size];
        data[..l.offset[1]].fill(WHITE.0);
        data[l.offset[1]..].fill(128);
        Self { width, height, data }
    }

    pub fn layout(&self) -> I420Layout {
        I420Layout::new(self.width, self.height)
    }

    /// Luma at (x, y).
    pub fn luma(&self, x: u32, y: u32) -> u8 {
        let l = self.layout();
        self.data[y as usize * l.stride[0] + x as usize]
    }

    /// Fills the rectangle `[x0, x1) x [y0, y1)` (clipped); chroma covers
    /// every chroma sample the rectangle touches.
    fn fill(&mut self, x0: u32, y0: u32, x1: u32, y1: u32, c: Yuv) {
        let (x1, y1) = (x1.min(self.width), y1.min(self.height));
        if x0 >= x1 || y0 >= y1 {
            return;
        }
        let l = self.layout();
        for y in y0..y1 {
            let row = y as usize * l.stride[0];
            self.data[row + x0 as usize..row + x1 as usize].fill(c.0);
        }
        for cy in y0 / 2..y1.div_ceil(2) {
            for (p, v) in [(1, c.1), (2, c.2)] {
                let row = l.offset[p] + cy as usize * l.stride[p];
                self.data[row + (x0 / 2) as usize..row + x1.div_ceil(2) as usize].fill(v);
            }
        }
    }

    /// Writes `text` in the built-in 5x7 font, each font pixel `scale`
    /// pixels square, top-left at (x, y); returns the x after it.
    fn text(&mut self, x: u32, y: u32, scale: u32, text: &str, c: Yuv) -> u32 {
        let mut cx = x;
        for ch in text.chars() {
            let g = glyph(ch);
            for (row, bits) in g.iter().enumerate() {
                for col in 0..5 {
                    if bits & (0x10 >> col) != 0 {
                        let px = cx + col * scale;
                        let py = y + row as u32 * scale;
                        self.fill(px, py, px + scale, py + scale, c);
                    }
                }
            }
            cx += 6 * scale;
        }
        cx
    }

    /// Wraps a GStreamer buffer of I420 `width`x`height` in GStreamer's
    /// default layout (what [`SimContent`] produces, or a decoder's output
    /// after `videoconvert ! video/x-raw,format=I420`).
    pub fn from_bytes(width: u32, height: u32, bytes: &[u8]) -> Result<Frame> {
        let size = I420Layout::new(width, height).size;
        if bytes.len() < size {
            return Err(HalError::Gst(format!(
                "an I420 {width}x{height} frame is {size} bytes, the buffer has {}",
                bytes.len()
            )));
        }
        Ok(Frame { width, height, data: bytes[..size].to_vec() })
    }
}

/// Sentences on the pages (each page starts at a different one).
const SENTENCES: [&str; 8] = [
    "QUARTERLY NUMBERS: REVENUE UP 12 PERCENT",
    "ROADMAP: SHIP THE ROOM BOX BY MAY",
    "RISKS: SUPPLY OF CAMERA MODULES",
    "ACTION: REVIEW THE BUDGET WITH FINANCE",
    "DECISION: KEEP THE OPEN FIRMWARE",
    "NEXT MEETING: THURSDAY 10:30",
    "QUESTIONS? ASK IN THE CHAT OR OUT LOUD",
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
];

/// Bits of the page index code at the bottom of every page.
const CODE_BITS: u32 = 16;

/// Geometry of the index code: `CODE_BITS` cells in one row (black = 1),
/// and the same bits inverted in the row below, so a reader can tell a
/// deck page from anything else.
struct CodeGeometry {
    x0: u32,
    y0: u32,
    cell_w: u32,
    cell_h: u32,
}

fn code_geometry(w: u32, h: u32) -> CodeGeometry {
    let cell_w = (w / 40).max(2);
    let cell_h = (h / 40).max(2);
    CodeGeometry { x0: w / 20, y0: h - h / 20 - 2 * cell_h, cell_w, cell_h }
}

/// Renders page `index` of the simulated slide deck at `width`x`height`.
///
/// Pure integer drawing, no fonts of the system, so the same index and size
/// give the same bytes on every machine. A page has: a title bar in one of
/// six colours with `SLIDE n`, six lines of text at a scale that follows
/// the height (a font pixel is `height / 270` pixels), one line at one pixel
/// per font pixel (fine print, the first thing a soft encoder loses), four
/// notes at half the body's scale, a
/// wedge of black and white line pairs 1, 2, 3 and 4 pixels wide, six
/// colour swatches, and the page index as a 16-bit code in two rows of cells
/// (see [`page_index_of`]).
pub fn render_page(index: u32, width: u32, height: u32) -> Frame {
    let (w, h) = (width, height);
    let mut f = Frame::new(w, h);
    let s = (h / 270).max(1);
    let colour = PALETTE[index as usize % PALETTE.len()];

    // Title bar.
    let bar = (h / 8) & !1;
    f.fill(0, 0, w, bar, colour);
    let title = format!("SLIDE {}", index + 1);
    f.text(w / 20, bar.saturating_sub(14 * s) / 2, 2 * s, &title, WHITE);

    // Body text.
    let mut y = bar + h / 20;
    for n in 0..6u32 {
        let line = format!("{}. {}", n + 1, SENTENCES[(index + n) as usize % SENTENCES.len()]);
        f.text(w / 20, y, s, &line, if n == 0 { BLACK } else { GREY });
        y += 10 * s;
    }
    let fine = format!("FINE PRINT OF PAGE {index}: EVERY PIXEL OF THIS LINE IS ONE FONT PIXEL.");
    f.text(w / 20, y + 2 * s, 1, &fine, BLACK);

    // Notes at half the body's scale.
    let half = (s / 2).max(1);
    let mut y = y + 2 * s + 12;
    for n in 0..4u32 {
        let k = (index + 3 * n) as usize;
        let line = format!("NOTE {}: {} / 0123456789", n + 1, SENTENCES[k % SENTENCES.len()]);
        f.text(w / 20, y, half, &line, BLACK);
        y += 10 * half;
    }

    // Line pairs, widest on the right.
    let wedge_x = w * 3 / 4;
    let wedge_y = bar + h / 20;
    let band_w = (w / 5 / 4).max(8);
    for (b, pair) in (1..=4u32).enumerate() {
        let bx = wedge_x + b as u32 * band_w;
        for x in bx..bx + band_w {
            if ((x - bx) / pair) & 1 == 0 {
                f.fill(x, wedge_y, x + 1, wedge_y + h / 4, BLACK);
            }
        }
    }

    // Colour swatches.
    let sw_y = h * 5 / 8;
    let sw_w = w / 12;
    for (i, c) in PALETTE.iter().enumerate() {
        let x = w / 20 + i as u32 * sw_w;
        f.fill(x, sw_y, x + sw_w - sw_w / 8, sw_y + h / 12, *c);
    }

    // Index code.
    let g = code_geometry(w, h);
    for bit in 0..CODE_BITS {
        let on = (index >> bit) & 1 == 1;
        let x = g.x0 + bit * g.cell_w;
        let (top, bottom) = if on { (BLACK, WHITE) } else { (WHITE, BLACK) };
        f.fill(x, g.y0, x + g.cell_w, g.y0 + g.cell_h, top);
        f.fill(x, g.y0 + g.cell_h, x + g.cell_w, g.y0 + 2 * g.cell_h, bottom);
    }
    f
}

/// Reads the page index from the code at the bottom of a deck page, after
/// any amount of lossy coding that keeps cells of `width / 40` pixels
/// readable; `None` when the frame is not a deck page (the two rows of
/// cells must be each other's inverse).
pub fn page_index_of(frame: &Frame) -> Option<u32> {
    let g = code_geometry(frame.width, frame.height);
    let mean = |x0: u32, y0: u32| -> u32 {
        // The middle half of a cell, away from its edges.
        let (qx, qy) = ((g.cell_w / 4).max(1), (g.cell_h / 4).max(1));
        let (mut sum, mut n) = (0u32, 0u32);
        for y in y0 + qy..y0 + g.cell_h - qy {
            for x in x0 + qx..x0 + g.cell_w - qx {
                sum += u32::from(frame.luma(x, y));
                n += 1;
            }
        }
        sum / n.max(1)
    };
    let mid = (u32::from(WHITE.0) + u32::from(BLACK.0)) / 2;
    let mut index = 0;
    for bit in 0..CODE_BITS {
        let x = g.x0 + bit * g.cell_w;
        let top = mean(x, g.y0) < mid;
        let bottom = mean(x, g.y0 + g.cell_h) < mid;
        if top == bottom {
            return None;
        }
        if top {
            index |= 1 << bit;
        }
    }
    Some(index)
}

/// Luma PSNR in dB between two frames of the same size (infinite when equal).
pub fn psnr_luma(a: &Frame, b: &Frame) -> Option<f64> {
    if (a.width, a.height) != (b.width, b.height) {
        return None;
    }
    let stride = a.layout().stride[0];
    let mut sse = 0u64;
    for y in 0..a.height as usize {
        let row = y * stride;
        for x in 0..a.width as usize {
            let d = i64::from(a.data[row + x]) - i64::from(b.data[row + x]);
            sse += (d * d) as u64;
        }
    }
    if sse == 0 {
        return Some(f64::INFINITY);
    }
    let mse = sse as f64 / (f64::from(a.width) * f64::from(a.height));
    Some(10.0 * (255.0f64 * 255.0 / mse).log10())
}

/// Luma SSIM between two frames of the same size: the mean over 8×8 windows (a step of 4) of
/// Wang et al.'s SSIM with the usual constants (K1 = 0.01, K2 = 0.03, L = 255). 1 is equal.
pub fn ssim_luma(a: &Frame, b: &Frame) -> Option<f64> {
    if (a.width, a.height) != (b.width, b.height) || a.width < 8 || a.height < 8 {
        return None;
    }
    let stride = a.layout().stride[0];
    let (c1, c2) = ((0.01f64 * 255.0).powi(2), (0.03f64 * 255.0).powi(2));
    let (mut sum, mut n) = (0.0f64, 0u64);
    for y0 in (0..=a.height as usize - 8).step_by(4) {
        for x0 in (0..=a.width as usize - 8).step_by(4) {
            let (mut sa, mut sb, mut saa, mut sbb, mut sab) = (0u64, 0u64, 0u64, 0u64, 0u64);
            for y in y0..y0 + 8 {
                let row = y * stride;
                for x in x0..x0 + 8 {
                    let (p, q) = (u64::from(a.data[row + x]), u64::from(b.data[row + x]));
                    (sa, sb, saa, sbb, sab) = (sa + p, sb + q, saa + p * p, sbb + q * q, sab + p * q);
                }
            }
            let k = 64.0;
            let (ma, mb) = (sa as f64 / k, sb as f64 / k);
            let va = saa as f64 / k - ma * ma;
            let vb = sbb as f64 / k - mb * mb;
            let cov = sab as f64 / k - ma * mb;
            sum += ((2.0 * ma * mb + c1) * (2.0 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2));
            n += 1;
        }
    }
    Some(sum / n as f64)
}

/// The built-in 5x7 font: seven rows of five bits, the leftmost pixel in
/// bit 4. Lowercase is drawn as uppercase; anything else unknown as a space.
fn glyph(c: char) -> [u8; 7] {
    match c.to_ascii_uppercase() {
        'A' => [0b01110, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001],
        'B' => [0b11110, 0b10001, 0b10001, 0b11110, 0b10001, 0b10001, 0b11110],
        'C' => [0b01110, 0b10001, 0b10000, 0b10000, 0b10000, 0b10001, 0b01110],
        'D' => [0b11110, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b11110],
        'E' => [0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b11111],
        'F' => [0b11111, 0b10000, 0b10000, 0b11110, 0b10000, 0b10000, 0b10000],
        'G' => [0b01110, 0b10001, 0b10000, 0b10111, 0b10001, 0b10001, 0b01111],
        'H' => [0b10001, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001],
        'I' => [0b01110, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110],
        'J' => [0b00111, 0b00010, 0b00010, 0b00010, 0b00010, 0b10010, 0b01100],
        'K' => [0b10001, 0b10010, 0b10100, 0b11000, 0b10100, 0b10010, 0b10001],
        'L' => [0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b10000, 0b11111],
        'M' => [0b10001, 0b11011, 0b10101, 0b10101, 0b10001, 0b10001, 0b10001],
        'N' => [0b10001, 0b10001, 0b11001, 0b10101, 0b10011, 0b10001, 0b10001],
        'O' => [0b01110, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110],
        'P' => [0b11110, 0b10001, 0b10001, 0b11110, 0b10000, 0b10000, 0b10000],
        'Q' => [0b01110, 0b10001, 0b10001, 0b10001, 0b10101, 0b10010, 0b01101],
        'R' => [0b11110, 0b10001, 0b10001, 0b11110, 0b10100, 0b10010, 0b10001],
        'S' => [0b01111, 0b10000, 0b10000, 0b01110, 0b00001, 0b00001, 0b11110],
        'T' => [0b11111, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100],
        'U' => [0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01110],
        'V' => [0b10001, 0b10001, 0b10001, 0b10001, 0b10001, 0b01010, 0b00100],
        'W' => [0b10001, 0b10001, 0b10001, 0b10101, 0b10101, 0b10101, 0b01010],
        'X' => [0b10001, 0b10001, 0b01010, 0b00100, 0b01010, 0b10001, 0b10001],
        'Y' => [0b10001, 0b10001, 0b01010, 0b00100, 0b00100, 0b00100, 0b00100],
        'Z' => [0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b11111],
        '0' => [0b01110, 0b10001, 0b10011, 0b10101, 0b11001, 0b10001, 0b01110],
        '1' => [0b00100, 0b01100, 0b00100, 0b00100, 0b00100, 0b00100, 0b01110],
        '2' => [0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b01000, 0b11111],
        '3' => [0b11111, 0b00010, 0b00100, 0b00010, 0b00001, 0b10001, 0b01110],
        '4' => [0b00010, 0b00110, 0b01010, 0b10010, 0b11111, 0b00010, 0b00010],
        '5' => [0b11111, 0b10000, 0b11110, 0b00001, 0b00001, 0b10001, 0b01110],
        '6' => [0b00110, 0b01000, 0b10000, 0b11110, 0b10001, 0b10001, 0b01110],
        '7' => [0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b01000, 0b01000],
        '8' => [0b01110, 0b10001, 0b10001, 0b01110, 0b10001, 0b10001, 0b01110],
        '9' => [0b01110, 0b10001, 0b10001, 0b01111, 0b00001, 0b00010, 0b01100],
        ':' => [0b00000, 0b01100, 0b01100, 0b00000, 0b01100, 0b01100, 0b00000],
        '.' => [0b00000, 0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b01100],
        ',' => [0b00000, 0b00000, 0b00000, 0b00000, 0b01100, 0b00100, 0b01000],
        '-' => [0b00000, 0b00000, 0b00000, 0b11111, 0b00000, 0b00000, 0b00000],
        '/' => [0b00000, 0b00001, 0b00010, 0b00100, 0b01000, 0b10000, 0b00000],
        '?' => [0b01110, 0b10001, 0b00001, 0b00010, 0b00100, 0b00000, 0b00100],
        _ => [0; 7],
    }
}

// ---------------------------------------------------------------------------
// The simulation.

/// How the simulated deck starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimContentConfig {
    /// The signal at start; `None` = nothing plugged in.
    pub mode: Option<VideoMode>,
    /// How long each page is shown.
    pub page_interval: Duration,
    /// Pages in the deck; after the last the first comes again.
    pub pages: u32,
    /// The board's limits: a larger mode is plugged as `Unsupported`, as
    /// the real backends report it.
    pub limits: ContentLimits,
}

impl Default for SimContentConfig {
    fn default() -> Self {
        Self {
            mode: Some(VideoMode::progressive(1920, 1080, 15)),
            page_interval: Duration::from_secs(5),
            pages: 10,
            limits: ContentLimits::default(),
        }
    }
}

struct SimState {
    signal: Signal,
    /// When the current signal became active (the deck restarts at page 0
    /// on every plug; a resolution change keeps the page).
    plugged_at: Instant,
    sinks: Vec<SignalSink>,
}

struct SimShared {
    state: Mutex<SimState>,
    page_interval: Duration,
    pages: u32,
    limits: ContentLimits,
}

impl SimShared {
    /// The page shown `elapsed` after the plug.
    fn page_at(&self, elapsed: Duration) -> u32 {
        let n = elapsed.as_millis() / self.page_interval.as_millis().max(1);
        (n % u128::from(self.pages.max(1))) as u32
    }
}

/// A laptop showing a slide deck, plugged into a simulated HDMI input.
///
/// The signal is changed with [`plug`](Self::plug) and
/// [`unplug`](Self::unplug) (the firmware drives them over D-Bus); every
/// change reaches the watchers in the order the calls were made. While
/// plugged, the GStreamer source shows page `(time since plug / interval)
/// mod pages` as [`render_page`] draws it at the current mode's size; while
/// unplugged it produces nothing, as a capture device without a signal.
pub struct SimContent {
    shared: Arc<SimShared>,
}

impl Default for SimContent {
    fn default() -> Self {
        Self::new(SimContentConfig::default()).expect("the default sim mode is valid")
    }
}

/// Sizes the sim takes (a real HDMI input sees 640x480 to 4K).
const SIM_MIN: (u32, u32) = (160, 120);
const SIM_MAX: (u32, u32) = (4096, 2160);

fn check_sim_mode(mode: &VideoMode) -> Result<()> {
    let bad = |reason: String| Err(HalError::Invalid { what: "simulated content mode", reason });
    if !(SIM_MIN.0..=SIM_MAX.0).contains(&mode.width) || !(SIM_MIN.1..=SIM_MAX.1).contains(&mode.height) {
        return bad(format!(
            "{}x{} is outside {}x{} to {}x{}",
            mode.width, mode.height, SIM_MIN.0, SIM_MIN.1, SIM_MAX.0, SIM_MAX.1
        ));
    }
    if mode.fps_num == 0 || mode.fps_den == 0 || mode.fps_milli() < 1000 || mode.fps_milli() > 120_000 {
        return bad(format!("{}/{} frames per second is outside 1 to 120", mode.fps_num, mode.fps_den));
    }
    if mode.interlaced {
        return bad("the simulated deck is progressive only".into());
    }
    Ok(())
}

impl SimContent {
    pub fn new(config: SimContentConfig) -> Result<Self> {
        if let Some(mode) = &config.mode {
            check_sim_mode(mode)?;
        }
        if config.pages == 0 || config.page_interval.is_zero() {
            return Err(HalError::Invalid {
                what: "simulated slide deck",
                reason: "needs at least one page and a page interval above zero".into(),
            });
        }
        let signal = config.limits.apply(config.mode.map_or(Signal::NoSignal, Signal::Active));
        Ok(Self {
            shared: Arc::new(SimShared {
                state: Mutex::new(SimState { signal, plugged_at: Instant::now(), sinks: Vec::new() }),
                page_interval: config.page_interval,
                pages: config.pages,
                limits: config.limits,
            }),
        })
    }

    /// Plugs a laptop in at `mode`, or changes the mode of the one plugged in.
    pub fn plug(&self, mode: VideoMode) -> Result<()> {
        check_sim_mode(&mode)?;
        let mut st = self.shared.state.lock().unwrap();
        if !matches!(st.signal, Signal::Active(_)) {
            st.plugged_at = Instant::now();
        }
        let signal = self.shared.limits.apply(Signal::Active(mode));
        set_signal(&mut st, signal);
        Ok(())
    }

    /// Pulls the cable.
    pub fn unplug(&self) {
        set_signal(&mut self.shared.state.lock().unwrap(), Signal::NoSignal);
    }

    /// The page shown now (`None` without a signal).
    pub fn current_page(&self) -> Option<u32> {
        let st = self.shared.state.lock().unwrap();
        matches!(st.signal, Signal::Active(_)).then(|| self.shared.page_at(st.plugged_at.elapsed()))
    }
}

/// Sets the signal and tells the watchers, under the state's lock so that
/// changes from several threads reach every watcher in one order.
fn set_signal(st: &mut SimState, signal: Signal) {
    if st.signal == signal {
        return;
    }
    st.signal = signal.clone();
    for sink in &st.sinks {
        sink(signal.clone());
    }
}

impl ContentSource for SimContent {
    fn info(&self) -> Result<ContentInfo> {
        Ok(ContentInfo {
            kind: ContentKind::Sim,
            device: "sim".into(),
            card: "huis simulated slide deck".into(),
            driver: "huis".into(),
        })
    }

    fn signal(&self) -> Result<Signal> {
        Ok(self.shared.state.lock().unwrap().signal.clone())
    }

    fn watch(&self, sink: SignalSink) -> Result<()> {
        let mut st = self.shared.state.lock().unwrap();
        sink(st.signal.clone());
        st.sinks.push(sink);
        Ok(())
    }

    /// An `appsrc` fed by a thread of its own at the mode's frame rate; it
    /// stops when the element is dropped. Buffers are timestamped with the
    /// pipeline's running time when pushed (a live source); at most two
    /// wait, older ones are dropped, so a slow consumer sees fresh pages.
    fn gst_source(&self) -> Result<gst::Element> {
        gst::init().map_err(|e| HalError::Gst(e.to_string()))?;
        let mode = match self.signal()? {
            Signal::Active(mode) => mode,
            Signal::NoSignal => return Err(HalError::NoSignal { device: "sim".into() }),
            Signal::Unsupported { reason } => return Err(HalError::Device { device: "sim".into(), reason }),
        };
        let src = gst_app::AppSrc::builder()
            .name("content-sim")
            .is_live(true)
            .format(gst::Format::Time)
            .do_timestamp(true)
            .max_buffers(2)
            .leaky_type(gst_app::AppLeakyType::Downstream)
            .caps(&i420_caps(&mode)?)
            .build();
        let weak = src.downgrade();
        let shared = self.shared.clone();
        std::thread::Builder::new()
            .name("content-sim".into())
            .spawn(move || feed(shared, weak))
            .map_err(|e| HalError::Gst(format!("cannot start the sim content thread: {e}")))?;
        Ok(src.upcast())
    }
}

fn i420_caps(mode: &VideoMode) -> Result<gst::Caps> {
    let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::I420, mode.width, mode.height)
        .fps(gst::Fraction::new(mode.fps_num as i32, mode.fps_den as i32))
        .par(gst::Fraction::new(1, 1))
        .build()
        .map_err(|e| HalError::Gst(format!("no I420 caps for {mode:?}: {e}")))?;
    info.to_caps().map_err(|e| HalError::Gst(e.to_string()))
}

/// Page index, width, height.
type PageKey = (u32, u32, u32);

/// The sim's frame pump: one frame per period while plugged, nothing while
/// unplugged; a page is rendered once and shared by its frames.
fn feed(shared: Arc<SimShared>, weak: gst::glib::WeakRef<gst_app::AppSrc>) {
    let mut caps_mode: Option<VideoMode> = None;
    let mut cached: Option<(PageKey, Arc<[u8]>)> = None;
    let mut next = Instant::now();
    loop {
        let Some(src) = weak.upgrade() else { return };
        let (signal, elapsed) = {
            let st = shared.state.lock().unwrap();
            (st.signal.clone(), st.plugged_at.elapsed())
        };
        let period = match signal {
            Signal::Active(mode) => {
                if caps_mode != Some(mode) {
                    match i420_caps(&mode) {
                        Ok(caps) => src.set_caps(Some(&caps)),
                        Err(e) => tracing::warn!("sim content: {e}"),
                    }
                    caps_mode = Some(mode);
                }
                let key = (shared.page_at(elapsed), mode.width, mode.height);
                let bytes = match &cached {
                    Some((k, b)) if *k == key => b.clone(),
                    _ => {
                        let b: Arc<[u8]> = render_page(key.0, key.1, key.2).data.into();
                        cached = Some((key, b.clone()));
                        b
                    }
                };
                let mut buf = gst::Buffer::from_slice(bytes);
                buf.get_mut()
                    .unwrap()
                    .set_duration(gst::ClockTime::from_nseconds(mode.frame_period().as_nanos() as u64));
                // Flushing (not playing yet, or stopped) drops the frame, as a live source does.
                let _ = src.push_buffer(buf);
                mode.frame_period()
            }
            _ => Duration::from_millis(20),
        };
        drop(src);
        next += period;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
}

// ---------------------------------------------------------------------------
// Linux: V4L2.
//
// The `v4l` crate (as the camera uses it) opens devices and issues ioctls,
// but knows neither DV timings nor events; their structures and request
// numbers are declared here from linux/videodev2.h, and their sizes are
// checked in the tests against the kernel's and the bindings'.

/// `struct v4l2_bt_timings` (packed, 124 bytes).
#[repr(C, packed)]
#[derive(Clone, Copy)]
pub struct V4l2BtTimings {
    pub width: u32,
    pub height: u32,
    pub interlaced: u32,
    pub polarities: u32,
    pub pixelclock: u64,
    pub hfrontporch: u32,
    pub hsync: u32,
    pub hbackporch: u32,
    pub vfrontporch: u32,
    pub vsync: u32,
    pub vbackporch: u32,
    pub il_vfrontporch: u32,
    pub il_vsync: u32,
    pub il_vbackporch: u32,
    pub standards: u32,
    pub flags: u32,
    pub picture_aspect: [u32; 2],
    pub cea861_vic: u8,
    pub hdmi_vic: u8,
    pub reserved: [u8; 46],
}

/// `struct v4l2_dv_timings` (packed, 132 bytes): a type and a 128-byte
/// union of which only `bt` is defined.
#[repr(C, packed)]
#[derive(Clone, Copy)]
pub struct V4l2DvTimings {
    pub type_: u32,
    pub bt: V4l2BtTimings,
    /// The rest of the union (`__u32 reserved[32]`).
    pub union_rest: [u8; 4],
}

/// `struct v4l2_event_subscription` (32 bytes).
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct V4l2EventSubscription {
    pub type_: u32,
    pub id: u32,
    pub flags: u32,
    pub reserved: [u32; 5],
}

/// `struct v4l2_event` (136 bytes on 64-bit Linux): the union holds an s64,
/// so it is 8-aligned.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct V4l2Event {
    pub type_: u32,
    pub u: [u64; 8],
    pub pending: u32,
    pub sequence: u32,
    pub timestamp: libc::timespec,
    pub id: u32,
    pub reserved: [u32; 8],
}

pub const V4L2_DV_BT_656_1120: u32 = 0;
pub const V4L2_DV_INTERLACED: u32 = 1;
/// `V4L2_DV_FL_REDUCED_FPS`: the source runs at 1000/1001 of the nominal rate.
pub const V4L2_DV_FL_REDUCED_FPS: u32 = 1 << 2;
pub const V4L2_EVENT_SOURCE_CHANGE: u32 = 5;

const fn ioc(dir: u32, nr: u32, size: usize) -> u32 {
    (dir << 30) | ((size as u32) << 16) | ((b'V' as u32) << 8) | nr
}
const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;
pub const VIDIOC_S_DV_TIMINGS: u32 = ioc(IOC_READ | IOC_WRITE, 87, size_of::<V4l2DvTimings>());
pub const VIDIOC_DQEVENT: u32 = ioc(IOC_READ, 89, size_of::<V4l2Event>());
pub const VIDIOC_SUBSCRIBE_EVENT: u32 = ioc(IOC_WRITE, 90, size_of::<V4l2EventSubscription>());
pub const VIDIOC_QUERY_DV_TIMINGS: u32 = ioc(IOC_READ, 99, size_of::<V4l2DvTimings>());

/// The rate of `bt` as a fraction: the pixel clock over the total frame
/// (active plus blanking, both fields for interlaced), snapped to the
/// nominal rate `n/1` or `n*1000/1001` when within 0.02 %.
pub fn timings_fps(bt: &V4l2BtTimings) -> (u32, u32) {
    let bt = *bt;
    let htotal = u64::from(bt.width) + u64::from(bt.hfrontporch) + u64::from(bt.hsync) + u64::from(bt.hbackporch);
    let mut vtotal = u64::from(bt.height) + u64::from(bt.vfrontporch) + u64::from(bt.vsync) + u64::from(bt.vbackporch);
    if bt.interlaced == V4L2_DV_INTERLACED {
        vtotal += u64::from(bt.il_vfrontporch) + u64::from(bt.il_vsync) + u64::from(bt.il_vbackporch);
    }
    let total = htotal * vtotal;
    if total == 0 || bt.pixelclock == 0 {
        return (0, 1);
    }
    let fps = bt.pixelclock as f64 / total as f64;
    let close = |nominal: f64| (fps - nominal).abs() <= nominal * 0.0002;
    let n = fps.round();
    if n >= 1.0 && close(n) {
        if bt.flags & V4L2_DV_FL_REDUCED_FPS != 0 {
            return ((n as u32) * 1000, 1001);
        }
        return (n as u32, 1);
    }
    let m = (fps * 1.001).round();
    if m >= 1.0 && close(m / 1.001) {
        return ((m as u32) * 1000, 1001);
    }
    // Anything else: the exact fraction, reduced until it fits.
    let (mut num, mut den) = (bt.pixelclock, total);
    let g = gcd(num, den);
    (num, den) = (num / g, den / g);
    while num > u64::from(u32::MAX) || den > u64::from(u32::MAX) {
        num /= 2;
        den /= 2;
    }
    (num as u32, den.max(1) as u32)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a.max(1)
}

/// What `VIDIOC_QUERY_DV_TIMINGS` answered, as a [`Signal`]: `ENOLINK` is no
/// signal, `ENOLCK` a signal not yet stable (no signal for now), `ERANGE`
/// timings the bridge cannot take.
pub fn signal_from_query(answer: std::result::Result<V4l2DvTimings, i32>, limits: &ContentLimits) -> Signal {
    let t = match answer {
        Ok(t) => t,
        Err(libc::ENOLINK) | Err(libc::ENOLCK) => return Signal::NoSignal,
        Err(libc::ERANGE) => {
            return Signal::Unsupported { reason: "the source's timings are out of the bridge's range".into() };
        }
        Err(errno) => {
            return Signal::Unsupported {
                reason: format!("querying the timings failed: {}", std::io::Error::from_raw_os_error(errno)),
            };
        }
    };
    let type_ = t.type_;
    if type_ != V4L2_DV_BT_656_1120 {
        return Signal::Unsupported { reason: format!("timings of unknown type {type_}") };
    }
    let (width, height) = (t.bt.width, t.bt.height);
    if width == 0 || height == 0 {
        return Signal::NoSignal;
    }
    let (fps_num, fps_den) = timings_fps(&t.bt);
    let interlaced = t.bt.interlaced == V4L2_DV_INTERLACED;
    limits.apply(Signal::Active(VideoMode { width, height, fps_num, fps_den, interlaced }))
}

/// Which kind of V4L2 content device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V4l2Kind {
    /// A bridge with DV timings and source-change events (TC358743).
    DvTimings,
    /// A UVC dongle: signal = device present.
    Uvc,
}

/// How the device is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceMatch {
    Path(PathBuf),
    /// The first video capture node whose V4L2 driver or card name contains
    /// this (case-insensitive): `unicam`, `USB3 Video`.
    Name(String),
}

impl DeviceMatch {
    fn resolve(&self) -> Option<PathBuf> {
        match self {
            DeviceMatch::Path(p) => p.exists().then(|| p.clone()),
            DeviceMatch::Name(n) => {
                let n = n.to_lowercase();
                crate::camera::enumerate_v4l2()
                    .into_iter()
                    .find(|c| c.driver.to_lowercase().contains(&n) || c.card.to_lowercase().contains(&n))
                    .map(|c| PathBuf::from(c.device))
            }
        }
    }

    fn describe(&self) -> String {
        match self {
            DeviceMatch::Path(p) => p.display().to_string(),
            DeviceMatch::Name(n) => format!("the V4L2 capture device matching '{n}'"),
        }
    }
}

/// An open V4L2 file descriptor, closed on drop.
struct Fd(i32);

impl Fd {
    fn open(path: &Path) -> std::io::Result<Fd> {
        v4l::v4l2::open(path, libc::O_RDWR | libc::O_NONBLOCK).map(Fd)
    }

    /// # Safety
    /// `arg` must be the structure `request` is declared with.
    unsafe fn ioctl<T>(&self, request: u32, arg: &mut T) -> std::io::Result<()> {
        // SAFETY: the caller pairs the request with its structure; the fd is open.
        unsafe {
            v4l::v4l2::ioctl(
                self.0,
                request as v4l::v4l2::vidioc::_IOC_TYPE,
                arg as *mut T as *mut std::os::raw::c_void,
            )
        }
    }

    fn query_dv_timings(&self) -> std::result::Result<V4l2DvTimings, i32> {
        // SAFETY: all-zero bytes are a valid V4l2DvTimings.
        let mut t: V4l2DvTimings = unsafe { std::mem::zeroed() };
        // SAFETY: VIDIOC_QUERY_DV_TIMINGS takes a struct v4l2_dv_timings.
        match unsafe { self.ioctl(VIDIOC_QUERY_DV_TIMINGS, &mut t) } {
            Ok(()) => Ok(t),
            Err(e) => Err(e.raw_os_error().unwrap_or(libc::EIO)),
        }
    }

    fn subscribe_source_change(&self) -> std::io::Result<()> {
        let mut sub = V4l2EventSubscription { type_: V4L2_EVENT_SOURCE_CHANGE, ..Default::default() };
        // SAFETY: VIDIOC_SUBSCRIBE_EVENT takes a struct v4l2_event_subscription.
        unsafe { self.ioctl(VIDIOC_SUBSCRIBE_EVENT, &mut sub) }
    }

    /// Takes every pending event; true if there was one.
    fn drain_events(&self) -> bool {
        let mut any = false;
        loop {
            // SAFETY: all-zero bytes are a valid V4l2Event.
            let mut ev: V4l2Event = unsafe { std::mem::zeroed() };
            // SAFETY: VIDIOC_DQEVENT takes a struct v4l2_event.
            if unsafe { self.ioctl(VIDIOC_DQEVENT, &mut ev) }.is_err() {
                return any;
            }
            any = true;
        }
    }

    /// Waits up to `timeout` for an event (POLLPRI): `Some(true)` when one
    /// is pending, `None` when the device went away.
    fn wait_event(&self, timeout: Duration) -> Option<bool> {
        let mut p = libc::pollfd { fd: self.0, events: libc::POLLPRI, revents: 0 };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut p, 1, timeout.as_millis() as i32) };
        if n > 0 && p.revents & (libc::POLLERR | libc::POLLHUP | libc::POLLNVAL) != 0 {
            return None;
        }
        Some(n > 0 && p.revents & libc::POLLPRI != 0)
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        let _ = v4l::v4l2::close(self.0);
    }
}

struct Watcher {
    sinks: Arc<Mutex<Vec<SignalSink>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// An HDMI input through V4L2: a TC358743-style bridge or a UVC dongle.
pub struct V4l2Content {
    kind: V4l2Kind,
    device: DeviceMatch,
    limits: ContentLimits,
    watcher: Mutex<Option<Watcher>>,
}

/// How often a device without events is looked at again.
const POLL: Duration = Duration::from_millis(1000);

impl V4l2Content {
    pub fn new(kind: V4l2Kind, device: DeviceMatch, limits: ContentLimits) -> Self {
        Self { kind, device, limits, watcher: Mutex::new(None) }
    }

    fn path(&self) -> Result<PathBuf> {
        self.device.resolve().ok_or_else(|| HalError::Device {
            device: self.device.describe(),
            reason: "not found (check the cable or dongle, the driver and the board's [content] table)".into(),
        })
    }

    fn open(&self, path: &Path) -> Result<Fd> {
        Fd::open(path).map_err(|source| HalError::Io {
            device: path.display().to_string(),
            what: "opening the content input",
            source,
        })
    }

    /// The UVC mode to capture: the largest frame within the limits, then
    /// the highest rate within them; raw formats before MJPEG at the same
    /// size and rate (no decoding).
    fn uvc_mode(&self, path: &Path) -> Result<Option<(String, VideoMode)>> {
        use crate::camera::Camera;
        let formats = crate::camera::V4l2Camera::new(path).formats()?;
        Ok(pick_uvc_mode(&formats, &self.limits))
    }

    fn current(&self) -> Result<Signal> {
        match self.kind {
            V4l2Kind::DvTimings => {
                let path = self.path()?;
                let fd = self.open(&path)?;
                Ok(signal_from_query(fd.query_dv_timings(), &self.limits))
            }
            V4l2Kind::Uvc => {
                let Some(path) = self.device.resolve() else {
                    return Ok(Signal::NoSignal);
                };
                Ok(match self.uvc_mode(&path)? {
                    Some((_, mode)) => Signal::Active(mode),
                    None => Signal::Unsupported { reason: "no capture format within the board's limits".into() },
                })
            }
        }
    }

    /// A gst-launch description of the source for the current signal.
    /// For a DV bridge the queried timings are set first
    /// (`VIDIOC_S_DV_TIMINGS`), as the bridge captures at the timings it was
    /// last given, not at what comes in.
    pub fn gst_source_description(&self) -> Result<String> {
        let path = self.path()?;
        let dev = path.display().to_string();
        match self.kind {
            V4l2Kind::DvTimings => {
                let fd = self.open(&path)?;
                let answer = fd.query_dv_timings();
                let mut timings = match (signal_from_query(answer, &self.limits), answer) {
                    (Signal::Active(_), Ok(t)) => t,
                    (Signal::Unsupported { reason }, _) => return Err(HalError::Device { device: dev, reason }),
                    _ => return Err(HalError::NoSignal { device: dev }),
                };
                // SAFETY: VIDIOC_S_DV_TIMINGS takes a struct v4l2_dv_timings.
                unsafe { fd.ioctl(VIDIOC_S_DV_TIMINGS, &mut timings) }.map_err(|source| HalError::Io {
                    device: dev.clone(),
                    what: "setting the DV timings",
                    source,
                })?;
                let (w, h) = (timings.bt.width, timings.bt.height);
                Ok(dv_description(&dev, w, h))
            }
            V4l2Kind::Uvc => match self.uvc_mode(&path)? {
                Some((fourcc, mode)) => Ok(uvc_description(&dev, &fourcc, &mode)),
                None => {
                    Err(HalError::Device { device: dev, reason: "no capture format within the board's limits".into() })
                }
            },
        }
    }
}

/// The bridge's source: buffers exported as dmabuf (the Pi's unicam and
/// the hardware encoder share them without a copy). No frame rate in the
/// caps: the bridge has no frame-interval API and captures what comes in.
fn dv_description(dev: &str, w: u32, h: u32) -> String {
    format!("v4l2src device={dev} io-mode=dmabuf ! capsfilter caps=video/x-raw,width={w},height={h}")
}

/// A dongle's source: mmap (UVC buffers are in system memory anyway);
/// MJPEG is decoded so the element always gives raw video.
fn uvc_description(dev: &str, fourcc: &str, m: &VideoMode) -> String {
    let size = format!("width={},height={},framerate={}/{}", m.width, m.height, m.fps_num, m.fps_den);
    match fourcc {
        "MJPG" => format!("v4l2src device={dev} io-mode=mmap ! image/jpeg,{size} ! jpegdec"),
        other => {
            format!(
                "v4l2src device={dev} io-mode=mmap ! capsfilter caps=video/x-raw,format={},{size}",
                gst_format_of(other)
            )
        }
    }
}

/// GStreamer's name of a V4L2 raw format.
fn gst_format_of(fourcc: &str) -> &str {
    match fourcc {
        "YUYV" => "YUY2",
        "UYVY" => "UYVY",
        "NV12" => "NV12",
        "YU12" => "I420",
        "RGB3" => "RGB",
        "BGR3" => "BGR",
        other => other,
    }
}

/// Raw formats a UVC dongle may give, then MJPEG.
const UVC_FORMATS: &[&str] = &["NV12", "YUYV", "UYVY", "YU12", "MJPG"];

/// See [`V4l2Content`]: the largest size within `limits`, then the highest
/// rate, then a raw format before MJPEG.
pub fn pick_uvc_mode(formats: &[crate::camera::VideoFormat], limits: &ContentLimits) -> Option<(String, VideoMode)> {
    let mut best: Option<(u64, u32, usize, String, VideoMode)> = None;
    for f in formats {
        let Some(rank) = UVC_FORMATS.iter().position(|&x| x == f.fourcc) else {
            continue;
        };
        for &fps in &f.framerates {
            let mode = VideoMode::progressive(f.width, f.height, fps);
            if limits.check(&mode).is_err() {
                continue;
            }
            let area = u64::from(f.width) * u64::from(f.height);
            let better = match &best {
                None => true,
                Some((a, r, k, _, _)) => (area, fps, std::cmp::Reverse(rank)) > (*a, *r, std::cmp::Reverse(*k)),
            };
            if better {
                best = Some((area, fps, rank, f.fourcc.clone(), mode));
            }
        }
    }
    best.map(|(_, _, _, fourcc, mode)| (fourcc, mode))
}

impl ContentSource for V4l2Content {
    fn info(&self) -> Result<ContentInfo> {
        use crate::camera::Camera;
        let path = self.path()?;
        let cam = crate::camera::V4l2Camera::new(&path).info()?;
        let kind = match self.kind {
            V4l2Kind::DvTimings => ContentKind::V4l2Dv,
            V4l2Kind::Uvc => ContentKind::Uvc,
        };
        Ok(ContentInfo { kind, device: cam.device, card: cam.card, driver: cam.driver })
    }

    fn signal(&self) -> Result<Signal> {
        self.current()
    }

    /// One thread per source, started by the first watcher: for a bridge it
    /// waits for `V4L2_EVENT_SOURCE_CHANGE` and queries the timings again
    /// (or queries every second if the driver has no such event); for a
    /// dongle it looks for the device every second.
    fn watch(&self, sink: SignalSink) -> Result<()> {
        let mut w = self.watcher.lock().unwrap();
        if let Some(w) = w.as_ref() {
            // Under the sinks' lock the thread cannot deliver, so the new
            // sink sees the current signal first and every change after it.
            let mut sinks = w.sinks.lock().unwrap();
            sink(self.current().unwrap_or_else(|e| Signal::Unsupported { reason: e.to_string() }));
            sinks.push(sink);
            return Ok(());
        }
        let sinks: Arc<Mutex<Vec<SignalSink>>> = Arc::new(Mutex::new(vec![sink]));
        let stop = Arc::new(AtomicBool::new(false));
        let (kind, device, limits) = (self.kind, self.device.clone(), self.limits);
        let thread = {
            let (sinks, stop) = (sinks.clone(), stop.clone());
            std::thread::Builder::new()
                .name("content-watch".into())
                .spawn(move || {
                    let src = V4l2Content::new(kind, device, limits);
                    watch_loop(&src, &sinks, &stop)
                })
                .map_err(|e| HalError::Device {
                    device: self.device.describe(),
                    reason: format!("cannot start the watcher thread: {e}"),
                })?
        };
        *w = Some(Watcher { sinks, stop, thread: Some(thread) });
        Ok(())
    }

    fn gst_source(&self) -> Result<gst::Element> {
        gst::init().map_err(|e| HalError::Gst(e.to_string()))?;
        let desc = self.gst_source_description()?;
        let bin = gst::parse::bin_from_description(&desc, true)
            .map_err(|e| HalError::Gst(format!("cannot build '{desc}': {e}")))?;
        Ok(bin.upcast())
    }
}

fn watch_loop(src: &V4l2Content, sinks: &Mutex<Vec<SignalSink>>, stop: &AtomicBool) {
    let read = || src.current().unwrap_or_else(|e| Signal::Unsupported { reason: e.to_string() });
    let mut last: Option<Signal> = None;
    let mut said_polling = false;
    let tell = |s: Signal, last: &mut Option<Signal>| {
        if last.as_ref() != Some(&s) {
            for sink in sinks.lock().unwrap().iter() {
                sink(s.clone());
            }
            *last = Some(s);
        }
    };
    while !stop.load(Ordering::Relaxed) {
        // (Re)open the bridge and subscribe; without events, or for a
        // dongle, poll.
        let events = match src.kind {
            V4l2Kind::DvTimings => {
                src.path().ok().and_then(|p| Fd::open(&p).ok()).and_then(|fd| match fd.subscribe_source_change() {
                    Ok(()) => Some(fd),
                    Err(e) => {
                        if !said_polling {
                            tracing::info!("content input: no source-change events ({e}); polling every second");
                            said_polling = true;
                        }
                        None
                    }
                })
            }
            V4l2Kind::Uvc => None,
        };
        tell(read(), &mut last);
        match events {
            Some(fd) => {
                while !stop.load(Ordering::Relaxed) {
                    match fd.wait_event(Duration::from_millis(500)) {
                        Some(true) => {
                            if fd.drain_events() {
                                tell(read(), &mut last);
                            }
                        }
                        Some(false) => {}
                        // Gone (driver unbound): say so, then reopen.
                        None => {
                            tell(read(), &mut last);
                            std::thread::sleep(POLL);
                            break;
                        }
                    }
                }
            }
            None => std::thread::sleep(POLL),
        }
    }
}

impl Drop for V4l2Content {
    fn drop(&mut self) {
        if let Some(mut w) = self.watcher.lock().unwrap().take() {
            w.stop.store(true, Ordering::Relaxed);
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
    }
}

#[cfg(test)]
mod tests;
