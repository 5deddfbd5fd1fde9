#!/usr/bin/env bash
# Installs what building and testing isakmpd needs on a fresh Debian 12 machine, as root:
# the C toolchain and OpenSSL headers for the openssl crate, the tools the tests drive
# (iproute2, util-linux for unshare/nsenter, tshark), and the privilege-separation user
# and jail the daemon drops into (_isakmpd, /var/empty).
set -euo pipefail

if [ "$(id -u)" -ne 0 ]; then
    echo "setup.sh: run as root (the daemon needs root for privilege separation)" >&2
    exit 1
fi

need=()
# tshark decodes our capture files; strongSwan (charon with kernel-libipsec, swanctl) is
# the interop peer of tests/interop (libcharon-extauth-plugins has its eap-mschapv2 client
# for the EAP road warrior test); iputils-ping checks the namespaces' links; nftables
# is the NAT (masquerade) of the VM test's NAT-T scenario; openiked (OpenBSD's iked) is the
# VM test's IKEv2 peer over PF_KEY, never started on the host (policy-rc.d below).
for p in build-essential pkg-config libssl-dev iproute2 util-linux procps tshark \
         strongswan-charon libcharon-extra-plugins libcharon-extauth-plugins \
         libstrongswan-standard-plugins \
         strongswan-swanctl iputils-ping \
         qemu-system-x86 linux-image-amd64 busybox-static udev kmod nftables openiked; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # No package's daemon starts here (openiked's iked, charon): a policy-rc.d of ours
    # while installing, when the machine has none.
    rcd=
    [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d; chmod 755 /usr/sbin/policy-rc.d; rcd=1; }
    apt-get install -y -qq --no-install-recommends "${need[@]}" || { [ -z "$rcd" ] || rm -f /usr/sbin/policy-rc.d; exit 1; }
    [ -z "$rcd" ] || rm -f /usr/sbin/policy-rc.d
fi

# virtme-ng boots Debian's kernel for the VM test (tests/vm) with the host's root file
# system shared read-only.
if ! command -v vng >/dev/null 2>&1; then
    python3 -m pip install --quiet virtme-ng==1.42 ||
        python3 -m pip install --quiet --break-system-packages virtme-ng==1.42
    command -v pyenv >/dev/null 2>&1 && pyenv rehash || true
fi

# libreswan's pluto, the third interop peer (tests/interop_libreswan.rs), conflicts with
# strongSwan's packages: it is unpacked into /var/cache/isakmpd-tests/libreswan, never
# installed. Not fatal: the test fetches it again itself, and says so when it cannot.
bash "$(dirname "$0")/fetch-libreswan.sh" ||
    echo "setup.sh: could not fetch libreswan; tests/interop_libreswan.rs will skip" >&2

if ! command -v cargo >/dev/null 2>&1; then
    echo "setup.sh: cargo not found; install the Rust toolchain (rustup) first" >&2
    exit 1
fi

mkdir -p /var/empty /etc/isakmpd
chmod 755 /var/empty
if ! getent passwd _isakmpd >/dev/null; then
    useradd --system --home-dir /var/empty --no-create-home --shell /usr/sbin/nologin _isakmpd
fi
