#!/usr/bin/env bash
# Headless Chromium and ChromeDriver for the report's browser test (Debian packages).
# Installs them when missing and this user may use apt-get; otherwise says why, and
# the browser test skips with the same reason.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    echo "note: chromium/chromedriver missing and apt-get needs root; the report's browser" \
         "test will skip (apt-get install chromium chromium-driver)" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "note: no apt-get here; install Chromium and ChromeDriver for the browser test" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null \
    || { $SUDO apt-get update -q >/dev/null && \
         $SUDO apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null; }
echo "installed $(chromium --version 2>/dev/null)" >&2
