#!/usr/bin/env bash
# Runs one fuzz target (or all) of fuzz/ for SECONDS each with libFuzzer on the stable
# toolchain, on its seeds, its kept crash inputs and the repository's own files of that kind.
#
#   bench/fuzz.sh TARGET SECONDS      one target (e.g. sip_dialog 3600)
#   bench/fuzz.sh all SECONDS         every target in turn
#   bench/fuzz.sh list                the targets
#
# New inputs go to fuzz/corpus/TARGET (not kept in git); a crash, hang or out-of-memory is
# written to fuzz/artifacts/TARGET and stops the run: copy it to fuzz/regressions/TARGET/ once
# fixed, so every later run (and CI) replays it. Needs cargo-fuzz 0.13 (`cargo install
# cargo-fuzz --version ^0.13`). The last line of each run gives executions per second and the
# coverage reached (libFuzzer's `cov:` and `ft:`).
set -euo pipefail
cd "$(dirname "$0")/.."
command -v cargo-fuzz >/dev/null || { echo "bench/fuzz.sh: cargo-fuzz is missing (cargo install cargo-fuzz --version ^0.13)" >&2; exit 2; }
targets() { sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^huis-fuzz$'; }
[ "${1:-}" = list ] && { targets; exit 0; }
[ $# -eq 2 ] || { sed -n '2,13p' "$0" >&2; exit 2; }
target=$1 seconds=$2

extra_corpus() { # the repository's own inputs of that kind, read-only
    case $1 in
        board) echo board/boards ;;
        config) echo rootfs-overlay/etc/huis ;;
    esac
}

run_one() {
    local t=$1 dirs=()
    mkdir -p "fuzz/corpus/$t" "fuzz/regressions/$t" "fuzz/artifacts/$t"
    dirs+=("corpus/$t" "seeds/$t" "regressions/$t")
    local e; e=$(extra_corpus "$t")
    # libFuzzer adds new inputs to the first directory only; the others are read.
    [ -n "$e" ] && dirs+=("../$e")
    echo "==> $t for ${seconds}s"
    local rc=0 log="fuzz/artifacts/$t/last-run.log"
    (cd fuzz && cargo fuzz run -s none -a "$t" "${dirs[@]}" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -max_len=70000 -print_final_stats=1 \
        -artifact_prefix="artifacts/$t/") > "$log" 2>&1 || rc=$?
    grep -E '^(#[0-9]+ +(DONE|INITED)|stat::(number_of_executed_units|average_exec_per_sec|peak_rss_mb)|SUMMARY|==[0-9]+== ERROR|.*(crash|timeout|leak|oom)-[0-9a-f]+)' "$log" || true
    [ "$rc" -eq 0 ] || echo "==> $t FAILED (exit $rc): see $log"
    return "$rc"
}

if [ "$target" = all ]; then
    fail=0
    for t in $(targets); do run_one "$t" || fail=1; done
    exit $fail
fi
run_one "$target"
