#!/usr/bin/env bash
# What the real-JupyterHub harness (tests/support/hub) needs beside the Python test extra:
#   configurable-http-proxy (npm; the proxy z2jh 4.4.0 runs, 5.x) on PATH, with Node.js from Debian;
#   unshare and mount (util-linux, in every Debian) for the hub's own mount namespace.
# Nothing here starts a service: the tests start the proxy and the hub themselves.
set -euo pipefail
# shellcheck source=lib/debian-packages.sh
source "$(dirname "$0")/lib/debian-packages.sh"
CHP_VERSION="5.2.0"
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  debian_packages_install install-hub-test-deps -- nodejs npm
fi
if command -v configurable-http-proxy >/dev/null 2>&1 \
   && [ "$(configurable-http-proxy --version 2>/dev/null)" = "$CHP_VERSION" ]; then
  exit 0
fi
npm install --global --silent --no-audit --no-fund "configurable-http-proxy@${CHP_VERSION}" >/dev/null
echo "install-hub-test-deps: installed configurable-http-proxy $(configurable-http-proxy --version)"
