//! Echo cancellation on an in-process echo path (simulated room, delay offset).

use huis_dsp::aec::{Aec, AecParams};
use huis_dsp::roomsim::{self, Rng, Room};
use huis_dsp::stft::Fft;

fn erle_after(far: &[f32], mic: &[f32], skip_s: f64) -> f64 {
    let mut aec = Aec::new(1, 160, &AecParams::default());
    let mut fft = Fft::new(320);
    let mut e = vec![0.0f32; 160];
    let mut echo = vec![0.0f32; 160];
    let (mut pm, mut pe) = (0.0f64, 0.0f64);
    for f in 0..far.len() / 160 {
        e.copy_from_slice(&mic[f * 160..(f + 1) * 160]);
        aec.process(&mut fft, &far[f * 160..(f + 1) * 160], &mut e, &mut echo);
        if f as f64 * 0.01 >= skip_s {
            pm += mic[f * 160..(f + 1) * 160].iter().map(|v| (*v as f64).powi(2)).sum::<f64>();
            pe += e.iter().map(|v| (*v as f64).powi(2)).sum::<f64>();
        }
    }
    10.0 * (pm / pe).log10()
}

/// A speech-like far end with its room noise 25 dB down (a real far end is never bin-sparse).
fn far_end(n: usize, rng: &mut Rng) -> Vec<f32> {
    let mut far = roomsim::speech_like(n, 16000.0, rng);
    let pn = roomsim::pink_noise(n, rng);
    let g = roomsim::rms(&far) * 10f32.powf(-25.0 / 20.0);
    far.iter_mut().zip(&pn).for_each(|(a, b)| *a += g * b);
    far
}

/// What the loudspeaker plays: the reference, `delay` samples late (the playback path).
fn played(far: &[f32], delay: usize) -> Vec<f32> {
    let mut p = vec![0.0f32; far.len()];
    p[delay..].copy_from_slice(&far[..far.len() - delay]);
    p
}

/// A far end played in a room (RT60 0.3 s, 20 ms playback delay) by a loudspeaker that moves
/// 20 cm towards the mics at sample `at`: the room, the far end, and the echo at each mic.
fn moved_loudspeaker(n: usize, at: usize, mic_pos: &[[f64; 3]], rng: &mut Rng) -> (Room, Vec<f32>, Vec<Vec<f32>>) {
    let far = far_end(n, rng);
    let room = Room::new([5.0, 4.0, 2.8], 0.3, 16000.0);
    let played = played(&far, 320);
    let before = room.render(&played, [2.5, 0.2, 0.9], mic_pos, 0.3);
    let after = room.render(&played, [2.5, 0.4, 0.9], mic_pos, 0.3);
    let echo =
        before.iter().zip(&after).map(|(b, a)| (0..n).map(|i| if i < at { b[i] } else { a[i] }).collect()).collect();
    (room, far, echo)
}

#[test]
fn linear_echo_path_is_cancelled() {
    let mut rng = Rng::new(5);
    let n = 16000 * 5;
    let far = far_end(n, &mut rng);
    let room = Room::new([5.0, 4.0, 2.8], 0.2, 16000.0);
    let played = played(&far, 480); // 30 ms between reference and capture
    let mic = room.render(&played, [2.5, 0.2, 0.9], &[[2.4, 1.6, 0.75]], 0.2).remove(0);
    let mut mic = mic;
    for v in mic.iter_mut() {
        *v += 1e-5 * rng.normal() as f32;
    }
    let erle = erle_after(&far, &mic, 3.5);
    eprintln!("linear ERLE after 3.5 s: {erle:.1} dB");
    assert!(erle > 15.0, "ERLE {erle:.1} dB");
}

#[test]
fn white_noise_pure_delay_is_cancelled() {
    let mut rng = Rng::new(6);
    let n = 16000 * 3;
    let far: Vec<f32> = (0..n).map(|_| 0.1 * rng.normal() as f32).collect();
    let mut mic = vec![0.0f32; n];
    let dl = 700;
    for i in dl + 5..n {
        mic[i] = 0.5 * far[i - dl] - 0.2 * far[i - dl - 5];
    }
    let erle = erle_after(&far, &mic, 2.0);
    eprintln!("white/delay ERLE after 2 s: {erle:.1} dB");
    assert!(erle > 30.0, "ERLE {erle:.1} dB");
}

