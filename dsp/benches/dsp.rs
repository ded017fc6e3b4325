//! Criterion benchmarks: cost per second of 16 kHz audio.
//! - `doa_track_beam_6ch`: DOA + tracking + MVDR beam on 6 channels (ReSpeaker 6-mic), the
//!   figure whose target is RTF ≤ 0.005; noise estimation and filterbank included, no AEC/NS.
//! - `ns_postfilter_6ch`: the same plus the post-filter (noise/reverb suppression).
//! - `aec_6ch`: the full chain with echo cancellation on all 6 mics.

use criterion::{Criterion, criterion_group, criterion_main};
use huis_dsp::roomsim::{self, Rng};
use huis_dsp::{Config, Processor, geometry};
use std::hint::black_box;

fn fixture() -> (Vec<f32>, Vec<f32>) {
    let g = geometry::respeaker6();
    let mut rng = Rng::new(3);
    let n = 16000;
    let s = roomsim::speech_like(n, 16000.0, &mut rng);
    let chans = roomsim::plane_wave(&s, &g, 60.0, 10.0, 16000.0);
    let mut inter = vec![0.0f32; n * 6];
    for i in 0..n {
        for c in 0..6 {
            inter[i * 6 + c] = chans[c][i] + 0.01 * rng.normal() as f32;
        }
    }
    let far = roomsim::speech_like(n, 16000.0, &mut rng);
    (inter, far)
}

fn run(p: &mut Processor, mics: &[f32], far: Option<&[f32]>) {
    let mut out = [0.0f32; 160];
    for f in 0..100 {
        let fe: &[f32] = match far {
            Some(x) => &x[f * 160..(f + 1) * 160],
            None => &[],
        };
        black_box(p.process(&mics[f * 960..(f + 1) * 960], fe, &mut out));
    }
}

fn bench(c: &mut Criterion) {
    let (mics, far) = fixture();
    let mk = |aec: bool, ns: bool| {
        let mut cfg = Config::new(geometry::respeaker6());
        cfg.echo_cancellation = aec;
        cfg.noise_suppression = ns;
        cfg.gain_control = false;
        let mut p = Processor::new(&cfg).unwrap();
        run(&mut p, &mics, if aec { Some(&far) } else { None }); // warm up
        p
    };
    let mut p = mk(false, false);
    c.bench_function("doa_track_beam_6ch_1s", |b| b.iter(|| run(&mut p, &mics, None)));
    let mut p = mk(false, true);
    c.bench_function("ns_postfilter_6ch_1s", |b| b.iter(|| run(&mut p, &mics, None)));
    let mut p = mk(true, true);
    c.bench_function("aec_full_chain_6ch_1s", |b| b.iter(|| run(&mut p, &mics, Some(&far))));
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = bench
}
criterion_main!(benches);
