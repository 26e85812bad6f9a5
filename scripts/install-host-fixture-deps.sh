#!/usr/bin/env bash
# Debian packages of the local test hosts the Ansible tests start (tests/support/hosts/hostlib.py):
# debootstrap builds the hosts' Debian bookworm image once, systemd-nspawn boots each host with systemd as
# PID 1 in its own network namespace, socat carries SSH and the apt mirror relay, zstd packs the cached image;
# borg runs here as on an operator's machine for playbooks/backup-prune.yml (the trusted side of the backups).
# Re-runnable: exits at once when everything is installed.
set -euo pipefail
# shellcheck source=lib/debian-packages.sh
source "$(dirname "$0")/lib/debian-packages.sh"
packages=(debootstrap systemd-container socat iproute2 zstd openssh-client borgbackup)
debian_packages_install install-host-fixture-deps -- "${packages[@]}"
