"""nova-compute for the control plane, with the fake GPU driver importable as nova.virt.aiinfn_fake_gpu.

Debian ships nova-compute's console script only in the nova-compute package, which pulls in libvirt
and qemu; the code is in python3-nova. Usage: /usr/bin/python3 nova_compute.py --config-file ...
"""

import importlib.util
import sys
from pathlib import Path

from nova.cmd.compute import main  # first: it monkey-patches eventlet before anything else loads

_spec = importlib.util.spec_from_file_location(
    "nova.virt.aiinfn_fake_gpu", Path(__file__).with_name("fake_gpu_driver.py")
)
assert _spec is not None and _spec.loader is not None
_module = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _module
_spec.loader.exec_module(_module)

if __name__ == "__main__":
    sys.exit(main())
