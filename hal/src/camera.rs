//! Cameras: enumeration, formats, controls (pan, tilt, zoom and the rest),
//! and the GStreamer source that captures from them.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::{HalError, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraInfo {
    /// Device path, or `sim` for the test-pattern camera.
    pub device: String,
    /// What the driver calls the camera (`HD Pro Webcam C920`).
    pub card: String,
    pub driver: String,
}

/// One capture format: pixel format and a frame size with its rates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoFormat {
    /// FourCC (`YUYV`, `MJPG`, `NV12`, `H264`).
    pub fourcc: String,
    pub width: u32,
    pub height: u32,
    /// Frame rates in frames per second, highest first (empty if unknown).
    pub framerates: Vec<u32>,
}

/// The controls a room cares about by name; anything else is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControlId {
    Pan,
    Tilt,
    Zoom,
    Other(u32),
}

impl ControlId {
    // V4L2_CID_CAMERA_CLASS_BASE (0x009a0900) + 8, + 9, + 13 (linux/v4l2-controls.h).
    pub const V4L2_PAN_ABSOLUTE: u32 = 0x009a_0908;
    pub const V4L2_TILT_ABSOLUTE: u32 = 0x009a_0909;
    pub const V4L2_ZOOM_ABSOLUTE: u32 = 0x009a_090d;

    pub fn from_v4l2(id: u32) -> Self {
        match id {
            Self::V4L2_PAN_ABSOLUTE => ControlId::Pan,
            Self::V4L2_TILT_ABSOLUTE => ControlId::Tilt,
            Self::V4L2_ZOOM_ABSOLUTE => ControlId::Zoom,
            other => ControlId::Other(other),
        }
    }

    pub fn v4l2(self) -> u32 {
        match self {
            ControlId::Pan => Self::V4L2_PAN_ABSOLUTE,
            ControlId::Tilt => Self::V4L2_TILT_ABSOLUTE,
            ControlId::Zoom => Self::V4L2_ZOOM_ABSOLUTE,
            ControlId::Other(id) => id,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Control {
    pub id: ControlId,
    pub name: String,
    pub min: i64,
    pub max: i64,
    pub step: u64,
    pub default: i64,
    pub value: i64,
}

pub trait Camera: Send + Sync {
    fn info(&self) -> Result<CameraInfo>;
    fn formats(&self) -> Result<Vec<VideoFormat>>;
    fn controls(&self) -> Result<Vec<Control>>;
    /// Sets a control, clamped to its range; returns the value now in effect.
    fn set_control(&self, id: ControlId, value: i64) -> Result<i64>;
    /// A gst-launch style description of a live source producing raw video
    /// at `width`x`height`@`fps` (the caller adds converters and caps).
    fn gst_source(&self, width: u32, height: u32, fps: u32) -> String;
}

/// Lists the V4L2 video capture devices present (`/dev/video*` that can capture).
pub fn enumerate_v4l2() -> Vec<CameraInfo> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/dev") else {
        return out;
    };
    let mut paths: Vec<PathBuf> = dir
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("video")))
        .collect();
    paths.sort();
    for p in paths {
        let cam = V4l2Camera::new(&p);
        if let Ok(info) = cam.info() {
            if cam.can_capture() {
                out.push(info);
            }
        }
    }
    out
}

/// A V4L2 camera (USB UVC, the Raspberry Pi camera through libcamera's V4L2
/// compatibility, or an SoC ISP node).
pub struct V4l2Camera {
    path: PathBuf,
}

impl V4l2Camera {
    pub fn new(path: &Path) -> Self {
        Self { path: path.to_owned() }
    }

    fn open(&self) -> Result<v4l::Device> {
        v4l::Device::with_path(&self.path).map_err(|source| HalError::Io {
            device: self.path.display().to_string(),
            what: "opening the camera",
            source,
        })
    }

    fn io_err(&self, what: &'static str) -> impl Fn(std::io::Error) -> HalError + '_ {
        move |source| HalError::Io { device: self.path.display().to_string(), what, source }
    }

    fn can_capture(&self) -> bool {
        self.open()
            .and_then(|d| d.query_caps().map_err(self.io_err("querying capabilities")))
            .is_ok_and(|c| c.capabilities.contains(v4l::capability::Flags::VIDEO_CAPTURE))
    }
}

impl Camera for V4l2Camera {
    fn info(&self) -> Result<CameraInfo> {
        let caps = self.open()?.query_caps().map_err(self.io_err("querying capabilities"))?;
        Ok(CameraInfo { device: self.path.display().to_string(), card: caps.card, driver: caps.driver })
    }

    fn formats(&self) -> Result<Vec<VideoFormat>> {
        use v4l::video::Capture;
        let dev = self.open()?;
        let mut out = Vec::new();
        for f in dev.enum_formats().map_err(self.io_err("listing formats"))? {
            let fourcc = f.fourcc.str().unwrap_or("????").to_owned();
            for size in dev.enum_framesizes(f.fourcc).map_err(self.io_err("listing frame sizes"))? {
                for d in size.size.to_discrete() {
                    let mut rates: Vec<u32> = dev
                        .enum_frameintervals(f.fourcc, d.width, d.height)
                        .unwrap_or_default()
                        .iter()
                        .filter_map(|i| match &i.interval {
                            v4l::frameinterval::FrameIntervalEnum::Discrete(fr) if fr.numerator > 0 => {
                                Some(fr.denominator / fr.numerator)
                            }
                            _ => None,
                        })
                        .collect();
                    rates.sort_unstable_by(|a, b| b.cmp(a));
                    rates.dedup();
                    out.push(VideoFormat {
                        fourcc: fourcc.clone(),
                        width: d.width,
                        height: d.height,
                        framerates: rates,
                    });
                }
            }
        }
        Ok(out)
    }

