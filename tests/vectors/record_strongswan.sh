#!/usr/bin/env bash
# Records tests/vectors/strongswan-ikev1.txt: two strongSwan charons (Debian
# packages) negotiate IKEv1 Main Mode with a pre-shared key and a Quick Mode in
# two network namespaces, logging every key they derive (ike/chd/net = 4);
# extract_strongswan.py takes the inputs and charon's results from the logs.
# tests/crypto_vectors.rs recomputes every result with our derivations.
#
# Run by hand, as root, when the fixture needs new cases:
#   apt-get install charon-systemd libcharon-extra-plugins \
#       libstrongswan-standard-plugins strongswan-swanctl iputils-ping
#   bash tests/vectors/record_strongswan.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/../interop/lib.sh"
work=$(mktemp -d /tmp/isakmpd-swan.XXXXXX)
psk='fixture-psk-not-a-secret'
out=$here/strongswan-ikev1.txt

cleanup() {
    swan_stop "$work/a" || true
    swan_stop "$work/b" || true
    netns_down
}
trap cleanup EXIT

# name  IKE proposal  ESP proposal
cases=(
    "aes256-sha1-modp1024-pfs aes256-sha1-modp1024 aes256-sha1-modp1024"
    "aes128-sha256-ecp256 aes128-sha256-ecp256 aes128-sha256"
    "3des-md5-modp2048-pfs 3des-md5-modp2048 3des-md5-modp2048"
    "aes192-sha384-modp1536 aes192-sha384-modp1536 aes192-sha384"
    "aes128-sha512-curve25519-pfs aes128-sha512-curve25519 aes256-sha512-curve25519"
)

{
    echo "# strongSwan $(dpkg-query -W -f '${Version}' libstrongswan 2>/dev/null || echo '?')"
    echo "# IKEv1 Main Mode (pre-shared key) + Quick Mode, initiator 192.0.2.1, responder 192.0.2.2."
    echo "# Recorded by tests/vectors/record_strongswan.sh on $(date -u +%F); values are charon's own."
    echo
} > "$out.new"

for c in "${cases[@]}"; do
    read -r name ike esp <<< "$c"
    netns_up
    rm -rf "$work/a" "$work/b"
    for h in a b; do swan_conf "$work/$h" "ike = 4
            chd = 4
            net = 4"; done
    swan_psk_conn "$work/a" $IP_A $IP_B "$ike" "$esp" no "$psk"
    swan_psk_conn "$work/b" $IP_B $IP_A "$ike" "$esp" no "$psk"
    swan_start "$work/b" "$NS_B"
    sw "$work/b" --load-all --noprompt > /dev/null
    swan_start "$work/a" "$NS_A"
    sw "$work/a" --load-all --noprompt > /dev/null
    sw "$work/a" --initiate --ike v1 --child net --timeout 20 > "$work/initiate.txt" 2>&1 \
        || { say "$name: initiate failed"; cat "$work/initiate.txt" >&2; exit 1; }
    sleep 0.3
    swan_stop "$work/a"
    swan_stop "$work/b"
    python3 "$here/extract_strongswan.py" "$name" "$psk" "$work/a/charon.log" "$work/b/charon.log" \
        >> "$out.new"
    say "$name: recorded"
done
mv "$out.new" "$out"
rm -rf "$work"
say "wrote $out"
