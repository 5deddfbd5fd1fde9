#!/usr/bin/env bash
# Runs isakmpd in the foreground on the bundled example configuration: unprivileged ports
# (1500 and 4501), -n (the kernel's IPsec state is not touched), verbose, logging to stderr.
# Talk to it through the FIFO, e.g.:  echo r > /var/run/isakmpd.fifo  (report in
# /var/run/isakmpd.report),  echo Q > /var/run/isakmpd.fifo  (clean shutdown).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --release --quiet
# isakmpd refuses a configuration that group or others can read; git does not keep modes.
chmod 600 examples/isakmpd.conf
exec ./target/release/isakmpd -d -v -n -c examples/isakmpd.conf -p 1500 -N 4501 "$@"
