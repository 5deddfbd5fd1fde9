# tests/interop/lib.sh: strongSwan (charon) peers in network namespaces, for
# interop tests and for recording reference values.  Sourced; needs root.
#
# Topology, only documentation addresses, only in namespaces made here:
#
#   netns ${NS_A} 192.0.2.1/24 (vethA) <--- veth ---> (vethB) 192.0.2.2/24 netns ${NS_B}
#
# Two charons can run at once: each gets its own mount namespace with a
# private directory over /run (charon's pid file path is compiled in), its
# own strongswan.conf (STRONGSWAN_CONF, load_modular = no, explicit plugin
# list) and its own vici socket.  This kernel has no ESP, so the CHILD_SA
# goes to kernel-libipsec (userspace ESP over a TUN device), which must be
# listed before kernel-netlink.

set -u
NS_A=${NS_A:-iskA}
NS_B=${NS_B:-iskB}
IP_A=192.0.2.1
IP_B=192.0.2.2
CHARON=${CHARON:-/usr/lib/ipsec/charon}

say() { printf '[%s] %s\n' "$(date +%T)" "$*" >&2; }

netns_up() {
    netns_down
    ip netns add "$NS_A"
    ip netns add "$NS_B"
    ip link add vethA netns "$NS_A" type veth peer name vethB netns "$NS_B"
    ip -n "$NS_A" addr add $IP_A/24 dev vethA
    ip -n "$NS_B" addr add $IP_B/24 dev vethB
    for ns in "$NS_A" "$NS_B"; do ip -n "$ns" link set lo up; done
    ip -n "$NS_A" link set vethA up
    ip -n "$NS_B" link set vethB up
}

netns_down() {
    ip netns del "$NS_A" 2>/dev/null || true
    ip netns del "$NS_B" 2>/dev/null || true
}

# swan_conf DIR LOGLEVELS: write DIR/strongswan.conf.  LOGLEVELS is the body
# of the filelog section's level settings, e.g. "ike = 4 chd = 4 net = 4".
swan_conf() {
    local dir=$1 levels=$2
    mkdir -p "$dir/run" "$dir/swanctl"
    cat > "$dir/strongswan.conf" <<EOF
charon {
    load_modular = no
    load = random nonce openssl pem pkcs1 pkcs8 x509 pubkey revocation constraints sha1 sha2 md5 hmac aes des gmp kdf curve25519 kernel-libipsec kernel-netlink socket-default vici updown
    i_dont_care_about_security_and_use_aggressive_mode_psk = yes
    install_virtual_ip = no
    retransmit_tries = 3
    filelog {
        main {
            path = $dir/charon.log
            time_format = %T
            append = no
            flush_line = yes
            default = 1
            $levels
        }
    }
    plugins {
        vici { socket = unix://$dir/charon.vici }
        # charon's own packets carry mark 0x42 and bypass the route into ipsec0
        kernel-netlink { fwmark = !0x42 }
        socket-default { fwmark = 0x42 }
        kernel-libipsec { allow_peer_ts = yes }
    }
}
EOF
}

# swan_start DIR NETNS: start a charon; its pid goes to DIR/daemon.pid.
swan_start() {
    local dir=$1 ns=$2 i
    rm -f "$dir/run/charon.pid" "$dir/charon.vici"
    STRONGSWAN_CONF="$dir/strongswan.conf" \
    ip netns exec "$ns" unshare --mount --propagation private \
        sh -c "mount --bind '$dir/run' /run && exec $CHARON" \
        > "$dir/charon.stdout" 2>&1 &
    echo $! > "$dir/daemon.pid"
    for i in $(seq 1 100); do
        [ -S "$dir/charon.vici" ] && return 0
        kill -0 "$(cat "$dir/daemon.pid")" 2>/dev/null || break
        sleep 0.1
    done
    say "charon in $dir did not come up"
    cat "$dir/charon.stdout" >&2
    return 1
}

swan_stop() {
    local dir=$1 pid i
    [ -f "$dir/daemon.pid" ] || return 0
    pid=$(cat "$dir/daemon.pid")
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid"
        for i in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    fi
    rm -f "$dir/daemon.pid"
}

# swanctl against one instance: sw DIR COMMAND [ARGS...]
sw() {
    local dir=$1 cmd=$2
    shift 2
    SWANCTL_DIR="$dir/swanctl" swanctl "$cmd" --uri "unix://$dir/charon.vici" "$@"
}

# swan_psk_conn DIR LOCAL REMOTE IKEPROP ESPPROP AGGRESSIVE PSK
swan_psk_conn() {
    local dir=$1 me=$2 peer=$3 ike=$4 esp=$5 aggr=$6 psk=$7
    cat > "$dir/swanctl/swanctl.conf" <<EOF
connections {
    v1 {
        version = 1
        aggressive = $aggr
        local_addrs = $me
        remote_addrs = $peer
        proposals = $ike
        dpd_delay = 0
        local { auth = psk
                id = $me }
        remote { auth = psk
                 id = $peer }
        children {
            net {
                mode = tunnel
                esp_proposals = $esp
                local_ts = dynamic
                remote_ts = dynamic
                start_action = none
            }
        }
    }
}
secrets {
    ike-v1 {
        id-1 = $me
        id-2 = $peer
        secret = "$psk"
    }
}
EOF
}
