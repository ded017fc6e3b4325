#!/usr/bin/env bash
# Installs what the tests need on Debian 12 and runs them: unit tests of
# every crate and the integration tests against a real dbus-daemon and real
# peers. This is what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps.sh test

echo "==> building"
cargo build --workspace --all-targets -q
echo "==> tests"
# The integration tests run target/debug/huisd and huisctl, built just above.
export HUIS_TESTS_PREBUILT=1
cargo test --workspace --no-fail-fast -- --test-threads=2
