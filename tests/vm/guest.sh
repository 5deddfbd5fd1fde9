#!/bin/bash
# Runs INSIDE the VM (tests/vm/run.sh boots Debian's kernel with the host's root file
# system read-only and tmpfs overlays). Two network namespaces joined by veth, one isakmpd
# in each talking to the kernel through XFRM netlink: tunnel 198.51.100.0/24 <->
# 203.0.113.0/24 between 192.0.2.1 and 192.0.2.2, ping through it, ESP counters rising on
# both sides, teardown removing every state and policy. The scenarios: the core ones (our
# pair over XFRM, two of ours as iked(8) over IKEv2, ours against charon), then rekeying
# (ours, charon), ours as iked(8) against charon over IKEv2, MOBIKE (charon moves), NAT-T (tunnel, transport), KILOBYTES lifetimes, ACQUIRE, PF_KEY, ACQUIRE
# over PF_KEY, ours as iked(8) against OpenBSD's iked (openiked, PF_KEY; PSK and RSA
# certificates, each side initiating), and two `isakmpd -K` configured only by ipsecctl.
#   $1 = OUT (host directory shared read-write), $2 = the isakmpd binary,
#   $3 = seconds this guest may take from qemu's launch (optional)
OUT=$1; BIN=$2
exec > >(tee -a "$OUT/guest.log") 2>&1
export LC_ALL=C
up() { cut -d' ' -f1 /proc/uptime; }
ok()  { echo "PASS $*"; echo "PASS $*" >> "$OUT/results"; }
bad() { echo "FAIL $*"; echo "FAIL $*" >> "$OUT/results"; }
echo "GUEST-READY uptime $(up) kernel $(uname -r)"

# The time this guest has ($3: seconds from qemu's launch, from the test suite's budget;
# none: no limit) and how fast it runs. CI hosts differ more than tenfold in how fast they
# emulate a CPU, and some scenarios last fixed minutes (90 s of pings), so each scenario
# runs only if the time left covers what it should take here (the core ones, our pair and
# charon, first; the others only after them): FIXED seconds plus VAR seconds of work at
# the reference speed, scaled by this
# guest's speed (a 20000-step shell loop takes 3.3 s at the reference speed, under TCG on
# an idle 2-core host). A scenario left out is reported as SKIP, with the numbers.
BUDGET=${3:-}
t=$(up); i=0; while [ $i -lt 20000 ]; do i=$((i + 1)); done
SLOW=$(awk -v a=$t -v b=$(up) 'BEGIN { printf "%d", (b - a) * 100 / 3.3 }')
echo "SPEED loop 20000 took $(awk -v a=$t -v b=$(up) 'BEGIN { printf "%.1f", b - a }') s: ${SLOW}% of the reference time; budget ${BUDGET:-none} s"
skip() { echo "SKIP $*"; echo "SKIP $*" >> "$OUT/results"; }
# VM_ONLY (run.sh writes it to $OUT/only): the names of the scenarios to run, for work on
# one of them; "core" is our pair, two ikeds and charon, without which the others
# need no more than their helpers.
ONLY=$(cat "$OUT/only" 2>/dev/null)
budget() { # NAME FIXED VAR: may the scenario NAME start? (VAR with half again as margin)
    local need=$(($2 + $3 * SLOW * 3 / 200)) left
    T_SC=$(up)
    case " ${ONLY:-$1} " in *" $1 "*) ;; *) skip "$1: not in VM_ONLY"; return 1;; esac
    [ -z "$BUDGET" ] && return 0
    left=$(awk -v b=$BUDGET -v u=$(up) 'BEGIN { printf "%d", b - u }')
    [ "$left" -ge "$need" ] && return 0
    skip "$1: about $need s needed at this guest's speed, $left s left of the budget"
    return 1
}
took() { echo "TIME $1 $(awk -v a=$T_SC -v b=$(up) 'BEGIN { printf "%.0f", b - a }') s"; }

nics=$(ip -o link show | awk -F': ' '$2 != "lo" {print $2}' | tr '\n' ' ')
[ -z "$nics" ] && ok "no network device besides lo" || bad "unexpected devices: $nics"
modprobe -a esp4 xfrm_user veth && ok "modprobe esp4 xfrm_user veth" || bad "modprobe"

W=/tmp/isakmpd-vm-guest; rm -rf $W; mkdir -p $W; mount -t tmpfs isakmpd-vm $W
for ns in left right; do ip netns del $ns 2>/dev/null; ip netns add $ns; ip -n $ns link set lo up; done
ip link add vl netns left type veth peer name vr netns right
ip -n left addr add 192.0.2.1/24 dev vl; ip -n left link set vl up
ip -n right addr add 192.0.2.2/24 dev vr; ip -n right link set vr up
ip -n left addr add 198.51.100.1/24 dev lo
ip -n right addr add 203.0.113.1/24 dev lo
ip -n left route add 203.0.113.0/24 via 192.0.2.2 src 198.51.100.1
ip -n right route add 198.51.100.0/24 via 192.0.2.1 src 203.0.113.1

conf() { # me peer lnet rnet which [extra General line]
cat <<EOT
[General]
Retransmits=		3
Check-interval=		5
${6:-}
[Phase 1]
$2=			peer
[Phase 2]
$5=			tun
[peer]
Phase=			1
Address=		$2
Local-address=		$1
Configuration=		mm
Authentication=		vm-test-psk-0123456789
[mm]
EXCHANGE_TYPE=		ID_PROT
Transforms=		AES-256-SHA2-256-GRP14
[tun]
Phase=			2
ISAKMP-peer=		peer
Configuration=		qm
Local-ID=		lnet
Remote-ID=		rnet
[qm]
EXCHANGE_TYPE=		QUICK_MODE
Suites=			${SUITE:-QM-ESP-AES-SHA2-256-PFS-GRP14-SUITE}
[lnet]
ID-type=		IPV4_ADDR_SUBNET
Network=		$3
Netmask=		255.255.255.0
[rnet]
ID-type=		IPV4_ADDR_SUBNET
Network=		$4
Netmask=		255.255.255.0
EOT
}
start() { # name ns conf-args...   ($FLAGS: extra isakmpd flags; NOIDS=1: no client IDs)
    local n=$1 ns=$2; shift 2
    mkdir -p $W/$n/run
    if [ -n "${NOIDS:-}" ]; then
        conf "$@" | grep -v '^\(Local\|Remote\)-ID=' > $W/$n/isakmpd.conf
    else
        conf "$@" > $W/$n/isakmpd.conf
    fi
    chmod 600 $W/$n/isakmpd.conf
    ip netns exec $ns unshare -m --propagation private sh -c \
        "mount --bind $W/$n/run /run && exec $BIN -d -v -D 5=20 ${FLAGS:-} -c $W/$n/isakmpd.conf" > $W/$n/log 2>&1 &
}
# Policies, not counting the per-socket ones charon sets on its IKE sockets.
npol() { ip -n $1 xfrm policy | grep -cE '^[[:space:]]+dir (in|out|fwd)'; }
# wait_kernel NS STATES POLICIES: up to 30 s (TCG on a loaded host is slow) for the kernel
# to hold exactly that many.
wait_kernel() {
    for i in $(seq 1 150); do
        [ "$(ip -n $1 xfrm state | grep -c '^src')" = $2 ] && [ "$(npol $1)" = $3 ] && return 0
        sleep 0.2
    done
    return 1
}
counts() { ip -n $1 -s xfrm state | awk '/lifetime current:/ {getline; sub(/\(packets\)/,""); print $2}' | tr '\n' ' '; }
spis() { ip -n $1 xfrm state | awk '{for (i = 1; i < NF; i++) if ($i == "spi") print $(i+1)}' | sort | tr '\n' ' '; }
# strongSwan's charon (the core scenario, ikev2-charon.sh, mobike.sh) in right
# (192.0.2.2, 203.0.113.0/24) against ours in left (192.0.2.1, 198.51.100.0/24), PSK,
# each in a directory DIR of its own: DIR/strongswan.conf, DIR/swanctl/swanctl.conf,
# DIR/run (its /run), DIR/charon.log, DIR/charon.vici.
# charon_conf DIR CONN ESP PSK [PLUGINS [CHILD]] < the connection's own options: the
# common strongswan.conf (kernel-netlink, no routes, log levels, the vici socket) with
# PLUGINS loaded after aes (gcm for IKEv2's AES-GCM), and a swanctl.conf of one
# connection CONN (its options from stdin, then the PSK ids and a tunnel CHILD_SA "net"
# with esp_proposals ESP and the option line CHILD) and its secret PSK.
charon_conf() {
    mkdir -p $1/swanctl $1/run
    { printf 'connections {\n    %s {\n' $2; cat; cat <<EOT
        local {
            auth = psk
            id = 192.0.2.2
        }
        remote {
            auth = psk
            id = 192.0.2.1
        }
        children {
            net {
                mode = tunnel
                esp_proposals = $3
                local_ts = 203.0.113.0/24
                remote_ts = 198.51.100.0/24
${6:+                $6
}            }
        }
    }
}
secrets {
    ike-$2 {
        id-1 = 192.0.2.2
        id-2 = 192.0.2.1
        secret = "$4"
    }
}
EOT
    } > $1/swanctl/swanctl.conf
    cat > $1/strongswan.conf <<EOT
