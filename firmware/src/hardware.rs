//! Turns a board descriptor into running hardware backends.
//!
//! Only this module looks at `Backend::Sim` versus `Backend::Linux`; the rest
//! of huisd sees traits. A device that fails to open on real hardware does
//! not stop huisd: the room stays manageable over D-Bus and says what is
//! missing in `LastError`.

use std::path::{Path, PathBuf};

use huis_board::{Backend, Board, LedDriver};
use huis_hal::audio::{AlsaCapture, AlsaPlayback, AudioOutput, MicArray, SimAudioOut, SimMicArray, StreamFormat};
use huis_hal::buttons::{ButtonLine, Buttons, GpioButtons, SimButtons};
use huis_hal::camera::{Camera, SimCamera, V4l2Camera};
use huis_hal::leds::{Apa102Leds, GpioLeds, Leds, NoLeds, SimLeds};

use crate::config::Config;

pub struct Hardware {
    pub mic: Option<Box<dyn MicArray>>,
    pub out: Option<Box<dyn AudioOutput>>,
    pub camera: Box<dyn Camera>,
    pub leds: Box<dyn Leds>,
    /// Present on boards whose buttons are pressed in software.
    pub sim_buttons: Option<SimButtons>,
    pub gpio_buttons: Option<GpioButtons>,
    /// Problems met while opening devices, for people.
    pub problems: Vec<String>,
    /// Where the simulated loudspeaker writes, when simulated.
    pub speaker_file: Option<PathBuf>,
}

fn line(l: &huis_board::GpioLine) -> (String, u32, bool) {
    (l.chip.clone(), l.line, l.active_low)
}

pub fn open(board: &Board, cfg: &Config, state_dir: &Path) -> Hardware {
    let mut problems = Vec::new();
    let ma = &board.mic_array;

    let mic: Option<Box<dyn MicArray>> = match ma.backend {
        Backend::Sim => {
            let path = if cfg.audio.sim_recording.is_empty() {
                let p = state_dir.join(format!("room-{}ch-{}hz.wav", ma.capture_channels, ma.sample_rate));
                if !p.exists() {
                    // Render the array's channels in capture order.
                    let mut pos = vec![[0.0; 3]; ma.capture_channels as usize];
                    for (p, &c) in ma.positions.iter().zip(&ma.channels) {
                        pos[c as usize] = *p;
                    }
                    tracing::info!(path = %p.display(), "rendering the default room recording for the simulated mic array");
                    if let Err(e) = crate::audio::scene::write_default(&p, &pos, ma.sample_rate) {
                        problems.push(format!("cannot write the default room recording: {e}"));
                    }
                }
                p
            } else {
                PathBuf::from(&cfg.audio.sim_recording)
            };
            match SimMicArray::open(&path, ma.capture_channels, ma.sample_rate) {
                Ok(m) => Some(Box::new(m)),
                Err(e) => {
                    problems.push(format!("simulated mic array: {e}"));
                    None
                }
            }
        }
        Backend::Linux => match AlsaCapture::open(&ma.device, ma.capture_channels, ma.sample_rate) {
            Ok(m) => Some(Box::new(m)),
            Err(e) => {
                problems.push(format!("mic array: {e}"));
                None
            }
        },
    };

    let ao = &board.audio_out;
    let fmt = StreamFormat { sample_rate: ao.sample_rate, channels: ao.channels };
    let mut speaker_file = None;
    let out: Option<Box<dyn AudioOutput>> = match ao.backend {
        Backend::Sim => {
            let p = if cfg.audio.sim_output.is_empty() {
                state_dir.join("speaker.wav")
            } else {
                PathBuf::from(&cfg.audio.sim_output)
            };
            speaker_file = Some(p.clone());
            match SimAudioOut::create(&p, fmt) {
                Ok(o) => Some(Box::new(o)),
                Err(e) => {
                    problems.push(format!("simulated loudspeaker: {e}"));
                    None
                }
            }
        }
        Backend::Linux => match AlsaPlayback::open(&ao.device, ao.channels, ao.sample_rate) {
            Ok(o) => Some(Box::new(o)),
            Err(e) => {
                problems.push(format!("loudspeaker: {e}"));
                None
            }
        },
    };

    let camera: Box<dyn Camera> = match board.camera.backend {
        Backend::Sim => Box::new(SimCamera::default()),
        Backend::Linux => {
            let cam = V4l2Camera::new(Path::new(&board.camera.device));
            if let Err(e) = cam.info() {
                problems.push(format!("camera: {e}"));
            }
            Box::new(cam)
        }
    };

    let leds: Box<dyn Leds> = match &board.leds.driver {
        LedDriver::Sim => Box::new(SimLeds::default()),
        LedDriver::None => Box::new(NoLeds::default()),
        LedDriver::Gpio { red, green, blue } => {
            match GpioLeds::open(red.as_ref().map(line), green.as_ref().map(line), blue.as_ref().map(line)) {
                Ok(l) => Box::new(l),
                Err(e) => {
                    problems.push(format!("LEDs: {e}"));
                    Box::new(NoLeds::default())
                }
            }
        }
        LedDriver::Apa102 { spidev, count, power } => {
            match Apa102Leds::open(spidev, *count, power.as_ref().map(line)) {
                Ok(l) => Box::new(l),
                Err(e) => {
                    problems.push(format!("LEDs: {e}"));
                    Box::new(NoLeds::default())
                }
            }
        }
    };

    let (sim_buttons, gpio_buttons) = match board.buttons.backend {
        Backend::Sim => (Some(SimButtons::new()), None),
        Backend::Linux => {
            let mut lines = Vec::new();
            for (b, l) in [
                (huis_hal::buttons::Button::Call, &board.buttons.call),
                (huis_hal::buttons::Button::Mute, &board.buttons.mute),
            ] {
                if let Some(l) = l {
                    lines.push(ButtonLine { button: b, chip: l.chip.clone(), line: l.line, active_low: l.active_low });
                }
            }
            (None, Some(GpioButtons::new(lines)))
        }
    };

    Hardware { mic, out, camera, leds, sim_buttons, gpio_buttons, problems, speaker_file }
}

impl Hardware {
    /// Starts button delivery to `sink`; problems are recorded.
    pub fn start_buttons(&mut self, sink: huis_hal::buttons::PressSink) {
        if let Some(b) = self.sim_buttons.as_mut() {
            let _ = b.start(sink.clone());
        }
        if let Some(b) = self.gpio_buttons.as_mut() {
            if let Err(e) = b.start(sink) {
                self.problems.push(format!("buttons: {e}"));
            }
        }
    }
}
