//! The room's physical buttons.
//!
//! Backends report edges through a callback the firmware gives them. The
//! simulated backend is pressed by the firmware itself (over D-Bus,
//! `PressButton`); the GPIO backend watches the character device.

use std::sync::Arc;
use std::time::Duration;

use crate::{HalError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Button {
    Call,
    Mute,
}

impl Button {
    pub fn name(self) -> &'static str {
        match self {
            Button::Call => "call",
            Button::Mute => "mute",
        }
    }

    pub fn parse(s: &str) -> Option<Button> {
        match s {
            "call" => Some(Button::Call),
            "mute" => Some(Button::Mute),
            _ => None,
        }
    }
}

/// A completed press: pressed and released again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Press {
    pub button: Button,
    /// How long it was held (long presses may mean something else).
    pub held: Duration,
}

pub type PressSink = Arc<dyn Fn(Press) + Send + Sync>;

/// A set of buttons that report presses to a sink.
pub trait Buttons: Send {
    /// Starts delivering presses to `sink` (from a backend thread, or from
    /// `press` for the simulation).
    fn start(&mut self, sink: PressSink) -> Result<()>;
    /// Which buttons exist.
    fn available(&self) -> &[Button];
}

/// Buttons pressed in software.
#[derive(Default)]
pub struct SimButtons {
    sink: Option<PressSink>,
}

impl SimButtons {
    pub fn new() -> Self {
        Self::default()
    }

    /// Presses and releases `button` as a person would (a short press).
    pub fn press(&self, button: Button) {
        if let Some(sink) = &self.sink {
            sink(Press { button, held: Duration::from_millis(120) });
        }
    }
}

impl Buttons for SimButtons {
    fn start(&mut self, sink: PressSink) -> Result<()> {
        self.sink = Some(sink);
        Ok(())
    }

    fn available(&self) -> &[Button] {
        &[Button::Call, Button::Mute]
    }
}

/// A GPIO line wired to a button.
#[derive(Debug, Clone)]
pub struct ButtonLine {
    pub button: Button,
    pub chip: String,
    pub line: u32,
    pub active_low: bool,
}

/// Buttons on GPIO lines, watched through the GPIO character device with
/// edge events (no polling), debounced in the kernel where supported.
pub struct GpioButtons {
    lines: Vec<ButtonLine>,
    buttons: Vec<Button>,
}

impl GpioButtons {
    pub fn new(lines: Vec<ButtonLine>) -> Self {
        let buttons = lines.iter().map(|l| l.button).collect();
        Self { lines, buttons }
    }
}

impl Buttons for GpioButtons {
    fn start(&mut self, sink: PressSink) -> Result<()> {
        for l in &self.lines {
            let gerr = |reason: String| HalError::Gpio { chip: l.chip.clone(), line: l.line, reason };
            let mut builder = gpiocdev::Request::builder();
            builder
                .on_chip(format!("/dev/{}", l.chip))
                .with_consumer("huisd")
                .with_line(l.line)
                .as_input()
                .with_edge_detection(gpiocdev::line::EdgeDetection::BothEdges)
                .with_debounce_period(Duration::from_millis(20));
            if l.active_low {
                builder.as_active_low();
            }
            let req = builder.request().map_err(|e| gerr(e.to_string()))?;
            let (button, sink) = (l.button, sink.clone());
            std::thread::Builder::new()
                .name(format!("button-{}", button.name()))
                .spawn(move || {
                    let mut down_at: Option<u64> = None;
                    for ev in req.edge_events() {
                        let Ok(ev) = ev else { break };
                        match ev.kind {
                            gpiocdev::line::EdgeKind::Rising => down_at = Some(ev.timestamp_ns),
                            gpiocdev::line::EdgeKind::Falling => {
                                if let Some(t0) = down_at.take() {
                                    let held = Duration::from_nanos(ev.timestamp_ns.saturating_sub(t0));
                                    sink(Press { button, held });
                                }
                            }
                        }
                    }
                })
                .map_err(|e| gerr(format!("cannot start its watcher thread: {e}")))?;
        }
        Ok(())
    }

    fn available(&self) -> &[Button] {
        &self.buttons
    }
}
