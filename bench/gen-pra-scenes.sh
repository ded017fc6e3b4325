#!/usr/bin/env bash
# Generates a validation set of meeting-room scenes with pyroomacoustics (image-source shoebox
# rooms) and espeak-ng speech, in the format of the shared development scenes: per seed a
# single-talker and a turn-taking scene with a 4-mic linear bar under a screen, and one scene
# each with the ReSpeaker 4-mic and the UMA-8 (see bench/py/pra_scenes.py). Score it with
# bench/score-scenes.sh OUT_DIR (it needs a score.py: pass SCORE_PY=path/to/score.py to have it
# linked into OUT_DIR).
#   bench/gen-pra-scenes.sh OUT_DIR [SEEDS]      (default seeds: 1 2 3; needs pyroomacoustics,
#                                                 espeak-ng)
set -euo pipefail
out=${1:?usage: bench/gen-pra-scenes.sh OUT_DIR [SEEDS]}
seeds=${2:-1 2 3}
root=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck disable=SC2086
python3 "$root/bench/py/pra_scenes.py" "$out" --seeds $seeds
score=${SCORE_PY:-}
if [[ -n $score ]]; then
  ln -sf "$(cd "$(dirname "$score")" && pwd)/$(basename "$score")" "$out/score.py"
fi
