#!/usr/bin/env bash
# Debian packages of the monitoring and accounting tests (tests/services/test_prometheus_rules.py,
# tests/services/test_accounting.py):
#   prometheus   the server (the tests start their own on a port of 127.0.0.1, over a TSDB they fill with
#                `promtool tsdb create-blocks-from openmetrics`) and promtool (check rules, test rules).
# Nothing here starts a service: policy-rc.d keeps the package's own prometheus.service from starting.
# Re-runnable: exits at once when everything is installed.
set -euo pipefail
packages=(prometheus)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-monitoring-test-deps: need root to install: ${missing[*]}" >&2
  exit 1
fi
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\n# written by aiinfn install-monitoring-test-deps.sh: no daemon starts on install\nexit 101\n' \
    >"$policy"
  chmod 0755 "$policy"
  trap 'rm -f "$policy"' EXIT
fi
export DEBIAN_FRONTEND=noninteractive
apt_opts=(-o DPkg::Lock::Timeout=900)
apt-get "${apt_opts[@]}" update -qq
apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-monitoring-test-deps: installed ${missing[*]}"
