#!/usr/bin/env bash
# A small internal PKI for Commercial POPs: one CA, one certificate per POP, and the POP token
# the POPs share. Needs openssl (1.1.1 or later).
#
# Usage: contrib/pop-pki.sh OUT_DIR POP_ID[=HOST[,HOST...]] POP_ID[=HOST...]...
#   e.g. contrib/pop-pki.sh ./pki calgary-01=calgary-01.example.com zurich-01=zurich-01.example.com
#
# Writes into OUT_DIR (created mode 0700):
#   pop-ca.crt          the CA every POP trusts (auth.mtls_ca)
#   pop-ca.key   0600   the CA's key: keep it offline once the POPs have their certificates
#   POP_ID.crt          subject CN = POP_ID and DNS name POP_ID (what a backup's primary_pop.id
#                       names), plus each HOST as a DNS name or an IP address (what the other POP
#                       dials in backup_pop.url); for server and client use (auth.mtls_cert)
#   POP_ID.key   0600   its private key (auth.mtls_key)
#   replication.token 0600  the POP token (auth.token_file on every POP, and the primary's
#                       backup_pop.auth_token_file)
# Files that exist are never overwritten: a CA and token already in OUT_DIR are reused (to add
# a POP later), and a POP whose certificate exists is refused. Copy each POP's .crt and .key,
# pop-ca.crt and replication.token to that POP (e.g. /etc/clavitor/), readable by the service
# user only.
set -euo pipefail
umask 077

die() {
  echo "pop-pki.sh: $*" >&2
  exit 1
}

[ $# -ge 2 ] || die "usage: $0 OUT_DIR POP_ID[=HOST[,HOST...]]... (at least one POP)"
command -v openssl >/dev/null || die "openssl is not installed. Fix: install it (Debian: apt-get install openssl)"
out=$1
shift

mkdir -p "$out"
chmod 0700 "$out"

ca_crt="$out/pop-ca.crt"
ca_key="$out/pop-ca.key"
token="$out/replication.token"

# Validate every argument before writing anything.
for spec in "$@"; do
  id=${spec%%=*}
  [[ $id =~ ^[A-Za-z0-9._-]{1,64}$ ]] || die "$id: not a POP id (1-64 of a-z A-Z 0-9 - _ .)"
  [ ! -e "$out/$id.crt" ] && [ ! -e "$out/$id.key" ] ||
    die "$out/$id.crt or $out/$id.key exists; remove them to issue a new certificate for $id"
done

if [ -e "$ca_crt" ] || [ -e "$ca_key" ]; then
  [ -f "$ca_crt" ] && [ -f "$ca_key" ] || die "$out holds only half a CA (pop-ca.crt and pop-ca.key go together)"
  echo "reusing the CA in $ca_crt"
else
  openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj "/CN=Clavitor POP CA" \
    -addext "basicConstraints=critical,CA:TRUE,pathlen:0" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$ca_key" -out "$ca_crt" 2>/dev/null
  chmod 0600 "$ca_key"
  chmod 0644 "$ca_crt"
  echo "wrote the CA: $ca_crt (key $ca_key, mode 0600)"
fi

ext=$(mktemp)
trap 'rm -f "$ext" "$out"/*.csr' EXIT
for spec in "$@"; do
  id=${spec%%=*}
  hosts=""
  [ "$spec" != "$id" ] && hosts=${spec#*=}
  san="DNS:$id"
  IFS=',' read -r -a list <<<"$hosts"
  for h in "${list[@]}"; do
    [ -n "$h" ] || continue
    if [[ $h =~ ^[0-9.]+$ || $h == *:* ]]; then
      san="$san,IP:$h"
    else
      san="$san,DNS:$h"
    fi
  done
  printf '%s\n' \
    "basicConstraints=critical,CA:FALSE" \
    "keyUsage=critical,digitalSignature" \
    "extendedKeyUsage=serverAuth,clientAuth" \
    "subjectAltName=$san" >"$ext"
  openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$id" \
    -keyout "$out/$id.key" -out "$out/$id.csr" 2>/dev/null
  openssl x509 -req -in "$out/$id.csr" -CA "$ca_crt" -CAkey "$ca_key" -CAcreateserial \
    -CAserial "$out/pop-ca.srl" -days 825 -sha256 -extfile "$ext" -out "$out/$id.crt" 2>/dev/null
  rm -f "$out/$id.csr"
  chmod 0600 "$out/$id.key"
  chmod 0644 "$out/$id.crt"
  echo "wrote $out/$id.crt ($san) and $out/$id.key (mode 0600)"
done

if [ -e "$token" ]; then
  echo "reusing the POP token in $token"
else
  printf 'clavitor-pop-v1-%s\n' "$(openssl rand -base64 32)" >"$token"
  chmod 0600 "$token"
  echo "wrote the POP token: $token (mode 0600)"
fi
