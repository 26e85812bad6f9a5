#!/usr/bin/env bash
# Debian packages of the local test hosts the Ansible tests start (tests/support/hosts/hostlib.py):
# debootstrap builds the hosts' Debian bookworm image once, systemd-nspawn boots each host with systemd as
# PID 1 in its own network namespace, socat carries SSH and the apt mirror relay, zstd packs the cached image;
# borg runs here as on an operator's machine for playbooks/backup-prune.yml (the trusted side of the backups).
# Re-runnable: exits at once when everything is installed.
set -euo pipefail
packages=(debootstrap systemd-container socat iproute2 zstd openssh-client borgbackup)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-host-fixture-deps: need root to install: ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt_opts=(-o DPkg::Lock::Timeout=900)
apt-get "${apt_opts[@]}" update -qq
apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "install-host-fixture-deps: installed ${missing[*]}"