charon {
    load_modular = no
    load = random nonce openssl pem pkcs1 x509 pubkey sha1 sha2 hmac aes ${5:+$5 }gmp kdf kernel-netlink socket-default vici
    install_routes = no
    filelog {
        main {
            path = $1/charon.log
            default = 1
            ike = 2
            chd = 2
            knl = 2
        }
    }
    plugins {
        vici {
            socket = unix://$1/charon.vici
        }
    }
}
EOT
}
# swan DIR ARGS...: swanctl ARGS against DIR's charon.
swan() { local d=$1; shift; SWANCTL_DIR=$d/swanctl swanctl "$@" --uri unix://$d/charon.vici; }
# start_charon DIR NS: charon in NS with DIR's configuration (output in DIR/stdout, its pid
# in CHARON), up to 20 s for its vici socket, then swanctl --load-all (DIR/load.txt); its
# status is swanctl's.
start_charon() {
    STRONGSWAN_CONF=$1/strongswan.conf ip netns exec $2 unshare -m --propagation private sh -c \
        "mount --bind $1/run /run && exec /usr/lib/ipsec/charon" > $1/stdout 2>&1 &
    CHARON=$!
    for i in $(seq 1 100); do [ -S $1/charon.vici ] && break; sleep 0.2; done
    swan $1 --load-all > $1/load.txt 2>&1
}
# The core scenarios (our pair, charon) need minutes on a slow host; when even they do
# not fit in what is left of the budget, the guest says so and leaves everything out.
CORE=
if budget core 10 55; then
T_SC=$(up)
start east right 192.0.2.2 192.0.2.1 203.0.113.0 198.51.100.0 Passive-connections
sleep 1
T0=$(up)
start west left 192.0.2.1 192.0.2.2 198.51.100.0 203.0.113.0 Connections
for i in $(seq 1 100); do
    grep -q "quick mode done" $W/west/log && grep -q "quick mode done" $W/east/log && break
    sleep 0.2
done
if grep -q "quick mode done" $W/west/log && grep -q "quick mode done" $W/east/log; then
    ok "tunnel negotiated in $(awk -v a=$T0 -v b=$(up) 'BEGIN{printf "%.1f", b-a}') s"
else
    bad "no tunnel"
fi
for ns in left right; do
    wait_kernel $ns 2 3
    st=$(ip -n $ns xfrm state | grep -c "^src")
    po=$(npol $ns)
    [ "$st" = 2 ] && [ "$po" = 3 ] && ok "$ns: 2 ESP states and 3 policies in the kernel" || bad "$ns: $st states, $po policies"
done
ip -n left xfrm state | grep -q "auth-trunc hmac(sha256) 0x[0-9a-f]* 128" && ok "hmac(sha256) with a 128-bit ICV" || bad "ICV length: $(ip -n left xfrm state | grep auth)"
ip netns exec left ping -c 5 -i 0.3 -W 2 -I 198.51.100.1 203.0.113.1 > $W/ping.txt 2>&1
grep -q " 0% packet loss" $W/ping.txt && ok "ping 198.51.100.1 -> 203.0.113.1 through the tunnel" || bad "ping: $(tail -2 $W/ping.txt | tr '\n' ' ')"
for ns in left right; do
    c=$(counts $ns)
    set -- $c
    [ "${1:-0}" -ge 5 ] 2>/dev/null && [ "${2:-0}" -ge 5 ] 2>/dev/null && ok "$ns: ESP packet counters $c" || bad "$ns: ESP counters '$c'"
done
# Teardown through the FIFO, then shutdown: nothing of ours may remain in the kernel.
echo "t quick tun" > $W/west/run/isakmpd.fifo
for ns in left right; do
    wait_kernel $ns 0 0
    st=$(ip -n $ns xfrm state | grep -c "^src"); po=$(npol $ns)
    [ "$st" = 0 ] && [ "$po" = 0 ] && ok "$ns: teardown removed every state and policy" || bad "$ns: after teardown $st states, $po policies"
done
echo "c tun" > $W/west/run/isakmpd.fifo
wait_kernel right 2 3; wait_kernel left 2 3
[ "$(ip -n left xfrm state | grep -c '^src')" = 2 ] && ok "c brings the tunnel back" || bad "c: $(ip -n left xfrm state | grep -c '^src') states"
echo Q > $W/west/run/isakmpd.fifo; echo Q > $W/east/run/isakmpd.fifo
for ns in left right; do
    wait_kernel $ns 0 0
    st=$(ip -n $ns xfrm state | grep -c "^src"); po=$(npol $ns)
    [ "$st" = 0 ] && [ "$po" = 0 ] && ok "$ns: shutdown removed every state and policy" || bad "$ns: after shutdown $st states, $po policies"
done
cp $W/west/log "$OUT/west.log"; cp $W/east/log "$OUT/east.log"; cp $W/ping.txt "$OUT/" 2>/dev/null
took pair

# ---- two of our daemons as iked(8) over IKEv2, configured by iked.conf, real ESP
if budget ikev2-pair 40 50; then
mkdir -p $W/bin; ln -sf $BIN $W/bin/iked; ln -sf $BIN $W/bin/ikectl
ikedconf() { # me peer lnet rnet mode [lifetime]
cat <<EOT
ikev2 "tun" $5 esp from $3 to $4 local $1 peer $2 \\
	ikesa enc aes-256 prf hmac-sha2-256 auth hmac-sha2-256 group ecp256 \\
	childsa enc aes-256-gcm \\
	srcid $1 dstid $2 ${6:+lifetime $6} psk "vm-ikev2-psk-0123456789"
EOT
}
startiked() { # name ns me peer lnet rnet mode
    local n=$1 ns=$2; shift 2
    mkdir -p $W/$n/run
    ikedconf "$@" > $W/$n/iked.conf; chmod 600 $W/$n/iked.conf
    ip netns exec $ns unshare -m --propagation private sh -c \
        "mount --bind $W/$n/run /run && exec $W/bin/iked -d -v -f $W/$n/iked.conf" > $W/$n/log 2>&1 &
}
ikectl() { local n=$1; shift; $W/bin/ikectl -s $W/$n/run/iked.sock "$@"; }
startiked v2east right 192.0.2.2 192.0.2.1 203.0.113.0/24 198.51.100.0/24 passive
sleep 1
T0=$(up)
startiked v2west left 192.0.2.1 192.0.2.2 198.51.100.0/24 203.0.113.0/24 active
for i in $(seq 1 100); do
    grep -q "CHILD_SA established" $W/v2west/log && grep -q "CHILD_SA established" $W/v2east/log && break
    sleep 0.2
done
if grep -q "CHILD_SA established" $W/v2west/log && grep -q "CHILD_SA established" $W/v2east/log; then
    ok "ikev2: tunnel negotiated by two ikeds in $(awk -v a=$T0 -v b=$(up) 'BEGIN{printf "%.1f", b-a}') s"
else
    bad "ikev2: no tunnel"
fi
for ns in left right; do
    wait_kernel $ns 2 3
    st=$(ip -n $ns xfrm state | grep -c "^src"); po=$(npol $ns)
    [ "$st" = 2 ] && [ "$po" = 3 ] && ok "ikev2 $ns: 2 ESP states and 3 policies in the kernel" || bad "ikev2 $ns: $st states, $po policies"
done
ip -n left xfrm state | grep -q "rfc4106(gcm(aes))" && ok "ikev2: ESP with AES-GCM (rfc4106)" || bad "ikev2: ESP algorithm: $(ip -n left xfrm state | grep -E 'aead|enc')"
# Our SPIs on the wire are the kernel's: ikectl's outbound SPI is a state in the kernel.
spi=$(ikectl v2west show sa | awk '/^iked_activesas:/ && / out / {print $4; exit}')
ip -n left xfrm state | grep -q "spi ${spi:-none} " && ok "ikev2: ikectl's outbound SPI $spi is in the kernel" || bad "ikev2: SPI '$spi' not in the kernel: $(ip -n left xfrm state | grep spi)"
ip netns exec left ping -c 5 -i 0.3 -W 2 -I 198.51.100.1 203.0.113.1 > $W/ping2.txt 2>&1
grep -q " 0% packet loss" $W/ping2.txt && ok "ikev2: ping 198.51.100.1 -> 203.0.113.1 through the tunnel" || bad "ikev2: ping: $(tail -2 $W/ping2.txt | tr '\n' ' ')"
for ns in left right; do
    c=$(counts $ns)
    set -- $c
    [ "${1:-0}" -ge 5 ] 2>/dev/null && [ "${2:-0}" -ge 5 ] 2>/dev/null && ok "ikev2 $ns: ESP packet counters $c" || bad "ikev2 $ns: ESP counters '$c'"
done
# ikectl reset sa: both kernels empty (a passive policy has no flows of its own). The
# policy is made passive first (ikectl load), or west would start it again at its next
# check; loading the active one brings it back.
ikedconf 192.0.2.1 192.0.2.2 198.51.100.0/24 203.0.113.0/24 passive > $W/v2west/passive.conf
chmod 600 $W/v2west/passive.conf
ikectl v2west load $W/v2west/passive.conf > /dev/null
ikectl v2west reset sa > /dev/null
for ns in left right; do
    wait_kernel $ns 0 0
    st=$(ip -n $ns xfrm state | grep -c "^src"); po=$(npol $ns)
    [ "$st" = 0 ] && [ "$po" = 0 ] && ok "ikev2 $ns: ikectl reset sa removed every state and policy" || bad "ikev2 $ns: after reset $st states, $po policies"
done
ikectl v2west load $W/v2west/iked.conf > /dev/null
wait_kernel right 2 3; wait_kernel left 2 3
[ "$(ip -n left xfrm state | grep -c '^src')" = 2 ] && ok "ikev2: ikectl load of the active policy brings the tunnel back" || bad "ikev2: load: $(ip -n left xfrm state | grep -c '^src') states"
# A CHILD SA with a 20 s lifetime rekeys by itself (soft, 5-10 % early) while a ping
# runs through it: new SPIs in the kernel, the old SAs gone.
ikedconf 192.0.2.1 192.0.2.2 198.51.100.0/24 203.0.113.0/24 active 20s > $W/v2west/short.conf
chmod 600 $W/v2west/short.conf
ikectl v2west load $W/v2west/passive.conf > /dev/null
ikectl v2west reset sa > /dev/null
wait_kernel left 0 0
ikectl v2west load $W/v2west/short.conf > /dev/null
wait_kernel left 2 3
old=$(ip -n left xfrm state | awk '/spi/ {print $4}' | sort | tr '\n' ' ')
ip netns exec left ping -c 60 -i 0.5 -W 2 -I 198.51.100.1 203.0.113.1 > $W/ping3.txt 2>&1
wait_kernel left 2 3
new=$(ip -n left xfrm state | awk '/spi/ {print $4}' | sort | tr '\n' ' ')
grep -q "reached, rekeying" $W/v2west/log $W/v2east/log && [ "$old" != "$new" ] && ok "ikev2: the CHILD SA rekeyed by its lifetime (SPIs $old-> $new)" || bad "ikev2: no rekey by lifetime (SPIs $old-> $new)"
# The rekey's responder holds its new outbound SA back until the initiator deletes the
# old CHILD SA (the initiator installs the new one first), so no ping may be lost.
grep -q " 0% packet loss" $W/ping3.txt && ok "ikev2: no ping lost across the CHILD SA rekey ($(grep transmitted $W/ping3.txt))" || bad "ikev2: pings lost across the CHILD SA rekey: $(grep transmitted $W/ping3.txt)"
pkill -TERM -f "$W/v2west/iked.conf"; pkill -TERM -f "$W/v2east/iked.conf"
for ns in left right; do
    wait_kernel $ns 0 0
    st=$(ip -n $ns xfrm state | grep -c "^src"); po=$(npol $ns)
    [ "$st" = 0 ] && [ "$po" = 0 ] && ok "ikev2 $ns: shutdown removed every state and policy" || bad "ikev2 $ns: after shutdown $st states, $po policies"
done
cp $W/v2west/log "$OUT/iked-west.log"; cp $W/v2east/log "$OUT/iked-east.log"
took ikev2-pair
fi

# ---- our daemon (left, initiator) against strongSwan's charon (right, kernel-netlink)
T_SC=$(up)
S=$W/charon
charon_conf $S v1 aes128-sha256-modp2048 vm-test-psk-0123456789 <<EOT
        version = 1
        local_addrs = 192.0.2.2
        remote_addrs = 192.0.2.1
        proposals = aes256-sha256-modp2048
        dpd_delay = 0
EOT
start_charon $S right && ok "charon (kernel-netlink) up in right" || bad "charon: $(cat $S/load.txt $S/stdout | tail -3)"
start west2 left 192.0.2.1 192.0.2.2 198.51.100.0 203.0.113.0 Connections
for i in $(seq 1 150); do grep -q "quick mode done" $W/west2/log && break; sleep 0.2; done
grep -q "quick mode done" $W/west2/log && ok "our daemon and charon negotiated" || bad "no tunnel with charon"
wait_kernel left 2 3; wait_kernel right 2 3
[ "$(ip -n right xfrm state | grep -c '^src')" = 2 ] && ok "charon installed its SAs" || bad "charon's SAs: $(grep -E 'unable|failed' $S/charon.log | head -2)"
ip netns exec left ping -c 5 -i 0.3 -W 2 -I 198.51.100.1 203.0.113.1 > $W/ping2.txt 2>&1
grep -q " 0% packet loss" $W/ping2.txt && ok "ping through the tunnel to charon" || bad "ping to charon: $(tail -2 $W/ping2.txt | tr '\n' ' ')"
for ns in left right; do
    c=$(counts $ns); set -- $c
    [ "${1:-0}" -ge 5 ] 2>/dev/null && [ "${2:-0}" -ge 5 ] 2>/dev/null && ok "$ns: ESP counters with charon $c" || bad "$ns: ESP counters with charon '$c'"
done
# Our phase 2 DELETE makes charon remove its CHILD_SA; then charon's IKE delete ours.
echo "t quick tun" > $W/west2/run/isakmpd.fifo
wait_kernel right 0 0 && ok "charon honoured our phase 2 DELETE" || bad "charon kept $(ip -n right xfrm state | grep -c '^src') states, $(npol right) policies"
echo "c tun" > $W/west2/run/isakmpd.fifo
wait_kernel left 2 3 && wait_kernel right 2 3 && ok "tunnel to charon back after c" || bad "no second tunnel to charon"
before=$(spis left)
swan $S --terminate --child net --timeout 10 > /dev/null 2>&1
# Our connection is active, so the connection checker may bring up a new pair at once: what
# matters is that the pair charon deleted is gone.
kept=x
for i in $(seq 1 150); do
    now=$(spis left); kept=""
    for s in $before; do case " $now " in *" $s "*) kept="$kept $s";; esac; done
    [ -z "$kept" ] && break; sleep 0.2
