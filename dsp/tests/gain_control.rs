//! Gain control: speech is steered to −26 dBFS; a room far louder than that (a talker close
//! to the array, a hot mic gain) is brought down within seconds, not over the first 15 s of a
//! call, and no faster rule pulls ordinary speech below the target.

use huis_dsp::geometry::respeaker6;
use huis_dsp::roomsim::{Rng, interleave, normalize_rms, plane_wave, speech_like};
use huis_dsp::{Config, Processor};

const FS: usize = 16000;

/// A talker in front of a ReSpeaker 6 at `rms` (full scale 1), through beam, suppressor and gain
/// control. Returns the output level (dBFS) of the speech frames in each second.
fn speech_levels(rms: f32, secs: usize) -> Vec<f64> {
    let mut cfg = Config::new(respeaker6());
    cfg.gain_control = true;
    let mut p = Processor::new(&cfg).unwrap();
    let m = p.n_mics();
    let mut rng = Rng::new(7);
    let mut talk = speech_like(secs * FS, FS as f64, &mut rng);
    normalize_rms(&mut talk, rms);
    let mics = interleave(&plane_wave(&talk, &respeaker6(), 30.0, 10.0, FS as f64));
    let mut out = vec![0f32; 160];
    let (mut energy, mut frames) = (vec![0f64; secs], vec![0usize; secs]);
    for (f, frame) in mics.chunks_exact(160 * m).enumerate() {
        let rep = p.process(frame, &[], &mut out);
        if rep.speech {
            energy[f / 100] += out.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / 160.0;
            frames[f / 100] += 1;
        }
    }
    energy.iter().zip(&frames).map(|(e, &n)| 10.0 * (2.0 * e / n.max(1) as f64 + 1e-20).log10()).collect()
}

fn mean_db(levels: &[f64]) -> f64 {
    10.0 * (levels.iter().map(|l| 10f64.powf(l / 10.0)).sum::<f64>() / levels.len() as f64).log10()
}

#[test]
fn a_loud_room_is_level_within_seconds() {
    // −10 dBFS of speech at the mics: some 16 dB above the target.
    let l = speech_levels(0.3, 20);
    let (early, settled) = (mean_db(&l[3..5]), mean_db(&l[14..]));
    assert!(
        (early - settled).abs() <= 3.0,
        "speech leaves at {early:.1} dBFS in seconds 3-5 and {settled:.1} dBFS from second 14; per second: {l:.1?}"
    );
}

#[test]
fn loud_and_ordinary_talkers_settle_at_the_same_level() {
    // The fast rule only brings a loud room down; it never pulls ordinary speech (about −26 dBFS
    // at the mics) below where the slow rule keeps it, on loud syllables or otherwise.
    let (loud, ordinary) = (speech_levels(0.15, 20), speech_levels(0.05, 20));
    let (l, o) = (mean_db(&loud[14..]), mean_db(&ordinary[14..]));
    assert!(
        (l - o).abs() <= 3.0,
        "loud speech settles at {l:.1} dBFS, ordinary speech at {o:.1}: {loud:.1?} / {ordinary:.1?}"
    );
    assert!((o + 26.0).abs() <= 3.0, "ordinary speech settles at {o:.1} dBFS, not near −26: {ordinary:.1?}");
}
