//! Turns a board descriptor into running hardware backends.
//!
//! Only this module looks at `Backend::Sim` versus `Backend::Linux`; the rest
//! of huisd sees traits. A device that fails to open on real hardware does
//! not stop huisd: the room stays manageable over D-Bus and says what is
//! missing in `LastError`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use huis_board::{Backend, Board, LedDriver};
use huis_hal::audio::{AlsaCapture, AlsaPlayback, AudioOutput, MicArray, SimAudioOut, SimMicArray, StreamFormat};
use huis_hal::buttons::{ButtonLine, Buttons, GpioButtons, SimButtons};
use huis_hal::camera::{Camera, SimCamera, V4l2Camera};
use huis_hal::content::{
    ContentLimits, ContentSource, DeviceMatch, SimContent, SimContentConfig, V4l2Content, V4l2Kind,
};
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
    /// The HDMI input a laptop is plugged into, on boards that have one.
    pub content: Option<Arc<dyn ContentSource>>,
    /// The same input when it is the simulated slide deck: plugged and unplugged over D-Bus.
    pub sim_content: Option<Arc<SimContent>>,
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
                let p = sim_recording_path(board, state_dir);
                if !p.exists() {
                    tracing::info!(path = %p.display(), "rendering the default room recording for the simulated mic array");
                    if let Err(e) = write_default_recording(&p, board) {
                        problems.push(format!("cannot write the default room recording: {e}"));
                    }
                }
                p
            } else {
                PathBuf::from(&cfg.audio.sim_recording)
            };
            // A mono recording (a test tone, a voice) is one talker in front of the array.
            let mics: Vec<(u16, [f64; 3])> = ma.channels.iter().copied().zip(ma.positions.iter().copied()).collect();
            let front = ma.front_azimuth_deg.unwrap_or(0.0);
            match SimMicArray::open(&path, ma.capture_channels, ma.sample_rate) {
                Ok(m) => Some(Box::new(m.mono_as_talker(&mics, front))),
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

    let (content, sim_content) = match &board.content {
        None => (None, None),
        Some(c) => match open_content(c) {
            Ok(pair) => pair,
            Err(e) => {
                problems.push(format!("content input: {e}"));
                (None, None)
            }
        },
    };

    Hardware { mic, out, camera, leds, sim_buttons, gpio_buttons, problems, speaker_file, content, sim_content }
}

type ContentPair = (Option<Arc<dyn ContentSource>>, Option<Arc<SimContent>>);

/// The board's `[content]` input. The simulated deck starts with nothing plugged in, as a room
/// does; `Room1.SimulateContentInput` plugs the laptop.
fn open_content(c: &huis_board::Content) -> Result<ContentPair, String> {
    let limits = ContentLimits { max_width: c.max_width, max_height: c.max_height, max_fps: c.max_fps };
    let device = || match &c.device {
        huis_board::ContentDevice::Path(p) => DeviceMatch::Path(PathBuf::from(p)),
        huis_board::ContentDevice::Match(m) => DeviceMatch::Name(m.clone()),
        huis_board::ContentDevice::None => DeviceMatch::Name(String::new()),
    };
    Ok(match c.kind {
        huis_board::ContentKind::Sim => {
            let sim = Arc::new(
                SimContent::new(SimContentConfig {
                    mode: None,
                    page_interval: std::time::Duration::from_secs(u64::from(c.page_seconds.unwrap_or(5).max(1))),
                    limits,
                    ..SimContentConfig::default()
                })
                .map_err(|e| e.to_string())?,
            );
            (Some(sim.clone() as Arc<dyn ContentSource>), Some(sim))
        }
        huis_board::ContentKind::V4l2Dv => {
            (Some(Arc::new(V4l2Content::new(V4l2Kind::DvTimings, device(), limits)) as Arc<dyn ContentSource>), None)
        }
        huis_board::ContentKind::Uvc => {
            (Some(Arc::new(V4l2Content::new(V4l2Kind::Uvc, device(), limits)) as Arc<dyn ContentSource>), None)
        }
    })
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

fn geometry(board: &Board) -> Result<huis_dsp::Geometry, String> {
    huis_dsp::Geometry::new(board.mic_array.positions.clone(), board.mic_array.front_azimuth_deg)
        .map_err(|e| e.to_string())
}

/// The room audio processor for the board's array (16 kHz; other rates are
/// decimated to it by the audio thread).
pub fn dsp_for(board: &Board, cfg: &Config) -> Result<huis_dsp::Processor, String> {
    if board.mic_array.sample_rate % 16000 != 0 {
        return Err(format!("the mic array runs at {} Hz, not a multiple of 16 kHz", board.mic_array.sample_rate));
    }
    let mut c = huis_dsp::Config::new(geometry(board)?);
    c.echo_cancellation = cfg.audio.echo_cancellation;
    c.beamforming = cfg.audio.beamforming;
    c.noise_suppression = cfg.audio.noise_suppression;
    c.gain_control = cfg.audio.gain_control;
    huis_dsp::Processor::new(&c).map_err(|e| e.to_string())
}

/// Where huisd keeps the rendered default recording of `board` in `state_dir`.
fn sim_recording_path(board: &Board, state_dir: &Path) -> PathBuf {
    let ma = &board.mic_array;
    state_dir.join(format!("room-{}ch-{}hz.wav", ma.capture_channels, ma.sample_rate))
}

/// Renders the default recording into `state_dir` ahead of time (image
/// builds: `huisd --render-sim-recording DIR --board NAME`).
pub fn render_sim_recording(board: &Board, state_dir: &Path) -> Result<PathBuf, String> {
    if board.mic_array.backend != Backend::Sim {
        return Err(format!("board {} has no simulated mic array", board.name));
    }
    std::fs::create_dir_all(state_dir).map_err(|e| format!("{}: {e}", state_dir.display()))?;
    let p = sim_recording_path(board, state_dir);
    write_default_recording(&p, board)?;
    Ok(p)
}

/// Renders the sim board's default room recording: a talker in a simulated
/// meeting room (image-source reflections, diffuse noise), heard by the
/// board's array, written in capture-channel order as 16-bit WAV.
fn write_default_recording(path: &Path, board: &Board) -> Result<(), String> {
    let ma = &board.mic_array;
    if ma.sample_rate != 16000 {
        return Err(format!(
            "the default recording is rendered at 16 kHz; the board's array runs at {} Hz",
            ma.sample_rate
        ));
    }
    let g = geometry(board)?;
    let mics = huis_dsp::scene::sim_board_recording(&g, false, 0x5eed_0f_4015);
    let n_mics = ma.positions.len();
    let frames = mics.len() / n_mics;
    let spec = hound::WavSpec {
        channels: ma.capture_channels,
        sample_rate: ma.sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let tmp = path.with_extension("wav.part");
    let err = |e: hound::Error| format!("{}: {e}", tmp.display());
    let mut w = hound::WavWriter::create(&tmp, spec).map_err(err)?;
    let mut frame = vec![0i16; ma.capture_channels as usize];
    for f in 0..frames {
        frame.fill(0);
        for (m, &ch) in ma.channels.iter().enumerate() {
            frame[ch as usize] = (mics[f * n_mics + m].clamp(-1.0, 1.0) * 32767.0) as i16;
        }
        for s in &frame {
            w.write_sample(*s).map_err(err)?;
        }
    }
    w.finalize().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(|e| format!("{}: {e}", path.display()))
}
