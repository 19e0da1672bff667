#!/bin/sh
# mtls-certs.sh DIR [NAME...]: makes a private CA and the two certificates
# of envoy/ext_authz_mtls.yaml in DIR (created if need be), with openssl:
#
#   ca.pem, ca.key              the CA (keep ca.key offline; it signs both)
#   tollgate.pem, tollgate.key  tollgate's server certificate for the NAMEs
#                               (DNS names; default: tollgate). The first is
#                               the sni of the Envoy config.
#   envoy.pem, envoy.key        Envoy's client certificate
#
#   tollgate serve --grpc-tls-cert DIR/tollgate.pem --grpc-tls-key DIR/tollgate.key \
#       --grpc-client-ca DIR/ca.pem ...
#
# Keys are ECDSA P-256; certificates last DAYS days (default 365), the CA ten
# years. Run it again with a DIR that holds ca.pem and ca.key to renew the two
# certificates under the same CA: tollgate picks up the new files without a
# restart. A production CA (cert-manager, Vault, your PKI) does the same job.
set -eu

dir=${1:?usage: mtls-certs.sh DIR [NAME...]}
shift
[ $# -gt 0 ] || set -- tollgate
days=${DAYS:-365}
mkdir -p "$dir"
cd "$dir"
umask 077

serial() { echo "0x$(openssl rand -hex 16)"; }

if [ ! -f ca.pem ] || [ ! -f ca.key ]; then
	openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout ca.key -out ca.pem -days 3650 -subj "/CN=tollgate CA" \
		-addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
	chmod 644 ca.pem
fi

sans=""
for n in "$@"; do
	sans="${sans:+$sans,}DNS:$n"
done

# issue NAME SUBJECT EXTENDED_KEY_USAGE [SUBJECT_ALT_NAMES]
issue() {
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
		-keyout "$1.key.new" -out "$1.csr" -subj "/CN=$2" 2>/dev/null
	{
		echo "basicConstraints=critical,CA:FALSE"
		echo "keyUsage=critical,digitalSignature"
		echo "extendedKeyUsage=$3"
		[ -z "${4:-}" ] || echo "subjectAltName=$4"
	} >"$1.ext"
	openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -set_serial "$(serial)" \
		-days "$days" -extfile "$1.ext" -out "$1.pem.new" 2>/dev/null
	rm -f "$1.csr" "$1.ext"
	# Renamed into place, the key first: a reader that sees the new
	# certificate finds its key beside it.
	mv -f "$1.key.new" "$1.key"
	chmod 644 "$1.pem.new"
	mv -f "$1.pem.new" "$1.pem"
}

issue tollgate "$1" serverAuth "$sans"
issue envoy envoy clientAuth
echo "$dir: ca.pem tollgate.pem tollgate.key envoy.pem envoy.key (tollgate for: $*)"
