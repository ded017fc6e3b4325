# Sourced by bench/score-scenes.sh and bench/score-echo.sh, after `set -euo pipefail`:
#   scene_args USAGE DEFAULT_OUT "$@"
# parses "SCENES_DIR [OUT_DIR] [-- extra huis-dsp options]", builds huis-dsp (release) and
# sets: scenes, out, extra (array), root, bin (the huis-dsp binary), ids (the set's scene ids,
# from its index.json). The working directory becomes the repository's root.
scene_args() {
  local usage=$1 default_out=$2
  shift 2
  scenes=${1:?"usage: $usage"}
  shift
  out=${1:-$default_out}
  [[ $# -gt 0 ]] && shift
  [[ ${1:-} == -- ]] && shift
  extra=("$@")
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
  cd "$root"
  cargo build --release -q -p huis-dsp
  bin="$root/target/release/huis-dsp"
  mkdir -p "$out"
  ids=$(python3 -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))["scenes"]))' "$scenes/index.json")
}
