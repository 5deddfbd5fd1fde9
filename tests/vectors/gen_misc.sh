#!/usr/bin/env bash
# Writes cipher.txt (CBC known answers from `openssl enc -nopad`) and rsa-key.pem +
# rsa.txt (a PKCS#1 v1.5 type 1 signature over a raw 20-byte hash, as IKEv1 RSA_SIG makes
# it, from `openssl pkeyutl -sign`). Re-run only to regenerate.
set -euo pipefail
cd "$(dirname "$0")"
pt=6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51
key=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f3031323334353637
iv16=f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff
leg="-provider legacy -provider default"
{
  echo "# CBC known answers from openssl enc -nopad (gen_misc.sh): name key iv plaintext ciphertext"
  for c in "aes-128-cbc 16 16" "aes-192-cbc 24 16" "aes-256-cbc 32 16" "des-ede3-cbc 24 8" "des-cbc 8 8" "bf-cbc 16 8" "cast5-cbc 16 8"; do
    set -- $c
    k=${key:0:$(( $2 * 2 ))}; i=${iv16:0:$(( $3 * 2 ))}
    ct=$(echo -n "$pt" | xxd -r -p | openssl enc -$1 -K "$k" -iv "$i" -nopad $leg | xxd -p | tr -d '\n')
    echo "$1 $k $i $pt $ct"
  done
} > cipher.txt
[ -f rsa-key.pem ] || openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa-key.pem 2>/dev/null
openssl pkey -in rsa-key.pem -pubout -out rsa-pub.pem
data=$(echo -n "IKEv1 HASH_I of 20b" | xxd -p)
sig=$(echo -n "$data" | xxd -r -p | openssl pkeyutl -sign -inkey rsa-key.pem -pkeyopt rsa_padding_mode:pkcs1 | xxd -p | tr -d '\n')
echo "data=$data sig=$sig" > rsa.txt
