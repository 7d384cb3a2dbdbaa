#!/usr/bin/env bash
# Makes the certificates the TLS tests use, into directory $1, with the openssl command:
#   ca.pem              the CA every good certificate chains to
#   good.pem good.key   a host certificate for IP 127.0.0.1 and DNS localhost, signed by ca
#   wrongname.pem/.key  signed by ca, but naming another host (10.9.9.9, wrong.example)
#   expired.pem/.key    signed by ca, for 127.0.0.1, expired
#   other-ca.pem        an unrelated CA;  stranger.pem/.key: signed by it, for 127.0.0.1
# EC P-256 keys: quick to make and to use.
set -eu
dir=$1
cd "$dir"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
ca() { # name
  key "$1.key"
  openssl req -x509 -new -key "$1.key" -subj "/CN=cgloo test $1" -days 2 -out "$1.pem" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign 2>/dev/null
}
host() { # name ca san [days|expired]
  key "$1.key"
  openssl req -new -key "$1.key" -subj "/CN=$1" -out "$1.csr" 2>/dev/null
  printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth,clientAuth\n' "$3" >"$1.ext"
  if [ "${4:-}" = expired ]; then
    # A validity that ended yesterday: openssl x509 -days cannot go back, openssl ca can.
    openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial \
      -not_before 20200101000000Z -not_after 20200102000000Z -extfile "$1.ext" -out "$1.pem" \
      2>/dev/null ||
      { openssl ca -batch -config <(printf '[ca]\ndefault_ca=d\n[d]\ndatabase=%s/idx\nnew_certs_dir=%s\nserial=%s/serial\ndefault_md=sha256\npolicy=p\n[p]\ncommonName=supplied\n' "$dir" "$dir" "$dir") \
          -cert "$2.pem" -keyfile "$2.key" -in "$1.csr" -startdate 20200101000000Z \
          -enddate 20200102000000Z -extfile "$1.ext" -out "$1.pem" -notext >/dev/null 2>&1; }
  else
    openssl x509 -req -in "$1.csr" -CA "$2.pem" -CAkey "$2.key" -CAcreateserial -days 2 \
      -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  fi
}
[ "${dir:0:1}" = / ] || dir=$PWD
touch idx
echo 01 >serial
ca ca
ca other-ca
host good ca "IP:127.0.0.1,DNS:localhost"
host wrongname ca "IP:10.9.9.9,DNS:wrong.example"
host expired ca "IP:127.0.0.1,DNS:localhost" expired
host stranger other-ca "IP:127.0.0.1,DNS:localhost"
