#!/usr/bin/env bash
# Make a DEVELOPMENT bundle-signing PKI in DIR (default image/.build/keys/dev),
# once: a CA (ca.cert.pem, the image's keyring) and a signing certificate issued
# by it (signing.cert.pem, signing.key.pem) that bundle.sh signs with.
# Generated on the build machine, gitignored, never for rooms: production
# images get --keyring at build time and bundles --cert/--key at signing time.
#
# usage: devca.sh [DIR] [COMMON-NAME-PREFIX]
set -euo pipefail
. "$(dirname "$0")/lib/common.sh"
dir=${1:-$BUILD_ROOT/keys/dev}
cn=${2:-huis development}
if [ -f "$dir/ca.cert.pem" ] && [ -f "$dir/signing.key.pem" ] && [ -f "$dir/signing.cert.pem" ]; then
    echo "$dir"; exit 0
fi
mkdir -p "$dir"
chmod 0700 "$dir"
cd "$dir"
cat > openssl.cnf <<'CNF'
[req]
distinguished_name = dn
prompt = no
[dn]
[v3_ca]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[v3_signing]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
CNF
openssl req -x509 -newkey rsa:3072 -nodes -sha256 -days 3650 -config openssl.cnf -extensions v3_ca \
    -subj "/O=huis/CN=$cn CA (NOT FOR ROOMS)" -keyout ca.key.pem -out ca.cert.pem 2>/dev/null
openssl req -new -newkey rsa:3072 -nodes -sha256 -config openssl.cnf \
    -subj "/O=huis/CN=$cn bundle signing (NOT FOR ROOMS)" -keyout signing.key.pem -out signing.csr.pem 2>/dev/null
openssl x509 -req -sha256 -days 3650 -in signing.csr.pem -CA ca.cert.pem -CAkey ca.key.pem \
    -CAcreateserial -extfile openssl.cnf -extensions v3_signing -out signing.cert.pem 2>/dev/null
rm -f signing.csr.pem
chmod 0600 ./*.key.pem
echo "$dir"
