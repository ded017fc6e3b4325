//! Status LEDs: one pattern per room state.

use std::io::Write;

use crate::{HalError, Result};

/// What the LEDs tell the room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LedPattern {
    Off,
    /// Ready for a call: dim white/green.
    Idle,
    /// Dialing or ringing: blue.
    Connecting,
    /// In a call: green.
    InCall,
    /// In a call with the microphones muted: red.
    Muted,
    /// Something needs attention (registration failed, device missing): red blink on
    /// hardware that can blink, solid red otherwise.
    Error,
}

impl LedPattern {
    pub fn name(self) -> &'static str {
        match self {
            LedPattern::Off => "off",
            LedPattern::Idle => "idle",
            LedPattern::Connecting => "connecting",
            LedPattern::InCall => "in-call",
            LedPattern::Muted => "muted",
            LedPattern::Error => "error",
        }
    }

    /// The colour shown, as (red, green, blue) 0..=255.
    pub fn rgb(self) -> (u8, u8, u8) {
        match self {
            LedPattern::Off => (0, 0, 0),
            LedPattern::Idle => (0, 24, 8),
            LedPattern::Connecting => (0, 0, 160),
            LedPattern::InCall => (0, 160, 0),
            LedPattern::Muted | LedPattern::Error => (160, 0, 0),
        }
    }
}

pub trait Leds: Send {
    fn show(&mut self, pattern: LedPattern) -> Result<()>;
    fn current(&self) -> LedPattern;
}

/// LEDs that only remember what they show (read back over D-Bus).
pub struct SimLeds {
    current: LedPattern,
}

impl Default for SimLeds {
    fn default() -> Self {
        Self { current: LedPattern::Off }
    }
}

impl Leds for SimLeds {
    fn show(&mut self, pattern: LedPattern) -> Result<()> {
        self.current = pattern;
        Ok(())
    }
    fn current(&self) -> LedPattern {
        self.current
    }
}

/// No LEDs on this board.
#[derive(Default)]
pub struct NoLeds(SimLeds);

impl Leds for NoLeds {
    fn show(&mut self, pattern: LedPattern) -> Result<()> {
        self.0.show(pattern)
    }
    fn current(&self) -> LedPattern {
        self.0.current()
    }
}

/// One GPIO line per colour (any may be absent).
pub struct GpioLeds {
    lines: [Option<gpiocdev::Request>; 3],
    current: LedPattern,
}

/// A GPIO output line: chip name (`gpiochip0`), offset, active-low.
pub type OutLine = (String, u32, bool);

fn request_output(chip: &str, line: u32, active_low: bool) -> Result<gpiocdev::Request> {
    let mut b = gpiocdev::Request::builder();
    b.on_chip(format!("/dev/{chip}")).with_consumer("huisd").with_line(line).as_output(gpiocdev::line::Value::Inactive);
    if active_low {
        b.as_active_low();
    }
    b.request().map_err(|e| HalError::Gpio { chip: chip.to_owned(), line, reason: e.to_string() })
}

impl GpioLeds {
    pub fn open(red: Option<OutLine>, green: Option<OutLine>, blue: Option<OutLine>) -> Result<Self> {
        let open = |l: Option<OutLine>| l.map(|(c, n, a)| request_output(&c, n, a)).transpose();
        Ok(Self { lines: [open(red)?, open(green)?, open(blue)?], current: LedPattern::Off })
    }
}

impl Leds for GpioLeds {
    fn show(&mut self, pattern: LedPattern) -> Result<()> {
        let (r, g, b) = pattern.rgb();
        for (req, on) in self.lines.iter().zip([r > 0, g > 0, b > 0]) {
            if let Some(req) = req {
                let offset = req.config().lines()[0];
                let v = if on { gpiocdev::line::Value::Active } else { gpiocdev::line::Value::Inactive };
                req.set_value(offset, v).map_err(|e| HalError::Gpio {
                    chip: String::from_utf8_lossy(req.chip_path().as_os_str().as_encoded_bytes()).into_owned(),
                    line: offset,
                    reason: e.to_string(),
                })?;
            }
        }
        self.current = pattern;
        Ok(())
    }
    fn current(&self) -> LedPattern {
        self.current
    }
}

/// An APA102 LED ring on SPI, as on the ReSpeaker HATs.
///
/// The protocol is small enough to write directly: a start frame of 32 zero
/// bits, one 32-bit frame per LED (`0b111` + 5-bit brightness, blue, green,
/// red), and an end frame of at least count/2 one bits.
pub struct Apa102Leds {
    spidev: String,
    dev: std::fs::File,
    count: u16,
    _power: Option<gpiocdev::Request>,
    current: LedPattern,
    frame: Vec<u8>,
}

impl Apa102Leds {
    pub fn open(spidev: &str, count: u16, power: Option<OutLine>) -> Result<Self> {
        let power = power
            .map(|(c, n, a)| {
                let req = request_output(&c, n, a)?;
                req.set_value(n, gpiocdev::line::Value::Active).map_err(|e| HalError::Gpio {
                    chip: c.clone(),
                    line: n,
                    reason: e.to_string(),
                })?;
                Ok::<_, HalError>(req)
            })
            .transpose()?;
        let dev = std::fs::OpenOptions::new().write(true).open(spidev).map_err(|source| HalError::Io {
            device: spidev.to_owned(),
            what: "opening the LED ring's SPI device (is SPI enabled in config.txt?)",
            source,
        })?;
        Ok(Self { spidev: spidev.to_owned(), dev, count, _power: power, current: LedPattern::Off, frame: Vec::new() })
    }
}

/// Builds one APA102 frame for `count` LEDs all showing `rgb`.
pub fn apa102_frame(count: u16, rgb: (u8, u8, u8), out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&[0, 0, 0, 0]);
    for _ in 0..count {
        out.extend_from_slice(&[0xE0 | 8, rgb.2, rgb.1, rgb.0]);
    }
    out.extend(std::iter::repeat_n(0xFF, (count as usize).div_ceil(16).max(4)));
}

impl Leds for Apa102Leds {
    fn show(&mut self, pattern: LedPattern) -> Result<()> {
        apa102_frame(self.count, pattern.rgb(), &mut self.frame);
        self.dev.write_all(&self.frame).map_err(|source| HalError::Io {
            device: self.spidev.clone(),
            what: "writing the LED frame",
            source,
        })?;
        self.current = pattern;
        Ok(())
    }
    fn current(&self) -> LedPattern {
        self.current
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apa102_frame_layout() {
        let mut f = Vec::new();
        apa102_frame(12, (1, 2, 3), &mut f);
        assert_eq!(&f[..4], &[0, 0, 0, 0]);
        assert_eq!(&f[4..8], &[0xE8, 3, 2, 1]);
        assert_eq!(f.len(), 4 + 12 * 4 + 4);
        assert!(f[4 + 48..].iter().all(|&b| b == 0xFF));
    }

    #[test]
    fn sim_leds_remember() {
        let mut l = SimLeds::default();
        assert_eq!(l.current(), LedPattern::Off);
        l.show(LedPattern::InCall).unwrap();
        assert_eq!(l.current().name(), "in-call");
    }
}
