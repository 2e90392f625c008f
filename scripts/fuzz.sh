#!/usr/bin/env bash
# A short libFuzzer run of each cargo-fuzz target (fuzz/, nightly toolchain),
# seeded with the test corpus. QUARRY_FUZZ_SECONDS sets each run's length
# (default 30); crashes land in fuzz/artifacts/ and fail the run.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
secs=${QUARRY_FUZZ_SECONDS:-30}
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "fuzz: skipped — no nightly toolchain (rustup toolchain install nightly)"
  exit 0
fi
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked --quiet
seeds=$(mktemp -d)
trap 'rm -rf "$seeds"' EXIT
# The extract target reads its file type from the first byte (the index into
# its extension list), so each fixture is prefixed with its own.
python3 - "$seeds" <<'PY'
import os, sys
exts = ["txt", "md", "html", "pdf", "docx", "pptx", "odt", "xlsx", "ods", "csv", "json", "eml", "rtf", "rs", "dat"]
out = sys.argv[1]
os.makedirs(f"{out}/extract"); os.makedirs(f"{out}/chunk")
for name in sorted(os.listdir("tests/fixtures/corpus")):
    path = os.path.join("tests/fixtures/corpus", name)
    ext = name.rsplit(".", 1)[-1].lower()
    if not os.path.isfile(path) or ext not in exts or os.path.getsize(path) > 1 << 20:
        continue
    data = open(path, "rb").read()
    open(f"{out}/extract/{name}", "wb").write(bytes([exts.index(ext)]) + data)
    if ext in ("txt", "md", "csv", "json", "rs"):
        open(f"{out}/chunk/{name}", "wb").write(bytes([40]) + data)
PY
for target in extract chunk; do
  echo "== fuzz $target (${secs}s)"
  log="$seeds/$target.log"
  if ! cargo +nightly fuzz run "$target" "$seeds/$target" -- \
      -max_total_time="$secs" -rss_limit_mb=2048 -timeout=20 -print_final_stats=1 >"$log" 2>&1; then
    tail -60 "$log"
    echo "fuzz: $target found a failure; the input is in fuzz/artifacts/$target/"
    exit 1
  fi
  grep -E "^stat::(number_of_executed_units|peak_rss_mb)|^Done" "$log" || tail -5 "$log"
done
