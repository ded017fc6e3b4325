//! WAV input/output for the offline tool and the scene generators, with input checks that
//! refuse what the processor cannot use (wrong rate, wrong channel count, truncated data).

use crate::DspError;
use std::path::Path;

/// Interleaved samples scaled to ±1.
pub struct Audio {
    pub channels: usize,
    pub sample_rate: u32,
    pub samples: Vec<f32>,
}

impl Audio {
    pub fn frames(&self) -> usize {
        self.samples.len() / self.channels.max(1)
    }
    /// One channel as a vector.
    pub fn channel(&self, ch: usize) -> Vec<f32> {
        self.samples.iter().skip(ch).step_by(self.channels).copied().collect()
    }
}

fn input_err(path: &Path, msg: impl Into<String>) -> DspError {
    DspError::Input { path: path.display().to_string(), msg: msg.into() }
}

/// Reads a WAV file (PCM 16/24/32-bit or 32-bit float). A data chunk shorter than its header says
/// is refused as truncated.
pub fn read_wav(path: &Path) -> Result<Audio, DspError> {
    let bytes = std::fs::read(path).map_err(|e| DspError::Io { path: path.display().to_string(), source: e })?;
    parse_wav(path, &bytes)
}

/// Parses WAV bytes (`path` names them in errors). Never trusts the header's lengths: samples
/// are read only as far as the bytes go.
pub fn parse_wav(path: &Path, bytes: &[u8]) -> Result<Audio, DspError> {
    let file_len = bytes.len() as u64;
    let mut r = hound::WavReader::new(std::io::Cursor::new(bytes)).map_err(|e| match e {
        hound::Error::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            input_err(path, "truncated WAV file (the header is incomplete)")
        }
        e => input_err(path, format!("not a readable WAV file: {e}")),
    })?;
    let spec = r.spec();
    let declared = r.len() as u64 * (spec.bits_per_sample as u64).div_ceil(8);
    if declared + 44 > file_len + 8 && r.len() > 0 {
        // hound trusts the header; check the bytes are really there
        let have = file_len.saturating_sub(44);
        if have < declared {
            return Err(input_err(
                path,
                format!("truncated WAV file: header declares {declared} data bytes, file holds about {have}"),
            ));
        }
    }
    let samples: Result<Vec<f32>, hound::Error> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => r.samples::<f32>().collect(),
        (hound::SampleFormat::Int, b @ (16 | 24 | 32)) => {
            let s = 1.0 / (1u64 << (b - 1)) as f32;
            r.samples::<i32>().map(|v| v.map(|v| v as f32 * s)).collect()
        }
        (f, b) => {
            return Err(input_err(path, format!("unsupported sample format {f:?} {b}-bit")));
        }
    };
    let samples = samples.map_err(|e| match e {
        hound::Error::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            input_err(path, "truncated WAV file: the data ends before the header says")
        }
        e => input_err(path, format!("bad WAV data: {e}")),
    })?;
    let channels = spec.channels as usize;
    if channels == 0 || samples.len() % channels != 0 {
        return Err(input_err(path, "truncated WAV file: the last frame is incomplete"));
    }
    Ok(Audio { channels, sample_rate: spec.sample_rate, samples })
}

/// Writes interleaved ±1 samples as 16-bit PCM (clipped).
pub fn write_wav(path: &Path, channels: usize, sample_rate: u32, samples: &[f32]) -> Result<(), DspError> {
    let spec = hound::WavSpec {
        channels: channels as u16,
        sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let err = |e: hound::Error| input_err(path, format!("cannot write WAV: {e}"));
    let mut w = hound::WavWriter::create(path, spec).map_err(err)?;
    for &s in samples {
        let v = (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
        w.write_sample(v).map_err(err)?;
    }
    w.finalize().map_err(err)
}
