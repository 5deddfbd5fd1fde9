# Sourced by tests/vm/guest.sh (its ok/bad/budget/took/wait_kernel/npol/counts/spis/xstat/
# gaps/charon_conf/start_charon/swan helpers, $W, $BIN, namespaces left and right):
# our daemon as iked(8), configured by iked.conf, against strongSwan's charon over
# IKEv2 with the kernel's ESP. PSK, IKE SA AES-CBC/SHA2-256/ECP-256, CHILD SA AES-GCM;
# ping with rising counters on both sides, the outbound SPIs of each side the inbound
# ones of the other, a CHILD SA rekey (ours, by a 20 s lifetime) during a ping with no
# packet lost or meeting a gap, then `ikectl reset sa` removes every state and policy
# on both sides (charon honours our Delete).

if budget ikev2-charon 45 40; then
C2=$W/charon2; mkdir -p $C2/iked/run
mkdir -p $W/bin; ln -sf $BIN $W/bin/iked; ln -sf $BIN $W/bin/ikectl
charon_conf $C2 v2 aes256gcm16 vm-ikev2-charon-psk-0123456789 gcm "rekey_time = 0" <<EOT
        version = 2
        local_addrs = 192.0.2.2
        remote_addrs = 192.0.2.1
        proposals = aes256-sha256-ecp256
        dpd_delay = 0
        rekey_time = 0
EOT
v2conf() { # [lifetime]
cat <<EOT
ikev2 "c2" active esp from 198.51.100.0/24 to 203.0.113.0/24 local 192.0.2.1 peer 192.0.2.2 \\
	ikesa enc aes-256 prf hmac-sha2-256 auth hmac-sha2-256 group ecp256 \\
	childsa enc aes-256-gcm \\
	srcid 192.0.2.1 dstid 192.0.2.2 ${1:+lifetime $1} psk "vm-ikev2-charon-psk-0123456789"
EOT
}
v2conf 20s > $C2/iked/iked.conf; chmod 600 $C2/iked/iked.conf
start_charon $C2 right && ok "ikev2-charon: charon (kernel-netlink) up in right" || bad "ikev2-charon: charon: $(tail -3 $C2/load.txt $C2/stdout)"
T0=$(up)
ip netns exec left unshare -m --propagation private sh -c \
    "mount --bind $C2/iked/run /run && exec $W/bin/iked -d -v -f $C2/iked/iked.conf" > $C2/iked/log 2>&1 &
for i in $(seq 1 150); do grep -q "CHILD_SA established" $C2/iked/log && break; sleep 0.2; done
grep -q "CHILD_SA established" $C2/iked/log \
    && ok "ikev2-charon: our iked and charon negotiated in $(awk -v a=$T0 -v b=$(up) 'BEGIN{printf "%.1f", b-a}') s" \
    || bad "ikev2-charon: no tunnel: $(grep -iE 'fail|refus|error' $C2/iked/log | tail -2)"
for ns in left right; do
    wait_kernel $ns 2 3
    st=$(ip -n $ns xfrm state | grep -c "^src"); po=$(npol $ns)
    [ "$st" = 2 ] && [ "$po" = 3 ] && ok "ikev2-charon $ns: 2 ESP states and 3 policies" || bad "ikev2-charon $ns: $st states, $po policies"
done
ip -n right xfrm state | grep -q "rfc4106(gcm(aes))" && ok "ikev2-charon: charon's ESP is AES-GCM (rfc4106)" || bad "ikev2-charon: charon's ESP: $(ip -n right xfrm state | grep -E 'aead|enc')"
# Each side's SPIs are the other's: the two kernels hold the same pair.
[ -n "$(spis left)" ] && [ "$(spis left)" = "$(spis right)" ] && ok "ikev2-charon: both kernels hold SPIs $(spis left)" || bad "ikev2-charon: SPIs differ: left $(spis left), right $(spis right)"
ospi=$($W/bin/ikectl -s $C2/iked/run/iked.sock show sa | awk '/^iked_activesas:/ && / out / {print $4; exit}')
swan $C2 --list-sas > $C2/sas.txt 2>&1
grep -qiE "in +${ospi#0x}," $C2/sas.txt && ok "ikev2-charon: ikectl's outbound SPI $ospi is charon's inbound" || bad "ikev2-charon: SPI '$ospi' not in swanctl --list-sas: $(grep -i spi $C2/sas.txt | head -2)"
# Five pings, counted by both kernels' SAs (before the rekey: after it, the SAs of a
# second one may have counted nothing yet).
ip netns exec left ping -c 5 -i 0.2 -W 2 -I 198.51.100.1 203.0.113.1 > $C2/ping5.txt 2>&1
for ns in left right; do
    c=$(counts $ns); set -- $c
    [ "${1:-0}" -ge 5 ] 2>/dev/null && [ "${2:-0}" -ge 5 ] 2>/dev/null && ok "ikev2-charon $ns: ESP counters $c" || bad "ikev2-charon $ns: ESP counters '$c'"
done
xstat left; xstat right
old=$(spis left)
ip netns exec left ping -c 60 -i 0.5 -W 2 -I 198.51.100.1 203.0.113.1 > $C2/ping.txt 2>&1
wait_kernel left 2 3; wait_kernel right 2 3
new=$(spis left)
grep -q "reached, rekeying" $C2/iked/log && [ "$old" != "$new" ] && [ "$new" = "$(spis right)" ] \
    && ok "ikev2-charon: our CHILD SA rekey ($old-> $new), the same on charon's side" \
    || bad "ikev2-charon: no rekey (left $old-> $new, right $(spis right))"
g="$(gaps left)$(gaps right)"
[ -z "$g" ] && ok "ikev2-charon: no packet met a missing SA across the rekey (xfrm_stat)" || bad "ikev2-charon: packets met a gap: $g"
grep -q " 0% packet loss" $C2/ping.txt && ok "ikev2-charon: no ping lost across the rekey ($(grep transmitted $C2/ping.txt))" || bad "ikev2-charon: pings lost: $(grep transmitted $C2/ping.txt)"
# The policy made passive (or our daemon would start it again), then reset sa: our IKE
# Delete makes charon remove its CHILD SA, and we remove ours.
v2conf | sed 's/"c2" active/"c2" passive/' > $C2/iked/passive.conf; chmod 600 $C2/iked/passive.conf
$W/bin/ikectl -s $C2/iked/run/iked.sock load $C2/iked/passive.conf > /dev/null
$W/bin/ikectl -s $C2/iked/run/iked.sock reset sa > /dev/null
for ns in left right; do
    wait_kernel $ns 0 0
    st=$(ip -n $ns xfrm state | grep -c "^src"); po=$(npol $ns)
    [ "$st" = 0 ] && [ "$po" = 0 ] && ok "ikev2-charon $ns: reset sa left no state or policy" || bad "ikev2-charon $ns: after reset $st states, $po policies"
done
pkill -TERM -f "$C2/iked/iked.conf"
wait_kernel left 0 0 && ok "ikev2-charon: our shutdown left nothing" || bad "ikev2-charon: after our shutdown $(ip -n left xfrm state | grep -c '^src') states, $(npol left) policies"
kill $CHARON 2>/dev/null
for i in $(seq 1 50); do ip netns exec right ss -uln | grep -q ':500 ' || break; sleep 0.2; done
cp $C2/iked/log "$OUT/iked-charon.log"; cp $C2/charon.log "$OUT/charon2.log" 2>/dev/null
took ikev2-charon
fi