done
[ -n "$before" ] && [ -z "$kept" ] && ok "we honoured charon's phase 2 DELETE" || bad "we kept the SAs charon deleted:$kept (before: $before)"
echo Q > $W/west2/run/isakmpd.fifo
kill $CHARON 2>/dev/null
# The next responder needs port 500 in right.
for i in $(seq 1 50); do ip netns exec right ss -uln | grep -q ':500 ' || break; sleep 0.2; done
cp $W/west2/log "$OUT/west2.log"; cp $S/charon.log "$OUT/charon.log" 2>/dev/null
took charon
CORE=1
fi
[ -n "$ONLY" ] && CORE=1

# Rekey scenarios: no packet may meet a gap. The
# kernel counts every ESP packet that arrived for an SA it no longer (or not yet) had, and
# every packet that left with no SA to take it (/proc/net/xfrm_stat, per namespace).
GAPS='XfrmInNoStates|XfrmOutNoStates|XfrmInStateExpired|XfrmOutStateExpired|XfrmInStateInvalid|XfrmOutStateInvalid|XfrmInTmplMismatch|XfrmInNoPols|XfrmOutPolBlock'
xstat() { ip netns exec $1 cat /proc/net/xfrm_stat > $W/xstat-$1; }
gaps() { # NS: the gap counters that rose since xstat NS
    ip netns exec $1 cat /proc/net/xfrm_stat | awk -v f=$W/xstat-$1 -v re="^($GAPS)\$" '
        BEGIN { while ((getline l < f) > 0) { split(l, a); b[a[1]] = a[2] } }
        $1 ~ re && $2 != b[$1] { printf "%s+%d ", $1, $2 - b[$1] }'
}
xdiff() { # NS: every xfrm_stat counter that changed since xstat NS
    ip netns exec $1 cat /proc/net/xfrm_stat | awk -v f=$W/xstat-$1 '
        BEGIN { while ((getline l < f) > 0) { split(l, a); b[a[1]] = a[2] } }
        $2 != b[$1] { printf "%s+%d ", $1, $2 - b[$1] }'
}
# ping_gaps NAME FILE: the gap checks and the ping count after a rekey scenario.
ping_gaps() {
    local g="$(gaps left)$(gaps right)"
    [ -z "$g" ] && ok "$1: no packet met a missing SA in either kernel (xfrm_stat)" || bad "$1: packets met a gap: $g"
    grep -q " 0% packet loss" $2 && ok "$1: no ping lost across the rekeys ($(grep transmitted $2))" || bad "$1: pings lost across rekeys: $(grep transmitted $2)"
}

