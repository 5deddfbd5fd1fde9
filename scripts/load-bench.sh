#!/bin/bash
# Side-by-side load bench: our isakmpd and strongSwan's charon as IKEv1 responders to
# benches/load.rs (Main Mode + Quick Mode, PSK, AES-128/SHA2-256, MODP2048 and ECP256),
# in two network namespaces joined by a veth pair:
#
#   lb-gen  192.0.2.2/24, 198.18.0.0/15 local (AnyIP)  <-veth->  lb-resp 192.0.2.1/24
#
# Run as root from the repository:  scripts/load-bench.sh
# Knobs (environment): COUNT (2000), CONC (16), MAXTIME (120 s per run), GROUPS_TO_RUN
# ("modp2048 ecp256"), RESPONDERS ("isakmpd charon"), SOURCES (COUNT), OUT (a results
# directory, default /tmp/load-bench.<pid>; kept), CARGO_TARGET_DIR (target),
# ISAKMPD_LIMITS ("raise": Max-phase1-SAs and Max-phase2-SAs = COUNT + 1024; "default"),
# CHARON_EXTRA (lines for strongswan.conf's charon section, e.g.
# "dh_exponent_ansi_x9_42 = no" for short MODP exponents as isakmpd uses),
# ISAKMPD_BIN (another isakmpd binary, e.g. one built with symbols for perf),
# GEN_EXTRA (more generator options, e.g. "--no-teardown" or "--delete-rate 100000").
# Only 192.0.2.0/24 and 198.18.0.0/15 are used, inside the namespaces; both are removed,
# and the responders stopped, on exit.
set -eu

COUNT=${COUNT:-2000}
CONC=${CONC:-16}
MAXTIME=${MAXTIME:-120}
GROUPS_TO_RUN=${GROUPS_TO_RUN:-"modp2048 ecp256"}
RESPONDERS=${RESPONDERS:-"isakmpd charon"}
SOURCES=${SOURCES:-$COUNT}
PSK=load-bench-psk
OUT=${OUT:-/tmp/load-bench.$$}
TGT=${CARGO_TARGET_DIR:-target}
CHARON=/usr/lib/ipsec/charon
NS_R=lb-resp
NS_G=lb-gen

[ "$(id -u)" = 0 ] || { echo "load-bench: run as root" >&2; exit 1; }
cd "$(dirname "$0")/.."
mkdir -p "$OUT"
RESP_PID=

cleanup() {
	if [ -n "$RESP_PID" ]; then
		kill "$RESP_PID" 2>/dev/null || true
		sleep 0.5
		kill -9 "$RESP_PID" 2>/dev/null || true
	fi
	ip netns del $NS_R 2>/dev/null || true
	ip netns del $NS_G 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "== build (CARGO_TARGET_DIR=$TGT)"
cargo build --release 2>&1 | tail -1
GEN=$(cargo bench --bench load --no-run 2>&1 | sed -n 's/.*Executable .*(\(.*\)).*/\1/p' | tail -1)
BIN=${ISAKMPD_BIN:-$TGT/release/isakmpd}
[ -x "$GEN" ] && [ -x "$BIN" ] || { echo "load-bench: build failed ($GEN, $BIN)" >&2; exit 1; }
GEN=$(readlink -f "$GEN")
BIN=$(readlink -f "$BIN")

echo "== network namespaces $NS_G <-> $NS_R"
cleanup
ip netns add $NS_R
ip netns add $NS_G
ip link add lb-r netns $NS_R type veth peer name lb-g netns $NS_G
ip -n $NS_R addr add 192.0.2.1/24 dev lb-r
ip -n $NS_G addr add 192.0.2.2/24 dev lb-g
for ns in $NS_R $NS_G; do ip -n $ns link set lo up; done
ip -n $NS_R link set lb-r up
ip -n $NS_G link set lb-g up
# The sources: all of 198.18.0.0/15 is local in the generator (AnyIP), and routed there
# from the responder.
ip -n $NS_G route add local 198.18.0.0/15 dev lo
ip -n $NS_R route add 198.18.0.0/15 via 192.0.2.2
ip netns exec $NS_G ping -c1 -W2 -I 198.18.0.1 192.0.2.1 >/dev/null

RUN=$(readlink -f /var/run)

# Waits until something listens on UDP 192.0.2.1:500 (or 0.0.0.0:500) in the responder.
wait_udp500() {
	for _ in $(seq 100); do
		if ip netns exec $NS_R ss -Hulnp 2>/dev/null | grep -q ':500 '; then return 0; fi
		kill -0 "$RESP_PID" 2>/dev/null || return 1
		sleep 0.1
	done
	return 1
}

start_isakmpd() { # group dir
	local tf
	case $1 in modp2048) tf=AES-128-SHA2-256-GRP14 ;; ecp256) tf=AES-128-SHA2-256-GRP19 ;; esac
	mkdir -p "$2/run"
	# The SA tables sized for the run (defaults: 1,024 phase 1, 2,048 phase 2 SAs),
	# unless ISAKMPD_LIMITS=default.
	local limits="Max-phase1-SAs=$((COUNT + 1024))
