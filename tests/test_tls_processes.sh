#!/usr/bin/env bash
# TLS between real processes: cgloo-run with the CGLOO_TLS_* variables set starts its store
# server with TLS and passes the variables to its ranks, whose devices then use TLS on every
# connection; rank_program checks point-to-point messages up to 3 MiB and every collective at
# 2, 3 and 4 ranks. cgloo-run also makes its fresh job secret, so every connection (the store's
# too) proves the secret through TLS: the two at once. Then a job whose ranks lack the key must
# fail, and say so, at once. Certificates are made now with the openssl command. Exits 77
# (skipped) in a build without OpenSSL.
set -u
run=$1
prog=$2
here=$(cd "$(dirname "$0")" && pwd)
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
if ! command -v openssl >/dev/null || ! "$here/tls_certs.sh" "$dir"; then
  echo "skipped: install libssl-dev (and openssl)"
  exit 77
fi
export CGLOO_TLS_CERT=$dir/good.pem CGLOO_TLS_KEY=$dir/good.key CGLOO_TLS_CA=$dir/ca.pem
export CGLOO_TLS_VERIFY_HOST=1
if "$run" -n 1 "$prog" 2>&1 | grep -q "built without OpenSSL"; then
  echo "skipped: install libssl-dev (and openssl)"
  exit 77
fi
failed=0
for n in 2 3 4; do
  if CGLOO_LOG_LEVEL=info "$run" -n "$n" --tag "$prog" >"$dir/log" 2>&1 &&
    [ "$(grep -c 'TLS 1.3 on every connection' "$dir/log")" = "$n" ] &&
    grep -q 'tcp store server listening .* (TLS' "$dir/log"; then
    echo "ok   tls_processes_$n"
  else
    echo "FAIL tls_processes_$n"
    tail -20 "$dir/log"
    failed=1
  fi
done
# A key file that does not exist: the launcher's own store refuses to start, naming the file.
if CGLOO_TLS_KEY=$dir/missing.key "$run" -n 2 "$prog" >"$dir/log" 2>&1 ||
  ! grep -q "missing.key" "$dir/log"; then
  echo "FAIL tls_bad_key"
  tail -5 "$dir/log"
  failed=1
else
  echo "ok   tls_bad_key"
fi
exit $failed