if [ -n "$CORE" ] && budget NAT-T 5 25; then
# ---- NAT-T: west behind a masquerading NAT (nftables in namespace "nat"), real
# ESP-in-UDP on port 4500. nl 192.0.2.65 -- .66 nat .129 -- .130 nr.
ip netns add nl; ip netns add nat; ip netns add nr
ip link add n-in type veth peer name n-l; ip link set n-l netns nl; ip link set n-in netns nat
ip link add n-out type veth peer name n-r; ip link set n-r netns nr; ip link set n-out netns nat
ip -n nl addr add 192.0.2.65/26 dev n-l; ip -n nl link set n-l up; ip -n nl link set lo up
ip -n nat addr add 192.0.2.66/26 dev n-in; ip -n nat addr add 192.0.2.129/26 dev n-out
ip -n nat link set n-in up; ip -n nat link set n-out up; ip -n nat link set lo up
ip -n nr addr add 192.0.2.130/26 dev n-r; ip -n nr link set n-r up; ip -n nr link set lo up
ip -n nl addr add 198.51.100.1/24 dev lo; ip -n nr addr add 203.0.113.1/24 dev lo
ip -n nl route add default via 192.0.2.66
ip -n nr route add 198.51.100.0/24 via 192.0.2.129 src 203.0.113.1
ip netns exec nat sysctl -qw net.ipv4.ip_forward=1
ip netns exec nat nft -f - <<'NFT' && ok "NAT: nftables masquerade in place" || bad "NAT: nft failed"
table ip nat {
  chain post { type nat hook postrouting priority srcnat; oifname "n-out" masquerade; }
}
NFT
start east8 nr 192.0.2.130 192.0.2.129 203.0.113.0 198.51.100.0 Passive-connections
sleep 1
start west8 nl 192.0.2.65 192.0.2.130 198.51.100.0 203.0.113.0 Connections
for i in $(seq 1 150); do grep -q "quick mode done" $W/west8/log && grep -q "quick mode done" $W/east8/log && break; sleep 0.2; done
grep -q "NAT-T: we are behind a NAT" $W/west8/log && grep -q "NAT-T: the peer is behind a NAT" $W/east8/log \
    && ok "NAT-T: both sides saw the NAT" || bad "NAT-T detection: $(grep -h 'NAT' $W/west8/log $W/east8/log | head -3)"
grep -q "quick mode done" $W/east8/log && ok "NAT-T: tunnel negotiated through the NAT" || bad "NAT-T: no tunnel: $(tail -3 $W/west8/log)"
ip -n nl xfrm state | grep -q "encap type espinudp sport 4500 dport 4500" \
    && ok "NAT-T: west's SAs are UDP-encapsulated (4500)" || bad "NAT-T encap: $(ip -n nl xfrm state | grep -i encap | head -2)"
ip netns exec nl ping -c 5 -i 0.3 -W 2 -I 198.51.100.1 203.0.113.1 > $W/ping8.txt 2>&1
grep -q " 0% packet loss" $W/ping8.txt && ok "NAT-T: ping through the NAT in ESP-in-UDP" || bad "NAT-T ping: $(tail -2 $W/ping8.txt | tr '\n' ' ')"
c=$(ip -n nr -s xfrm state | awk '/lifetime current:/ {getline; sub(/\(packets\)/,""); print $2}' | tr '\n' ' '); set -- $c
[ "${1:-0}" -ge 5 ] 2>/dev/null && [ "${2:-0}" -ge 5 ] 2>/dev/null && ok "NAT-T: east's ESP counters $c" || bad "NAT-T: east's ESP counters '$c'"
echo Q > $W/west8/run/isakmpd.fifo; echo Q > $W/east8/run/isakmpd.fifo
for i in $(seq 1 50); do grep -q "isakmpd: exit" $W/west8/log && grep -q "isakmpd: exit" $W/east8/log && break; sleep 0.2; done
[ "$(ip -n nl xfrm state | grep -c '^src')" = 0 ] && [ "$(ip -n nr xfrm state | grep -c '^src')" = 0 ] \
    && ok "NAT-T: shutdown left nothing" || bad "NAT-T: states left"
cp $W/west8/log "$OUT/west8.log"; cp $W/east8/log "$OUT/east8.log"
took NAT-T
fi

if [ -n "$CORE" ] && [ -n "$(ip netns list | grep -w nat)" ] && budget NAT-T-transport 5 25; then
# ---- NAT-T in transport mode, host to host through the same NAT: UDP-encapsulated
# transport SAs, each side's original address (NAT-OA) in the other's encap_oa, ping
# from west's own address to east's.
NOIDS=1 SUITE=QM-ESP-TRP-AES-SHA2-256-SUITE start east10 nr 192.0.2.130 192.0.2.129 203.0.113.0 198.51.100.0 Passive-connections
sleep 1
NOIDS=1 SUITE=QM-ESP-TRP-AES-SHA2-256-SUITE start west10 nl 192.0.2.65 192.0.2.130 198.51.100.0 203.0.113.0 Connections
for i in $(seq 1 150); do grep -q "quick mode done" $W/west10/log && grep -q "quick mode done" $W/east10/log && break; sleep 0.2; done
grep -q "quick mode done" $W/east10/log && ok "NAT-T transport: negotiated through the NAT" || bad "NAT-T transport: no SAs: $(tail -3 $W/west10/log)"
ip -n nr xfrm state | grep -q "mode transport" && ip -n nr xfrm state | grep -q "encap type espinudp .* addr 192.0.2.65" \
    && ok "NAT-T transport: east's SAs are UDP-encapsulated transport with west's original address" \
    || bad "NAT-T transport: east's states: $(ip -n nr xfrm state | grep -E 'mode|encap' | head -4 | tr '\n' ' ')"
ip -n nl xfrm state | grep -q "encap type espinudp .* addr 192.0.2.130" \
    && ok "NAT-T transport: west's SAs carry east's address as theirs" || bad "NAT-T transport: west's states: $(ip -n nl xfrm state | grep encap | head -2 | tr '\n' ' ')"
xstat nl; xstat nr
ip netns exec nl ping -c 5 -i 0.3 -W 2 192.0.2.130 > $W/ping10.txt 2>&1
grep -q " 0% packet loss" $W/ping10.txt && ok "NAT-T transport: ping west -> east in ESP-in-UDP" \
    || bad "NAT-T transport ping: $(tail -2 $W/ping10.txt | tr '\n' ' ') west: $(xdiff nl) east: $(xdiff nr)"
c=$(ip -n nr -s xfrm state | awk '/lifetime current:/ {getline; sub(/\(packets\)/,""); print $2}' | tr '\n' ' '); set -- $c
[ "${1:-0}" -ge 5 ] 2>/dev/null && [ "${2:-0}" -ge 5 ] 2>/dev/null && ok "NAT-T transport: east's ESP counters $c" \
    || bad "NAT-T transport: east's ESP counters '$c'; its policies: $(ip -n nr xfrm policy | tr '\n' ' '); its states: $(ip -n nr xfrm state | grep -vE 'enc |auth|aead' | tr '\n' ' ')"
echo Q > $W/west10/run/isakmpd.fifo; echo Q > $W/east10/run/isakmpd.fifo
for i in $(seq 1 50); do grep -q "isakmpd: exit" $W/west10/log && grep -q "isakmpd: exit" $W/east10/log && break; sleep 0.2; done
[ "$(ip -n nl xfrm state | grep -c '^src')" = 0 ] && [ "$(ip -n nr xfrm state | grep -c '^src')" = 0 ] \
    && ok "NAT-T transport: shutdown left nothing" || bad "NAT-T transport: states left"
cp $W/west10/log "$OUT/west10.log"; cp $W/east10/log "$OUT/east10.log"
took NAT-T-transport
fi

if [ -n "$CORE" ] && budget rekey 95 20; then
# ---- rekeying: a 40 s phase 2 lifetime, 90 s of pings; no packet may meet a gap.
start east3 right 192.0.2.2 192.0.2.1 203.0.113.0 198.51.100.0 Passive-connections "Default-phase-2-lifetime=40,10:40"
# A slow (emulated, loaded) guest may take more than a second to start it.
for i in $(seq 1 50); do grep -q "isakmpd started" $W/east3/log && break; sleep 0.2; done
grep -q "isakmpd started" $W/east3/log && ! grep -q "Address already in use" $W/east3/log \
    && ok "our responder listens for the rekey test" || bad "responder: $(tail -2 $W/east3/log)"
