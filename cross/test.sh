#!/usr/bin/env bash
# Tests a router build under qemu-user, as root:
#   bash cross/test.sh armv7-unknown-linux-gnueabihf | aarch64-unknown-linux-gnu | x86_64-unknown-linux-gnu
# 1. the unit tests and the in-memory engine tests (tests/engine_pair.rs, tests/alloc.rs),
#    built static for TARGET and run under qemu-user (cargo's target runner);
# 2. the static release binary (cross/build.sh) as a daemon under qemu-user: foreground,
#    privilege separation, -n, ports 1500/4501; FIFO `S` and `r` answer, `Q` exits 0;
# 3. one Main Mode + Quick Mode negotiation between that binary (192.0.2.1, initiator)
#    and the host build (192.0.2.2, responder), each in its own network namespace.
# qemu is run explicitly (no binfmt_misc needed): the daemon forks without exec, and the
# child stays under the same qemu.
set -euo pipefail
cd "$(dirname "$0")/.."
. cross/env.sh
cross_target "${1:-}"
if [ "$(id -u)" -ne 0 ]; then
    echo "cross/test.sh: run as root (privilege separation, namespaces)" >&2
    exit 1
fi
t0=$(date +%s)
step() { echo "cross: $* ($(( $(date +%s) - t0 )) s)"; }
cross_install iproute2 util-linux file
mkdir -p /var/empty
chmod 755 /var/empty
if ! grep -q '^_isakmpd:' /etc/passwd; then
    useradd --system --home-dir /var/empty --no-create-home --shell /usr/sbin/nologin _isakmpd
fi

# The host build, the peer of the negotiation (the ordinary toolchain and target dir).
cargo build --release --locked --bin isakmpd
HOST_BIN=${CARGO_TARGET_DIR:-$PWD/target}/release/isakmpd
step "host build ready"

bash cross/build.sh "$TARGET"
FOREIGN=("$PWD/dist/$TARGET/isakmpd")
[ -n "$QEMU" ] && FOREIGN=("$(command -v "$QEMU")" "${FOREIGN[@]}")
step "static build ready"

cross_env
cargo test --release --locked --target "$TARGET" --lib --test engine_pair --test alloc \
    -- --test-threads=2
step "unit and engine tests passed under ${QEMU:-the host}"

tmp=$(mktemp -d /tmp/isakmpd-cross.XXXXXX)
pids=()
netns=()
cleanup() {
    local p n
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for n in "${netns[@]}"; do ip netns del "$n" 2>/dev/null || true; done
    rm -rf "$tmp"
}
trap cleanup EXIT
REAL_RUN=$(readlink -f /var/run)
# Inside a private mount namespace: a directory of ours over /var/run (the only place the
# daemon puts its FIFO, report and result), loopback up, then the daemon.
WRAP='mount --bind "$1" "$2" && ip link set lo up && shift 2 && exec "$@"'

