#!/bin/sh
# Records the IKEv2 fixtures of tests/vectors/ikev2-charon.txt: two strongSwan charons in
# two network namespaces joined by a veth pair (192.0.2.2 initiator "east", 192.0.2.1
# responder "west"; documentation addresses, nothing leaves the host), tshark on the
# responder's end of the link. The initiator has a small fragment_size, so its IKE_AUTH
# request goes out as RFC 7383 SKF fragments; the responder answers with a plain SK.
# charon logs at enc/ike/chd level 4, which includes the decrypted inner payloads, the
# IVs and ICVs, the DH secret, SKEYSEED and the SK_* keys, the AUTH octets and the CHILD_SA
# keys (scripts/ikev2-keys-extract.py collects those into a *-keys.txt file).
# Run as root, once: [IKE_PROPOSALS=...] [HEAD=file] scripts/record-ikev2-vectors.sh OUTDIR
# IKE_PROPOSALS replaces the IKE proposal list of both ends (e.g. aes128gcm16-prfsha256-ecp256
# for an AEAD IKE SA), ESP_PROPOSALS the CHILD_SA's (with a DH group for PFS); HEAD is the comment block the extracted fixture starts with.
set -eu
out=${1:-/tmp/ikev2-rec}
esp_proposals=${ESP_PROPOSALS:-aes128gcm16, aes256-sha256-esn-noesn}
proposals=${IKE_PROPOSALS:-aes256-aes128-sha256-sha384-modp3072-modp2048, aes128gcm16-chacha20poly1305-prfsha256-prfsha512-ecp256-curve25519}
head=${HEAD:-$(dirname "$0")/ikev2-vectors-head.txt}
mkdir -p "$out"
A=v2rec-west B=v2rec-east
cleanup() {
    for d in west east; do
        [ -f "$out/$d/pid" ] && kill "$(cat "$out/$d/pid")" 2>/dev/null || true
    done
    [ -f "$out/tshark.pid" ] && kill "$(cat "$out/tshark.pid")" 2>/dev/null || true
    sleep 1
    ip netns del $A 2>/dev/null || true
    ip netns del $B 2>/dev/null || true
}
trap cleanup EXIT
ip netns add $A
ip netns add $B
ip link add v2rw netns $A type veth peer name v2re netns $B
ip -n $A addr add 192.0.2.1/24 dev v2rw
ip -n $B addr add 192.0.2.2/24 dev v2re
ip -n $A link set v2rw up; ip -n $A link set lo up
ip -n $B link set v2re up; ip -n $B link set lo up
# The traffic selectors' own ends, so that kernel-libipsec's routes have a source.
ip -n $A addr add 198.51.100.1/32 dev lo; ip -n $A addr add 2001:db8:2::1/128 dev lo
ip -n $B addr add 203.0.113.1/32 dev lo; ip -n $B addr add 2001:db8:1::1/128 dev lo

conf() { # dir self peer extra
    d=$out/$1
    mkdir -p "$d/swanctl" "$d/run"
    cat > "$d/strongswan.conf" <<EOC
charon {
 load_modular = no
 load = random nonce openssl pem pkcs1 pkcs8 x509 revocation constraints pubkey sha1 sha2 hmac aes gcm gmp curve25519 chapoly kdf kernel-libipsec kernel-netlink socket-default vici
 install_virtual_ip = no
 install_routes = no
 retransmit_tries = 2
 $4
 filelog { main { path = $d/charon.log
  time_format = %T
  append = no
  flush_line = yes
  default = 1
  ike = 4
  enc = 4
  chd = 4
  cfg = 2 } }
 plugins { vici { socket = unix://$d/charon.vici }
  kernel-netlink { fwmark = !0x42 }
  socket-default { fwmark = 0x42 }
  kernel-libipsec { allow_peer_ts = yes } }
}
EOC
    cat > "$d/swanctl/swanctl.conf" <<EOC
connections {
 v2 {
  version = 2
  local_addrs = $2
  remote_addrs = $3
  fragmentation = yes
  proposals = $proposals
  local { auth = psk
   id = $2 }
  remote { auth = psk
   id = $3 }
  children { net { mode = tunnel
   esp_proposals = $esp_proposals
   local_ts = $5
   remote_ts = $6
   start_action = none } }
 }
}
secrets { ike-1 { id-1 = 192.0.2.1
  id-2 = 192.0.2.2
  secret = "ikev2-wire-record-psk" } }
EOC
}
conf west 192.0.2.1 192.0.2.2 "" "198.51.100.0/24, 2001:db8:2::/48" "203.0.113.0/24, 2001:db8:1::/48"
conf east 192.0.2.2 192.0.2.1 "fragment_size = 300" "203.0.113.0/24, 2001:db8:1::/48" "198.51.100.0/24[tcp/443], 2001:db8:2::/48"

ip netns exec $A tshark -q -i v2rw -f udp -w "$out/cap.pcapng" >/dev/null 2>&1 &
echo $! > "$out/tshark.pid"
for d in west:$A east:$B; do
    n=${d%%:*} ns=${d#*:}
    STRONGSWAN_CONF=$out/$n/strongswan.conf ip netns exec $ns unshare -m --propagation private \
        sh -c "mount --bind $out/$n/run /run && exec /usr/lib/ipsec/charon" >/dev/null 2>&1 &
    echo $! > "$out/$n/pid"
done
for n in west east; do
    i=0; while [ ! -S "$out/$n/charon.vici" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i+1)); done
    SWANCTL_DIR=$out/$n/swanctl swanctl --load-all --noprompt --uri unix://$out/$n/charon.vici
done
sleep 2
SWANCTL_DIR=$out/east/swanctl swanctl --initiate --child net --uri unix://$out/east/charon.vici || true
sleep 1
SWANCTL_DIR=$out/east/swanctl swanctl --rekey --child net --uri unix://$out/east/charon.vici || true
sleep 1
if [ -n "${IKE_REKEY:-}" ]; then
    SWANCTL_DIR=$out/east/swanctl swanctl --rekey --ike v2 --uri unix://$out/east/charon.vici || true
    sleep 1
fi
SWANCTL_DIR=$out/east/swanctl swanctl --terminate --ike v2 --uri unix://$out/east/charon.vici || true
sleep 2
kill "$(cat "$out/tshark.pid")"; rm "$out/tshark.pid"; sleep 1
tshark -r "$out/cap.pcapng" -T fields -e frame.number -e ip.src -e udp.srcport -e udp.payload > "$out/udp.txt"
"$(dirname "$0")"/ikev2-vectors-extract.py "$out" "$head"
cat "$out/udp.txt" | cut -c1-80