Max-phase2-SAs=$((COUNT + 1024))"
	[ "${ISAKMPD_LIMITS:-raise}" = default ] && limits="# default table sizes"
	cat >"$2/isakmpd.conf" <<EOF
[General]
$limits
[Phase 1]
Default=peer
[Phase 2]
Passive-connections=conn
[peer]
Phase=1
Configuration=mm
Authentication=$PSK
[mm]
EXCHANGE_TYPE=ID_PROT
Transforms=$tf
[conn]
Phase=2
ISAKMP-peer=peer
Configuration=qm
[qm]
EXCHANGE_TYPE=QUICK_MODE
Suites=QM-ESP-AES-128-SHA2-256-SUITE
EOF
	chmod 600 "$2/isakmpd.conf"
	# Its own /var/run (pid file, FIFO, report), as tests/common/mod.rs does; -n: no
	# kernel SAs.
	ip netns exec $NS_R unshare -m --propagation private sh -c \
		'mount --bind "$1" "$2" && shift 2 && exec "$@"' sh "$2/run" "$RUN" \
		"$BIN" -d -n -c "$2/isakmpd.conf" 2>"$2/responder.log" &
	RESP_PID=$!
}

start_charon() { # group dir
	local ike
	case $1 in modp2048) ike=aes128-sha256-modp2048 ;; ecp256) ike=aes128-sha256-ecp256 ;; esac
	mkdir -p "$2/run" "$2/swanctl"
	# As tests/interop_strongswan.rs: kernel-libipsec (the host has no ESP), so
	# installing each CHILD_SA fails after the negotiation; logging at level 0; the
	# IKE_SA table sized for thousands of SAs (its default is one bucket).
	cat >"$2/strongswan.conf" <<EOF
