"""Nova's FakeDriver plus passthrough "GPUs": what the control plane's nova-compute processes run.

Each compute host reports ``AIINFN_FAKE_GPUS`` (default 4) PCI devices 10de:20b5 (NVIDIA A100 80GB
PCIe), so Nova's PCI tracker, the PciPassthroughFilter and the claims behave as on a real GPU host:
a flavor with ``pci_passthrough:alias=a100:2`` takes two of them, and NoValidHost comes when they run
out. Servers live in nova-compute's memory only. Loaded as ``nova.virt.aiinfn_fake_gpu`` by
nova_compute.py (Nova loads drivers only from ``nova.virt``). Runs under Debian's /usr/bin/python3.
"""

import os

from nova.virt import fake
from oslo_serialization import jsonutils

VENDOR_ID = "10de"
PRODUCT_ID = "20b5"


class FakeGPUDriver(fake.FakeDriver):
    vcpus = int(os.environ.get("AIINFN_FAKE_VCPUS", "64"))
    memory_mb = int(os.environ.get("AIINFN_FAKE_MEMORY_MB", "262144"))
    local_gb = int(os.environ.get("AIINFN_FAKE_LOCAL_GB", "4096"))

    def get_available_resource(self, nodename):
        resources = super().get_available_resource(nodename)
        gpus = int(os.environ.get("AIINFN_FAKE_GPUS", "4"))
        resources["pci_passthrough_devices"] = jsonutils.dumps(
            [
                {
                    "address": f"0000:{0x81 + i:02x}:00.0",
                    "vendor_id": VENDOR_ID,
                    "product_id": PRODUCT_ID,
                    "dev_type": "type-PCI",
                    "status": "available",
                    "parent_addr": None,
                    "numa_node": None,
                    "label": f"label_{VENDOR_ID}_{PRODUCT_ID}",
                }
                for i in range(gpus)
            ]
        )
        return resources
