//! Probe: the ignored linear-bar room test's talkers under varied conditions.
use huis_dsp::doa::ang_diff;
use huis_dsp::roomsim::{self, Rng, Room};
use huis_dsp::{Config, Geometry, Processor, geometry};

fn track(g: &Geometry, chans: &[Vec<f32>], el: f64) -> (Option<f32>, Vec<f32>) {
    let mut cfg = Config::new(g.clone());
    cfg.beamforming = false;
    cfg.noise_suppression = false;
    cfg.echo_cancellation = false;
    cfg.linear_talker_elevation_deg = el;
    cfg.linear_room = match std::env::var("MODEL").as_deref() {
        Ok("off") => None,
        _ => Some(huis_dsp::doa::LinearRoom { mount_height_m: 0.75, ceiling_height_m: 2.8, ..Default::default() }),
    };
    let mut p = Processor::new(&cfg).unwrap();
    let m = g.n_mics();
    let x = roomsim::interleave(chans);
    let mut out = vec![0.0; 160];
    let mut last = None;
    let mut hist = Vec::new();
    for f in x.chunks_exact(160 * m) {
        let r = p.process(f, &[], &mut out);
        last = r.talker_azimuth_deg;
        if r.doa_updated && std::env::var("RAW").is_ok() {
            match r.doa_block {
                Some((a, c, act)) => eprint!("{a:.0}/{c:.2}/{act:.2} "),
                None => eprint!("- "),
            }
        }
        if r.doa_updated {
            if let Some(a) = last {
                hist.push(a);
            }
        }
    }
    (last, hist)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(|s| s.as_str()).unwrap_or("room");
    let snr: f32 = args.get(2).map(|s| s.parse().unwrap()).unwrap_or(15.0);
    let el_assumed: f64 = args.get(3).map(|s| s.parse().unwrap()).unwrap_or(15.0);
    let mut rng = Rng::new(41);
    let n = 16000 * 2;
    let lead: f64 = std::env::var("LEAD").ok().map(|v| v.parse().unwrap()).unwrap_or(0.0);
    let mut s = vec![0.0f32; (lead * 16000.0) as usize];
    s.extend(roomsim::speech_like(n, 16000.0, &mut rng));
    let mut room = Room::new([5.5, 4.5, 2.8], 0.3, 16000.0);
    match mode {
        "anechoic" => room.beta = 0.0,
        "room" => {}
        b => room.beta = b.parse().unwrap(),
    }
    let centre = [2.6, 1.2, 0.75];
    let g = geometry::linear(4, 0.04, 90.0);
    let mics = roomsim::mics_in_room(&g, centre);
    for src in [[1.6, 2.6, 1.2], [3.3, 2.9, 1.25], [2.5, 2.8, 1.2], [3.9, 2.4, 1.2], [1.5, 2.0, 1.3]] {
        let (az, el, _) = roomsim::direction(centre, src);
        let mut chans = room.render(&s, src, &mics, 0.25);
        if snr < 100.0 {
            let noise = roomsim::diffuse_noise(&g, s.len(), 16000.0, 24, &mut rng);
            let sp = roomsim::rms(&chans[0]);
            for (c, nz) in chans.iter_mut().zip(noise) {
                for (v, w) in c.iter_mut().zip(nz) {
                    *v += w * sp * 10f32.powf(-snr / 20.0);
                }
            }
        } else {
            for c in chans.iter_mut() {
                for v in c.iter_mut() {
                    *v += 1e-4 * rng.normal() as f32;
                }
            }
        }
        let (est, hist) = track(&g, &chans, el_assumed);
        let est = est.unwrap_or(f32::NAN);
        let err = ang_diff(est, az as f32);
        eprintln!();
        let h: Vec<String> = hist.iter().step_by(2).map(|a| format!("{a:.0}")).collect();
        println!("beta {:.2} az {az:.1} el {el:.1} est {est:.1} err {err:.1} | {}", room.beta, h.join(" "));
    }
}
