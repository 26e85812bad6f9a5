#!/usr/bin/env bash
# Debian packages the test suite needs, installed by the project itself (CI starts from a clean machine).
#   cloud-init: its own `cloud-init schema` checks every rendered user-data document.
#   rclone: the event archive Jobs' copy, run as their UIDs over real files (tests/artifacts).
# Nothing here starts a service: cloud-init is only read as a schema checker, never run at boot.
set -euo pipefail
# shellcheck source=lib/debian-packages.sh
source "$(dirname "$0")/lib/debian-packages.sh"
packages=(cloud-init rclone)
debian_packages_install install-debian-deps -- "${packages[@]}"