start west3 left 192.0.2.1 192.0.2.2 198.51.100.0 203.0.113.0 Connections "Default-phase-2-lifetime=40,10:40"
for i in $(seq 1 150); do grep -q "quick mode done" $W/west3/log && break; sleep 0.2; done
wait_kernel left 2 3; wait_kernel right 2 3
xstat left; xstat right
ip netns exec left ping -D -c 180 -i 0.5 -W 2 -I 198.51.100.1 203.0.113.1 > $W/ping3.txt 2>&1
n=$(grep -c "quick mode done" $W/west3/log)
[ "$n" -ge 3 ] && ok "phase 2 rekeyed $((n - 1)) times in 90 s" || bad "only $n quick modes in 90 s"
ping_gaps "our pair" $W/ping3.txt
echo Q > $W/west3/run/isakmpd.fifo; echo Q > $W/east3/run/isakmpd.fifo
wait_kernel left 0 0 && wait_kernel right 0 0 && ok "rekeyed SAs all removed at shutdown" || bad "left over after rekeys: $(ip -n left xfrm state | grep -c '^src') states"
cp $W/west3/log "$OUT/west3.log"; cp $W/east3/log "$OUT/east3.log"; cp $W/ping3.txt "$OUT/"
took rekey
fi

if [ -n "$CORE" ] && budget charon-rekey 95 25; then
# ---- rekeying against charon: we initiate every rekey (charon would rekey only after 100 s),
# charon installs each new SA when our message 3 reaches it.
sed -i -e 's/^\( *\)esp_proposals = .*/&\n\1rekey_time = 100s\n\1rand_time = 0s\n\1life_time = 120s/' $S/swanctl/swanctl.conf
STRONGSWAN_CONF=$S/strongswan.conf ip netns exec right unshare -m --propagation private sh -c \
    "mount --bind $S/run /run && exec /usr/lib/ipsec/charon" > $S/stdout9 2>&1 &
CHARON=$!
rm -f $S/charon.vici
for i in $(seq 1 100); do [ -S $S/charon.vici ] && break; sleep 0.2; done
SWANCTL_DIR=$S/swanctl swanctl --load-all --uri unix://$S/charon.vici > $S/load9.txt 2>&1 \
    && ok "charon up for the rekey test" || bad "charon: $(cat $S/load9.txt $S/stdout9 | tail -3)"
start west9 left 192.0.2.1 192.0.2.2 198.51.100.0 203.0.113.0 Connections "Default-phase-2-lifetime=40,10:40"
for i in $(seq 1 150); do grep -q "quick mode done" $W/west9/log && break; sleep 0.2; done
wait_kernel left 2 3; wait_kernel right 2 3
xstat left; xstat right
ip netns exec left ping -D -c 180 -i 0.5 -W 2 -I 198.51.100.1 203.0.113.1 > $W/ping9.txt 2>&1
n=$(grep -c "quick mode done" $W/west9/log)
[ "$n" -ge 3 ] && ok "charon: phase 2 rekeyed $((n - 1)) times in 90 s" || bad "charon: only $n quick modes in 90 s"
ping_gaps "charon" $W/ping9.txt
echo Q > $W/west9/run/isakmpd.fifo
wait_kernel left 0 0 && ok "charon rekeys: our SAs all removed at shutdown" || bad "charon rekeys: $(ip -n left xfrm state | grep -c '^src') states left"
kill $CHARON 2>/dev/null
for i in $(seq 1 50); do ip netns exec right ss -uln | grep -q ':500 ' || break; sleep 0.2; done
ip -n right xfrm state flush; ip -n right xfrm policy flush
cp $W/west9/log "$OUT/west9.log"; cp $S/charon.log "$OUT/charon9.log" 2>/dev/null; cp $W/ping9.txt "$OUT/"
took charon-rekey
fi

# ---- ours as iked(8) against charon over IKEv2 (tests/vm/ikev2-charon.sh)
[ -n "$CORE" ] && . "$(dirname "$0")/ikev2-charon.sh"
# ---- MOBIKE: charon moves, our CHILD SA follows by XFRM_MSG_MIGRATE (tests/vm/mobike.sh)
[ -n "$CORE" ] && . "$(dirname "$0")/mobike.sh"

if [ -n "$CORE" ] && budget KILOBYTES 25 20; then
# ---- a kilobyte lifetime: 200 KB per SA, counted by the kernel; its soft EXPIRE (at
# 90 %) makes the initiator rekey before the hard limit removes the state.
KB=$'[kb-suite]\nProtocols=kb-esp\n[kb-esp]\nPROTOCOL_ID=IPSEC_ESP\nTransforms=kb-xf\n[kb-xf]\nTRANSFORM_ID=AES\nKEY_LENGTH=128,128:256\nENCAPSULATION_MODE=TUNNEL\nAUTHENTICATION_ALGORITHM=HMAC_SHA2_256\nLife=LIFE_KB\n[LIFE_KB]\nLIFE_TYPE=KILOBYTES\nLIFE_DURATION=200,10:200'
SUITE=kb-suite start east7 right 192.0.2.2 192.0.2.1 203.0.113.0 198.51.100.0 Passive-connections "$KB"
sleep 1
SUITE=kb-suite start west7 left 192.0.2.1 192.0.2.2 198.51.100.0 203.0.113.0 Connections "$KB"
for i in $(seq 1 150); do grep -q "quick mode done" $W/west7/log && break; sleep 0.2; done
wait_kernel left 2 3
ip -n left -s xfrm state | grep -q "soft 184320(bytes), hard 204800(bytes)" && ok "KILOBYTES: byte limits in the kernel" || bad "byte limits: $(ip -n left -s xfrm state | grep -i limit | head -2)"
ip netns exec left ping -c 250 -i 0.08 -s 1200 -W 2 -I 198.51.100.1 203.0.113.1 > $W/ping7.txt 2>&1
grep -q "kernel soft expiry" $W/west7/log && ok "KILOBYTES: the kernel's soft EXPIRE came" || bad "no soft EXPIRE: $(grep -i expir $W/west7/log | head -2)"
n=$(grep -c "quick mode done" $W/west7/log)
[ "$n" -ge 2 ] && ok "KILOBYTES: rekeyed on the byte count ($n quick modes)" || bad "KILOBYTES: only $n quick modes"
rcv=$(sed -n 's/.* \([0-9]*\) received.*/\1/p' $W/ping7.txt)
[ "${rcv:-0}" -ge 245 ] && ok "KILOBYTES: pings across the rekey ($rcv of 250)" || bad "KILOBYTES: only ${rcv:-0} of 250 pings"
echo Q > $W/west7/run/isakmpd.fifo; echo Q > $W/east7/run/isakmpd.fifo
wait_kernel left 0 0 && wait_kernel right 0 0 && ok "KILOBYTES: shutdown left nothing" || bad "KILOBYTES: left $(ip -n left xfrm state | grep -c '^src') states"
cp $W/west7/log "$OUT/west7.log"; cp $W/east7/log "$OUT/east7.log"
took KILOBYTES
fi

if [ -n "$CORE" ] && budget ACQUIRE 10 30; then
# ---- kernel-triggered: flows set up by hand (as ipsecctl would), the daemon with -a
# (installs no flows) and the connection passive: the first ping's ACQUIRE starts it.
ip -n left xfrm policy add src 198.51.100.0/24 dst 203.0.113.0/24 dir out \
    tmpl src 192.0.2.1 dst 192.0.2.2 proto esp mode tunnel level required
ip -n left xfrm policy add src 203.0.113.0/24 dst 198.51.100.0/24 dir in \
    tmpl src 192.0.2.2 dst 192.0.2.1 proto esp mode tunnel level required
ip -n left xfrm policy add src 203.0.113.0/24 dst 198.51.100.0/24 dir fwd \
    tmpl src 192.0.2.2 dst 192.0.2.1 proto esp mode tunnel level required
start east4 right 192.0.2.2 192.0.2.1 203.0.113.0 198.51.100.0 Passive-connections
sleep 1
FLAGS=-a start west4 left 192.0.2.1 192.0.2.2 198.51.100.0 203.0.113.0 Passive-connections
sleep 2
grep -q "quick mode done" $W/west4/log && bad "passive connection started without traffic" || ok "nothing negotiated before traffic"
ip netns exec left ping -c 15 -i 0.5 -W 2 -I 198.51.100.1 203.0.113.1 > $W/ping4.txt 2>&1
grep -q "kernel ACQUIRE for 198.51.100.1 -> 203.0.113.1: starting connection tun" $W/west4/log \
    && ok "kernel ACQUIRE started the connection" || bad "no ACQUIRE start: $(grep -i acquire $W/west4/log | head -2)"
