//! Looking at pictures the way a person would: decode a PNG (through GStreamer's pngdec, the
//! same libraries huisd uses) and describe regions by their mean colour and how much they vary.

use anyhow::{Context, Result, anyhow};
use gstreamer as gst;
use gstreamer_app as gst_app;

use gst::prelude::*;

/// An RGB picture, 3 bytes per pixel, rows without padding.
pub struct Picture {
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

/// Mean colour of a region and its spread (mean absolute deviation of luma).
#[derive(Debug, Clone, Copy)]
pub struct RegionStats {
    pub mean: [f64; 3],
    pub luma_spread: f64,
}

impl RegionStats {
    /// True when the mean colour is within `tol` of `rgb` in every channel.
    pub fn near(&self, rgb: [u8; 3], tol: f64) -> bool {
        self.mean.iter().zip(rgb).all(|(m, c)| (m - f64::from(c)).abs() <= tol)
    }
}

impl Picture {
    pub fn load_png(path: &std::path::Path) -> Result<Picture> {
        gst::init()?;
        let desc = format!(
            "filesrc location=\"{}\" ! pngdec ! videoconvert ! video/x-raw,format=RGB ! appsink name=out sync=false",
            path.display()
        );
        let pipeline = gst::parse::launch(&desc)?.downcast::<gst::Pipeline>().map_err(|_| anyhow!("not a pipeline"))?;
        let sink = pipeline
            .by_name("out")
            .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
            .ok_or_else(|| anyhow!("no appsink"))?;
        pipeline.set_state(gst::State::Playing)?;
        let sample = sink.try_pull_sample(gst::ClockTime::from_seconds(10));
        let _ = pipeline.set_state(gst::State::Null);
        let sample = sample.with_context(|| format!("{} does not decode as PNG", path.display()))?;
        let caps = sample.caps().ok_or_else(|| anyhow!("no caps"))?;
        let s = caps.structure(0).ok_or_else(|| anyhow!("empty caps"))?;
        let (width, height) = (s.get::<i32>("width")? as u32, s.get::<i32>("height")? as u32);
        let buf = sample.buffer().ok_or_else(|| anyhow!("no buffer"))?;
        let map = buf.map_readable()?;
        // GStreamer pads RGB rows to 4 bytes.
        let stride = ((width * 3 + 3) & !3) as usize;
        let mut rgb = Vec::with_capacity((width * height * 3) as usize);
        for y in 0..height as usize {
            rgb.extend_from_slice(&map[y * stride..y * stride + width as usize * 3]);
        }
        Ok(Picture { width, height, rgb })
    }

    pub fn pixel(&self, x: u32, y: u32) -> [u8; 3] {
        let i = ((y * self.width + x) * 3) as usize;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }

    /// Stats of the rectangle at (`x`, `y`) of `w`×`h` pixels.
    pub fn region(&self, x: u32, y: u32, w: u32, h: u32) -> RegionStats {
        let mut sum = [0f64; 3];
        let mut lumas = Vec::with_capacity((w * h) as usize);
        for yy in y..(y + h).min(self.height) {
            for xx in x..(x + w).min(self.width) {
                let p = self.pixel(xx, yy);
                for c in 0..3 {
                    sum[c] += f64::from(p[c]);
                }
                lumas.push(0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2]));
            }
        }
        let n = lumas.len().max(1) as f64;
        let mean_l = lumas.iter().sum::<f64>() / n;
        RegionStats { mean: sum.map(|s| s / n), luma_spread: lumas.iter().map(|l| (l - mean_l).abs()).sum::<f64>() / n }
    }

    /// Fraction of the rectangle's pixels within `tol` of `rgb` in every channel.
    pub fn fraction_near(&self, x: u32, y: u32, w: u32, h: u32, rgb: [u8; 3], tol: i32) -> f64 {
        let (mut hit, mut n) = (0usize, 0usize);
        for yy in y..(y + h).min(self.height) {
            for xx in x..(x + w).min(self.width) {
                let p = self.pixel(xx, yy);
                n += 1;
                if p.iter().zip(rgb).all(|(a, b)| (i32::from(*a) - i32::from(b)).abs() <= tol) {
                    hit += 1;
                }
            }
        }
        hit as f64 / n.max(1) as f64
    }
}