charon {
 load_modular = no
 load = random nonce openssl pem pkcs1 pkcs8 x509 revocation constraints pubkey sha1 sha2 hmac aes gmp kdf kernel-libipsec kernel-netlink socket-default vici
 install_routes = no
 install_virtual_ip = no
 ikesa_table_size = 4096
 ikesa_table_segments = 16
 ${CHARON_EXTRA:-}
 filelog { main { path = $2/responder.log
  time_format = %T
  append = no
  default = 0
 } }
 plugins { vici { socket = unix://$2/charon.vici }
  kernel-netlink { fwmark = !0x42 }
  socket-default { fwmark = 0x42 }
  kernel-libipsec { allow_peer_ts = yes } }
}
EOF
	cat >"$2/swanctl/swanctl.conf" <<EOF
connections {
 lb {
  version = 1
  local_addrs = 192.0.2.1
  remote_addrs = 198.18.0.0/15
  proposals = $ike
  local {
   auth = psk
   id = 192.0.2.1
  }
  remote {
   auth = psk
  }
  children {
   lb {
    mode = tunnel
    esp_proposals = aes128-sha256
    start_action = none
   }
  }
 }
}
secrets {
 ike-lb {
  secret = "$PSK"
 }
}
EOF
	STRONGSWAN_CONF="$2/strongswan.conf" ip netns exec $NS_R unshare -m --propagation private \
		sh -c 'mount --bind "$1" /run && exec "$2"' sh "$2/run" "$CHARON" \
		>/dev/null 2>"$2/charon.stderr" &
	RESP_PID=$!
	for _ in $(seq 100); do [ -S "$2/charon.vici" ] && break; sleep 0.1; done
	SWANCTL_DIR="$2/swanctl" swanctl --load-all --noprompt --uri "unix://$2/charon.vici" >"$2/swanctl.load" 2>&1
}

# What the responder still holds after the generator left (it sent DELETEs).
leftovers() { # responder dir
	case $1 in
	isakmpd)
		rm -f "$2/run/isakmpd.report"
		echo r >"$2/run/isakmpd.fifo"
		for _ in $(seq 50); do grep -q "resolved on demand" "$2/run/isakmpd.report" 2>/dev/null && break; sleep 0.1; done
		cp "$2/run/isakmpd.report" "$2/report.txt" 2>/dev/null || true
		echo "phase1=$(grep -c '^sa: phase 1' "$2/report.txt" 2>/dev/null) phase2=$(grep -c '^sa: phase 2' "$2/report.txt" 2>/dev/null) exchanges=$(sed -n 's/^exchanges: //p' "$2/report.txt" 2>/dev/null)"
		;;
	charon)
		SWANCTL_DIR="$2/swanctl" swanctl --list-sas --uri "unix://$2/charon.vici" >"$2/sas.txt" 2>&1 || true
		echo "phase1=$(grep -c 'ESTABLISHED' "$2/sas.txt") phase2=$(grep -c 'INSTALLED' "$2/sas.txt") exchanges=-"
		;;
	esac
}

# UDP datagrams a namespace's kernel dropped for a full socket buffer (RcvbufErrors).
rcvbuf_drops() {
	ip netns exec "$1" awk '/^Udp:/ { if (!h) { for (i = 1; i <= NF; i++) c[$i] = i; h = 1 } else print $c["RcvbufErrors"] }' /proc/net/snmp
}