# start NAME NETNS(or -) CONF_FILE BINARY... -- FLAGS...: runs the daemon in the background.
start() {
    local name=$1 ns=$2 conf=$3; shift 3
    mkdir -p "$tmp/$name"
    local pre=(unshare -m -n)
    [ "$ns" != - ] && pre=(ip netns exec "$ns" unshare -m)
    "${pre[@]}" --propagation private sh -c "$WRAP" sh "$tmp/$name" "$REAL_RUN" \
        "$@" -c "$conf" -f /var/run/isakmpd.fifo 2>"$tmp/$name.log" </dev/null &
    pids+=($!)
    eval "pid_$name=$!"
}
fail() {
    echo "cross/test.sh: $*" >&2
    local l
    for l in "$tmp"/*.log; do echo "--- $l"; cat "$l"; done >&2
    exit 1
}
wait_for() { # SECONDS WHAT COMMAND...
    local n=$(( $1 * 5 )) what=$2; shift 2
    until "$@"; do
        n=$(( n - 1 ))
        [ "$n" -gt 0 ] || fail "timed out waiting for $what"
        sleep 0.2
    done
}
fifo() { timeout 20 sh -c 'printf "%s\n" "$2" > "$1"' sh "$tmp/$1/isakmpd.fifo" "$2"; }
# sas NAME: `S` then `r`; prints the result file once the report is written.
sas() {
    rm -f "$tmp/$1/isakmpd.result" "$tmp/$1/isakmpd.report"
    fifo "$1" S && fifo "$1" r
    wait_for 30 "the report of $1" grep -qs "resolved on demand" "$tmp/$1/isakmpd.report"
    cat "$tmp/$1/isakmpd.result" 2>/dev/null || true
}
stop() { # NAME: `Q` through the FIFO, then the exit status must be 0
    local pid
    eval "pid=\$pid_$1"
    fifo "$1" Q
    local st=0
    wait "$pid" || st=$?
    [ "$st" -eq 0 ] || fail "$1 exited with status $st after Q"
}

# 2. Smoke run.
cp examples/isakmpd.conf "$tmp/smoke.conf"
chmod 600 "$tmp/smoke.conf"
start smoke - "$tmp/smoke.conf" "${FOREIGN[@]}" -d -v -n -p 1500 -N 4501
wait_for 60 "the smoke daemon's FIFO" test -p "$tmp/smoke/isakmpd.fifo"
wait_for 60 "the smoke daemon to start" grep -qs "isakmpd started" "$tmp/smoke.log"
sas smoke >/dev/null
# The privsep child: forked under the same qemu, chrooted to /var/empty, running as _isakmpd.
child=$(awk '{print $1}' "/proc/$pid_smoke/task/$pid_smoke/children")
[ -n "$child" ] || fail "no privsep child"
[ "$(readlink "/proc/$child/root")" = /var/empty ] || fail "the child is not in /var/empty"
[ "$(awk '/^Uid:/{print $2}' "/proc/$child/status")" = "$(id -u _isakmpd)" ] ||
    fail "the child does not run as _isakmpd"
echo "cross: privsep child $child of $pid_smoke: root /var/empty, uid $(id -u _isakmpd) (_isakmpd): $(tr '\0' ' ' <"/proc/$child/cmdline" | cut -c1-80)"
for p in "$pid_smoke" "$child"; do
    echo "cross: idle pid $p${QEMU:+ (with $QEMU itself)}: $(awk '/^Rss:|^Pss:/{printf "%s %s kB ", $1, $2}' "/proc/$p/smaps_rollup")"
done
grep -q "resolved on demand" "$tmp/smoke/isakmpd.report" || fail "no report"
[ -f "$tmp/smoke/isakmpd.result" ] || fail "S wrote no result file"
# Our libcrypto (cross/openssl.sh) has the legacy provider built in: every phase 1 cipher
# of isakmpd.conf(5) works, none is reported unavailable.
if grep "unavailable in the linked OpenSSL" "$tmp/smoke.log"; then
    fail "a cipher is unavailable in the static build"
fi
stop smoke
step "smoke run passed (S, r, Q)"

# 3. Negotiation: foreign initiator at 192.0.2.1, host responder at 192.0.2.2.
conf() { # ME PEER LNET RNET CONNECTIONS (as tests/two_daemons.rs)
    printf '%s\n' "[General]" "Retransmits=3" "Exchange-max-time=60" "Check-interval=5" \
        "[Phase 1]" "$2=ISAKMP-peer" "[Phase 2]" "$5=IPsec-tunnel" \
        "[ISAKMP-peer]" "Phase=1" "Address=$2" "Local-address=$1" "Configuration=mm" \
        "Authentication=cross-test-key" \
        "[mm]" "DOI=IPSEC" "EXCHANGE_TYPE=ID_PROT" "Transforms=AES-256-SHA2-256-GRP14" \
        "[IPsec-tunnel]" "Phase=2" "ISAKMP-peer=ISAKMP-peer" "Configuration=qm" \
        "Local-ID=lnet" "Remote-ID=rnet" \
        "[qm]" "DOI=IPSEC" "EXCHANGE_TYPE=QUICK_MODE" "Suites=QM-ESP-AES-SHA2-256-PFS-GRP14-SUITE" \
        "[lnet]" "ID-type=IPV4_ADDR_SUBNET" "Network=$3" "Netmask=255.255.255.0" \
        "[rnet]" "ID-type=IPV4_ADDR_SUBNET" "Network=$4" "Netmask=255.255.255.0"
}
a=iskx$$a b=iskx$$b
netns=("$a" "$b")
ip netns add "$a"
ip netns add "$b"
ip link add vxa netns "$a" type veth peer name vxb netns "$b"
ip -n "$a" addr add 192.0.2.1/24 dev vxa && ip -n "$a" link set vxa up
ip -n "$b" addr add 192.0.2.2/24 dev vxb && ip -n "$b" link set vxb up
conf 192.0.2.1 192.0.2.2 198.51.100.0 203.0.113.0 Connections > "$tmp/west.conf"
conf 192.0.2.2 192.0.2.1 203.0.113.0 198.51.100.0 Passive-connections > "$tmp/east.conf"
chmod 600 "$tmp/west.conf" "$tmp/east.conf"
start east "$b" "$tmp/east.conf" "$HOST_BIN" -d -v -n
wait_for 30 "the host daemon to start" grep -qs "isakmpd started" "$tmp/east.log"
start west "$a" "$tmp/west.conf" "${FOREIGN[@]}" -d -v -n -L
wait_for 60 "the foreign daemon to start" grep -qs "isakmpd started" "$tmp/west.log"
phase2() { # NAME ROLE
    local s
    s=$(sas "$1")
    # isakmpd's result file names the role of phase 1 only.
    grep -q "(Phase 2)" <<<"$s" && grep -q "(Phase 1/$2)" <<<"$s"
}
wait_for 120 "phase 2 on the foreign initiator" phase2 west Initiator
wait_for 30 "phase 2 on the host responder" phase2 east Responder
step "negotiation passed ($TARGET initiator under ${QEMU:-the host}, host responder)"
sas west | grep -E "SA name|Transform|SPI" | head -8 || true
stop west
stop east
step "cross/test.sh $TARGET passed"
