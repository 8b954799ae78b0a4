#!/usr/bin/env bash
# Headless Chromium and ChromeDriver for the report's browser tests, and tmux for the
# live progress's terminal test (Debian packages). Installs them when missing and this
# user may use apt-get; otherwise says why, and those tests skip with the same reason.
set -euo pipefail
if command -v chromium >/dev/null && command -v chromedriver >/dev/null \
        && command -v tmux >/dev/null; then
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    SUDO=""
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    SUDO="sudo -n"
else
    echo "note: chromium/chromedriver/tmux missing and apt-get needs root; the report's" \
         "browser tests and the terminal test will skip (apt-get install chromium" \
         "chromium-driver tmux)" >&2
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "note: no apt-get here; install Chromium, ChromeDriver and tmux for the browser" \
         "and terminal tests" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
# Another apt or dpkg run (unattended upgrades, a parallel job) may hold the lock: wait
# for it (RUNNER_APT_LOCK_TIMEOUT seconds) instead of failing at once.
APT_GET=($SUDO apt-get -o "DPkg::Lock::Timeout=${RUNNER_APT_LOCK_TIMEOUT:-600}")
"${APT_GET[@]}" install -y -q --no-install-recommends chromium chromium-driver tmux >/dev/null \
    || { "${APT_GET[@]}" update -q >/dev/null && \
         "${APT_GET[@]}" install -y -q --no-install-recommends chromium chromium-driver tmux >/dev/null; }
echo "installed $(chromium --version 2>/dev/null)" >&2
