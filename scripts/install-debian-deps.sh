#!/usr/bin/env bash
# Debian packages the test suite needs, installed by the project itself (CI starts from a clean machine).
#   cloud-init: its own `cloud-init schema` checks every rendered user-data document.
#   rclone: the event archive Jobs' copy, run as their UIDs over real files (tests/artifacts).
# Nothing here starts a service: cloud-init is only read as a schema checker, never run at boot.
set -euo pipefail
packages=(cloud-init rclone)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-debian-deps: need root to install: ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-debian-deps: installed ${missing[*]}"
