#!/usr/bin/env python3
"""Runs WebRTC's audio processing (GStreamer webrtcdsp + webrtcechoprobe, i.e. Debian's
libwebrtc-audio-processing 0.3) on echo scenes and writes candidate outputs in the layout
score_echo.py reads: OUT/<variant>/<scene>/aec_out.wav. Used by bench/score-apm.sh.

  apm_gst.py SCENES_DIR OUT_DIR HUIS_DSP_BIN

Variants (each a folder of OUT_DIR):
  apm_mic0       webrtcdsp on all mics at once (one AEC per capture channel), mic 0 written:
                 echo-cancel on, NS/AGC off, delay-agnostic off; the line-for-line counterpart
                 of huis-dsp's `--stages aec` (mic 0 after its canceller)
  apm_da_mic0    the same with delay-agnostic on
  apm_ns_mic0    the same as apm_mic0 with noise suppression on (moderate), for information
  apm_bf         apm per mic (as apm_mic0), then huis-dsp's beam only (`--stages bf`)
  apm_bf_ns      apm per mic, then huis-dsp's beam + post-filter (`--stages bf,ns`, no echo
                 reference: the post-filter has no echo estimate, only noise)
  bf_apm         huis-dsp's beam first (`--stages bf`, no echo reference), then webrtcdsp on
                 the beam output (AEC on the beam)
  huis_aec       huis-dsp `--stages aec` (mic 0 after huis-dsp's canceller, no post-filter)
  huis_aec_bf    huis-dsp `--stages aec,bf`
  huis_full      huis-dsp `--stages aec,bf,ns` (the default chain)

The capture stream goes through a clocksync (0.5 s offset) before webrtcdsp so that it is paced
in real time and every 10 ms capture buffer is processed after the far-end stream (pushed
unsynchronised, all at once) is in the probe; the probe then pairs capture and far end by running
time, both files starting at running time 0. Consequence: each run takes the file's duration in
wall time; runs are started in parallel. CPU time is taken from the child's rusage (all threads
of gst-launch, including WAV parsing and writing; of huis-dsp, including WAV I/O). For apm_bf and
apm_bf_ns the beam's CPU is recorded; apm_table.py adds apm_mic0's.

Writes OUT_DIR/cpu.json: per variant and scene, CPU seconds, audio seconds and mics.
"""
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy.io import wavfile

FS = 16000


def run_timed(cmd):
    """Runs cmd, returns CPU seconds (user + sys) of the child and its wall time."""
    t0 = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.monotonic() - t0
    err = p.stderr.read().decode(errors="replace")
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({p.returncode}): {err[-400:]}")
    return ru.ru_utime + ru.ru_stime, wall


def apm(capture_wav, farend_wav, out_wav, delay_agnostic=False, ns=False):
    """webrtcdsp on every channel of capture_wav with farend_wav as the probe's stream."""
    far_caps = "audio/x-raw,format=S16LE,rate=16000,channels=1,layout=interleaved"
    _, x = wavfile.read(capture_wav)
    ch = 1 if x.ndim == 1 else x.shape[1]
    cmd = [
        "nice", "gst-launch-1.0", "-q",
        "filesrc", f"location={farend_wav}", "!", "wavparse", "!", "audioconvert", "!", far_caps, "!",
        "webrtcechoprobe", "name=farprobe", "!", "fakesink", "sync=false",
        # 10 ms buffers of the capture stream
        "filesrc", f"location={capture_wav}", f"blocksize={320 * ch}", "!", "wavparse", "!",
        "clocksync", "ts-offset=500000000", "!",
        "webrtcdsp", "probe=farprobe", "echo-cancel=true", "extended-filter=true",
        "echo-suppression-level=moderate", "high-pass-filter=true", "gain-control=false",
        f"delay-agnostic={'true' if delay_agnostic else 'false'}",
        f"noise-suppression={'true' if ns else 'false'}", "noise-suppression-level=moderate", "!",
        "wavenc", "!", "filesink", f"location={out_wav}", "sync=false",
    ]
    return run_timed(cmd)


def huis(bin_, mics, manifest, out_wav, stages, farend=None):
    cmd = ["nice", bin_, "--in", mics, "--geometry", manifest, "--out", out_wav, "--stages", stages]
    if farend:
        cmd += ["--farend", farend]
    return run_timed(cmd)