RESULTS=$OUT/results.txt
: >"$RESULTS"
for group in $GROUPS_TO_RUN; do
	for resp in $RESPONDERS; do
		dir=$OUT/$resp-$group
		rm -rf "$dir"
		mkdir -p "$dir"
		echo "== $resp, $group: $COUNT handshakes, $CONC in flight (logs in $dir)"
		"start_$resp" "$group" "$dir"
		wait_udp500 || { echo "load-bench: $resp did not start" >&2; cat "$dir"/*.log >&2 || true; exit 1; }
		sleep 0.5
		rd0=$(rcvbuf_drops $NS_R)
		gd0=$(rcvbuf_drops $NS_G)
		ip netns exec $NS_G timeout $((MAXTIME + 60)) "$GEN" --target 192.0.2.1 \
			--count "$COUNT" --sources "$SOURCES" --concurrency "$CONC" --group "$group" \
			--max-time "$MAXTIME" --psk "$PSK" --responder-pid "$RESP_PID" --label "$resp" \
			--linger 3 ${GEN_EXTRA:-} | tee "$dir/generator.txt"
		left=$(leftovers "$resp" "$dir")
		drops="resp_rcvbuf_drops=$(($(rcvbuf_drops $NS_R) - rd0)) gen_rcvbuf_drops=$(($(rcvbuf_drops $NS_G) - gd0))"
		echo "   left at the responder 3 s after the DELETEs: $left; UDP receive buffer drops: $drops"
		line=$(grep '^LOADBENCH' "$dir/generator.txt" || echo "LOADBENCH label=$resp group=$group done=0 failed=$COUNT")
		echo "$line $drops left_$left" | sed 's/left_phase1=/left_p1=/; s/ phase2=/ left_p2=/; s/ exchanges=/ left_x=/' >>"$RESULTS"
		kill "$RESP_PID" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$RESP_PID" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$RESP_PID" 2>/dev/null || true
		wait "$RESP_PID" 2>/dev/null || true
		RESP_PID=
		echo "   responder log: $(wc -l <"$dir/responder.log") lines; warnings: $(grep -ciE 'warn|full|fail' "$dir/responder.log" || true)"
	done
done

echo
echo "== results ($COUNT handshakes per run, $CONC in flight, sources 198.18.0.1..+$SOURCES; CPU and RSS of the responder process tree)"
awk '
function v(k,   i, a) { for (i = 1; i <= NF; i++) { split($i, a, "="); if (a[1] == k) return a[2] } return "" }
{
	r = v("label"); g = v("group"); key = r SUBSEP g
	rate[key] = v("rate"); cpu[key] = v("resp_cpu_ms"); peak[key] = v("peak_tunnels")
	fail[key] = v("failed") + v("unfinished"); rtx[key] = v("retransmits"); rss[key] = v("rss_peak_kb") / 1024
	rss0[key] = v("rss0_kb") / 1024; ptb[key] = v("per_tunnel_b"); pss[key] = v("pss_peak_kb") / 1024; lat[key] = v("lat_p50_ms") "/" v("lat_p99_ms")
	dup[key] = v("dup_received"); gen[key] = v("gen_cpu_ms"); p1[key] = v("peak_p1"); rdrop[key] = v("resp_rcvbuf_drops"); left[key] = v("left_p1") "/" v("left_p2")
	if (!(g in seen)) { seen[g] = 1; groups[++ng] = g }
	if (!(r in rs)) { rs[r] = 1; resps[++nr] = r }
}
END {
	print "| responder | group | handshakes/s | CPU ms per handshake | peak tunnels | failed | retransmits | RSS MB |"
	print "|---|---|---:|---:|---:|---:|---:|---:|"
	for (i = 1; i <= ng; i++) {
		g = groups[i]
		for (j = 1; j <= nr; j++) {
			k = resps[j] SUBSEP g
			if (k in rate) printf "| %s | %s | %.1f | %.3f | %d | %d | %d | %.1f |\n", resps[j], g, rate[k], cpu[k], peak[k], fail[k], rtx[k], rss[k]
		}
		a = "isakmpd" SUBSEP g; b = "charon" SUBSEP g
		if ((a in rate) && (b in rate) && rate[b] > 0 && cpu[a] > 0 && rss[a] > 0)
			printf "| charon / isakmpd | %s | %.2f | %.2f | | | | %.2f |\n", g, rate[b] / rate[a], cpu[b] / cpu[a], rss[b] / rss[a]
	}
	print ""
	print "| responder | group | peak phase 1 SAs | RSS MB at start | B per tunnel | Pss MB peak | latency ms p50/p99 | duplicates received | generator CPU ms per handshake | responder UDP buffer drops | SAs left (phase 1/phase 2) |"
	print "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
	for (i = 1; i <= ng; i++) for (j = 1; j <= nr; j++) {
		k = resps[j] SUBSEP groups[i]
		if (k in rate) printf "| %s | %s | %d | %.1f | %d | %.1f | %s | %d | %.3f | %s | %s |\n", resps[j], groups[i], p1[k], rss0[k], ptb[k], pss[k], lat[k], dup[k], gen[k], rdrop[k], left[k]
	}
}' "$RESULTS" | tee "$OUT/table.md"
echo
echo "raw: $RESULTS; logs under $OUT"
