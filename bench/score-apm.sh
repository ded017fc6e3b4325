#!/usr/bin/env bash
# Measures WebRTC's audio processing (GStreamer webrtcdsp + webrtcechoprobe over Debian's
# libwebrtc-audio-processing 0.3) beside huis-dsp's own echo canceller on every echo scene of a
# set, per mic and on the beam, and scores every variant with the set's score_echo.py (the same
# scoring path as bench/score-echo.sh).
#   bench/score-apm.sh ECHO_SCENES_DIR [OUT_DIR]
# Needs gst-launch-1.0 with the webrtcdsp element (gstreamer1.0-plugins-bad). Not part of any
# cargo build or test. Variants: see bench/py/apm_gst.py. Each webrtcdsp run is paced in real
# time (about the scene's duration in wall time); runs go in parallel (APM_JOBS, default 8).
set -euo pipefail
scenes=${1:?usage: bench/score-apm.sh ECHO_SCENES_DIR [OUT_DIR]}
out=${2:-target/apm-out}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
gst-inspect-1.0 webrtcdsp > /dev/null || { echo "no webrtcdsp element (gstreamer1.0-plugins-bad)"; exit 1; }
nice cargo build --release -q -p huis-dsp
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 "$root/bench/py/apm_gst.py" "$scenes" "$out" "$root/target/release/huis-dsp"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
score_dir=${SCORE_PY_DIR:-$scenes/../scenes}
for v in $(python3 -c 'import json,sys; print(" ".join(k for k in json.load(open(sys.argv[1])) if k != "huis_bf"))' "$out/cpu.json"); do
  echo "== $v"
  PYTHONPATH="$root/bench/py:$score_dir${PYTHONPATH:+:$PYTHONPATH}" \
  nice python3 "$scenes/score_echo.py" candidate --scenes "$scenes" --outputs "$out/$v" --json "$out/$v/score.json"
done
python3 "$root/bench/py/apm_table.py" "$out"
