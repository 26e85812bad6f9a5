#!/usr/bin/env python3
"""Ansible inventory script: ``AIINFN_ENV=cnaf ansible-playbook -i inventory/openstack.py playbooks/site.yml``.

Reads AIINFN_ENV (environment name or YAML path) and OS_CLOUD (clouds.yaml entry; default: the
environment's site.cloud), and AIINFN_OS_TIMEOUT (seconds per API request, default 10). Prints the
site's servers, found by their metadata tags, grouped and with host variables exactly as the plan's
inventory (``--list``), or one host's variables (``--host NAME``): Ansible's script inventory protocol.
Every string in it is marked ``{"__ansible_unsafe": ...}``, as the YAML inventory tags it ``!unsafe``:
Ansible takes the plan's values as data and never templates them on the operator's machine.
Servers reported instead of listed (strays, drifted tags, missing nodes) are named on stderr.
Errors: one line on stderr, exit code 1 (cloud) or 2 (environment, usage); never a traceback.

Run by Ansible directly, it may start under a Python without aiinfn: it then re-runs itself with the
checkout's .venv/bin/python when there is one.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

# Python puts this file's directory first on sys.path, where this very file would shadow openstacksdk's
# `openstack` package: take it off before anything imports it.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

USAGE = "usage: openstack.py --list | --host NAME (environment: AIINFN_ENV, OS_CLOUD)"


def _ensure_aiinfn() -> None:
    try:
        import aiinfn  # noqa: F401
    except ImportError:
        venv = Path(__file__).resolve().parents[1] / ".venv" / "bin" / "python"
        if venv.is_file() and Path(sys.executable).resolve() != venv.resolve():
            os.execv(str(venv), [str(venv), *sys.argv])
        print("inventory: the aiinfn package is not installed for this Python: `make install`, or run Ansible "
              "from the project's virtualenv", file=sys.stderr)
        sys.exit(2)


def main(argv: list[str]) -> int:
    args = argv[1:]
    if args not in (["--list"],) and not (len(args) == 2 and args[0] == "--host"):
        print(f"inventory: {USAGE}", file=sys.stderr)
        return 2
    env = os.environ.get("AIINFN_ENV")
    if not env:
        print("inventory: set AIINFN_ENV to the environment (name under environments/ or a YAML path)",
              file=sys.stderr)
        return 2
    _ensure_aiinfn()
    from aiinfn.errors import AiinfnError
    from aiinfn.openstack.inventory import inventory

    try:
        timeout = float(os.environ.get("AIINFN_OS_TIMEOUT") or 10)
    except ValueError:
        print("inventory: AIINFN_OS_TIMEOUT must be a number of seconds", file=sys.stderr)
        return 2
    try:
        result = inventory(env, os.environ.get("OS_CLOUD") or None, timeout=timeout)
    except AiinfnError as e:
        print(f"inventory: {e}", file=sys.stderr)
        return e.exit_code
    for note in result.notes():
        print(f"inventory: note: {note}", file=sys.stderr)
    doc = result.host(args[1]) if args[0] == "--host" else result.ansible_list()
    sys.stdout.write(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
