#!/usr/bin/env bash
# Measures the idle memory of both isakmpd processes (the privileged parent and the
# unprivileged child) on the bundled example configuration, in a scratch network namespace:
# Rss and Pss per process from /proc/<pid>/smaps_rollup, the total, and each process's
# largest mappings by Pss. Run as root after `cargo build --release`; the binary is taken
# from $CARGO_TARGET_DIR (default ./target). Issue 14's target: total Pss at most 1.5 MB.
#   usage: scripts/idle-memory.sh [settle-seconds] [top-mappings]
# IDLE_SHOW_LOG=1 prints the daemon's stderr at the end; IDLE_HOOK='command' runs a command
# while both processes idle, with PARENT set to the parent's pid. IDLE_PEER=1 measures
# after a negotiation instead: a second daemon (192.0.2.2, in its own namespace, on a veth
# pair) brings up the example's tunnel with the measured one (192.0.2.1, ports 500/4500),
# then both idle for settle-seconds. IDLE_ARGS adds daemon flags (-v logs the releases);
# IDLE_BIN measures another binary.
set -euo pipefail
cd "$(dirname "$0")/.."
settle=${1:-3}
top=${2:-8}
bin=${IDLE_BIN:-${CARGO_TARGET_DIR:-target}/release/isakmpd}
[ -x "$bin" ] || { echo "idle-memory.sh: $bin missing; cargo build --release" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "idle-memory.sh: run as root" >&2; exit 1; }

dir=$(mktemp -d /tmp/idle-memory.XXXXXX)
ns=idlemem$$
cp examples/isakmpd.conf "$dir/"
chmod 600 "$dir/isakmpd.conf"
ip netns add "$ns"
ip netns exec "$ns" ip link set lo up
ports=(-p 1500 -N 4501)
if [ -n "${IDLE_PEER:-}" ]; then
    # The peer: the example mirrored (it initiates the example's passive connection).
    ip netns add "$ns"p
    ip netns exec "$ns"p ip link set lo up
    ip link add "$ns"a netns "$ns" type veth peer name "$ns"b netns "$ns"p
    ip netns exec "$ns" ip addr add 192.0.2.1/24 dev "$ns"a
    ip netns exec "$ns" ip link set "$ns"a up
    ip netns exec "$ns"p ip addr add 192.0.2.2/24 dev "$ns"b
    ip netns exec "$ns"p ip link set "$ns"b up
    sed -e 's/^192\.0\.2\.2=/192.0.2.1=/; s/^Address=\(\s*\)192\.0\.2\.2/Address=\1192.0.2.1/' \
        -e 's/^Passive-connections=/Connections=/' \
        -e 's/^Local-ID=\(\s*\)Net-west/Local-ID=\1Net-east/; s/^Remote-ID=\(\s*\)Net-east/Remote-ID=\1Net-west/' \
        examples/isakmpd.conf >"$dir/peer.conf"
    chmod 600 "$dir/peer.conf"
    ports=()
fi
ip netns exec "$ns" "$bin" -d -n ${IDLE_ARGS:-} -c "$dir/isakmpd.conf" "${ports[@]}" \
    -f "$dir/fifo" -R "/var/run/$ns.report" -i "/var/run/$ns.pid" 2>"$dir/log" &
daemon=$!
if [ -n "${IDLE_PEER:-}" ]; then
    ip netns exec "$ns"p "$bin" -d -n -c "$dir/peer.conf" -f "$dir/peer.fifo" \
        -R "/var/run/$ns.peer.report" -i "/var/run/$ns.peer.pid" 2>"$dir/peer.log" &
    peer=$!
