#!/usr/bin/env bash
# Installs the build into a temporary prefix, then builds a separate project against it twice:
# with find_package(cgloo) and with pkg-config (skipped with a message when pkg-config is absent).
set -euo pipefail
build_dir=$1
src_dir=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cmake --install "$build_dir" --prefix "$tmp/prefix" >/dev/null
cmake -S "$src_dir/tests/install_consumer" -B "$tmp/consumer" -DCMAKE_PREFIX_PATH="$tmp/prefix" >/dev/null
cmake --build "$tmp/consumer" >/dev/null
LD_LIBRARY_PATH="$tmp/prefix/lib:$tmp/prefix/lib64:${LD_LIBRARY_PATH:-}" "$tmp/consumer/consumer"
passed=1
if command -v pkg-config >/dev/null; then
  pcdir=$(dirname "$(find "$tmp/prefix" -name cgloo.pc | head -1)")
  flags=$(PKG_CONFIG_PATH="$pcdir" pkg-config --cflags --libs cgloo)
  cc -o "$tmp/pc_consumer" "$src_dir/tests/install_consumer/main.c" $flags
  LD_LIBRARY_PATH="$(dirname "$pcdir")" "$tmp/pc_consumer"
  passed=2
else
  echo "pkg-config not installed: the pkg-config part is skipped"
fi
echo "$passed passed, 0 failed"
