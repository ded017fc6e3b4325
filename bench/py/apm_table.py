#!/usr/bin/env python3
"""Prints the markdown tables of bench/score-apm.sh from OUT_DIR/<variant>/score.json and
OUT_DIR/cpu.json: per scene and mean, ERLE in far-end single talk, ERLE in the 2 s after the
echo-path change and the re-convergence time, double-talk figures, near-end SI-SDR and gain, and
CPU seconds per second of audio per mic.   apm_table.py OUT_DIR"""
import json
import os
import sys

import numpy as np

out = sys.argv[1]
cpu = json.load(open(os.path.join(out, "cpu.json")))
COLS = [("erle_fst_db", "ERLE_fst"), ("erle_fst_gc_db", "ERLEgc_fst"), ("erle_fe2pre_db", "ERLE_fe2pre"),
        ("erle_reconv_db", "ERLE_rc2s"), ("reconv_time_s", "t_reconv s"), ("dt_erle_lb_db", "DT_ERLE_lb"),
        ("dt_erle_est_db", "DT_ERLE_est"), ("sisdr_dt_db", "SISDR_dt"), ("sisdr_ne_db", "SISDR_ne"),
        ("ne_gain_db", "NE_gain"), ("latency_ms", "lat ms")]


def cell(r, k):
    if k == "reconv_time_s":
        st = r.get("reconv_status")
        if st == "not_reached":
            return "nr"
        if st == "n/a":
            return "n/a"
    v = r.get(k)
    return "-" if v is None else f"{v:.2f}"


def cpu_per_mic(v, sid=None):
    """CPU s of the whole chain per s of audio, divided by the array's mic count."""
    c = cpu.get(v, {})
    if not c:
        return None
    sids = [sid] if sid else list(c)
    per = []
    for s in sids:
        r = c[s]
        t = r["cpu_s"] + (cpu["apm_mic0"][s]["cpu_s"] if v in ("apm_bf", "apm_bf_ns") else 0.0)
        per.append(t / r["audio_s"] / r["mics"])
    return float(np.mean(per))


variants = [v for v in list(cpu) + ["sonora_bf"] if os.path.exists(os.path.join(out, v, "score.json"))]
hdr = "| variant | scene | " + " | ".join(h for _, h in COLS) + " | CPU s/s ÷ mics |"
print(hdr)
print("|" + " --- |" * (len(COLS) + 3))
for v in variants:
    rows = [r for r in json.load(open(os.path.join(out, v, "score.json")))["scenes"] if "erle_fst_db" in r]
    for r in rows:
        c = cpu_per_mic(v, r["scene"])
        print(f"| {v} | {r['scene']} | " + " | ".join(cell(r, k) for k, _ in COLS) + f" | {'-' if c is None else f'{c:.4f}'} |")
    means = []
    for k, _ in COLS:
        vals = [r[k] for r in rows if r.get(k) is not None]
        if k == "reconv_time_s":
            nr = sum(1 for r in rows if r.get("reconv_status") == "not_reached")
            t = f"{np.mean(vals):.2f}" if vals else "-"
            means.append(t + (f" [{nr} nr]" if nr else ""))
        else:
            means.append(f"{np.mean(vals):.2f}" if vals else "-")
    c = cpu_per_mic(v)
    print(f"| **{v}** | **mean** | " + " | ".join(means) + f" | {'-' if c is None else f'{c:.4f}'} |")
