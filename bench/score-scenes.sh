#!/usr/bin/env bash
# Runs huis-dsp on every scene of a mic-array scene set and scores it with the set's score.py.
#   bench/score-scenes.sh SCENES_DIR [OUT_DIR] [-- extra huis-dsp options]
# SCENES_DIR holds index.json, score.py and one folder per scene (mix.wav, manifest.json, ...).
# Linear arrays are scored in their unambiguous half-plane (bench/py/fold_linear.py).
set -euo pipefail
. "$(dirname "$0")/scene-args.sh"
scene_args "bench/score-scenes.sh SCENES_DIR [OUT_DIR] [-- huis-dsp options]" target/scene-out "$@"
start=$(date +%s.%N)
for id in $ids; do
  mkdir -p "$out/$id"
  "$bin" --in "$scenes/$id/mix.wav" --geometry "$scenes/$id/manifest.json" \
    --doa "$out/$id/doa.csv" --out "$out/$id/enhanced.wav" "${extra[@]}"
done
end=$(date +%s.%N)
echo "huis-dsp wall time for all scenes: $(echo "$end - $start" | bc) s (load: $(cut -d' ' -f1-3 /proc/loadavg))"
# linear arrays report azimuth in their front half-plane: score them against truth folded there
view="$out/_scoring-view"
python3 "$root/bench/py/fold_linear.py" "$scenes" "$view"
python3 "$view/score.py" candidate --scenes "$view" --outputs "$out" --json "$out/score.json"
