#!/usr/bin/env python3
"""Runs the scene set's pyroomacoustics DOA baselines next to huis-dsp's doa.csv, on any scene set,
and prints mean DOA figures per array:

    doa_baselines.py VIEW_DIR OUT_DIR [--algos SRP,MUSIC,NormMUSIC] [--json FILE]

VIEW_DIR is the scoring view `bench/score-scenes.sh` leaves in OUT_DIR/_scoring-view (linear
arrays' truth folded into their front half-plane); OUT_DIR/<scene>/doa.csv is huis-dsp's output.
The baselines are the view's own score.py functions (`doa_baseline`, `gated_track`,
`score_candidate`), imported, not copied, so the figures are those its `baselines` mode would
give. On a linear array a baseline's azimuth is ambiguous across the array axis like ours: it is
folded into the same front half-plane before scoring, so it is not charged for the mirror image.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fold_linear  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("view")
    ap.add_argument("out")
    ap.add_argument("--algos", default="SRP,MUSIC,NormMUSIC")
    ap.add_argument("--json")
    a = ap.parse_args()
    sys.path.insert(0, os.path.dirname(os.path.realpath(os.path.join(a.view, "score.py"))))
    import score  # the scene set's scorer

    algos = a.algos.split(",")
    ids = json.load(open(os.path.join(a.view, "index.json")))["scenes"]
    rows = []
    for sid in ids:
        sc = score.load_scene(os.path.join(a.view, sid))
        arr = sc["man"]["array"]
        front = fold_linear.linear_front(arr)

        def folded(est):
            if front is None:
                return est
            return {b: (fold_linear.fold(v, front) if v == v else v) for b, v in est.items()}

        ests = {}
        for algo in algos:
            ests[algo] = folded(score.doa_baseline(sc, algo)[0])
        for algo in ("SRP", "NormMUSIC"):
            if algo in ests:
                ests[algo + "+trk"] = score.gated_track(ests[algo], sc["mix"][0], sc["fs"])
        ests["huis-dsp"] = score.read_doa_csv(os.path.join(a.out, sid, "doa.csv"))
        res = {"scene": sid, "array": arr["name"], "kind": sc["man"]["kind"]}
        for name, est in ests.items():
            r = score.score_candidate(sc, doa_est=est)
            res[name] = {k: r[k] for k in r if k.startswith("doa_") or k.startswith("switch_")}
        rows.append(res)
        print(sid, " ".join(f"{n}:{res[n]['doa_med_deg']}/{res[n]['doa_within10']}" for n in ests), flush=True)

    names = [n for n in rows[0] if n not in ("scene", "array", "kind")]
    groups = {}
    for r in rows:
        groups.setdefault(r["array"], []).append(r)
    groups["all"] = rows
    print("\nmean DOA median deg / mean fraction <=10 deg / mean switch median s (scenes)")
    print("| array | n | " + " | ".join(names) + " |")
    print("| --- | --- |" + " --- |" * len(names))
    for g, rs in groups.items():
        cells = []
        for n in names:
            med = sum(r[n]["doa_med_deg"] for r in rs) / len(rs)
            w10 = sum(r[n]["doa_within10"] for r in rs) / len(rs)
            sw = [r[n]["switch_median_s"] for r in rs if r[n].get("switch_median_s") is not None]
            cell = f"{med:.2f}° / {w10:.3f}"
            if sw:
                cell += f" / {sorted(sw)[len(sw) // 2]:.1f} s"
            cells.append(cell)
        print(f"| {g} | {len(rs)} | " + " | ".join(cells) + " |")
    if a.json:
        json.dump(rows, open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
