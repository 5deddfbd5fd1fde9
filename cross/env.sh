# Sourced by cross/build.sh and cross/test.sh: what a target needs and how cargo reaches it.
# Only Debian 12 packages: for a foreign target, rustc-web (rustc 1.96 from bookworm-security,
# /usr/bin/rustc) with its standard library for the target (libstd-rust-web-dev:ARCH,
# multiarch), the C cross compiler and qemu-user-static; for the host's own target, the
# machine's toolchain. libcrypto is built from source for the target (cross/openssl.sh).

cross_target() {
    TARGET=${1:-}
    TARGET_RUSTFLAGS=
    case "$TARGET" in
    armv7-unknown-linux-gnueabihf)
        # The 3 MiB budget (libcrypto included): Thumb-2 for our code, as gcc builds C for
        # this target (std stays A32 as Debian built it; the linker does the interworking),
        # 140 KB less; rustc calls the feature unstable and warns once per crate. Non-PIC
        # code, as this target links a non-PIE executable: 8 KB less. With our own
        # libcrypto (cross/openssl.sh) the release profile's opt-level s fits again
        # (2,935,348 B, 2,992,692 B with EAP and ipsecctl's SA rules; opt-level z, 2,824,756 B, made the handshakes 9-29 % slower).
        DEB_ARCH=armhf TRIPLET=arm-linux-gnueabihf QEMU=qemu-arm-static
        TARGET_RUSTFLAGS="-C target-feature=+thumb-mode -C relocation-model=static" ;;
    aarch64-unknown-linux-gnu)
        DEB_ARCH=arm64 TRIPLET=aarch64-linux-gnu QEMU=qemu-aarch64-static ;;
    x86_64-unknown-linux-gnu)
        DEB_ARCH=amd64 TRIPLET=x86_64-linux-gnu QEMU= ;;
    *)
        echo "usage: $0 armv7-unknown-linux-gnueabihf|aarch64-unknown-linux-gnu|x86_64-unknown-linux-gnu" >&2
        echo "(mips: Debian 12 has no Rust standard library for it; see cross/README.md)" >&2
        exit 2 ;;
    esac
    HOST_ARCH=$(dpkg --print-architecture)
    if [ "$DEB_ARCH" = "$HOST_ARCH" ]; then
        # The machine's own toolchain has this target's std: no rustc-web needed.
        CROSS_CC=gcc CROSS_RUSTC=
        PKGS="libc6-dev gcc"
    else
        # rustup cannot fetch a foreign std here, and Debian's std (1.96) only fits
        # Debian's rustc: cargo drives /usr/bin/rustc for these targets.
        CROSS_CC=$TRIPLET-gcc CROSS_RUSTC=/usr/bin/rustc
        PKGS="rustc-web libstd-rust-web-dev:$DEB_ARCH libc6-dev:$DEB_ARCH gcc-$TRIPLET qemu-user-static"
    fi
}

# Installs the missing packages (nothing, and no apt-get update, when all are there).
cross_install() {
    local missing=() p
    for p in $PKGS "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    echo "cross: installing ${missing[*]}"
    if [ "$DEB_ARCH" != "$HOST_ARCH" ] && ! dpkg --print-foreign-architectures | grep -qx "$DEB_ARCH"; then
        dpkg --add-architecture "$DEB_ARCH"
    fi
    # A third-party list that cannot be reached makes update exit non-zero; the install
    # below fails loudly if Debian's own lists are missing.
    apt-get update -qq || echo "cross: apt-get update reported errors (continuing)" >&2
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; then
        # Exit status 3: the toolchain is not to be had on this machine (scripts/test.sh
        # reports the target as skipped); any later failure is the build's or the tests'.
        echo "cross: could not install ${missing[*]}" >&2
        exit 3
    fi
}

# Exports what cargo, rustc, the cc crate and openssl-sys need for a static build.
cross_env() {
    local T=${TARGET//-/_}
    local TU=${T^^}
    if [ -n "$CROSS_RUSTC" ]; then export RUSTC=$CROSS_RUSTC; fi
    export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target}/cross
    # Our own libcrypto (cross/openssl.sh), built on first use.
    openssl_build "$CARGO_TARGET_DIR"
    export "CARGO_TARGET_${TU}_LINKER=$CROSS_CC"
    # libcrypto without libssl: src/sys.rs stands in for the one libssl function the
    # openssl crate calls (OPENSSL_init_ssl, at init), which pulled 0.3 MiB of TLS code.
    # That libcrypto has the legacy provider (DES, Blowfish, CAST, MD4) built in.
    export "CARGO_TARGET_${TU}_RUSTFLAGS=-C target-feature=+crt-static --cfg isakmpd_libcrypto_only --cfg isakmpd_static_legacy${TARGET_RUSTFLAGS:+ $TARGET_RUSTFLAGS}"
    export "CC_${T}=$CROSS_CC"
    export OPENSSL_STATIC=1 OPENSSL_NO_VENDOR=1 OPENSSL_LIBS=crypto
    export OPENSSL_LIB_DIR=$OPENSSL_PREFIX/lib OPENSSL_INCLUDE_DIR=$OPENSSL_PREFIX/include
    export PKG_CONFIG_ALLOW_CROSS=1
    if [ -n "$QEMU" ]; then
        export "CARGO_TARGET_${TU}_RUNNER=$QEMU"
    fi
}

. "$(dirname "${BASH_SOURCE[0]}")/openssl.sh"