#[test]
fn echo_path_change_is_detected_and_double_talk_is_not() {
    // far end throughout; a near-end talker as loud as the echo 4-5.5 s (double talk); the
    // loudspeaker moves 20 cm towards the mic at 8 s (a move across the line of sight changes
    // the path far less, and is left to the post-filter's regression)
    let mut rng = Rng::new(7);
    let fs = 16000;
    let n = fs * 10;
    let mic_pos = [[2.4, 1.6, 0.75]];
    let (room, far, echo) = moved_loudspeaker(n, fs * 8, &mic_pos, &mut rng);
    let mut mic = echo.into_iter().next().unwrap();
    let (d0, d1) = (fs * 4, fs * 11 / 2);
    let mut near = vec![0.0f32; n];
    let ns = roomsim::speech_like(d1 - d0, 16000.0, &mut rng);
    near[d0..d1].copy_from_slice(&ns);
    let near = room.render(&near, [2.0, 3.0, 1.2], &mic_pos, 0.3).remove(0);
    let gn = roomsim::rms(&mic[d0..d1]) / roomsim::rms(&near[d0..d1]).max(1e-9);
    for i in 0..n {
        mic[i] += gn * near[i] + 1e-4 * rng.normal() as f32;
    }
    let mut aec = Aec::new(1, 160, &AecParams::default());
    let mut fft = Fft::new(320);
    let mut e = vec![0.0f32; 160];
    let mut echo = vec![0.0f32; 160];
    let (mut in_dt, mut after_change, mut elsewhere) = (0, None, 0);
    for f in 0..n / 160 {
        e.copy_from_slice(&mic[f * 160..(f + 1) * 160]);
        aec.process(&mut fft, &far[f * 160..(f + 1) * 160], &mut e, &mut echo);
        if aec.path_changed() {
            let t = f as f64 * 0.01;
            if (4.0..5.8).contains(&t) {
                in_dt += 1;
            } else if t >= 8.0 {
                after_change.get_or_insert(t);
            } else {
                elsewhere += 1;
            }
        }
    }
    eprintln!("path change: double-talk frames {in_dt}, first after the move {after_change:?}, others {elsewhere}");
    assert_eq!(in_dt, 0, "double talk taken for an echo-path change");
    let t = after_change.expect("echo-path change not detected");
    assert!(t < 8.5, "echo-path change detected only at {t:.2} s");
}

/// Output ERLE (dB) of the full chain over `frames` (frames where the far end plays).
fn window_erle(mic_pow: &[f64], out_pow: &[f64], frames: impl Iterator<Item = usize>) -> f64 {
    let (mut pm, mut po) = (0.0, 0.0);
    for f in frames {
        pm += mic_pow[f];
        po += out_pow[f];
    }
    10.0 * (pm / po.max(1e-30)).log10()
}

#[test]
fn echo_stays_removed_after_the_loudspeaker_moves() {
    // The full chain (canceller per mic, beam, post-filter) on a 4-mic array, far end only; at
    // 8 s the loudspeaker is moved 20 cm towards the array. What the room hears: within 2 s of the
    // move, the output's echo is back to within 3 dB of how far down it was before (what the
    // echo scorer calls re-convergence), measured over sliding 0.5 s windows.
    use huis_dsp::{Config, Processor, geometry};
    let mut rng = Rng::new(11);
    let fs = 16000;
    let n = fs * 11;
    let geom = geometry::respeaker4();
    let mic_pos = roomsim::mics_in_room(&geom, [2.4, 1.6, 0.75]);
    let (_, far, echo) = moved_loudspeaker(n, fs * 8, &mic_pos, &mut rng);
    let m = mic_pos.len();
    let mut mics = vec![0.0f32; n * m];
    for i in 0..n {
        for c in 0..m {
            mics[i * m + c] = echo[c][i] + 1e-4 * rng.normal() as f32;
        }
    }
    let mut p = Processor::new(&Config::new(geom)).unwrap();
    let lat = p.latency_samples();
    let hop = 160;
    let mut out = vec![0.0f32; n + hop];
    for f in 0..n / hop {
        p.process(
            &mics[f * hop * m..(f + 1) * hop * m],
            &far[f * hop..(f + 1) * hop],
            &mut out[f * hop..(f + 1) * hop],
        );
    }
    // frame powers of mic 0 and of the output (shifted back by the chain's latency)
    let nf = (n - lat) / hop;
    let pow = |x: &mut dyn Iterator<Item = f32>| x.map(|v| (v as f64).powi(2)).sum::<f64>();
    let mic_pow: Vec<f64> = (0..nf).map(|f| pow(&mut (f * hop..(f + 1) * hop).map(|i| mics[i * m]))).collect();
    let out_pow: Vec<f64> =
        (0..nf).map(|f| pow(&mut out[f * hop + lat..(f + 1) * hop + lat].iter().copied())).collect();
    let active_level = mic_pow.iter().sum::<f64>() / nf as f64;
    let active = |f: &usize| mic_pow[*f] > 0.01 * active_level;
    let before = window_erle(&mic_pow, &out_pow, (600..800).filter(active));
    let mut reconv = None;
    for end in (850..nf.min(1100)).step_by(10) {
        let fr: Vec<usize> = (end - 50..end).filter(active).collect();
        if fr.len() >= 25 && window_erle(&mic_pow, &out_pow, fr.into_iter()) >= before - 3.0 {
            reconv = Some((end - 800) as f64 * 0.01);
            break;
        }
    }
    let after = window_erle(&mic_pow, &out_pow, (800..1000).filter(active));
    eprintln!(
        "output ERLE before the move {before:.1} dB, 2 s after it {after:.1} dB, back within 3 dB after {reconv:?} s"
    );
    assert!(before > 25.0, "echo only {before:.1} dB down before the move");
    let t = reconv.expect("echo not back within 3 dB of its depth within 3 s of the move");
    assert!(t <= 2.0, "echo back within 3 dB only {t:.1} s after the move");
}
