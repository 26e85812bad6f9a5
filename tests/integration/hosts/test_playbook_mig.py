"""playbooks/mig.yml on real hosts: GPU nodes are relaid one at a time, each cordoned and drained through the
first server before its GPUs change and uncordoned after; a node already in its layout is not drained.

Real: the playbook (serial, delegation to the first server, block/always), the nvidia_mig role, systemd and
SSH between hosts. Stand-ins: the GPUs (fake nvidia-smi with aiinfn's MIG placement rules) and RKE2's kubectl
(records its calls in order), as in test_role_nvidia.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import hostlib
import pytest
from gpu_standins import FAKE_SMI, gpu_site_inventory, install_gpus
from rke2_standin import build_release

from aiinfn import versions
from aiinfn.config.loader import load
from aiinfn.planning import make_plan

pytestmark = pytest.mark.integration

TOKEN = "K10-test-join-token-0123456789abcdef"


def test_nodes_are_relaid_one_at_a_time_and_only_when_needed(test_hosts: Callable[..., hostlib.Hosts],
                                                              tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    build_release(artifacts / "rke2", versions.RKE2)
    hosts = test_hosts(["srv-1", "gpu-1", "gpu-2", "gpu-3"])
    for name in ("gpu-1", "gpu-2", "gpu-3"):
        install_gpus(hosts, name, "A100-80GB", 2)
        hosts.path(name, "/usr/bin/nvidia-smi").write_text(FAKE_SMI)
        hosts.path(name, "/usr/bin/nvidia-smi").chmod(0o755)
    config = make_plan(load("cnaf")).mig_parted_config()
    wanted = {"gpu-1": "aiinfn-a100-80gb-1g.10gbx7", "gpu-2": "all-disabled", "gpu-3": "aiinfn-a100-80gb-1g.10gbx7"}
    inv = gpu_site_inventory(hosts, artifacts, config, wanted)
    assert hostlib.run_playbook("rke2.yml", inv, extravars={"rke2_token": TOKEN}, limit="srv-1").rc == 0

    first = hostlib.run_playbook("mig.yml", inv)
    assert first.rc == 0, first.failed
    log = hosts.read("srv-1", "/var/lib/rancher/rke2/kubectl.log").decode().splitlines()
    calls = [line.split() for line in log]
    verbs = [(c[0], c[2] if c[1] == "node" else c[1]) for c in calls if c[0] in ("drain", "uncordon", "label")]
    # gpu-1 completes (drain, label, uncordon) before gpu-3 is drained; gpu-2, already right, is never drained
    assert verbs == [("drain", "gpu-1"), ("label", "gpu-1"), ("uncordon", "gpu-1"),
                     ("label", "gpu-2"),
                     ("drain", "gpu-3"), ("label", "gpu-3"), ("uncordon", "gpu-3")]
    nodes = json.loads(hosts.read("srv-1", "/var/lib/rancher/rke2/nodes.json"))
    assert {n: nodes[n]["labels"]["nvidia.com/mig.config"] for n in wanted} == wanted
    assert not any(nodes[n]["unschedulable"] for n in wanted)

    again = hostlib.run_playbook("mig.yml", inv)
    assert again.rc == 0, again.failed
    assert sum(again.changed.values()) == 0
    log_after = hosts.read("srv-1", "/var/lib/rancher/rke2/kubectl.log").decode().splitlines()
    assert not [line for line in log_after[len(log):] if line.split()[0] in ("drain", "cordon", "label")]
