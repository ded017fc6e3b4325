//! Hardware abstraction for huis.
//!
//! One small trait per piece of room hardware, each with a Linux backend
//! (ALSA, V4L2, the GPIO character device, SPI, the GStreamer registry) and a
//! simulated backend for machines without the hardware. The simulated ones
//! are honest: the mic array plays a real multichannel room recording at
//! real-time pace, the loudspeaker writes exactly what it was given to a WAV
//! file, the camera is a live GStreamer test source, the HDMI content input is a
//! slide deck whose pages can be regenerated exactly from their index.
//!
//! This crate knows nothing of SIP, D-Bus or board descriptors; the firmware
//! picks backends from the board descriptor and drives them through these
//! traits. Backends are runtime-agnostic: blocking reads happen on threads
//! the caller owns, events are delivered through callbacks.

pub mod audio;
pub mod buttons;
pub mod camera;
pub mod content;
pub mod display;
pub mod encoder;
pub mod leds;

/// Errors from hardware backends. Messages name the device and what to check.
#[derive(Debug, thiserror::Error)]
pub enum HalError {
    #[error("{device}: {what}: {source}")]
    Io {
        device: String,
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("{device}: ALSA {what}: {source}")]
    Alsa {
        device: String,
        what: &'static str,
        #[source]
        source: alsa::Error,
    },
    #[error("{device}: {reason}")]
    Device { device: String, reason: String },
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error("GPIO {chip} line {line}: {reason}")]
    Gpio { chip: String, line: u32, reason: String },
    #[error("GStreamer: {0}")]
    Gst(String),
    /// A content input asked for video while nothing is coming in.
    #[error("{device}: no signal on the input (is a source plugged in and awake?)")]
    NoSignal { device: String },
    /// A value given to a backend that it cannot take.
    #[error("{what}: {reason}")]
    Invalid { what: &'static str, reason: String },
}

pub type Result<T> = std::result::Result<T, HalError>;