fi
cleanup() {
    [ -n "${daemon:-}" ] && kill "$daemon" 2>/dev/null || true
    [ -n "${peer:-}" ] && kill "$peer" 2>/dev/null || true
    sleep 0.5
    # IDLE_SHOW_LOG=1: the daemon's stderr too.
    [ -n "${IDLE_SHOW_LOG:-}" ] && { echo; echo "log:"; cat "$dir/log"; }
    ip netns del "$ns" 2>/dev/null || true
    ip netns del "$ns"p 2>/dev/null || true
    rm -rf "$dir" /var/run/"$ns".*
}
trap cleanup EXIT
if [ -n "${IDLE_PEER:-}" ]; then
    # Until the peer has done phase 2 (asking the peer: the measured daemon only negotiates).
    done2() { grep -q "phase2-done: [1-9]" "/var/run/$ns.peer.report" 2>/dev/null; }
    for _ in $(seq 100); do
        sleep 0.2
        [ -p "$dir/peer.fifo" ] && echo r >"$dir/peer.fifo" && sleep 0.1
        done2 && break
    done
    done2 || { echo "idle-memory.sh: no tunnel with the peer" >&2; cat "$dir/log" "$dir/peer.log" >&2; exit 1; }
    echo "(after a negotiation: phase 1 and phase 2 SAs up with the peer)"
fi
sleep "$settle"
[ -n "${IDLE_HOOK:-}" ] && PARENT=$daemon bash -c "$IDLE_HOOK"

# ip netns exec runs the daemon in place (exec), so $daemon is the parent.
parent=$daemon
child=$(pgrep -P "$parent" | head -1 || true)
if [ -z "$child" ]; then
    echo "idle-memory.sh: no child process; log:" >&2
    cat "$dir/log" >&2
    exit 1
fi

field() { awk -v f="$1:" '$1 == f { print $2 }' "/proc/$2/smaps_rollup"; }
total_rss=0
total_pss=0
printf '%-8s %8s %8s %8s\n' process pid 'Rss kB' 'Pss kB'
for p in parent child; do
    pid=${!p}
    rss=$(field Rss "$pid")
    pss=$(field Pss "$pid")
    total_rss=$((total_rss + rss))
    total_pss=$((total_pss + pss))
    printf '%-8s %8s %8s %8s\n' "$p" "$pid" "$rss" "$pss"
done
printf '%-8s %8s %8s %8s\n' total '' "$total_rss" "$total_pss"

# Pss depends on who else maps the same library pages (other daemons, test runs), so it
# moves with the machine's load. The pair's own footprint does not: every resident page of
# either process counted once, as if no other process shared any of them (the Pss total
# on a machine where nothing else uses these libraries). From the page frame numbers in
# /proc/<pid>/pagemap, which root can read.
if command -v python3 >/dev/null; then
    python3 - "$parent" "$child" <<'PY'
import struct, sys
frames = set()
for pid in sys.argv[1:]:
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/pagemap", "rb") as pm:
        for line in maps:
            lo, hi = (int(x, 16) for x in line.split()[0].split("-"))
            if lo >= 1 << 47:
                continue  # [vsyscall]
            pm.seek(lo // 4096 * 8)
            data = pm.read((hi - lo) // 4096 * 8)
            for (e,) in struct.iter_unpack("<Q", data):
                if e >> 63:  # present
                    frames.add(e & ((1 << 55) - 1))
print(f"pair's own pages (each resident page once, no outside sharing): {len(frames) * 4} kB")
PY
fi

for p in parent child; do
    pid=${!p}
    echo
    echo "$p: top mappings by Pss (kB: Pss Rss Private_Dirty)"
    awk '
        /^[0-9a-f]+-[0-9a-f]+ / { name = (NF >= 6) ? $6 : "[anon]"; next }
        $1 == "Pss:" { pss[name] += $2 }
        $1 == "Rss:" { rss[name] += $2 }
        $1 == "Private_Dirty:" { dirty[name] += $2 }
        END { for (n in pss) printf "%8d %8d %8d  %s\n", pss[n], rss[n], dirty[n], n }
    ' "/proc/$pid/smaps" | sort -rn | head -n "$top"
done
