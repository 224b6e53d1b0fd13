#!/bin/sh
# Makes a factory PKI directory the way `fioctl keys ca create` lays it out,
# using plain openssl commands only. Usage: openssl-pki.sh DIR FACTORY GATEWAY_DNS OSTREE_DNS
set -eu
dir=$1 factory=$2 gw=$3 ostree=$4
mkdir -p "$dir" && cd "$dir"
cat > ext.cnf <<CNF
[root]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
[local]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[tls]
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:$gw, DNS:$ostree
CNF
openssl ecparam -name prime256v1 -genkey -noout -out factory_ca.key
openssl req -new -x509 -utf8 -key factory_ca.key -subj "/CN=Factory-CA/OU=$factory" -days 7300 -sha256 \
  -config ext.cnf -extensions root -out factory_ca.pem 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out local-ca.key
openssl req -new -utf8 -key local-ca.key -subj "/CN=fio-owner-id/OU=$factory" -out local-ca.csr
openssl x509 -req -in local-ca.csr -CA factory_ca.pem -CAkey factory_ca.key -CAcreateserial -days 3650 -sha256 \
  -extfile ext.cnf -extensions local -out local-ca.pem 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out tls.key
openssl req -new -utf8 -key tls.key -subj "/CN=$gw/OU=$factory" -out tls.csr
openssl x509 -req -in tls.csr -CA factory_ca.pem -CAkey factory_ca.key -CAcreateserial -days 3650 -sha256 \
  -extfile ext.cnf -extensions tls -out tls-crt 2>/dev/null
rm -f ext.cnf local-ca.csr tls.csr factory_ca.srl
chmod 0400 factory_ca.key factory_ca.pem local-ca.key local-ca.pem tls.key tls-crt
