#!/usr/bin/env bash
# Builds a static, stripped release isakmpd for a router target into dist/TARGET/isakmpd.
#   bash cross/build.sh armv7-unknown-linux-gnueabihf | aarch64-unknown-linux-gnu | x86_64-unknown-linux-gnu
# Installs what it needs from Debian 12 (see cross/env.sh). The host build is untouched:
# this one goes to $CARGO_TARGET_DIR/cross/TARGET.
set -euo pipefail
cd "$(dirname "$0")/.."
. cross/env.sh
cross_target "${1:-}"
start=$(date +%s)
cross_install file
cross_env
echo "cross: $(${RUSTC:-rustc} --version), $(cargo --version), linker $CROSS_CC"
cargo build --release --locked --target "$TARGET" --bin isakmpd
out=dist/$TARGET
mkdir -p "$out"
cp "$CARGO_TARGET_DIR/$TARGET/release/isakmpd" "$out/isakmpd"
# The release profile strips already; the target's strip also drops .comment and the like.
if command -v "$TRIPLET-strip" >/dev/null; then "$TRIPLET-strip" -s "$out/isakmpd"; else strip -s "$out/isakmpd"; fi
info=$(file -b "$out/isakmpd")
size=$(stat -c %s "$out/isakmpd")
echo "$out/isakmpd: $size bytes"
# The armv7 budget (cross/README.md, Size): said, not enforced.
if [ "$TARGET" = armv7-unknown-linux-gnueabihf ] && [ "$size" -gt 3145728 ]; then
    echo "cross: $out/isakmpd is over the 3 MiB budget (3,145,728 bytes)" >&2
fi
echo "file: $info"
case "$info" in
*"statically linked"*|*"static-pie linked"*) ;;
*) echo "cross: $out/isakmpd is not static" >&2; exit 1 ;;
esac
echo "cross: build.sh $TARGET took $(( $(date +%s) - start )) s"
