#!/usr/bin/env bash
# The browser tests' one installer: Debian's Chromium (apt, as root or with sudo) and the
# driver's Node package (npm ci from tests/browser/package-lock.json). Idempotent.
source "$(dirname "$0")/lib.sh"
need_tool node "Node.js 20 and npm"
if [ ! -x /usr/bin/chromium ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get install -y -qq chromium >/dev/null 2>&1 \
    || { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium >/dev/null; } \
    || die "could not install Debian's chromium"
fi
(cd "$ROOT/tests/browser" && npm ci --no-audit --no-fund --silent) || die "npm ci in tests/browser failed"