rcv=$(sed -n 's/.* \([0-9]*\) received.*/\1/p' $W/ping4.txt)
[ "${rcv:-0}" -ge 8 ] && ok "pings flow after the ACQUIRE ($rcv of 15)" || bad "after ACQUIRE only ${rcv:-0} of 15 pings"
[ "$(npol left)" = 3 ] && ok "-a: the daemon added no flows of its own" || bad "-a: $(npol left) policies"
echo Q > $W/west4/run/isakmpd.fifo; echo Q > $W/east4/run/isakmpd.fifo
for i in $(seq 1 50); do grep -q "isakmpd: exit" $W/west4/log && grep -q "isakmpd: exit" $W/east4/log && break; sleep 0.2; done
for d in out in fwd; do ip -n left xfrm policy del src 198.51.100.0/24 dst 203.0.113.0/24 dir $d 2>/dev/null
    ip -n left xfrm policy del src 203.0.113.0/24 dst 198.51.100.0/24 dir $d 2>/dev/null; done
wait_kernel left 0 0 && wait_kernel right 0 0 && ok "ACQUIRE scenario left nothing behind" || bad "after the ACQUIRE scenario: $(ip -n left xfrm state | grep -c '^src') states"
cp $W/west4/log "$OUT/west4.log"; cp $W/east4/log "$OUT/east4.log"
took ACQUIRE
fi

if [ -n "$CORE" ] && budget PF_KEY 5 60; then
# ---- PF_KEY v2 (af_key) instead of XFRM: HMAC-SHA1, since af_key would give HMAC-SHA2 a
# 96-bit ICV and the daemon refuses to offer it there.
T1=$(up)
modprobe af_key && ok "modprobe af_key ($(awk -v a=$T1 -v b=$(up) 'BEGIN{printf "%.1f", b-a}') s)" || bad "modprobe af_key"
SUITE=QM-ESP-AES-SHA-PFS-SUITE start east5 right 192.0.2.2 192.0.2.1 203.0.113.0 198.51.100.0 Passive-connections "Kernel-interface=PF_KEY"
sleep 1
T0=$(up)
SUITE=QM-ESP-AES-SHA-PFS-SUITE start west5 left 192.0.2.1 192.0.2.2 198.51.100.0 203.0.113.0 Connections "Kernel-interface=PF_KEY"
for i in $(seq 1 150); do grep -q "quick mode done" $W/west5/log && grep -q "quick mode done" $W/east5/log && break; sleep 0.2; done
grep -q "kernel: PF_KEY v2" $W/west5/log && ok "PF_KEY backend selected" || bad "backend: $(grep 'kernel:' $W/west5/log | head -1)"
grep -q "quick mode done" $W/east5/log && ok "PF_KEY: tunnel negotiated in $(awk -v a=$T0 -v b=$(up) 'BEGIN{printf "%.1f", b-a}') s" || bad "PF_KEY: no tunnel"
for ns in left right; do
    wait_kernel $ns 2 3 && ok "PF_KEY $ns: 2 ESP states and 3 policies" || bad "PF_KEY $ns: $(ip -n $ns xfrm state | grep -c '^src') states, $(npol $ns) policies; $(grep -i 'kernel:.*\(error\|refus\|errno\|Invalid\|denied\)' $W/west5/log $W/east5/log | head -2)"
done
ip -n left xfrm state | grep -q "auth-trunc hmac(sha1) 0x[0-9a-f]* 96" && ok "PF_KEY: hmac(sha1) with its 96-bit ICV" || bad "PF_KEY ICV: $(ip -n left xfrm state | grep auth)"
ip netns exec left ping -c 5 -i 0.3 -W 2 -I 198.51.100.1 203.0.113.1 > $W/ping5.txt 2>&1
grep -q " 0% packet loss" $W/ping5.txt && ok "PF_KEY: ping through the tunnel" || bad "PF_KEY ping: $(tail -2 $W/ping5.txt | tr '\n' ' ')"
for ns in left right; do
    c=$(counts $ns); set -- $c
    [ "${1:-0}" -ge 5 ] 2>/dev/null && [ "${2:-0}" -ge 5 ] 2>/dev/null && ok "PF_KEY $ns: ESP counters $c" || bad "PF_KEY $ns: ESP counters '$c'"
done
echo "t quick tun" > $W/west5/run/isakmpd.fifo
wait_kernel left 0 0 && wait_kernel right 0 0 && ok "PF_KEY: teardown removed every state and policy" || bad "PF_KEY teardown: left $(ip -n left xfrm state | grep -c '^src')/$(npol left), right $(ip -n right xfrm state | grep -c '^src')/$(npol right)"
echo "c tun" > $W/west5/run/isakmpd.fifo
wait_kernel left 2 3 && wait_kernel right 2 3 && ok "PF_KEY: c brings it back" || bad "PF_KEY: no second tunnel"
echo Q > $W/west5/run/isakmpd.fifo; echo Q > $W/east5/run/isakmpd.fifo
wait_kernel left 0 0 && wait_kernel right 0 0 && ok "PF_KEY: shutdown removed every state and policy" || bad "PF_KEY shutdown: $(ip -n left xfrm state | grep -c '^src') states left"
cp $W/west5/log "$OUT/west5.log"; cp $W/east5/log "$OUT/east5.log"
took PF_KEY
fi

if [ -n "$CORE" ] && budget PF_KEY-ACQUIRE 10 45; then
modprobe af_key || bad "modprobe af_key"
# ---- ACQUIRE over PF_KEY: the parent's PF_KEY socket is registered for ESP, so the
# kernel's SADB_ACQUIRE for a hand-made policy reaches the daemon and starts the passive
# connection to that peer.
ip -n left xfrm policy add src 198.51.100.0/24 dst 203.0.113.0/24 dir out \
    tmpl src 192.0.2.1 dst 192.0.2.2 proto esp mode tunnel level required
ip -n left xfrm policy add src 203.0.113.0/24 dst 198.51.100.0/24 dir in \
    tmpl src 192.0.2.2 dst 192.0.2.1 proto esp mode tunnel level required
SUITE=QM-ESP-AES-SHA-PFS-SUITE start east6 right 192.0.2.2 192.0.2.1 203.0.113.0 198.51.100.0 Passive-connections "Kernel-interface=PF_KEY"
sleep 1
SUITE=QM-ESP-AES-SHA-PFS-SUITE FLAGS=-a start west6 left 192.0.2.1 192.0.2.2 198.51.100.0 203.0.113.0 Passive-connections "Kernel-interface=PF_KEY"
# SADB_REGISTER makes af_key probe (modprobe) every algorithm it knows: seconds under TCG,
# before the daemon is ready.
T0=$(up)
for i in $(seq 1 150); do grep -q "PF_KEY socket registered" $W/west6/log && break; sleep 0.2; done
grep -q "PF_KEY socket registered" $W/west6/log && ok "PF_KEY socket registered in $(awk -v a=$T0 -v b=$(up) 'BEGIN{printf "%.1f", b-a}') s" || bad "PF_KEY socket not registered"
ip netns exec left ping -c 15 -i 0.5 -W 2 -I 198.51.100.1 203.0.113.1 > $W/ping6.txt 2>&1
grep -q "kernel ACQUIRE for peer 192.0.2.2: starting connection tun" $W/west6/log \
    && ok "PF_KEY ACQUIRE started the connection" || bad "no PF_KEY ACQUIRE start: $(grep -i acquire $W/west6/log | head -2)"
rcv=$(sed -n 's/.* \([0-9]*\) received.*/\1/p' $W/ping6.txt)
[ "${rcv:-0}" -ge 8 ] && ok "pings flow after the PF_KEY ACQUIRE ($rcv of 15)" || bad "after the PF_KEY ACQUIRE only ${rcv:-0} of 15 pings"
echo Q > $W/west6/run/isakmpd.fifo; echo Q > $W/east6/run/isakmpd.fifo
for i in $(seq 1 50); do grep -q "isakmpd: exit" $W/west6/log && grep -q "isakmpd: exit" $W/east6/log && break; sleep 0.2; done
for d in out in; do ip -n left xfrm policy del src 198.51.100.0/24 dst 203.0.113.0/24 dir $d 2>/dev/null
    ip -n left xfrm policy del src 203.0.113.0/24 dst 198.51.100.0/24 dir $d 2>/dev/null; done
