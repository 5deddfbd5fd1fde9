#!/usr/bin/env bash
# Runs the whole test suite: installs what it needs (scripts/setup.sh), then the unit tests,
# the daemon tests (real binary, privilege separation, network namespaces) and the rest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
chmod 600 examples/isakmpd.conf
start=$(date +%s)
set +e
cargo test --release --all-targets --no-fail-fast -- --test-threads=2 2>&1 | tee /tmp/isakmpd-test.out
status=${PIPESTATUS[0]}
set -e
passed=$(grep -Eo '[0-9]+ passed' /tmp/isakmpd-test.out | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' /tmp/isakmpd-test.out | awk '{s+=$1} END {print s+0}')
echo "test suite took $(( $(date +%s) - start )) s"
echo "$passed passed, $failed failed"
exit "$status"
