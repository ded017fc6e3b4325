#!/usr/bin/env bash
# Takes fuzz seeds from real peers' traffic into fuzz/seeds/ (see tests/tests/fuzz_seeds.rs):
# SIP messages and SDP bodies that baresip, Kamailio and SIPp sent in calls with huisd, and
# the BFCP messages of libre's floor control (tests/tests/bfcp_libre.rs). New files are named
# real-PEER-HASH; one already kept is not written again. Review them and commit.
#
#   bench/fuzz-seeds.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --all-targets
export HUIS_KEEP_SEEDS=1 HUIS_TESTS_PREBUILT=1
cargo test -p huis-tests --test fuzz_seeds -- --ignored --nocapture
cargo test -p huis-tests --test bfcp_libre
git status --short fuzz/seeds
