#!/usr/bin/env python3
"""Generates a validation set of meeting-room mic-array scenes with pyroomacoustics (image-source
shoebox rooms) and espeak-ng speech, in the format of the shared development scenes, so that their
score.py (and bench/score-scenes.sh) can score huis-dsp on it:

    pra_scenes.py OUT_DIR [--seeds 1 2 3] [--arrays linear4,resp4,uma8]

Per seed it writes four scenes: a single-talker and a two-talker (turn-taking) scene with a
4-mic linear bar, and one scene each with the ReSpeaker 4-mic and the UMA-8 (single or switch,
alternating with the seed), plus OUT_DIR/index.json. Scene folders hold:

- mix.wav          int16, interleaved, channel k = mic k, 16 kHz
- ref_direct.wav   the talkers' direct path at the array centre (the SI-SDR target)
- ref_early50.wav  direct path + reflections within 50 ms, at the array centre
- truth_doa.csv    block_start_s,azimuth_deg,talker per 100 ms block (NaN / -1: nobody talks)
- manifest.json    array (mic_positions_m relative to the centre, in room axes;
                   front_azimuth_deg for the linear bar), room, talkers, noise

Rooms: shoebox 4.5-8 x 4-7 x 2.6-3.2 m, RT60 0.2-0.7 s (absorption and image order from
Sayre/Sabine inversion, pyroomacoustics.inverse_sabine), noise diffuse (spherically isotropic,
mixed per frequency from the sinc coherence) and/or a point source (pink/brown noise from a
fan or projector somewhere in the room), 0-20 dB SNR: active speech level of the reverberant
talker at mic 0 over the noise power at mic 0. Planar arrays sit on a table (0.75 m) near the
middle of the room, talkers seated around it at 1-2.5 m. The linear bar sits under a screen:
0.2-0.5 m from a wall at 0.75-0.95 m, facing into the room; its talkers are in front of it at
1-3.5 m, between 20 and 160 degrees from its axis. Azimuth: degrees, 0 = +x, counter-clockwise.
"""
import argparse
import json
import math
import os
import sys
import os
import subprocess
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_scenes import active_level  # noqa: E402  (P.56-style active speech level)

import numpy as np
import pyroomacoustics as pra
from scipy.io import wavfile
from scipy.signal import fftconvolve, resample_poly

FS = 16000
C = 343.0
BLOCK_S = 0.1

ARRAYS = {
    "resp4": [[-0.032, 0, 0], [0, -0.032, 0], [0.032, 0, 0], [0, 0.032, 0]],
    "uma8": [[0, 0, 0]] + [[0.043 * math.cos(math.radians(60 * i)), 0.043 * math.sin(math.radians(60 * i)), 0]
                           for i in range(6)],
    # along the bar's own x axis; rotated to face into the room below
    "linear4": [[-0.06, 0, 0], [-0.02, 0, 0], [0.02, 0, 0], [0.06, 0, 0]],
}

SENTENCES = [
    "Please put the budget figures on the shared screen before the call.",
    "I think the second option is cheaper, but it takes longer to install.",
    "Can everyone on the remote side hear me clearly now?",
    "We moved the release to next Thursday because of the test results.",
    "The supplier sent three samples, and only one of them passed.",
    "Let me summarise what we agreed about the new office layout.",
    "Who is taking notes for this meeting today?",
    "The sound in this room is much better since we added the curtains.",
    "Our customers asked for a simpler way to book the small rooms.",
    "If nobody objects, we will start the pilot in the northern branch.",
    "The projector fan is rather loud when it has been on for an hour.",
    "Send me the draft tonight and I will review it in the morning.",
    "Four of the six teams finished their training last week.",
    "The camera should follow whoever is speaking at the table.",
    "I would rather wait until the numbers for March are complete.",
    "Thank you all for joining, let us get started with the first item.",
]
VOICES = ["en-us+m3", "en-gb+f2", "en-us+f3", "en-gb+m2", "en-us+m1", "en-gb-x-rp+f4"]


def tts(text, voice, rng):
    with tempfile.NamedTemporaryFile(suffix=".wav") as f:
        speed = int(rng.integers(140, 175))
        pitch = int(rng.integers(35, 65))
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-p", str(pitch), "-w", f.name, text],
                       check=True, capture_output=True)
        fs, x = wavfile.read(f.name)
    x = x.astype(np.float64) / 32768.0
    x = resample_poly(x, FS, fs) if fs != FS else x
    # trim leading/trailing silence
    env = np.abs(x) > 0.01 * np.max(np.abs(x))
    idx = np.flatnonzero(env)
    x = x[max(0, idx[0] - 160):idx[-1] + 160]
    return x / (np.sqrt(np.mean(x ** 2)) + 1e-12) * 0.05


