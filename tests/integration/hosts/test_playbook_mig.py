"""playbooks/mig.yml on real hosts: GPU nodes are relaid one at a time, each cordoned and drained through the
first server before its GPUs change and uncordoned after; a node already in its layout is not drained; a node
the cluster does not know is never relaid.

Real: the playbook (serial, delegation to the first server, block/always), the nvidia_mig role, systemd and
SSH between hosts. Stand-ins: the GPUs (fake nvidia-smi with NVIDIA's documented placements, independent of
aiinfn's catalogue) and RKE2's kubectl (Node objects that exist only once registered, a drain that refuses
without --ignore-daemonsets or, for a node running a pod with an emptyDir volume, without
--delete-emptydir-data, labels changed only with --overwrite, every call recorded with its argv), as in
test_role_nvidia.py. RKE2 is not started: the kubectl stand-in is put where RKE2's server unpacks it
(``install_kubectl``), and the GPU hosts, running no RKE2 agent, have their Node objects registered on the
server as a joined node's kubelet would (``register_nodes``), each running a notebook pod with an emptyDir
volume.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import hostlib
import pytest
from gpu_standins import FAKE_SMI, gpu_site_inventory, install_gpus
from rke2_standin import install_kubectl, kubectl_calls, register_nodes

from aiinfn.config.loader import load
from aiinfn.planning import make_plan

pytestmark = pytest.mark.integration

KUBECTL = ["/var/lib/rancher/rke2/bin/kubectl", "--kubeconfig", "/etc/rancher/rke2/rke2.yaml"]
NOTEBOOK = {"namespace": "jupyterhub", "name": "jupyter-alice", "emptydir": True}


def _drain(node: str) -> list[str]:
    """The drain of playbooks/tasks/drain.yml, with mig.yml's timeout."""
    return [*KUBECTL, "drain", node, "--ignore-daemonsets", "--delete-emptydir-data", "--timeout=900s"]


def test_nodes_are_relaid_one_at_a_time_and_only_when_needed(test_hosts: Callable[..., hostlib.Hosts],
                                                              tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    hosts = test_hosts(["srv-1", "gpu-1", "gpu-2", "gpu-3"])
    for name in ("gpu-1", "gpu-2", "gpu-3"):
        install_gpus(hosts, name, "A100-80GB", 2)
        hosts.path(name, "/usr/bin/nvidia-smi").write_text(FAKE_SMI)
        hosts.path(name, "/usr/bin/nvidia-smi").chmod(0o755)
    config = make_plan(load("cnaf")).mig_parted_config()
    wanted = {"gpu-1": "aiinfn-a100-80gb-1g.10gbx7", "gpu-2": "all-disabled", "gpu-3": "aiinfn-a100-80gb-1g.10gbx7"}
    inv = gpu_site_inventory(hosts, artifacts, config, wanted)
    install_kubectl(hosts, "srv-1")
    register_nodes(hosts, "srv-1", ["gpu-1", "gpu-3"], pods=[NOTEBOOK])
    # gpu-2's GPUs are already as planned (MIG off), but its label is stale: relabelling it needs --overwrite
    register_nodes(hosts, "srv-1", ["gpu-2"], pods=[NOTEBOOK], labels={"nvidia.com/mig.config": wanted["gpu-1"]})

    first = hostlib.run_playbook("mig.yml", inv)
    assert first.rc == 0, first.failed
    log = hosts.read("srv-1", "/var/lib/rancher/rke2/kubectl.log").decode().splitlines()
    calls = [line.split() for line in log]
    verbs = [(c[0], c[2] if c[1] == "node" else c[1]) for c in calls if c[0] in ("drain", "uncordon", "label")]
    # gpu-1 completes (drain, label, uncordon) before gpu-3 is drained; gpu-2, already right, is never drained
    assert verbs == [("drain", "gpu-1"), ("label", "gpu-1"), ("uncordon", "gpu-1"),
                     ("label", "gpu-2"),
                     ("drain", "gpu-3"), ("label", "gpu-3"), ("uncordon", "gpu-3")]
    # the commands as kubectl received them, every one of them succeeding
    changes = [c for c in kubectl_calls(hosts, "srv-1") if c["argv"][3] not in ("get",)]
    assert [c["argv"] for c in changes] == [
        _drain("gpu-1"),
        [*KUBECTL, "label", "node", "gpu-1", f"nvidia.com/mig.config={wanted['gpu-1']}", "--overwrite"],
        [*KUBECTL, "uncordon", "gpu-1"],
        [*KUBECTL, "label", "node", "gpu-2", "nvidia.com/mig.config=all-disabled", "--overwrite"],
        _drain("gpu-3"),
        [*KUBECTL, "label", "node", "gpu-3", f"nvidia.com/mig.config={wanted['gpu-3']}", "--overwrite"],
        [*KUBECTL, "uncordon", "gpu-3"],
    ]
    assert [c["rc"] for c in changes] == [0] * 7
    nodes = json.loads(hosts.read("srv-1", "/var/lib/rancher/rke2/nodes.json"))
    assert {n: nodes[n]["labels"]["nvidia.com/mig.config"] for n in wanted} == wanted
    assert not any(nodes[n]["unschedulable"] for n in wanted)
    # the drained nodes' notebooks were evicted, the DaemonSet pods stayed; gpu-2's notebook was never touched
    pods = {n: sorted(p["name"] for p in nodes[n]["pods"]) for n in wanted}
    assert pods == {"gpu-1": ["rke2-canal-standin"], "gpu-2": ["jupyter-alice", "rke2-canal-standin"],
                    "gpu-3": ["rke2-canal-standin"]}
    # what the stand-in does with a relabel lacking --overwrite: kubectl's refusal, so the playbook could not pass
    bare = hosts.exec("srv-1", " ".join([*KUBECTL, "label", "node", "gpu-2", "nvidia.com/mig.config=x"]))
    assert bare.returncode == 1
    refusal = "error: 'nvidia.com/mig.config' already has a value (all-disabled), and --overwrite is false"
    assert bare.stderr.strip() == refusal

    log = hosts.read("srv-1", "/var/lib/rancher/rke2/kubectl.log").decode().splitlines()
    again = hostlib.run_playbook("mig.yml", inv)
    assert again.rc == 0, again.failed
    assert sum(again.changed.values()) == 0
    log_after = hosts.read("srv-1", "/var/lib/rancher/rke2/kubectl.log").decode().splitlines()
    assert not [line for line in log_after[len(log):] if line.split()[0] in ("drain", "cordon", "label")]

    # gpu-3 leaves the cluster; a relayout of it then stops at the drain with the API server's NotFound,
    # before its GPUs change
    gone = hosts.exec("srv-1", " ".join([*KUBECTL, "delete", "node", "gpu-3"]))
    assert gone.returncode == 0, gone.stderr
    state = hosts.read("gpu-3", "/var/lib/fake-nvidia/state.json")
    relaid = gpu_site_inventory(hosts, artifacts, config, {**wanted, "gpu-3": "all-disabled"})
    orphan = hostlib.run_playbook("mig.yml", relaid, limit="gpu-3")
    assert orphan.rc != 0
    not_found = 'Error from server (NotFound): nodes "gpu-3" not found'
    assert {(h, m) for h, _t, m in orphan.failed} == {("gpu-3", not_found)}
    gpus = json.loads(hosts.read("gpu-3", "/var/lib/fake-nvidia/state.json"))["gpus"]
    assert gpus == json.loads(state)["gpus"]  # the GPUs were read, never changed