def channel0(src, dst):
    _, y = wavfile.read(src)
    wavfile.write(dst, FS, np.ascontiguousarray(y[:, 0] if y.ndim == 2 else y))


def to_int16(src, dst):
    """huis-dsp may write float WAVs; gst's wavparse path here expects S16LE."""
    _, y = wavfile.read(src)
    if y.dtype != np.int16:
        y = np.clip(np.round(np.asarray(y, dtype=np.float64) * 32768), -32768, 32767).astype(np.int16)
    wavfile.write(dst, FS, y)


def scene_jobs(scenes, sid, out, bin_, tmp):
    """Returns a list of (variant, callable) for one scene; each callable returns (cpu, wall)."""
    sd = os.path.join(scenes, sid)
    mics, far, man = (os.path.join(sd, n) for n in ("mics.wav", "farend_ref.wav", "manifest.json"))
    o = lambda v: os.path.join(out, v, sid, "aec_out.wav")
    for v in ("apm_mic0", "apm_da_mic0", "apm_ns_mic0", "apm_bf", "apm_bf_ns", "bf_apm",
              "huis_aec", "huis_aec_bf", "huis_full"):
        os.makedirs(os.path.dirname(o(v)), exist_ok=True)
    t = lambda n: os.path.join(tmp, f"{sid}_{n}.wav")

    def apm_all(variant, **kw):
        def f():
            r = apm(mics, far, t(variant), **kw)
            channel0(t(variant), o(variant))
            return r
        return f

    # these need apm_mic0's multichannel output (run after it); their CPU is the beam's only
    def apm_then(variant, stages):
        return lambda: huis(bin_, t("apm_mic0"), man, o(variant), stages)

    def bf_then_apm():
        c1, w1 = huis(bin_, mics, man, t("beam"), "bf")
        to_int16(t("beam"), t("beam16"))
        c2, w2 = apm(t("beam16"), far, o("bf_apm"))
        return c1 + c2, w1 + w2

    first = [
        ("apm_mic0", apm_all("apm_mic0")),
        ("apm_da_mic0", apm_all("apm_da_mic0", delay_agnostic=True)),
        ("apm_ns_mic0", apm_all("apm_ns_mic0", ns=True)),
        ("bf_apm", bf_then_apm),
        ("huis_aec", lambda: huis(bin_, mics, man, o("huis_aec"), "aec", far)),
        ("huis_aec_bf", lambda: huis(bin_, mics, man, o("huis_aec_bf"), "aec,bf", far)),
        ("huis_full", lambda: huis(bin_, mics, man, o("huis_full"), "aec,bf,ns", far)),
        ("huis_bf", lambda: huis(bin_, mics, man, t("huis_bf_only"), "bf")),
    ]
    second = [("apm_bf", apm_then("apm_bf", "bf")), ("apm_bf_ns", apm_then("apm_bf_ns", "bf,ns"))]
    return first, second


def main():
    scenes, out, bin_ = sys.argv[1:4]
    ids = json.load(open(os.path.join(scenes, "index.json")))["scenes"]
    os.makedirs(out, exist_ok=True)
    cpu = {}
    with tempfile.TemporaryDirectory(prefix="apm_") as tmp:
        jobs1, jobs2 = [], []
        for sid in ids:
            a, b = scene_jobs(scenes, sid, out, bin_, tmp)
            jobs1 += [(sid, v, f) for v, f in a]
            jobs2 += [(sid, v, f) for v, f in b]
        for batch in (jobs1, jobs2):
            # gst runs are paced in real time (mostly idle), so run many at once
            with ThreadPoolExecutor(max_workers=int(os.environ.get("APM_JOBS", "8"))) as ex:
                futs = [(sid, v, ex.submit(f)) for sid, v, f in batch]
                for sid, v, fu in futs:
                    c, w = fu.result()
                    cpu.setdefault(v, {})[sid] = {"cpu_s": round(c, 3), "wall_s": round(w, 2)}
                    print(f"{sid} {v}: cpu {c:.2f} s, wall {w:.1f} s", flush=True)
    for sid in ids:
        sd = os.path.join(scenes, sid)
        m = json.load(open(os.path.join(sd, "manifest.json")))
        for v in cpu:
            cpu[v][sid].update(audio_s=m["duration_s"], mics=m["n_mics"])
    json.dump(cpu, open(os.path.join(out, "cpu.json"), "w"), indent=1)


if __name__ == "__main__":
    main()
