//! Board descriptors: what hardware a room box has and how to reach it.
//!
//! A descriptor is a TOML file (`board/boards/NAME.toml`, compiled into the
//! binary; others may be loaded from a file at run time). This crate parses
//! and validates them and detects which board we run on. It is data only: no
//! device is opened here.
//!
//! # API
//!
//! - [`builtin_names`], [`builtin`]: the compiled-in descriptors.
//! - [`parse`], [`load_file`]: a descriptor from text or from a file.
//! - [`detect`], [`detect_from`]: the builtin board matching this system.
//! - [`resolve`]: `--board`, then the configuration, then detection, then
//!   `sim`.
//!
//! Every error is a [`BoardError`] whose message names the file, the dotted
//! key (`mic_array.positions[2]`), the line when known, and the reason:
//!
//! ```text
//! board/boards/rpi4.toml: line 12: key 'mic_array.sample_rate': 44100 is not supported (use 16000 or 48000)
//! ```
//!
//! # Schema
//!
//! A descriptor is at most 64 KiB. Unknown keys are errors. Lengths are in metres, angles in degrees
//! (0 = +x, counter-clockwise, seen from above), rates in Hz.
//!
//! | key | type | rule |
//! | --- | --- | --- |
//! | `description` | string | required, one line for people |
//! | `encoders` | array of strings | required, H.264 GStreamer element names, most preferred first |
//! | `[detect]` | table | optional; `compatible` (exact device-tree compatible strings), `dmi` (substrings of DMI product/board name or vendor; `"*"` = any machine with DMI data), `hat` (substrings of the HAT EEPROM product), `alsa_cards` (ALSA card ids), `arch` (kernel machine names, `uname -m`; when given, the board is never detected on another CPU) |
//! | `[mic_array]` | table | `backend` (`"linux"` or `"sim"`), `device` (ALSA PCM, linux only), `capture_channels` (1..=32), `sample_rate` (16000 or 48000), `positions` (`[x, y]` or `[x, y, z]` per mic, at least 2 and at most `capture_channels`, each within 0.5 m of the centre, at least 5 mm apart), `channels` (capture channel of each mic, same order, distinct, below `capture_channels`), `front_azimuth_deg` (in [0, 360); required when all mics lie on one line) |
//! | `[audio_out]` | table | `backend`, `device` (linux only), `sample_rate` (16000, 44100 or 48000), `channels` (1..=8) |
//! | `[camera]` | table | `backend`, `device` (a `/dev/...` V4L2 path, linux only), `width` (160..=7680), `height` (120..=4320), `framerate` (1..=120), `ptz` (optional, default false) |
//! | `[buttons]` | table | `backend`; for linux at least one of `call`, `mute`: `{ chip = "gpiochipN", line = N, active_low = bool }`; none for sim |
//! | `[leds]` | table | `driver` = `"sim"`, `"none"`, `"gpio"` (with `red`/`green`/`blue` GPIO lines, at least one) or `"apa102"` (with `spidev = "/dev/spidevB.C"`, `count`, optional `power` GPIO line) |
//! | `[display]` | table | `kind` = `"kms"` (with `connector`, e.g. `"HDMI-A-1"`), `"wayland"` or `"sim"`; `width`, `height` |
//! | `[content]` | table | optional, the HDMI input (none when absent): `kind` = `"v4l2-dv"` (HDMI-to-CSI bridge with DV timings, TC358743), `"uvc"` (USB capture dongle) or `"sim"` (slide deck); for v4l2-dv and uvc exactly one of `device` (a `/dev/...` path) and `match` (a V4L2 driver or card name, case-insensitive substring, at most 32 characters); optional `max_width` (160..=7680), `max_height` (120..=4320), `max_fps` (1..=240); sim only: `page_seconds` (1..=3600, default 5) |
//!
//! A GPIO line (chip and offset) may serve only one function. A linux
//! backend must name its device; a sim backend must not.
//!
//! # Example
//!
//! ```toml
//! # Raspberry Pi 4 with a two-mic line on a USB sound card.
//! description = "Pi 4, two-mic USB line, USB camera"
//! encoders = ["v4l2h264enc", "x264enc"]
//!
//! [detect]
//! compatible = ["raspberrypi,4-model-b"]
//!
//! [mic_array]
//! backend = "linux"
//! device = "hw:CARD=Device,DEV=0"
//! capture_channels = 2
//! sample_rate = 48000
//! positions = [[-0.05, 0.0], [0.05, 0.0]]
//! channels = [0, 1]
//! front_azimuth_deg = 90.0
//!
//! [audio_out]
//! backend = "linux"
//! device = "hw:CARD=Headphones,DEV=0"
//! sample_rate = 48000
//! channels = 2
//!
//! [camera]
//! backend = "linux"
//! device = "/dev/video0"
//! width = 1280
//! height = 720
//! framerate = 30
//!
//! [buttons]
//! backend = "linux"
//! call = { chip = "gpiochip0", line = 17, active_low = true }
//!
//! [leds]
//! driver = "gpio"
//! green = { chip = "gpiochip0", line = 27 }
//!
//! [display]
//! kind = "kms"
//! connector = "HDMI-A-1"
//! width = 1920
//! height = 1080
//! ```

mod builtin;
mod detect;
mod error;
mod model;
mod parse;

pub use builtin::{DEFAULT_BOARD, builtin, builtin_names, load_file, resolve};
pub use detect::{detect, detect_from};
pub use error::BoardError;
pub use model::*;
pub use parse::parse;

#[cfg(test)]
mod tests;
