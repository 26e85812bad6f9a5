#!/bin/sh
# Usage: retire-account.sh USER (role common). Takes USER's SSH keys, sudo rules and groups away, locks its
# password and expires it (sshd and sudo refuse an expired account). Its login shell stays: a run logged in as
# USER still cleans up its temporary files over the connection it has. Prints "retired" when it changed something, "unchanged"
# when USER was already retired, "absent" when there is no such account.
set -eu
user=$1
entry=$(getent passwd "$user") || { echo absent; exit 0; }
home=$(printf '%s' "$entry" | cut -d: -f6)
changed=0
for keys in "$home/.ssh/authorized_keys" "$home/.ssh/authorized_keys2"; do
  if [ -e "$keys" ]; then rm -f "$keys"; changed=1; fi
done
for rules in /etc/sudoers.d/*; do
  [ -f "$rules" ] || continue
  if grep -Eq "^[[:space:]]*$user[[:space:]]" "$rules"; then
    sed -i -E "/^[[:space:]]*$user[[:space:]]/d" "$rules"
    changed=1
  fi
done
visudo -c >/dev/null
if [ -n "$(id -Gn "$user" | tr ' ' '\n' | grep -vx "$(id -gn "$user")" || true)" ]; then
  usermod -G "" "$user"; changed=1
fi
if ! passwd -S "$user" | awk '{exit !($2 == "L")}'; then
  usermod -L "$user"; changed=1
fi
if [ "$(getent shadow "$user" | cut -d: -f8)" != 1 ]; then
  usermod -e 1 "$user"; changed=1
fi
if [ "$changed" = 1 ]; then echo retired; else echo unchanged; fi
