# Sourced by scripts/install-*-deps.sh: install the Debian packages a test fixture needs, once.
#
#   debian_packages_install NAME [--no-daemons] [--keep-config] -- PACKAGE...
#
# Installs the PACKAGEs that are not installed yet and returns at once when none is missing. NAME is the
# calling script's name, used in its messages. --no-daemons keeps maintainer scripts from starting the
# packages' services (a policy-rc.d answering 101, removed again when the shell exits, and only if none
# was there); --keep-config keeps existing configuration files on upgrade. Needs root when something is
# missing; says what is missing and fails otherwise. Waits up to 15 minutes for another apt to finish.

debian_packages_missing() {
  local p
  DEBIAN_PACKAGES_MISSING=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || DEBIAN_PACKAGES_MISSING+=("$p")
  done
}

debian_packages_install() {
  local name="$1" no_daemons=0 keep_config=0
  shift
  while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do
    case "$1" in
      --no-daemons) no_daemons=1 ;;
      --keep-config) keep_config=1 ;;
      *) echo "$name: debian_packages_install: unknown option $1" >&2; return 2 ;;
    esac
    shift
  done
  [ "${1:-}" = "--" ] && shift
  debian_packages_missing "$@"
  if [ "${#DEBIAN_PACKAGES_MISSING[@]}" -eq 0 ]; then
    return 0
  fi
  if [ "$(id -u)" -ne 0 ]; then
    echo "$name: need root to install: ${DEBIAN_PACKAGES_MISSING[*]}" >&2
    return 1
  fi
  local policy=/usr/sbin/policy-rc.d
  if [ "$no_daemons" -eq 1 ] && [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# written by aiinfn %s: no daemon starts on install\nexit 101\n' "$name" >"$policy"
    chmod 0755 "$policy"
    # shellcheck disable=SC2064  # the path is fixed now, on purpose
    trap "rm -f '$policy'" EXIT
  fi
  local apt_opts=(-o DPkg::Lock::Timeout=900)
  if [ "$keep_config" -eq 1 ]; then
    apt_opts+=(-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get "${apt_opts[@]}" update -qq
  apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends "${DEBIAN_PACKAGES_MISSING[@]}" >/dev/null
  echo "$name: installed ${DEBIAN_PACKAGES_MISSING[*]}"
}
