#!/usr/bin/env bash
# Create a test certificate authority, a SuperLink certificate it signs, and (optionally) one
# SuperNode authentication key pair per node. For testing and private deployments only.
#
#   scripts/make_certs.sh DIR [--nodes N] [--san "DNS:superlink.lan,IP:10.0.0.5"]
#
# DIR/ca.crt                 root certificate: give it to every SuperNode and to the flwr CLI
# DIR/ca.key                 CA private key (keep it; only needed to sign more certificates)
# DIR/server.pem, server.key SuperLink certificate and key; valid for 127.0.0.1 and localhost
#                            plus the --san entries (the SuperLink's address as the nodes dial it)
# DIR/supernode-I, .pub      with --nodes N: EC (P-384) key pairs, I = 0..N-1, for node
#                            authentication (`flwr supernode register DIR/supernode-I.pub`)
set -euo pipefail
usage="usage: scripts/make_certs.sh DIR [--nodes N] [--san DNS:name,IP:address]"
[ $# -ge 1 ] || { echo "$usage" >&2; exit 2; }
dir=$1; shift
nodes=0
san="IP:127.0.0.1,DNS:localhost"
while [ $# -gt 0 ]; do
  case $1 in
    --nodes) nodes=${2:?$usage}; shift 2 ;;
    --san) san="$san,${2:?$usage}"; shift 2 ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
done
[[ $nodes =~ ^[0-9]+$ ]] || { echo "--nodes must be a whole number, got '$nodes'" >&2; exit 2; }
mkdir -p "$dir"
days=365

openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days "$days" -subj "/CN=fedsec test CA" \
  -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
openssl req -new -newkey rsa:2048 -nodes -sha256 -subj "/CN=fedsec superlink" \
  -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
openssl x509 -req -sha256 -days "$days" -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
  -CAcreateserial -out "$dir/server.pem" \
  -extfile <(printf "subjectAltName=%s\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n" "$san") \
  2>/dev/null
rm -f "$dir/server.csr" "$dir/ca.srl"
chmod 600 "$dir/ca.key" "$dir/server.key"

for ((i = 0; i < nodes; i++)); do
  rm -f "$dir/supernode-$i" "$dir/supernode-$i.pub"
  ssh-keygen -q -t ecdsa -b 384 -N "" -C "fedsec-supernode-$i" -f "$dir/supernode-$i"
done
keys=""; [ "$nodes" -gt 0 ] && keys=", $nodes SuperNode key pairs"
echo "written to $dir: ca.crt, server.pem, server.key$keys"
