# Sourced by tests/vm/guest.sh (its ok/bad/budget/took/wait_kernel/npol/counts/spis/xstat/
# gaps/charon_conf/start_charon/swan helpers, $W, $BIN, namespaces left and right): MOBIKE
# (RFC 4555) with the kernel's ESP. strongSwan's charon in right initiates to our iked
# in left (responder, MOBIKE on as iked's default), 45 pings go through, then charon's
# address moves from 192.0.2.2 to 192.0.2.3 and charon sends UPDATE_SA_ADDRESSES. We
# move the CHILD SA's states and policies with XFRM_MSG_MIGRATE: the same SPIs at the
# new address, and our outbound sequence number goes on from where it was (charon keeps
# its replay window across the move, so states made anew, counting from 1, would see
# our first packets dropped as replays). Pings after the move: none lost, no replay
# error on charon's side, our outbound state's sequence number past the 45 of before.

if budget mobike 40 40; then
M=$W/mobike; mkdir -p $M/iked/run
mkdir -p $W/bin; ln -sf $BIN $W/bin/iked; ln -sf $BIN $W/bin/ikectl
# No local_addrs: charon takes whatever address routes to us, and follows its own moves.
charon_conf $M mo aes256gcm16 vm-mobike-psk-0123456789 gcm "rekey_time = 0" <<EOT
        version = 2
        remote_addrs = 192.0.2.1
        proposals = aes256-sha256-ecp256
        mobike = yes
        dpd_delay = 0
        rekey_time = 0
EOT
cat > $M/iked/iked.conf <<EOT
ikev2 "mo" passive esp from 198.51.100.0/24 to 203.0.113.0/24 local 192.0.2.1 peer 192.0.2.2 \\
	ikesa enc aes-256 prf hmac-sha2-256 auth hmac-sha2-256 group ecp256 \\
	childsa enc aes-256-gcm \\
	srcid 192.0.2.1 dstid 192.0.2.2 psk "vm-mobike-psk-0123456789"
EOT
chmod 600 $M/iked/iked.conf
# oseq NS DST: the outbound sequence number of NS's state towards DST (ip -s prints the
# anti-replay context).
oseq() {
    local v
    v=$(ip -n $1 -s xfrm state | awk -v d=$2 '/^src/ { on = ($4 == d) } on && /oseq/ { for (i = 1; i < NF; i++) if ($i == "oseq") { v = $(i+1); sub(/,/, "", v); print v; exit } }')
    [ -n "$v" ] && echo $((v))
}
seqerr() { ip netns exec $1 awk '$1 == "XfrmInStateSeqError" { print $2 }' /proc/net/xfrm_stat; }
ip netns exec left unshare -m --propagation private sh -c \
    "mount --bind $M/iked/run /run && exec $W/bin/iked -d -v -f $M/iked/iked.conf" > $M/iked/log 2>&1 &
start_charon $M right || bad "mobike: charon: $(tail -3 $M/load.txt $M/stdout)"
for i in $(seq 1 100); do [ -S $M/iked/run/iked.sock ] && break; sleep 0.2; done
T0=$(up)
swan $M --initiate --child net > $M/initiate.txt 2>&1
for i in $(seq 1 100); do grep -q "CHILD_SA established" $M/iked/log && break; sleep 0.2; done
if grep -q "CHILD_SA established" $M/iked/log && wait_kernel left 2 3 && wait_kernel right 2 3; then
    ok "mobike: charon initiated to our iked in $(awk -v a=$T0 -v b=$(up) 'BEGIN{printf "%.1f", b-a}') s"
else
    bad "mobike: no tunnel: $(grep -iE 'fail|refus|error' $M/iked/log | tail -2) $(tail -2 $M/initiate.txt)"
