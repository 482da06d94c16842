#!/usr/bin/env bash
# Debian packages the tests need beyond Python: Chromium for the dashboard screenshots (driven by the `dev`
# extra's Playwright, which never downloads a browser of its own).
# Java 17+ and Maven are checked (not installed) by `cutover kafka start`, which names them if missing.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: headless Chromium is missing; install Debian's 'chromium' package (needs root)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
