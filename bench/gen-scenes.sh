#!/usr/bin/env bash
# Generates a validation set of simulated mic-array scenes with huis-dsp's own room simulator
# (other rooms, arrays and noise than the shared development scenes), with an index.json so the
# shared score.py can score it:
#   bench/gen-scenes.sh OUT_DIR [SEEDS]      (default seeds: 1 2)
set -euo pipefail
out=${1:?usage: bench/gen-scenes.sh OUT_DIR [SEEDS]}
seeds=${2:-1 2}
root=$(cd "$(dirname "$0")/.." && pwd)
(cd "$root" && cargo build --release -q -p huis-dsp)
bin="$root/target/release/huis-dsp"
mkdir -p "$out"
ids=()
for seed in $seeds; do
  for array in resp4 resp6 uma8 linear4; do
    for kind in single switch; do
      id="g${kind:0:2}_${array}_$seed"
      "$bin" gen-scene --out "$out/$id" --array "$array" --kind "$kind" --seed "$seed$((${#array} * 7))"
      ids+=("\"$id\"")
    done
  done
done
echo "{\"scenes\": [$(IFS=,; echo "${ids[*]}")]}" > "$out/index.json"
echo "wrote ${#ids[@]} scenes to $out"
