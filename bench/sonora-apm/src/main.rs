//! Bench only (bench/score-apm.sh): sonora's AudioProcessing (AEC3, pure Rust) on one echo scene.
//!   sonora-apm MICS_WAV FAREND_WAV OUT_MIC0_WAV OUT_ALL_WAV [ns]
//! One instance with every mic as a capture channel (AEC3 keeps a filter per capture channel),
//! the far end as the render stream, 10 ms frames, reported stream delay 0 ms. Prints the CPU
//! time spent in processing (WAV I/O excluded) per second of audio.
use sonora::config::{EchoCanceller, NoiseSuppression};
use sonora::{AudioProcessing, Config, StreamConfig};
use std::time::Instant;

fn read(path: &str) -> (Vec<f32>, usize) {
    let mut r = hound::WavReader::open(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let spec = r.spec();
    assert_eq!(spec.sample_rate, 16000, "{path}: 16 kHz only");
    let x: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Int => r.samples::<i16>().map(|s| s.unwrap() as f32 / 32768.0).collect(),
        hound::SampleFormat::Float => r.samples::<f32>().map(|s| s.unwrap()).collect(),
    };
    (x, spec.channels as usize)
}

fn write(path: &str, x: &[f32], ch: usize) {
    let spec = hound::WavSpec { channels: ch as u16, sample_rate: 16000, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in x {
        w.write_sample((s * 32768.0).round().clamp(-32768.0, 32767.0) as i16).unwrap();
    }
    w.finalize().unwrap();
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let (mics, m) = read(&a[1]);
    let (far, fc) = read(&a[2]);
    assert_eq!(fc, 1, "far end must be mono");
    let ns = a.get(5).map(|s| s == "ns").unwrap_or(false);
    let config = Config {
        echo_canceller: Some(EchoCanceller::default()),
        noise_suppression: if ns { Some(NoiseSuppression::default()) } else { None },
        ..Default::default()
    };
    let mut apm = AudioProcessing::builder()
        .config(config)
        .capture_config(StreamConfig::new(16000, m as u16))
        .render_config(StreamConfig::new(16000, 1))
        .build();
    const F: usize = 160;
    let frames = mics.len() / m / F;
    let mut out = vec![0.0f32; frames * F * m];
    let mut cap: Vec<Vec<f32>> = vec![vec![0.0; F]; m];
    let mut res: Vec<Vec<f32>> = vec![vec![0.0; F]; m];
    let mut rin = vec![0.0f32; F];
    let mut rout = vec![0.0f32; F];
    let t0 = Instant::now();
    for f in 0..frames {
        for i in 0..F {
            rin[i] = far.get(f * F + i).copied().unwrap_or(0.0);
            for c in 0..m {
                cap[c][i] = mics[(f * F + i) * m + c];
            }
        }
        apm.process_render_f32(&[&rin], &mut [&mut rout]).unwrap();
        apm.set_stream_delay_ms(0).unwrap();
        let src: Vec<&[f32]> = cap.iter().map(|v| v.as_slice()).collect();
        let mut dst: Vec<&mut [f32]> = res.iter_mut().map(|v| v.as_mut_slice()).collect();
        apm.process_capture_f32(&src, &mut dst).unwrap();
        for i in 0..F {
            for c in 0..m {
                out[(f * F + i) * m + c] = res[c][i];
            }
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let audio = (frames * F) as f64 / 16000.0;
    let mic0: Vec<f32> = (0..frames * F).map(|i| out[i * m]).collect();
    write(&a[3], &mic0, 1);
    write(&a[4], &out, m);
    println!("{{\"proc_s\": {secs:.3}, \"audio_s\": {audio:.3}, \"mics\": {m}}}");
}