wait_kernel left 0 0 && wait_kernel right 0 0 && ok "PF_KEY ACQUIRE scenario left nothing behind" || bad "after the PF_KEY ACQUIRE scenario: $(ip -n left xfrm state | grep -c '^src') states"
cp $W/west6/log "$OUT/west6.log"; cp $W/east6/log "$OUT/east6.log"
took PF_KEY-ACQUIRE
fi

# xs NS: "SPIS|PACKETS" of NS's SAs, SPIs sorted (without the decimal -s adds), from one
# ip -s xfrm state (every process costs here).
xs() {
    ip -n $1 -s xfrm state | awk '{ for (i = 1; i < NF; i++) if ($i == "spi") { v = $(i+1); sub(/\(.*/, "", v); s[n++] = v } }
        /lifetime current:/ { getline; sub(/\(packets\)/, ""); p = p $2 " " }
        END { for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (s[j] < s[i]) { t = s[i]; s[i] = s[j]; s[j] = t }
              for (i = 0; i < n; i++) printf "%s ", s[i]; printf "|%s", p }'
}
# xcheck WHAT SPIS: after a 5-ping, both kernels hold SPIS (sorted, as xs prints them) and
# each of their SAs counted at least 5 packets.
xcheck() {
    local l r c
    l=$(xs left); r=$(xs right)
    [ -n "$2" ] && [ "$2" = "${l%%|*}" ] && [ "$2" = "${r%%|*}" ] && ok "$1: SPIs $2in both kernels" \
        || bad "$1: SPIs '$2', kernels '${l%%|*}' / '${r%%|*}'"
    for c in "left ${l#*|}" "right ${r#*|}"; do
        set -- $c
        [ "${2:-0}" -ge 5 ] 2>/dev/null && [ "${3:-0}" -ge 5 ] 2>/dev/null && ok "$WHAT $1: ESP counters $2 $3" || bad "$WHAT $1: ESP counters '$2 $3'"
    done
}

if [ -n "$CORE" ] && budget openiked 30 90; then
# ---- our daemon as iked(8) against OpenBSD's own iked (Debian's openiked 7.2), which talks
# to the kernel through PF_KEY only: ours in left (XFRM), openiked in right (af_key), each
# side initiating once with a PSK and once with RSA certificates of one CA. openiked's
# /etc/iked is a tree of ours, bind-mounted in a mount namespace of its own (the path is
# compiled in); its control socket is -s. HMAC-SHA1: af_key gives HMAC-SHA2 a 96-bit ICV.
modprobe af_key || bad "modprobe af_key"
O=$W/oi; mkdir -p $O/pki; mkdir -p $W/bin; ln -sf $BIN $W/bin/iked; ln -sf $BIN $W/bin/ikectl
getent passwd _iked > /dev/null && ok "openiked: user _iked exists" || bad "openiked: no _iked user"
# openiked's /etc/iked and ours: the CA and each side's RSA key and certificate (made by
# run.sh on the host).
for n in west east; do
    e=$O/etc-$n; mkdir -p $e/private $e/certs $e/ca $e/crls $e/pubkeys/fqdn $e/pubkeys/ipv4
    cp $OUT/pki/$n.key $e/private/local.key && chmod 600 $e/private/local.key \
        && cp $OUT/pki/$n.pub $e/local.pub && cp $OUT/pki/$n.crt $e/certs/$n.crt && cp $OUT/pki/ca.crt $e/ca/ca.crt \
        || bad "openiked: no certificates from run.sh in $OUT/pki"
