#!/usr/bin/env bash
# Measures WebRTC's audio processing (GStreamer webrtcdsp + webrtcechoprobe over Debian's
# libwebrtc-audio-processing 0.3) beside huis-dsp's own echo canceller on every echo scene of a
# set, per mic and on the beam, and scores every variant with the set's score_echo.py (the same
# scoring path as bench/score-echo.sh).
#   bench/score-apm.sh ECHO_SCENES_DIR [OUT_DIR]
# Needs gst-launch-1.0 with the webrtcdsp element (gstreamer1.0-plugins-bad). Not part of any
# cargo build or test. Variants: see bench/py/apm_gst.py. Each webrtcdsp run is paced in real
# time (about the scene's duration in wall time); runs go in parallel (APM_JOBS, default 8).
# Also sonora 0.2 (AEC3, pure Rust, bench/sonora-apm, its own cargo workspace) unless APM_SONORA=0;
# its CPU figure is the processing loop only (no WAV I/O).
set -euo pipefail
scenes=${1:?usage: bench/score-apm.sh ECHO_SCENES_DIR [OUT_DIR]}
out=${2:-target/apm-out}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
gst-inspect-1.0 webrtcdsp > /dev/null || { echo "no webrtcdsp element (gstreamer1.0-plugins-bad)"; exit 1; }
nice cargo build --release -q -p huis-dsp
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
python3 "$root/bench/py/apm_gst.py" "$scenes" "$out" "$root/target/release/huis-dsp"
# sonora (pure-Rust port of the newer APM, AEC3): bench/sonora-apm is its own cargo workspace,
# built only here. Off with APM_SONORA=0.
if [[ ${APM_SONORA:-1} == 1 ]]; then
  (cd bench/sonora-apm && nice cargo build --release -q)
  son="$root/bench/sonora-apm/target/release/sonora-apm"
  for id in $(python3 -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))["scenes"]))' "$scenes/index.json"); do
    for v in sonora_mic0 sonora_ns_mic0 sonora_bf; do mkdir -p "$out/$v/$id"; done
    nice "$son" "$scenes/$id/mics.wav" "$scenes/$id/farend_ref.wav" "$out/sonora_mic0/$id/aec_out.wav" \
      "$out/sonora_mic0/$id/all.wav" > "$out/sonora_mic0/$id/cpu.json"
    nice "$son" "$scenes/$id/mics.wav" "$scenes/$id/farend_ref.wav" "$out/sonora_ns_mic0/$id/aec_out.wav" \
      "$out/sonora_ns_mic0/$id/all.wav" ns > "$out/sonora_ns_mic0/$id/cpu.json"
    nice target/release/huis-dsp --in "$out/sonora_mic0/$id/all.wav" --geometry "$scenes/$id/manifest.json" \
      --out "$out/sonora_bf/$id/aec_out.wav" --stages bf
  done
  python3 - "$out" <<'PY'
import glob, json, os, sys
out = sys.argv[1]
cpu = json.load(open(os.path.join(out, "cpu.json")))
for v in ("sonora_mic0", "sonora_ns_mic0"):
    for f in glob.glob(os.path.join(out, v, "*", "cpu.json")):
        r = json.load(open(f))
        cpu.setdefault(v, {})[os.path.basename(os.path.dirname(f))] = dict(cpu_s=r["proc_s"], wall_s=r["proc_s"], audio_s=r["audio_s"], mics=r["mics"])
json.dump(cpu, open(os.path.join(out, "cpu.json"), "w"), indent=1)
PY
fi
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
score_dir=${SCORE_PY_DIR:-$scenes/../scenes}
for v in $(python3 -c 'import json,sys; print(" ".join(k for k in json.load(open(sys.argv[1])) if k != "huis_bf"))' "$out/cpu.json"); do
  echo "== $v"
  PYTHONPATH="$root/bench/py:$score_dir${PYTHONPATH:+:$PYTHONPATH}" \
  nice python3 "$scenes/score_echo.py" candidate --scenes "$scenes" --outputs "$out/$v" --json "$out/$v/score.json"
done
[[ ${APM_SONORA:-1} == 1 ]] && for v in sonora_bf; do
  PYTHONPATH="$root/bench/py:$score_dir${PYTHONPATH:+:$PYTHONPATH}" \
  nice python3 "$scenes/score_echo.py" candidate --scenes "$scenes" --outputs "$out/$v" --json "$out/$v/score.json"
done
python3 "$root/bench/py/apm_table.py" "$out"
