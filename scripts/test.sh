#!/usr/bin/env bash
# The test command: fetch the models (cached, verified), then run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo build -p quarry-cli
"$CARGO_TARGET_DIR/debug/quarry" models fetch
cargo test --workspace
