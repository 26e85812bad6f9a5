"""Run one Cinder service (api, scheduler, volume, manage) from python3-cinder.

Debian ships the console scripts in cinder-api, cinder-volume ... which pull in lvm2 and tgt; the
code is in python3-cinder. Usage: /usr/bin/python3 cinder_service.py api --config-file ...
"""

import importlib
import sys

if __name__ == "__main__":
    service = sys.argv.pop(1)
    if service not in ("api", "scheduler", "volume", "manage"):
        sys.exit(f"cinder_service.py: unknown service {service!r}")
    sys.argv[0] = f"cinder-{service}"
    sys.exit(importlib.import_module(f"cinder.cmd.{service}").main())
