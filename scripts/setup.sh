#!/usr/bin/env bash
# Set up Quarry on this machine and run the main job: build the command line,
# the web UI and the desktop app, fetch the models, index a folder and search
# it, then say how to open each front-end.
#   scripts/setup.sh [FOLDER] [QUERY]
# FOLDER defaults to the bundled sample documents. QUARRY_SETUP_DESKTOP=0
# skips the desktop app (its build needs WebKitGTK and adds a few minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
folder="${1:-tests/fixtures/corpus}"
query="${2:-how do glaciers change when summers get hotter}"
scripts/deps.sh
# The web UI first: `quarry serve` serves it and the desktop app embeds it.
echo "== web UI (ui/dist)"
(cd ui && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent)
echo "== quarry (command line and server)"
cargo build --workspace --bin quarry
desktop=""
if [ "${QUARRY_SETUP_DESKTOP:-1}" != 0 ]; then
  echo "== quarry-desktop (the desktop app)"
  cargo build --workspace --bin quarry-desktop
  desktop="$CARGO_TARGET_DIR/debug/quarry-desktop"
fi
quarry="$CARGO_TARGET_DIR/debug/quarry"
"$quarry" models fetch
"$quarry" index "$folder"
"$quarry" status
echo
echo "search: $query"
"$quarry" search "$query" -k 5
cat <<MSG

Quarry is ready.
  Command line:  $quarry  (add it to your PATH, or: cargo install --path crates/quarry-cli)
  Web UI:        $quarry serve   then open http://127.0.0.1:7311 in a browser
MSG
if [ -n "$desktop" ]; then
  echo "  Desktop app:   $desktop"
else
  echo "  Desktop app:   cargo build --workspace --bin quarry-desktop, then run $CARGO_TARGET_DIR/debug/quarry-desktop"
fi
echo "  Installers:    node ui/node_modules/@tauri-apps/cli/tauri.js build  (see README, Installing the desktop app)"
