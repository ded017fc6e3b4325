#!/usr/bin/env bash
# Generates our own echo scenes (huis-dsp's room simulator: loudspeaker-to-mic room responses,
# 10-60 ms reference-to-capture delay, tanh loudspeaker nonlinearity on some, a 20 cm
# loudspeaker move at 19 s) with an index.json, in the shared echo-scene format:
#   bench/gen-echo-scenes.sh OUT_DIR [SEEDS]      (default seeds: 1 2 3 4)
set -euo pipefail
out=${1:?usage: bench/gen-echo-scenes.sh OUT_DIR [SEEDS]}
seeds=${2:-1 2 3 4}
root=$(cd "$(dirname "$0")/.." && pwd)
(cd "$root" && cargo build --release -q -p huis-dsp)
bin="$root/target/release/huis-dsp"
mkdir -p "$out"
ids=()
arrays=(resp4 resp6 uma8 linear4)
i=0
for seed in $seeds; do
  array=${arrays[$((i % 4))]}
  id="ge${seed}_$array"
  "$bin" gen-echo-scene --out "$out/$id" --array "$array" --seed "$seed"
  ids+=("\"$id\"")
  i=$((i + 1))
done
echo "{\"scenes\": [$(IFS=,; echo "${ids[*]}")]}" > "$out/index.json"
echo "wrote ${#ids[@]} echo scenes to $out"
