#!/usr/bin/env bash
# Debian packages of the monitoring and accounting tests (tests/services/test_prometheus_rules.py,
# tests/services/test_accounting.py):
#   prometheus   the server (the tests start their own on a port of 127.0.0.1, over a TSDB they fill with
#                `promtool tsdb create-blocks-from openmetrics`) and promtool (check rules, test rules).
# Nothing here starts a service: policy-rc.d keeps the package's own prometheus.service from starting.
# Re-runnable: exits at once when everything is installed.
set -euo pipefail
# shellcheck source=lib/debian-packages.sh
source "$(dirname "$0")/lib/debian-packages.sh"
packages=(prometheus)
debian_packages_install install-monitoring-test-deps --no-daemons -- "${packages[@]}"