def talker_sampler(rng, dims, centre, az_range, r_range, z_range, margin):
    """A function drawing seated-talker positions around `centre`, at least `margin` m from the walls."""
    def talker():
        for _ in range(1000):
            az = rng.uniform(*az_range)
            r = rng.uniform(*r_range)
            z = rng.uniform(*z_range)
            p = [centre[0] + r * math.cos(math.radians(az)), centre[1] + r * math.sin(math.radians(az)), z]
            if margin < p[0] < dims[0] - margin and margin < p[1] < dims[1] - margin:
                return p
        raise RuntimeError("no talker position")
    return talker


def colored_noise(n, rng, kind):
    w = rng.standard_normal(n)
    spec = np.fft.rfft(w)
    f = np.fft.rfftfreq(n, 1 / FS)
    f[0] = f[1]
    if kind == "pink":
        spec /= np.sqrt(f)
    elif kind == "brown":
        spec /= f
    x = np.fft.irfft(spec, n)
    return x / np.std(x)


def diffuse_noise(mics, n, rng):
    """Spherically isotropic noise at `mics` (M x 3): pink noise per mic mixed per frequency bin by
    a square root of the coherence matrix sinc(2 f d_ij / c)."""
    m = len(mics)
    nfft, hop = 512, 256
    win = np.sqrt(np.hanning(nfft + 1)[:nfft])
    nfr = n // hop + 2
    d = np.linalg.norm(mics[:, None, :] - mics[None, :, :], axis=2)
    freqs = np.fft.rfftfreq(nfft, 1 / FS)
    src = np.stack([colored_noise((nfr + 1) * hop, rng, "pink") for _ in range(m)])
    out = np.zeros((m, (nfr + 1) * hop))
    mix = []
    for f in freqs:
        gam = np.sinc(2 * f * d / C)
        ev, vec = np.linalg.eigh(gam)
        mix.append(vec @ np.diag(np.sqrt(np.maximum(ev, 0))) @ vec.T)
    mix = np.array(mix)  # F x M x M
    for t in range(nfr - 1):
        seg = src[:, t * hop:t * hop + nfft] * win
        spec = np.fft.rfft(seg, axis=1)  # M x F
        y = np.einsum("fij,jf->if", mix, spec)
        out[:, t * hop:t * hop + nfft] += np.fft.irfft(y, nfft, axis=1) * win
    out = out[:, :n]
    return out / np.std(out[0])


def frac_delay(x, delay_samples, n_out):
    n = int(2 ** math.ceil(math.log2(len(x) + delay_samples + 64)))
    X = np.fft.rfft(x, n)
    f = np.fft.rfftfreq(n)
    y = np.fft.irfft(X * np.exp(-2j * np.pi * f * delay_samples), n)
    out = np.zeros(n_out)
    k = min(n_out, n)
    out[:k] = y[:k]
    return out


def azimuth_el(centre, p):
    d = np.asarray(p) - np.asarray(centre)
    r = float(np.linalg.norm(d))
    return math.degrees(math.atan2(d[1], d[0])) % 360.0, math.degrees(math.asin(d[2] / r)), r


def place_array(kind, dims, rng):
    """Returns centre (room coordinates), mic offsets (M x 3, room axes), front azimuth (or None)
    and a sampler of talker positions."""
    if kind == "linear4":
        wall = int(rng.integers(0, 4))  # 0: wall y=0 (faces +y), 1: x=L (faces -x), 2: y=W (-y), 3: x=0 (+x)
        front = [90.0, 180.0, 270.0, 0.0][wall]
        off = rng.uniform(0.2, 0.5)
        h = rng.uniform(0.75, 0.95)
        along = dims[0] if wall in (0, 2) else dims[1]
        s = rng.uniform(0.4, 0.6) * along
        centre = {0: [s, off, h], 1: [dims[0] - off, s, h], 2: [s, dims[1] - off, h], 3: [off, s, h]}[wall]
        a = math.radians(front - 90.0)  # the bar's axis direction
        rot = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
        mics = np.array(ARRAYS[kind]) @ rot.T

        talker = talker_sampler(rng, dims, centre, (front - 70.0, front + 70.0), (1.0, 3.5), (1.15, 1.35), 0.5)
        return centre, mics, front, talker
    centre = [dims[0] / 2 + rng.uniform(-0.4, 0.4), dims[1] / 2 + rng.uniform(-0.4, 0.4), 0.75]
    mics = np.array(ARRAYS[kind], dtype=float)

    talker = talker_sampler(rng, dims, centre, (0.0, 360.0), (1.0, 2.5), (1.1, 1.35), 0.4)
    return centre, mics, None, talker


