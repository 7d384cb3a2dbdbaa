#!/usr/bin/env bash
# A sample of the bad-input tests under valgrind's memcheck, as a second opinion beside ASan:
# any invalid read or write, use of uninitialised memory or definite leak fails. The sample is
# the fast ones (about 20 s together under valgrind): test_bad_input (overlapping buffers, huge
# lengths, negative timeouts), test_store_tcp's garbage and pipelined cases (malformed store
# requests), and the seed corpora of fuzz_store_request, fuzz_url and fuzz_addr.
#   test_valgrind.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
B=$1
S=$2
if ! command -v valgrind >/dev/null; then
  echo "skipped: apt-get install valgrind"
  exit 77
fi
VG=(valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect
  --show-leak-kinds=definite,indirect --track-fds=no)
run() {
  echo "== $*"
  "${VG[@]}" "$@"
}
run "$B/tests/test_bad_input"
run "$B/tests/test_store_tcp" garbage pipelined
for t in fuzz_store_request fuzz_url fuzz_addr; do
  run "$B/fuzz/${t}_replay" "$S/fuzz/corpus/$t"
done
echo "valgrind: 5 passed, 0 failed"