    fn controls(&self) -> Result<Vec<Control>> {
        let dev = self.open()?;
        let mut out = Vec::new();
        for d in dev.query_controls().map_err(self.io_err("listing controls"))? {
            if d.flags.contains(v4l::control::Flags::DISABLED) {
                continue;
            }
            let value = match dev.control(d.id) {
                Ok(c) => match c.value {
                    v4l::control::Value::Integer(v) => v,
                    v4l::control::Value::Boolean(b) => b as i64,
                    _ => continue,
                },
                Err(_) => continue,
            };
            out.push(Control {
                id: ControlId::from_v4l2(d.id),
                name: d.name,
                min: d.minimum,
                max: d.maximum,
                step: d.step,
                default: d.default,
                value,
            });
        }
        Ok(out)
    }

    fn set_control(&self, id: ControlId, value: i64) -> Result<i64> {
        let dev = self.open()?;
        let ctl = self.controls()?.into_iter().find(|c| c.id == id).ok_or_else(|| HalError::Device {
            device: self.path.display().to_string(),
            reason: format!("has no control {id:?}"),
        })?;
        let v = value.clamp(ctl.min, ctl.max);
        dev.set_control(v4l::control::Control { id: id.v4l2(), value: v4l::control::Value::Integer(v) })
            .map_err(self.io_err("setting a control"))?;
        Ok(v)
    }

    fn gst_source(&self, width: u32, height: u32, fps: u32) -> String {
        format!("v4l2src device={} ! video/x-raw,width={width},height={height},framerate={fps}/1", self.path.display())
    }
}

/// A live test-pattern camera: a moving ball on a colour pattern with a
/// running clock, produced by GStreamer in real time. Pan, tilt and zoom are
/// held as values a person can set and read back.
pub struct SimCamera {
    ptz: Mutex<[i64; 3]>,
}

impl Default for SimCamera {
    fn default() -> Self {
        Self { ptz: Mutex::new([0, 0, 100]) }
    }
}

const SIM_RANGES: [(ControlId, &str, i64, i64, i64); 3] = [
    (ControlId::Pan, "Pan, Absolute", -36000, 36000, 0),
    (ControlId::Tilt, "Tilt, Absolute", -36000, 36000, 0),
    (ControlId::Zoom, "Zoom, Absolute", 100, 500, 100),
];

impl Camera for SimCamera {
    fn info(&self) -> Result<CameraInfo> {
        Ok(CameraInfo { device: "sim".into(), card: "huis test-pattern camera".into(), driver: "gstreamer".into() })
    }

    fn formats(&self) -> Result<Vec<VideoFormat>> {
        Ok([(1920, 1080), (1280, 720), (640, 360)]
            .into_iter()
            .map(|(w, h)| VideoFormat { fourcc: "I420".into(), width: w, height: h, framerates: vec![30, 25, 15] })
            .collect())
    }

    fn controls(&self) -> Result<Vec<Control>> {
        let v = *self.ptz.lock().unwrap();
        Ok(SIM_RANGES
            .iter()
            .enumerate()
            .map(|(i, &(id, name, min, max, default))| Control {
                id,
                name: name.into(),
                min,
                max,
                step: 1,
                default,
                value: v[i],
            })
            .collect())
    }

    fn set_control(&self, id: ControlId, value: i64) -> Result<i64> {
        let i = SIM_RANGES
            .iter()
            .position(|r| r.0 == id)
            .ok_or_else(|| HalError::Device { device: "sim".into(), reason: format!("has no control {id:?}") })?;
        let v = value.clamp(SIM_RANGES[i].2, SIM_RANGES[i].3);
        self.ptz.lock().unwrap()[i] = v;
        Ok(v)
    }

    fn gst_source(&self, width: u32, height: u32, fps: u32) -> String {
        format!(
            "videotestsrc is-live=true pattern=ball background-color=0xff204060 \
             ! video/x-raw,width={width},height={height},framerate={fps}/1 \
             ! clockoverlay halignment=right valignment=bottom time-format=\"%H:%M:%S\" shaded-background=true"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sim_ptz_clamps_and_reads_back() {
        let cam = SimCamera::default();
        assert_eq!(cam.set_control(ControlId::Zoom, 9999).unwrap(), 500);
        assert_eq!(cam.set_control(ControlId::Pan, -100).unwrap(), -100);
        let c = cam.controls().unwrap();
        assert_eq!(c.iter().find(|c| c.id == ControlId::Zoom).unwrap().value, 500);
        assert!(cam.set_control(ControlId::Other(1), 1).is_err());
    }

    #[test]
    fn v4l2_ids_round_trip() {
        for id in [ControlId::Pan, ControlId::Tilt, ControlId::Zoom, ControlId::Other(0x0098_0900)] {
            assert_eq!(ControlId::from_v4l2(id.v4l2()), id);
        }
    }

    #[test]
    fn missing_v4l2_device_is_a_clear_error() {
        let e = V4l2Camera::new(Path::new("/nonexistent/video9")).info().unwrap_err().to_string();
        assert!(e.contains("/nonexistent/video9") && e.contains("opening the camera"), "{e}");
    }
}
