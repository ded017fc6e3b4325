//! The noise suppressor's first seconds: a sound that is there from the start is not taken for
//! noise. Found against real peers: a tonal near end (a test tone, hold music, a gateway's
//! prompt) in a call placed right after start-up reached the far end 17 dB too quiet and took
//! ~20 s to come up.

use huis_dsp::geometry::respeaker6;
use huis_dsp::{Config, Processor};

const FS: usize = 16000;

/// 1.7 kHz bursts (`on_ms` on, `off_ms` off) at −20 dBFS over a −70 dBFS hiss, the same on every
/// mic (what the sim board does with a mono recording: a source straight above the array);
/// silent far end. Returns the output level (dBFS) of each second.
fn levels_per_second(on_ms: usize, off_ms: usize, secs: usize, beam: bool, ns: bool) -> Vec<f64> {
    let mut cfg = Config::new(respeaker6());
    cfg.beamforming = beam;
    cfg.noise_suppression = ns;
    let mut p = Processor::new(&cfg).unwrap();
    let m = p.n_mics();
    let mut frame = vec![0f32; 160 * m];
    let mut out = vec![0f32; 160];
    let mut energy = vec![0f64; secs];
    let mut seed = 0x2545_f491u32;
    for f in 0..secs * 100 {
        for i in 0..160 {
            let n = f * 160 + i;
            let on = (n * 1000 / FS) % (on_ms + off_ms) < on_ms;
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let hiss = ((seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5) * 0.001;
            let tone = if on { 0.1 * (std::f32::consts::TAU * 1700.0 * n as f32 / FS as f32).sin() } else { 0.0 };
            frame[i * m..(i + 1) * m].fill(tone + hiss);
        }
        p.process(&frame, &[], &mut out);
        energy[f / 100] += out.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>();
    }
    energy.iter().map(|e| 10.0 * (2.0 * e / FS as f64 + 1e-20).log10()).collect()
}

fn mean_db(levels: &[f64]) -> f64 {
    10.0 * (levels.iter().map(|l| 10f64.powf(l / 10.0)).sum::<f64>() / levels.len() as f64).log10()
}

fn assert_level_from_the_start(on_ms: usize, off_ms: usize, beam: bool) {
    let l = levels_per_second(on_ms, off_ms, 25, beam, true);
    let (first, settled) = (mean_db(&l[..3]), mean_db(&l[20..]));
    assert!(
        (first - settled).abs() <= 2.0,
        "{on_ms}/{off_ms} ms bursts, beam {beam}: the first 3 s leave at {first:.1} dBFS, 20 s later \
         {settled:.1} dBFS; per second: {l:.1?}"
    );
}

#[test]
fn tone_bursts_from_the_start_keep_their_level_through_the_beam() {
    assert_level_from_the_start(500, 500, true);
}

/// Bursts whose pauses are too short for the hiss to show between them: the suppressor must not
/// take them for noise from the first frame on (it did, by 13 dB, for as long as they went on).
#[test]
fn long_bursts_with_short_pauses_are_not_suppressed() {
    assert_level_from_the_start(1000, 200, true);
    let with = mean_db(&levels_per_second(1000, 200, 10, true, true));
    let without = mean_db(&levels_per_second(1000, 200, 10, true, false));
    assert!(
        without - with <= 3.0,
        "the suppressor takes {:.1} dB off the bursts ({with:.1} dBFS, {without:.1} without it)",
        without - with
    );
}

#[test]
fn tone_bursts_keep_their_level_without_the_beam() {
    assert_level_from_the_start(500, 500, false);
}
