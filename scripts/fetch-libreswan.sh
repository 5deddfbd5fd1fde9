#!/usr/bin/env bash
# Unpacks Debian's libreswan (pluto, whack, addconn) into a private directory for the
# interop test tests/interop_libreswan.rs. Debian's libreswan conflicts with strongSwan's
# packages (the other interop peer), so it is never installed: `apt-get download` and
# `dpkg -x` put it, and the libraries it needs that a strongSwan machine lacks (ldns,
# libevent's pthreads part) and certutil (libnss3-tools, for pluto's NSS database), under
# DIR (default /var/cache/isakmpd-tests/libreswan). Run pluto with
# LD_LIBRARY_PATH=DIR/usr/lib/<multiarch triplet>. Idempotent; exits non-zero when the
# packages cannot be fetched.
set -euo pipefail
dir=${1:-/var/cache/isakmpd-tests/libreswan}
pkgs=(libreswan libldns3 libevent-pthreads-2.1-7 libnss3-tools)
[ -x "$dir/usr/libexec/ipsec/pluto" ] && [ -x "$dir/usr/bin/certutil" ] && exit 0
mkdir -p "$dir/debs"
cd "$dir/debs"
# apt-get download runs as _apt when it can write here.
chown _apt "$dir/debs" 2>/dev/null || true
if ! apt-get download -q "${pkgs[@]}" >/dev/null 2>&1; then
    apt-get update -qq
    apt-get download -q "${pkgs[@]}" >/dev/null
fi
for p in "${pkgs[@]}"; do
    deb=$(ls -t "${p}"_*.deb | head -n1)
    dpkg -x "$deb" "$dir"
done
# The shared libraries pluto and certutil link (libnss3, libcurl3-nss, libunbound8, ...):
# installed from Debian like any library (they conflict with nothing), unless present.
# The packages named above are the ones unpacked here instead; tools pluto's scripts use
# (host, iptables, dns-root-data) are not needed by the tests.
need=()
for deb in libreswan_*.deb libnss3-tools_*.deb; do
    for d in $(dpkg-deb -f "$(ls -t $deb | head -n1)" Depends | tr ',' '\n' | sed 's/|.*//; s/(.*)//; s/ //g'); do
        case " ${pkgs[*]} host iptables dns-root-data iproute2 iproute " in *" $d "*) continue ;; esac
        dpkg-query -W -f='${Status}' "$d" 2>/dev/null | grep -q 'install ok installed' || need+=("$d")
    done
done
if [ ${#need[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null ||
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }
fi
LD_LIBRARY_PATH="$(echo "$dir"/usr/lib/*-linux-gnu*)" "$dir/usr/libexec/ipsec/pluto" --version >/dev/null
