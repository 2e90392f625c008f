#!/usr/bin/env bash
# Set up Quarry on this machine and run the main job: build, fetch the models,
# index a folder and search it.
#   scripts/setup.sh [FOLDER] [QUERY]
# FOLDER defaults to the bundled sample documents.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
folder="${1:-tests/fixtures/corpus}"
query="${2:-how do glaciers change when summers get hotter}"
scripts/deps.sh
cargo build -p quarry-cli
quarry="$CARGO_TARGET_DIR/debug/quarry"
"$quarry" models fetch
"$quarry" index "$folder"
"$quarry" status
echo
echo "search: $query"
"$quarry" search "$query" -k 5
echo
echo "The quarry binary is $quarry; add it to your PATH or run: cargo install --path crates/quarry-cli"
