#!/usr/bin/env python3
"""Ansible inventory script: `ansible-playbook -i inventory/openstack.py ...`.

Reads AIINFN_ENV (environment name or path) and OS_CLOUD (clouds.yaml entry; default: the
environment's site.cloud); prints the site's servers grouped as the plan groups them (`--list`), or
one host's variables (`--host NAME`). Errors: one line on stderr, exit code 1 or 2.
"""

from __future__ import annotations

import json
import os
import sys


def main() -> int:
    from aiinfn.config import load
    from aiinfn.errors import AiinfnError
    from aiinfn.openstack import connect, inventory
    from aiinfn.planning import make_plan

    env = os.environ.get("AIINFN_ENV")
    if not env:
        print("inventory: set AIINFN_ENV to the environment (name or path)", file=sys.stderr)
        return 2
    try:
        plan = make_plan(load(env))
        conn = connect.connect(os.environ.get("OS_CLOUD") or plan.env.site.cloud)
        result = inventory.build(plan, inventory.site_servers(conn, plan.env.site.name))
    except AiinfnError as e:
        print(f"inventory: {e}", file=sys.stderr)
        return e.exit_code
    if len(sys.argv) == 3 and sys.argv[1] == "--host":
        print(json.dumps(result.hosts.get(sys.argv[2], {})))
    else:
        print(json.dumps(result.ansible_list()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
