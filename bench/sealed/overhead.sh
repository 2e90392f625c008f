#!/usr/bin/env bash
# The cost of encryption at rest (issue 21): the same squaddev corpus indexed
# into a plain library and into an encrypted one (`quarry init --encrypt`),
# then the same queries; indexing wall time and search p50 per mode; then
# the plain library encrypted in place and its key replaced.
#
#   bench/sealed/overhead.sh QUARRY_BIN [DATASET] [LIMIT]
set -euo pipefail
BIN=$1
DATA=${2:-../shared/data/squaddev}
LIMIT=${3:-1000}
OUT=${OUT:-/tmp/sealed-overhead}
export QUARRY_LIBRARY_PASSPHRASE=${QUARRY_LIBRARY_PASSPHRASE:-overhead benchmark passphrase}
rm -rf "$OUT" && mkdir -p "$OUT/plain" "$OUT/sealed"
"$BIN" init --encrypt --library "$OUT/sealed/library-all-minilm-l6-v2" >/dev/null
for kind in plain sealed; do
  start=$(date +%s.%N)
  "$BIN" eval --dataset "$DATA" --work "$OUT/$kind" --limit 1 >/dev/null
  end=$(date +%s.%N)
  echo "$kind: index $(echo "$end - $start" | bc) s (2067 passages, embedding included)"
done
for kind in plain sealed; do
  echo "$kind:"; "$BIN" eval --dataset "$DATA" --work "$OUT/$kind" --limit "$LIMIT" | grep -E "p50"
done
for kind in plain sealed; do
  echo "$kind: $(du -sb "$OUT/$kind/library-all-minilm-l6-v2" | cut -f1) bytes on disk"
done
# Encrypting the plain library in place (`quarry encrypt`), then replacing
# its key (`quarry rekey`, a new passphrase): wall time and what check says.
rm -rf "$OUT/converted" && cp -r "$OUT/plain/library-all-minilm-l6-v2" "$OUT/converted"
timed() {
  local start end
  start=$(date +%s.%N)
  "$BIN" "$@" --library "$OUT/converted" | sed -n 1p
  end=$(date +%s.%N)
  echo "$1: $(echo "$end - $start" | bc) s"
}
timed encrypt
QUARRY_NEW_LIBRARY_PASSPHRASE="a new overhead passphrase" timed rekey
export QUARRY_LIBRARY_PASSPHRASE="a new overhead passphrase"
"$BIN" check --library "$OUT/converted" | tail -1