done
oiconf() { # me peer lnet rnet mode myid peerid auth
cat <<EOT
ikev2 "oi" $5 esp from $3 to $4 local $1 peer $2 \\
	ikesa enc aes-256 prf hmac-sha2-256 auth hmac-sha2-256 group ecp256 \\
	childsa enc aes-256 auth hmac-sha1 noesn \\
	srcid $6 dstid $7 $8
EOT
}
# ESP SPIs by direction as an ikectl shows them (iked_activesas lines), "dir spi" sorted;
# FLIP=1 swaps in and out (the peer's view).
oispis() {
    awk -v flip=${FLIP:-0} '/^iked_activesas:/ { for (i = 1; i < NF; i++) if ($i == "ESP") {
        d = $(i+2); if (flip) d = (d == "in") ? "out" : "in"; print d, tolower($(i+1)) } }' | sort | tr '\n' ' '
}
# oicheck TAG N WHO: the Nth CHILD SA ours logged (WHO initiating), in both kernels: SPIs, ping, counters; then
# our IKE SA DELETE (ikectl reset sa, ours made passive first), which openiked must honour.
oicheck() {
    local t="$1, $3 initiating" d=$O/$1 T0=$(up) mine theirs vals
    # Up to 40 s by the clock (each ip(8) here takes a while under TCG).
    while awk -v a=$T0 -v b=$(up) 'BEGIN { exit !(b - a < 40) }'; do
        [ "$(grep -c "CHILD_SA established" $d/ours.log)" -ge $2 ] && [ "$(ip -n right xfrm state | grep -c '^src')" = 2 ] && break
        sleep 0.3
    done
    if [ "$(grep -c "CHILD_SA established" $d/ours.log)" -ge $2 ] && [ "$(ip -n right xfrm state | grep -c '^src')" = 2 ]; then
        ok "openiked $t: CHILD SA in both kernels in $(awk -v a=$T0 -v b=$(up) 'BEGIN{printf "%.1f", b-a}') s"
    else
        bad "openiked $t: no tunnel: ours: $(grep -iE 'error|fail|refus|auth' $d/ours.log | tail -2 | tr '\n' ' ') openiked: $(grep -iE 'error|fail|invalid|auth' $d/openiked.log | tail -3 | tr '\n' ' ')"
        return 1
    fi
    wait_kernel left 2 3 && ok "openiked $t: ours 2 states and 3 policies (openiked's side: $(npol right) policies)" \
        || bad "openiked $t: ours $(ip -n left xfrm state | grep -c '^src') states, $(npol left) policies"
    mine=$($W/bin/ikectl -s $d/run/iked.sock show sa | oispis)
    /usr/sbin/ikectl -s $d/oi.sock show sa > $d/openiked-show-sa.txt 2>&1
    theirs=$(FLIP=1 oispis < $d/openiked-show-sa.txt)
    [ -n "$mine" ] && [ "$mine" = "$theirs" ] && ok "openiked $t: SPIs agree: ours ($mine) = openiked's ikectl show sa, reversed" \
        || bad "openiked $t: SPIs: ours '$mine', openiked's reversed '$theirs'"
    ip netns exec left ping -c 5 -i 0.3 -W 2 -I 198.51.100.1 203.0.113.1 > $d/ping-$2.txt 2>&1
    grep -q " 0% packet loss" $d/ping-$2.txt && ok "openiked $t: ping through the tunnel" || bad "openiked $t: ping: $(tail -2 $d/ping-$2.txt | tr '\n' ' ')"
    vals=$(for v in $mine; do case $v in 0x*) echo $v;; esac; done | sort | tr '\n' ' ')
    WHAT="openiked $t" xcheck "openiked $t" "$vals"
    $W/bin/ikectl -s $d/run/iked.sock load $d/ours-passive.conf > /dev/null
    $W/bin/ikectl -s $d/run/iked.sock reset sa > /dev/null
    wait_kernel right 0 0 && ok "openiked $t: honoured our DELETE, nothing left in its kernel" \
        || bad "openiked $t: after our DELETE $(ip -n right xfrm state | grep -c '^src') states, $(npol right) policies in openiked's kernel"
    wait_kernel left 0 0 && ok "openiked $t: nothing left in ours" || bad "openiked $t: ours kept $(ip -n left xfrm state | grep -c '^src') states, $(npol left) policies"
}
# oirun AUTH (psk|cert): openiked passive and ours initiating, then openiked (ikectl load
# of its active rule) initiating to ours, now passive; then both shut down.
oirun() {
    local t=$1 d=$O/$1 auth='psk "vm-openiked-psk-0123456789"' ids=(192.0.2.1 192.0.2.2)
    [ $1 = cert ] && { auth=; ids=(west.example east.example); }
    mkdir -p $d/run
    for m in active passive; do
        oiconf 192.0.2.1 192.0.2.2 198.51.100.0/24 203.0.113.0/24 $m ${ids[0]} ${ids[1]} "$auth" > $d/ours-$m.conf
        oiconf 192.0.2.2 192.0.2.1 203.0.113.0/24 198.51.100.0/24 $m ${ids[1]} ${ids[0]} "$auth" > $d/theirs-$m.conf
    done
    chmod 600 $d/*.conf
    # openiked registers with af_key for ESP, AH and IPComp at its start; each SADB_REGISTER
    # makes the kernel look up every algorithm af_key knows, with a modprobe (from the 9p
    # root, under TCG) for each one not loaded: minutes here. The algorithms of this test
    # are loaded (oiwarm), and module autoloading is off (an empty
    # /proc/sys/kernel/modprobe) until openiked is ready.
    printf '\n' > /proc/sys/kernel/modprobe
    ip netns exec right unshare -m --propagation private sh -c \
        "mount --bind $O/etc-east /etc/iked && exec /usr/sbin/iked -d -vv -f $d/theirs-passive.conf -s $d/oi.sock" > $d/openiked.log 2>&1 &
    local OI=$! T0=$(up)
    # Ready when its configuration is complete: an IKE SA begun before that is freed by
    # the end of openiked's start ("sa_free: reload"), and its IKE_AUTH left unanswered.
    while awk -v a=$T0 -v b=$(up) 'BEGIN { exit !(b - a < 60) }'; do
        grep -q "^config_getstatic: .*stickyaddress" $d/openiked.log && [ -S $d/oi.sock ] && break; sleep 0.3
    done
    echo "$MODPROBE" > /proc/sys/kernel/modprobe
    grep -q "^config_getstatic: .*stickyaddress" $d/openiked.log && [ -S $d/oi.sock ] \
        && ok "openiked $t: ready in $(awk -v a=$T0 -v b=$(up) 'BEGIN{printf "%.1f", b-a}') s" || bad "openiked $t: not ready: $(tail -3 $d/openiked.log)"
    ip netns exec left unshare -m --propagation private sh -c \
        "mount --bind $d/run /run && mount --bind $O/etc-west /etc/iked && exec $W/bin/iked -d -v -f $d/ours-active.conf" > $d/ours.log 2>&1 &
    local US=$!
    if oicheck $1 1 ours; then
        /usr/sbin/ikectl -s $d/oi.sock load $d/theirs-active.conf > /dev/null 2>&1
        oicheck $1 2 openiked
    fi
    # With certificates: each side checked the other's against the CA.
    [ $1 != cert ] || { [ "$(grep -c 'peer authenticated by certificate ".*CN=east.example", AUTH method Digital Signature' $d/ours.log)" -ge 2 ] \
        && grep -q "^ca_validate_cert: .*CN=west.example ok" $d/openiked.log \
        && ok "openiked cert: each side authenticated the other's RSA certificate, both ways" \
        || bad "openiked cert: certificate authentication: ours: $(grep -c 'authenticated by certificate' $d/ours.log), openiked: $(grep '^ca_validate_cert' $d/openiked.log | tail -2 | tr '\n' ' ')"; }
    kill -TERM $OI $US 2>/dev/null
    for i in $(seq 1 50); do kill -0 $OI 2>/dev/null || kill -0 $US 2>/dev/null || break; sleep 0.2; done
    if wait_kernel left 0 0 && wait_kernel right 0 0; then
        ok "openiked $t: shutdown left nothing"
    else
        bad "openiked $t: after shutdown left $(ip -n left xfrm state | grep -c '^src')/$(npol left), right $(ip -n right xfrm state | grep -c '^src')/$(npol right)"
        ip -n left xfrm state flush; ip -n left xfrm policy flush; ip -n right xfrm state flush; ip -n right xfrm policy flush
    fi
    cp $d/openiked.log "$OUT/openiked-$t.log"; cp $d/ours.log "$OUT/openiked-ours-$t.log"; cp $d/openiked-show-sa.txt "$OUT/openiked-show-sa-$t.txt" 2>/dev/null
}
# oiwarm: this test's algorithms (esp4, cbc(aes), hmac(sha1)) in the kernel, by one SA
# added and deleted in a namespace of its own.
MODPROBE=$(cat /proc/sys/kernel/modprobe)
ip netns add oiwarm
ip -n oiwarm xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x100 mode tunnel \
    enc 'cbc(aes)' 0x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f \
    auth-trunc 'hmac(sha1)' 0x000102030405060708090a0b0c0d0e0f10111213 96 \
    && ok "openiked: cbc(aes) and hmac(sha1) loaded" || bad "openiked: cannot add a cbc(aes)/hmac(sha1) SA"
ip netns del oiwarm
oirun psk
oirun cert
took openiked
fi

if [ -n "$CORE" ] && budget ipsecctl 5 25; then
# ---- OpenBSD's everyday isakmpd path: two `isakmpd -K` (no isakmpd.conf, no policy
# file), each configured only by `ipsecctl -f ipsec.conf` with one ike rule, which writes
# to the daemon's /var/run/isakmpd.fifo (its private /run here); real ESP through the
# tunnel; `ipsecctl -d -f` takes it down again.
mkdir -p $W/bin; ln -sf $BIN $W/bin/isakmpd; ln -sf $BIN $W/bin/ipsecctl
inrun() { # NAME NS CMD...: CMD in NS, seeing NAME's /run
    local n=$1 ns=$2; shift 2
    ip netns exec $ns unshare -m --propagation private sh -c 'd=$1; shift; mount --bind $d /run && exec "$@"' sh $W/$n/run "$@"
}
for n in kwest:left:192.0.2.2:"ike esp from 198.51.100.0/24 to 203.0.113.0/24" \
         keast:right:192.0.2.1:"ike passive esp from 203.0.113.0/24 to 198.51.100.0/24"; do
    IFS=: read name ns peer rule <<< "$n"
    mkdir -p $W/$name/run
    printf '%s peer %s psk "vm-ipsecctl-psk-0123456789"\n' "$rule" $peer > $W/$name/ipsec.conf; chmod 600 $W/$name/ipsec.conf
    inrun $name $ns $W/bin/isakmpd -d -v -K > $W/$name/log 2>&1 &
done
for i in $(seq 1 100); do [ -p $W/kwest/run/isakmpd.fifo ] && [ -p $W/keast/run/isakmpd.fifo ] && break; sleep 0.2; done
inrun keast right $W/bin/ipsecctl -f $W/keast/ipsec.conf > $W/keast/ipsecctl.txt 2>&1 \
    && inrun kwest left $W/bin/ipsecctl -f $W/kwest/ipsec.conf > $W/kwest/ipsecctl.txt 2>&1 \
    && ok "ipsecctl -f loaded both daemons" || bad "ipsecctl -f: $(cat $W/keast/ipsecctl.txt $W/kwest/ipsecctl.txt)"
T0=$(up)
for i in $(seq 1 150); do grep -q "quick mode done" $W/kwest/log && grep -q "quick mode done" $W/keast/log && break; sleep 0.2; done
grep -q "quick mode done" $W/keast/log && ok "ipsecctl: tunnel negotiated in $(awk -v a=$T0 -v b=$(up) 'BEGIN{printf "%.1f", b-a}') s" \
    || bad "ipsecctl: no tunnel: $(tail -3 $W/kwest/log | tr '\n' ' ')"
for ns in left right; do
    wait_kernel $ns 2 3 && ok "ipsecctl $ns: 2 ESP states and 3 policies" || bad "ipsecctl $ns: $(ip -n $ns xfrm state | grep -c '^src') states, $(npol $ns) policies"
done
# `ipsecctl -s sa` (asked over the FIFO) names the SPIs the kernels hold.
sa=$(inrun kwest left $W/bin/ipsecctl -s sa | awk '{for (i = 1; i < NF; i++) if ($i == "spi") print $(i+1)}' | sort | tr '\n' ' ')
ip netns exec left ping -c 5 -i 0.3 -W 2 -I 198.51.100.1 203.0.113.1 > $W/kwest/ping.txt 2>&1
grep -q " 0% packet loss" $W/kwest/ping.txt && ok "ipsecctl: ping through the tunnel" || bad "ipsecctl: ping: $(tail -2 $W/kwest/ping.txt | tr '\n' ' ')"
WHAT=ipsecctl xcheck "ipsecctl -s sa" "$sa"
inrun kwest left $W/bin/ipsecctl -d -f $W/kwest/ipsec.conf > /dev/null 2>&1
for ns in left right; do
    wait_kernel $ns 0 0 && ok "ipsecctl $ns: ipsecctl -d -f removed every state and policy" || bad "ipsecctl $ns: after -d $(ip -n $ns xfrm state | grep -c '^src') states, $(npol $ns) policies"
done
echo Q > $W/kwest/run/isakmpd.fifo; echo Q > $W/keast/run/isakmpd.fifo
for i in $(seq 1 50); do grep -q "isakmpd: exit" $W/kwest/log && grep -q "isakmpd: exit" $W/keast/log && break; sleep 0.2; done
wait_kernel left 0 0 && wait_kernel right 0 0 && ok "ipsecctl: shutdown left nothing" || bad "ipsecctl: left over after shutdown"
cp $W/kwest/log "$OUT/ipsecctl-west.log"; cp $W/keast/log "$OUT/ipsecctl-east.log"
took ipsecctl
fi

echo "GUEST-DONE uptime $(up)"
