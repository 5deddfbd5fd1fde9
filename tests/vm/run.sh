#!/bin/bash
# Boots Debian's own kernel (linux-image-amd64: esp4, xfrm_user, af_key as modules) under
# qemu with virtme-ng: the host's root file system read-only with tmpfs overlays, no
# network device at all (-net none, checked), and runs tests/vm/guest.sh inside. TCG: this
# host's /dev/kvm cannot run a Debian kernel. Exits 0 only if every check passed; prints
# how long it took.   usage: run.sh /path/to/isakmpd
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# In a mount namespace of our own, tests/vm/udevadm stands in for the host's udevadm, and
# qemu's 9p export of / shows the guest that one (see the stub for why); the host keeps
# its own. VM_UDEV=1 boots with the real one.
if [ -z "${VM_UDEV:-}" ] && [ -z "${ISAKMPD_VM_NS:-}" ]; then
    ISAKMPD_VM_NS=1 exec unshare -m --propagation private bash "$0" "$@"
fi
if [ -n "${ISAKMPD_VM_NS:-}" ]; then
    mount --bind "$here/udevadm" "$(command -v udevadm)" || { echo "vm: cannot mount the udevadm stub"; exit 2; }
fi
BIN=$(readlink -f "${1:-$here/../../target/release/isakmpd}")
KERNEL=${VM_KERNEL:-$(ls -v /boot/vmlinuz-* 2>/dev/null | tail -1)}
[ -n "$KERNEL" ] && [ -f "$KERNEL" ] || { echo "vm: no kernel in /boot (apt-get install linux-image-amd64)"; exit 2; }
command -v vng >/dev/null || { echo "vm: vng missing (pip install virtme-ng)"; exit 2; }
[ -x "$BIN" ] || { echo "vm: $BIN missing"; exit 2; }
OUT=$(mktemp -d /tmp/isakmpd-vm.XXXXXX)
[ -n "${VM_ONLY:-}" ] && echo "$VM_ONLY" > "$OUT/only"   # see guest.sh
ACCEL=(--disable-kvm)
[ "${VM_KVM:-0}" = 1 ] && ACCEL=()
# The test suite's deadline (scripts/test.sh sets ISAKMPD_TEST_DEADLINE, an epoch time):
# the VM gets what is left of it, and the guest leaves out the scenarios that would not fit
# (see guest.sh). Without one, VM_TIMEOUT alone bounds the run.
TIMEOUT=${VM_TIMEOUT:-3000}
BUDGET=
if [ -n "${ISAKMPD_TEST_DEADLINE:-}" ]; then
    left=$((ISAKMPD_TEST_DEADLINE - $(date +%s)))
    if [ "$left" -lt 240 ]; then
        echo "SKIP vm: only $left s left of the test suite's time budget; the VM needs minutes"
        exit 0
    fi
    [ "$left" -lt "$TIMEOUT" ] && TIMEOUT=$left
    BUDGET=$((TIMEOUT - 45))
fi
# The certificates of guest.sh's openiked scenario (a CA, RSA host certificates with the
# address and name in subjectAltName), made here: RSA key generation takes a minute
# under TCG.
mkdir -p "$OUT/pki"
( cd "$OUT/pki" || exit 1
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 30 \
      -subj "/C=CH/O=isakmpd test/CN=ca" -addext basicConstraints=critical,CA:TRUE \
      -addext keyUsage=critical,keyCertSign,cRLSign || exit 1
  for h in west:192.0.2.1 east:192.0.2.2; do
      n=${h%%:*}
      printf 'subjectAltName=IP:%s,DNS:%s.example\nkeyUsage=digitalSignature\n' "${h#*:}" $n > $n.ext
      openssl req -newkey rsa:2048 -nodes -keyout $n.key -out $n.csr -subj "/C=CH/O=isakmpd test/CN=$n.example" \
          && openssl x509 -req -in $n.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 30 -sha256 \
              -extfile $n.ext -out $n.crt && openssl pkey -in $n.key -pubout -out $n.pub || exit 1
  done ) > "$OUT/pki.log" 2>&1 || { echo "vm: openssl could not make the test certificates"; cat "$OUT/pki.log"; exit 2; }
VNG=(vng --run "$KERNEL" "${ACCEL[@]}" --memory 1G --cpus 2 --rwdir="$OUT" --exec "bash $here/guest.sh $OUT $BIN $BUDGET")
"${VNG[@]}" --dry-run > "$OUT/qemu-cmdline.txt" 2>&1 </dev/null
grep -q -- ' -net none' "$OUT/qemu-cmdline.txt" || { echo "vm: qemu command line lacks -net none"; cat "$OUT/qemu-cmdline.txt"; exit 2; }
if grep -Eq -- ' -netdev | -nic | -net user|hostfwd' "$OUT/qemu-cmdline.txt"; then echo "vm: network device on the qemu command line"; exit 2; fi
t0=$(date +%s)
timeout -k 15 "$TIMEOUT" "${VNG[@]}" </dev/null > "$OUT/console.log" 2>&1
rc=$?
t1=$(date +%s)
echo "vm: kernel $(basename "$KERNEL"), TCG, $((t1 - t0)) s from qemu launch to poweroff (rc $rc)"
cat "$OUT/results" 2>/dev/null
grep -E '^(SPEED|TIME) ' "$OUT/guest.log" 2>/dev/null
pass=$(grep -c '^PASS' "$OUT/results" 2>/dev/null); fail=$(grep -c '^FAIL' "$OUT/results" 2>/dev/null)
skipped=$(grep -c '^SKIP' "$OUT/results" 2>/dev/null)
echo "vm: ${pass:-0} passed, ${fail:-0} failed, ${skipped:-0} scenarios left out for time (logs in $OUT)"
if [ "${fail:-0}" != 0 ] || [ "${pass:-0}" = 0 ] || ! grep -q GUEST-DONE "$OUT/guest.log" 2>/dev/null; then
    tail -40 "$OUT/console.log"
    for f in west.log east.log west3.log east3.log west9.log openiked-psk.log openiked-cert.log ipsecctl-west.log; do [ -f "$OUT/$f" ] && { echo "--- $f"; tail -30 "$OUT/$f"; }; done
    exit 1
fi
[ -n "${VM_KEEP:-}" ] || rm -rf "$OUT"
exit 0
