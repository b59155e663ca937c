#!/bin/sh
# Install Debian's chromium for the MCP App browser test (tests/app). Playwright
# drives it through `executablePath`; no browser build is ever downloaded.
# Idempotent: does nothing when /usr/bin/chromium exists. Needs root (or sudo)
# and apt-get; elsewhere it says why and exits 0 so the test skips visibly.
set -eu
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "apt-get not found: cannot install chromium; the browser test will skip" >&2
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    sudo=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo="sudo -n"
else
    echo "not root and no passwordless sudo: cannot install chromium; the browser test will skip" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core
