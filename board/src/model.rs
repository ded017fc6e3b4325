//! The data model of a board descriptor: what the firmware reads after a
//! descriptor has been parsed and validated (see [`crate::parse`]).

/// A validated board descriptor.
#[derive(Debug, Clone, PartialEq)]
pub struct Board {
    /// Short name, equal to the file stem (`sim`, `rpi4-respeaker4`, ...).
    pub name: String,
    /// One line for people.
    pub description: String,
    /// How to recognise this board at run time.
    pub detect: Detect,
    pub mic_array: MicArray,
    pub audio_out: AudioOut,
    pub camera: Camera,
    /// H.264 encoder GStreamer element names, most preferred first.
    pub encoders: Vec<String>,
    pub buttons: Buttons,
    pub leds: Leds,
    pub display: Display,
    /// The HDMI input a laptop's screen comes in on; `None` when the board
    /// has none.
    pub content: Option<Content>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Detect {
    /// Strings matched against entries of /proc/device-tree/compatible.
    pub compatible: Vec<String>,
    /// Substrings matched against /sys/class/dmi/id/product_name, board_name
    /// or sys_vendor (case-insensitive); `"*"` matches any machine with DMI data.
    pub dmi: Vec<String>,
    /// Substrings matched against the Raspberry Pi HAT EEPROM product string
    /// (/proc/device-tree/hat/product).
    pub hat: Vec<String>,
    /// ALSA card ids (the name in brackets in /proc/asound/cards, e.g.
    /// `seeed4micvoicec`) whose presence confirms this board.
    pub alsa_cards: Vec<String>,
    /// Kernel machine names (`uname -m`: `x86_64`, `aarch64`) this board can
    /// be; empty means any. A hard condition, not a score: it keeps a board
    /// whose DMI strings fit (QEMU says "QEMU" on every architecture) from
    /// being chosen on the wrong CPU.
    pub arch: Vec<String>,
}

/// Which backend drives a piece of hardware.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Real Linux device (ALSA, V4L2, GPIO character device, KMS, ...).
    Linux,
    /// Simulated device (room recording, test pattern, WAV writer, D-Bus buttons).
    Sim,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MicArray {
    pub backend: Backend,
    /// ALSA PCM name (e.g. `hw:CARD=ArrayUAC10,DEV=0`); empty for sim.
    pub device: String,
    /// Channels the device delivers per frame (may exceed the mic count).
    pub capture_channels: u16,
    pub sample_rate: u32,
    /// Mic positions in metres from the array centre `[x, y, z]`, in the
    /// order of `channels`.
    pub positions: Vec<[f64; 3]>,
    /// For each mic (same order as `positions`), its capture channel index.
    pub channels: Vec<u16>,
    /// For linear arrays: the azimuth (degrees, 0 = +x, counter-clockwise)
    /// of the half-plane the talkers are in.
    pub front_azimuth_deg: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AudioOut {
    pub backend: Backend,
    /// ALSA PCM name; empty for sim.
    pub device: String,
    pub sample_rate: u32,
    pub channels: u16,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Camera {
    pub backend: Backend,
    /// V4L2 device path (`/dev/video0`, or a /dev/v4l/by-id path); empty for sim.
    pub device: String,
    pub width: u32,
    pub height: u32,
    pub framerate: u32,
    /// Whether the camera has pan/tilt/zoom controls.
    pub ptz: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GpioLine {
    /// GPIO chip (`gpiochip0`) as seen under /dev.
    pub chip: String,
    /// Line offset on that chip.
    pub line: u32,
    /// True when the line is low while pressed / lit.
    pub active_low: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Buttons {
    pub backend: Backend,
    pub call: Option<GpioLine>,
    pub mute: Option<GpioLine>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum LedDriver {
    /// Simulated LEDs, read over D-Bus.
    Sim,
    /// Plain GPIO lines, one per colour/state.
    Gpio { red: Option<GpioLine>, green: Option<GpioLine>, blue: Option<GpioLine> },
    /// An APA102 ring on SPI (ReSpeaker HATs), with the GPIO that powers it.
    Apa102 { spidev: String, count: u16, power: Option<GpioLine> },
    /// No LEDs.
    None,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Leds {
    pub driver: LedDriver,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisplayKind {
    /// GStreamer kmssink on a DRM connector.
    Kms,
    /// waylandsink under a compositor.
    Wayland,
    /// Simulated: frames are kept in memory and can be saved as a screenshot.
    Sim,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Display {
    pub kind: DisplayKind,
    /// DRM connector name (`HDMI-A-1`) for kms; empty otherwise.
    pub connector: String,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentKind {
    /// An HDMI-to-CSI bridge with DV timings and source-change events
    /// (Toshiba TC358743).
    V4l2Dv,
    /// A USB (UVC) HDMI capture dongle: signal = the device is there.
    Uvc,
    /// The simulated slide deck.
    Sim,
}

/// How a content input's V4L2 capture node is found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentDevice {
    /// A `/dev/...` path (`/dev/video0`, a `/dev/v4l/by-id/...` link).
    Path(String),
    /// The first video capture node whose V4L2 driver or card name contains
    /// this, case-insensitive (`unicam`, `USB3 Video`): for when the node's
    /// number depends on probe order.
    Match(String),
    /// The sim.
    None,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Content {
    pub kind: ContentKind,
    pub device: ContentDevice,
    /// Largest input taken; larger signals are reported as unsupported.
    pub max_width: Option<u32>,
    pub max_height: Option<u32>,
    pub max_fps: Option<u32>,
    /// Sim only: seconds each page of the deck is shown (default 5).
    pub page_seconds: Option<u32>,
}