fi
grep -q "N(MOBIKE_SUP)" $M/charon.log && ok "mobike: MOBIKE_SUPPORTED both ways" || bad "mobike: charon's log has no MOBIKE_SUPPORTED"
ip netns exec left ping -c 45 -i 0.1 -W 2 -I 198.51.100.1 203.0.113.1 > $M/ping1.txt 2>&1
before=$(oseq left 192.0.2.2)
[ "${before:-0}" -ge 45 ] && ok "mobike: our outbound sequence number at $before before the move" || bad "mobike: outbound sequence number '$before' after 45 pings"
spis0=$(spis left)
xstat left; xstat right; err0=$(seqerr right)
# charon's address moves: the new one comes, the old one goes (the new one takes over
# the prefix route); charon notices and sends UPDATE_SA_ADDRESSES from there.
ip netns exec right sysctl -qw net.ipv4.conf.vr.promote_secondaries=1
ip -n right addr add 192.0.2.3/24 dev vr
ip -n right addr del 192.0.2.2/24 dev vr
ip -n right route replace 198.51.100.0/24 via 192.0.2.1 src 203.0.113.1
T0=$(up)
while awk -v a=$T0 -v b=$(up) 'BEGIN { exit !(b - a < 40) }'; do
    ip -n left xfrm state | grep -q "dst 192.0.2.3" && ip -n right xfrm state | grep -q "src 192.0.2.3" && break
    sleep 0.3
done
if ip -n left xfrm state | grep -q "dst 192.0.2.3"; then
    ok "mobike: our CHILD SA followed charon to 192.0.2.3 in $(awk -v a=$T0 -v b=$(up) 'BEGIN{printf "%.1f", b-a}') s"
else
    bad "mobike: our states did not move: $(ip -n left xfrm state | grep '^src' | tr '\n' ' ') $(grep -iE 'UPDATE_SA|move|migrat' $M/iked/log | tail -2)"
fi
grep -q "kernel: migrate" $M/iked/log && bad "mobike: the kernel refused a MIGRATE: $(grep 'kernel: migrate' $M/iked/log | head -2 | tr '\n' ' ')" \
    || ok "mobike: the kernel took every XFRM_MSG_MIGRATE"
[ "$(spis left)" = "$spis0" ] && ok "mobike: the same SPIs after the move ($spis0)" || bad "mobike: SPIs $spis0 became $(spis left)"
ip -n left xfrm policy | grep -q "tmpl src 192.0.2.1 dst 192.0.2.3\|src 192.0.2.1 dst 192.0.2.3" \
    && ok "mobike: our policies' templates follow" || bad "mobike: policies: $(ip -n left xfrm policy | grep -A2 'dir out' | tr '\n' ' ')"
ip netns exec left ping -c 10 -i 0.2 -W 2 -I 198.51.100.1 203.0.113.1 > $M/ping2.txt 2>&1
grep -q " 0% packet loss" $M/ping2.txt && ok "mobike: pings through the moved CHILD SA, none lost ($(grep transmitted $M/ping2.txt))" \
    || bad "mobike: pings after the move: $(grep transmitted $M/ping2.txt)"
after=$(oseq left 192.0.2.3)
[ "${after:-0}" -ge $((${before:-0} + 10)) ] 2>/dev/null && ok "mobike: our outbound sequence number went on ($before -> $after)" \
    || bad "mobike: outbound sequence number $before -> '$after' (started again?)"
err1=$(seqerr right)
[ "${err1:-x}" = "${err0:-y}" ] && ok "mobike: charon's kernel saw no replayed sequence number" || bad "mobike: XfrmInStateSeqError on charon's side $err0 -> $err1"
swan $M --terminate --ike mo > /dev/null 2>&1
pkill -TERM -f "$M/iked/iked.conf"
kill $CHARON 2>/dev/null
for i in $(seq 1 50); do ip netns exec right ss -uln | grep -q ':500 ' || break; sleep 0.2; done
wait_kernel left 0 0 && ok "mobike: our shutdown left nothing" || bad "mobike: after shutdown $(ip -n left xfrm state | grep -c '^src') states, $(npol left) policies"
ip -n left xfrm state flush; ip -n left xfrm policy flush; ip -n right xfrm state flush; ip -n right xfrm policy flush
# right as the other scenarios want it.
ip -n right addr add 192.0.2.2/24 dev vr
ip -n right addr del 192.0.2.3/24 dev vr
ip -n right route replace 198.51.100.0/24 via 192.0.2.1 src 203.0.113.1
cp $M/iked/log "$OUT/iked-mobike.log"; cp $M/charon.log "$OUT/charon-mobike.log" 2>/dev/null
took mobike
fi
