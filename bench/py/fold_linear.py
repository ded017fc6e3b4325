#!/usr/bin/env python3
"""Makes a scoring view of a mic-array scene set in which linear arrays' DOA truth is folded into
their unambiguous half-plane (what huis-dsp reports for them):

    fold_linear.py SCENES_DIR VIEW_DIR

VIEW_DIR gets index.json, score.py and one folder per scene whose files are symlinks to the
originals, except truth_doa.csv of scenes with a linear array: there each azimuth is replaced by
its mirror image across the array axis when it lies behind the array (the front is the
manifest's array.front_azimuth_deg, else the axis + 90°). Planar arrays are left as they are.
"""
import csv
import json
import math
import os
import sys


def is_linear(mics):
    a = mics[0]
    b = max(mics, key=lambda p: math.dist(a[:2], p[:2]))
    ux, uy = b[0] - a[0], b[1] - a[1]
    ln = math.hypot(ux, uy)
    return all(abs((ux * (p[1] - a[1]) - uy * (p[0] - a[0])) / ln) < 2e-3 for p in mics)


def front_of(arr):
    mics = arr["mic_positions_m"]
    if arr.get("front_azimuth_deg") is not None:
        return float(arr["front_azimuth_deg"])
    a, b = mics[0], mics[-1]
    return math.degrees(math.atan2(b[1] - a[1], b[0] - a[0])) + 90.0


def linear_front(arr):
    """The front azimuth of a manifest's array if it is linear, else None (planar: no fold)."""
    mics = [list(p) + [0.0] * (3 - len(p)) for p in arr["mic_positions_m"]]
    return front_of(arr) if is_linear(mics) else None


def fold(az, front):
    d = (az - front + 180.0) % 360.0 - 180.0
    if abs(d) <= 90.0:
        return az
    # mirror across the axis (front - 90°): the axis angle a maps az to 2a - az
    return (2.0 * (front - 90.0) - az) % 360.0


def main():
    src, dst = sys.argv[1], sys.argv[2]
    os.makedirs(dst, exist_ok=True)
    for f in ("index.json", "score.py"):
        link = os.path.join(dst, f)
        if not os.path.lexists(link):
            os.symlink(os.path.abspath(os.path.join(src, f)), link)
    n_folded = 0
    for sid in json.load(open(os.path.join(src, "index.json")))["scenes"]:
        sd, vd = os.path.join(src, sid), os.path.join(dst, sid)
        os.makedirs(vd, exist_ok=True)
        arr = json.load(open(os.path.join(sd, "manifest.json")))["array"]
        front = linear_front(arr)
        for f in os.listdir(sd):
            target = os.path.join(vd, f)
            if os.path.lexists(target):
                os.remove(target)
            if f == "truth_doa.csv" and front is not None:
                with open(os.path.join(sd, f)) as fi, open(target, "w", newline="") as fo:
                    rows = list(csv.DictReader(fi))
                    w = csv.DictWriter(fo, fieldnames=list(rows[0].keys()) if rows else ["block_start_s", "azimuth_deg", "talker"])
                    w.writeheader()
                    for r in rows:
                        a = float(r["azimuth_deg"])
                        if math.isfinite(a):
                            fa = fold(a, front)
                            n_folded += abs(fa - a) > 1e-6
                            r["azimuth_deg"] = f"{fa:.2f}"
                        w.writerow(r)
            else:
                os.symlink(os.path.abspath(os.path.join(sd, f)), target)
    print(f"scoring view in {dst}: {n_folded} truth blocks of linear arrays folded to the front half-plane")


if __name__ == "__main__":
    main()
