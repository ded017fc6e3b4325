#!/usr/bin/env bash
# Runs huis-dsp (echo cancellation + beam + post-filter) on every echo scene of a set and scores
# it with the set's score_echo.py.
#   bench/score-echo.sh ECHO_SCENES_DIR [OUT_DIR] [-- extra huis-dsp options]
# ECHO_SCENES_DIR holds index.json, score_echo.py and per scene mics.wav, farend_ref.wav,
# manifest.json. Only mics.wav and farend_ref.wav are given to huis-dsp (plus the geometry).
set -euo pipefail
. "$(dirname "$0")/scene-args.sh"
scene_args "bench/score-echo.sh ECHO_SCENES_DIR [OUT_DIR] [-- huis-dsp options]" target/echo-out "$@"
for id in $ids; do
  mkdir -p "$out/$id"
  "$bin" --in "$scenes/$id/mics.wav" --farend "$scenes/$id/farend_ref.wav" \
    --geometry "$scenes/$id/manifest.json" --out "$out/$id/aec_out.wav" "${extra[@]}"
done
echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
# score_echo.py imports score.py (from the mic-array scene set) and make_scenes.active_level
# (not shipped; bench/py has a stand-in). SCORE_PY_DIR points at score.py's folder.
score_dir=${SCORE_PY_DIR:-$scenes/../scenes}
PYTHONPATH="$root/bench/py:$score_dir${PYTHONPATH:+:$PYTHONPATH}" \
python3 "$scenes/score_echo.py" candidate --scenes "$scenes" --outputs "$out" --json "$out/score.json"