def make_scene(out_dir, scene_id, array, kind, seed):
    rng = np.random.default_rng(seed)
    dims = [rng.uniform(4.5, 8.0), rng.uniform(4.0, 7.0), rng.uniform(2.6, 3.2)]
    rt60 = rng.uniform(0.2, 0.7)
    absorption, max_order = pra.inverse_sabine(rt60, dims)
    max_order = int(min(max_order, 40))
    centre, mic_off, front, talker_pos = place_array(array, dims, rng)
    mics_room = np.asarray(centre) + mic_off
    n_talkers = 2 if kind == "switch" else 1
    positions = [talker_pos()]
    while len(positions) < n_talkers:
        p = talker_pos()
        a0 = azimuth_el(centre, positions[0])[0]
        a1 = azimuth_el(centre, p)[0]
        if min(abs(a0 - a1) % 360, 360 - abs(a0 - a1) % 360) > 30:
            positions.append(p)
    voices = list(rng.choice(VOICES, size=n_talkers, replace=False))
    sents = list(rng.permutation(len(SENTENCES)))
    # schedule: single = 3 sentences of one talker; switch = 6 turns alternating
    n_turns = 3 if kind == "single" else 6
    t = 0.5
    dry = [np.zeros(0) for _ in range(n_talkers)]
    segments = [[] for _ in range(n_talkers)]
    texts = [[] for _ in range(n_talkers)]
    clips = []
    for turn in range(n_turns):
        k = turn % n_talkers
        text = SENTENCES[sents[turn % len(sents)]]
        x = tts(text, voices[k], rng)
        clips.append((k, t, x))
        segments[k].append([round(t, 4), round(t + len(x) / FS, 4)])
        texts[k].append(text)
        gap = rng.uniform(0.4, 0.9) if kind == "single" else rng.uniform(0.1, 0.4)
        t += len(x) / FS + gap
    n = int((t + 0.5) * FS)
    for k in range(n_talkers):
        dry[k] = np.zeros(n)
    for k, t0, x in clips:
        i0 = int(round(t0 * FS))
        dry[k][i0:i0 + len(x)] += x

    room = pra.ShoeBox(dims, fs=FS, materials=pra.Material(absorption), max_order=max_order,
                       air_absorption=False)
    for k in range(n_talkers):
        room.add_source(positions[k], signal=dry[k])
    # the mics and, last, the array centre (for the references)
    room.add_microphone_array(np.vstack([mics_room, [centre]]).T)
    room.compute_rir()
    m = len(mics_room)
    images = np.zeros((n_talkers, m, n))
    ref_direct = np.zeros(n)
    ref_early = np.zeros(n)
    talkers_meta = []
    for k in range(n_talkers):
        for i in range(m):
            h = room.rir[i][k]
            y = fftconvolve(dry[k], h)[:n]
            images[k, i, :len(y)] = y
        # direct path at the centre: pure delay + 1/(4 pi r), as in the image-source model
        az, el, r = azimuth_el(centre, positions[k])
        d_samp = r / C * FS
        ref_direct += frac_delay(dry[k], d_samp, n) / (4 * math.pi * r)
        h = room.rir[m][k]
        # the direct path is the RIR's largest tap (pyroomacoustics adds its fractional-delay lag)
        t_dir = int(np.argmax(np.abs(h)))
        he = h[:t_dir + int(0.05 * FS)]
        y = fftconvolve(dry[k], he)[:n]
        ref_early[:len(y)] += y
        talkers_meta.append(dict(id=k, azimuth_deg=round(az, 2), elevation_deg=round(el, 2), distance_m=round(r, 3),
                                 position_room_m=[round(v, 4) for v in positions[k]], voice=voices[k],
                                 text=texts[k], segments_s=segments[k]))
    speech = images.sum(axis=0)
    # noise
    noise_kind = str(rng.choice(["diffuse", "point", "diffuse+point"]))
    snr_db = float(rng.uniform(0, 20))
    noise = np.zeros((m, n))
    point_meta = None
    if "diffuse" in noise_kind:
        noise += diffuse_noise(mic_off, n, rng)
    if "point" in noise_kind:
        ncol = str(rng.choice(["pink", "brown"]))
        p = [rng.uniform(0.3, dims[0] - 0.3), rng.uniform(0.3, dims[1] - 0.3), rng.uniform(0.3, 2.2)]
        nsrc = colored_noise(n, rng, ncol)
        nroom = pra.ShoeBox(dims, fs=FS, materials=pra.Material(absorption), max_order=min(max_order, 20),
                            air_absorption=False)
        nroom.add_source(p, signal=nsrc)
        nroom.add_microphone_array(mics_room.T)
        nroom.compute_rir()
        pn = np.zeros((m, n))
        for i in range(m):
            y = fftconvolve(nsrc, nroom.rir[i][0])[:n]
            pn[i, :len(y)] = y
        pn /= np.std(pn[0]) + 1e-20
        noise = pn if noise_kind == "point" else math.sqrt(0.5) * (noise + pn)
        az, el, r = azimuth_el(centre, p)
        point_meta = dict(kind=ncol, position_room_m=[round(v, 3) for v in p], azimuth_deg=round(az, 1))
    lvl = active_level(speech[0])
    noise *= math.sqrt(lvl / (np.mean(noise[0] ** 2) + 1e-20) * 10 ** (-snr_db / 10))
    sensor = rng.standard_normal((m, n)) * math.sqrt(lvl * 10 ** (-55 / 10))
    mix = speech + noise + sensor
    peak = np.max(np.abs(mix))
    g = 0.7 / peak
    os.makedirs(os.path.join(out_dir, scene_id), exist_ok=True)
    sd = os.path.join(out_dir, scene_id)

    def w16(name, x):
        wavfile.write(os.path.join(sd, name), FS, np.clip(np.round(x * g * 32767), -32768, 32767).astype(np.int16))

    w16("mix.wav", mix.T)
    w16("ref_direct.wav", ref_direct)
    w16("ref_early50.wav", ref_early)
    # truth: a block belongs to talker k when at least half of it lies in one of k's segments
    nb = int(math.floor(n / FS / BLOCK_S))
    with open(os.path.join(sd, "truth_doa.csv"), "w") as f:
        f.write("block_start_s,azimuth_deg,talker\n")
        for b in range(nb):
            b0, b1 = b * BLOCK_S, (b + 1) * BLOCK_S
            who = -1
            for k in range(n_talkers):
                cover = sum(max(0.0, min(b1, s1) - max(b0, s0)) for s0, s1 in segments[k])
                if cover >= 0.5 * BLOCK_S:
                    who = k
            az = talkers_meta[who]["azimuth_deg"] if who >= 0 else float("nan")
            f.write(f"{b0:.1f},{az},{who}\n")
    arr = dict(name=array, mic_positions_m=[[round(float(v), 5) for v in p] for p in mic_off],
               centre_in_room_m=[round(v, 4) for v in centre],
               orientation="mic positions in room axes; azimuth 0 = +x, counter-clockwise")
    if front is not None:
        arr["front_azimuth_deg"] = front
    man = dict(scene_id=scene_id, kind=kind, fs=FS, duration_s=round(n / FS, 4), n_mics=m, doa_block_s=BLOCK_S,
               array=arr,
               room=dict(dims_m=[round(v, 3) for v in dims], rt60_target_s=round(rt60, 3),
                         absorption_energy=round(float(absorption), 4), ism_max_order=max_order),
               talkers=talkers_meta,
               noise=dict(type=noise_kind, snr_db=round(snr_db, 1),
                          snr_definition="active-speech level of reverberant talker image at mic 0 / noise power at mic 0",
                          sensor_noise_db_below_speech=55, point_source=point_meta),
               files=dict(mix="mix.wav", ref="ref_direct.wav", ref_early="ref_early50.wav"),
               speech_source="espeak-ng", pyroomacoustics_version=pra.__version__, seed=seed,
               conventions=dict(azimuth="degrees in [0,360), 0 = +x, counter-clockwise, seen from array centre"))
    with open(os.path.join(sd, "manifest.json"), "w") as f:
        json.dump(man, f, indent=1)
    print(f"{scene_id}: room {dims[0]:.1f}x{dims[1]:.1f}x{dims[2]:.1f} RT60 {rt60:.2f} order {max_order}, "
          f"{noise_kind} {snr_db:.0f} dB, talkers " +
          ", ".join(f"az {t['azimuth_deg']:.0f} el {t['elevation_deg']:.0f} r {t['distance_m']:.1f}" for t in talkers_meta),
          flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--arrays", default="linear4,resp4,uma8")
    a = ap.parse_args()
    arrays = a.arrays.split(",")
    os.makedirs(a.out, exist_ok=True)
    ids = []
    for seed in a.seeds:
        plan = []
        if "linear4" in arrays:
            plan += [("linear4", "single"), ("linear4", "switch")]
        for j, arr in enumerate(x for x in arrays if x != "linear4"):
            plan.append((arr, "single" if (seed + j) % 2 else "switch"))
        for i, (arr, kind) in enumerate(plan):
            sid = f"p{'s' if kind == 'single' else 't'}{seed:02d}_{arr}"
            make_scene(a.out, sid, arr, kind, 7919 * seed + 101 * i + 13)
            ids.append(sid)
    with open(os.path.join(a.out, "index.json"), "w") as f:
        json.dump(dict(scenes=ids, seeds=a.seeds), f, indent=1)
    print(f"wrote {len(ids)} scenes to {a.out}")


if __name__ == "__main__":
    main()
