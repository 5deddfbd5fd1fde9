# Sourced by cross/env.sh: builds, once per target and configuration, the libcrypto that the
# router builds link: OpenSSL from the sources of the `openssl-src` crate (fetched by cargo
# from crates.io and checked against cross/openssl-src/Cargo.lock), configured with only
# what the daemon uses. Debian's libcrypto.a carries every algorithm, protocol helper and
# error string OpenSSL has (1.83 MiB of the armv7 binary, and its link closure is fixed:
# cross/README.md, Size); this one is about half of that.
#
# Kept: AES (CBC, GCM), ChaCha20-Poly1305, 3DES, MD5, SHA-1, SHA-2, HMAC, the MODP and
# ECP groups (NIST and Brainpool curves), X25519/X448, RSA (PKCS#1 v1.5 and PSS), ECDSA,
# X.509 with CRLs, PEM. The legacy provider's DES, Blowfish, CAST and MD4 (IKEv1's old
# ciphers, EAP-MSCHAPv2) are built into libcrypto (no-module: no shared module to load).
# Left out: TLS/DTLS/QUIC, engines and modules, sockets and HTTP, CMS, OCSP, CT, TS, CMP,
# SRP, PSK, the post-quantum signatures and KEM, and the ciphers and digests IKE has no
# number for.

OPENSSL_SRC_VERSION=300.6.1+3.6.3
OPENSSL_OPTIONS=(
    no-shared no-module no-dso no-engine no-apps no-docs no-tests no-filenames
    no-ssl no-tls no-dtls no-quic no-srp no-psk no-srtp no-nextprotoneg
    no-sock no-dgram no-http no-ocsp no-cms no-ct no-ts no-cmp no-rfc3779
    no-comp no-async no-ui-console no-secure-memory
    no-aria no-camellia no-idea no-seed no-sm2 no-sm3 no-sm4 no-gost
    no-rc2 no-rc4 no-rc5 no-md2 no-mdc2 no-rmd160 no-whirlpool no-blake2 no-argon2
    no-siphash no-siv no-ocb no-cmac no-scrypt no-dsa no-ec2m
    no-ml-dsa no-ml-kem no-slh-dsa no-lms
)
OPENSSL_CFLAGS="-Os -ffunction-sections -fdata-sections -DOPENSSL_SMALL_FOOTPRINT"

# openssl_build DIR: builds DIR/openssl/$TARGET/install/{lib/libcrypto.a,include} for
# $TARGET with $CROSS_CC (OPENSSL_PREFIX names it), unless a build with the same version,
# options and compiler is there.
openssl_build() {
    local os
    case "$TARGET" in
    armv7-unknown-linux-gnueabihf) os=linux-armv4 ;;
    aarch64-unknown-linux-gnu) os=linux-aarch64 ;;
    x86_64-unknown-linux-gnu) os=linux-x86_64 ;;
    esac
    local dir=$1/openssl/$TARGET
    OPENSSL_PREFIX=$dir/install
    local stamp="$OPENSSL_SRC_VERSION $os $CROSS_CC ${OPENSSL_OPTIONS[*]} $OPENSSL_CFLAGS"
    if [ -f "$OPENSSL_PREFIX/lib/libcrypto.a" ] && [ "$(cat "$dir/stamp" 2>/dev/null)" = "$stamp" ]; then
        return 0
    fi
    cross_install perl make
    local manifest=$PWD/cross/openssl-src/Cargo.toml src
    src=$(cargo metadata --locked --format-version 1 --manifest-path "$manifest" |
        python3 -c 'import json,sys; print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "openssl-src"))')
    src=$(dirname "$src")/openssl
    [ -x "$src/Configure" ] || { echo "cross: no OpenSSL sources at $src" >&2; exit 1; }
    echo "cross: building OpenSSL $OPENSSL_SRC_VERSION for $TARGET ($os) into $OPENSSL_PREFIX"
    local t0
    t0=$(date +%s)
    rm -rf "$dir"
    mkdir -p "$dir/build"
    (
        cd "$dir/build"
        # CC names the cross compiler; Configure's own -O3 is overridden by the later -Os.
        CC=$CROSS_CC AR=${CROSS_CC%gcc}ar RANLIB=${CROSS_CC%gcc}ranlib \
            perl "$src/Configure" "$os" --prefix="$OPENSSL_PREFIX" --libdir=lib \
            --openssldir=/usr/lib/ssl "${OPENSSL_OPTIONS[@]}" $OPENSSL_CFLAGS >configure.log 2>&1 ||
            { cat configure.log >&2; exit 1; }
        make -j"$(nproc)" build_libs >make.log 2>&1 || { tail -50 make.log >&2; exit 1; }
        make install_dev >>make.log 2>&1 || { tail -20 make.log >&2; exit 1; }
    )
    rm -rf "$dir/build"
    echo "$stamp" >"$dir/stamp"
    echo "cross: OpenSSL built in $(( $(date +%s) - t0 )) s, libcrypto.a $(stat -c %s "$OPENSSL_PREFIX/lib/libcrypto.a") bytes"
}
