"""`aiinfn status`: servers against the plan (missing, strays, drift) and node readiness from kubectl's JSON.

The server listing itself runs against the local OpenStack (tests/integration/openstack/test_status.py).
Gap: no Kubernetes API server runs here, so readiness is parsed from documents shaped exactly as
``kubectl get nodes -o json`` prints them (a ``List`` of ``v1 Node``), never fetched from a cluster.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from aiinfn.config.loader import load_site
from aiinfn.planning import make_plan
from aiinfn.planning.nodes import server_metadata
from aiinfn.stages import status as st

AIINFN = str(Path(sys.executable).parent / "aiinfn")


@pytest.fixture(scope="module")
def plan() -> Any:
    return make_plan(load_site("cnaf"))


def _as_planned(plan: Any) -> list[st.LiveServer]:
    return [st.LiveServer(n.name, "ACTIVE", n.flavor, plan.env.site.image, server_metadata(plan.env, n), f"id-{n.name}")
            for n in plan.nodes]


def test_servers_as_planned_are_clean(plan: Any) -> None:
    report = st.compare(plan, _as_planned(plan))
    assert report.clean and report.ok == [n.name for n in plan.nodes]


def test_missing_strays_duplicates_and_drift_are_each_named(plan: Any) -> None:
    servers = _as_planned(plan)
    gone = servers.pop(0)
    first = servers[0]
    drifted = st.LiveServer(first.name, "SHUTOFF", "m1.small", "ubuntu-22.04",
                            {**first.metadata, "aiinfn:pool": "other", "aiinfn:extra": "x"})
    servers[0] = drifted
    dup = servers[1]
    servers.append(dup)
    stray = st.LiveServer("hand-made-01", "ACTIVE", "m1.small", "debian-12", {"aiinfn:site": plan.env.site.name})
    servers.append(stray)
    report = st.compare(plan, servers)
    assert report.missing == [gone.name]
    assert report.strays == ["hand-made-01"]
    assert report.duplicates == [dup.name]
    assert report.drift == {first.name: [
        f"flavor 'm1.small', plan {first.flavor!r}",
        f"image 'ubuntu-22.04', plan {plan.env.site.image!r}",
        f"aiinfn:pool 'other', plan {first.metadata['aiinfn:pool']!r}",
        "aiinfn:extra 'x', not in the plan",
        "status SHUTOFF",
    ]}
    assert dup.name not in report.missing and dup.name not in report.ok


def test_a_server_booted_from_a_volume_is_not_compared_by_image(plan: Any) -> None:
    servers = [st.LiveServer(s.name, s.status, s.flavor, "", s.metadata) for s in _as_planned(plan)]
    assert st.compare(plan, servers).clean


def _node(name: str, ready: str = "True", reason: str = "KubeletReady", unschedulable: bool = False) -> dict[str, Any]:
    """One item of `kubectl get nodes -o json` as an RKE2 v1.33 node reports it."""
    cond = {"lastHeartbeatTime": "2026-12-01T12:00:00Z", "lastTransitionTime": "2026-11-30T09:00:00Z",
            "message": "kubelet is posting ready status" if ready == "True" else "container runtime is down",
            "reason": reason, "status": ready, "type": "Ready"}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                              "node-role.kubernetes.io/control-plane": "true"},
                     "uid": f"uid-{name}", "creationTimestamp": "2026-11-30T09:00:00Z"},
        "spec": {"podCIDR": "10.42.0.0/24", "providerID": f"rke2://{name}",
                 **({"unschedulable": True, "taints": [{"effect": "NoSchedule",
                                                        "key": "node.kubernetes.io/unschedulable"}]}
                    if unschedulable else {})},
        "status": {
            "addresses": [{"address": "10.10.0.5", "type": "InternalIP"}, {"address": name, "type": "Hostname"}],
            "allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"},
            "capacity": {"cpu": "8", "memory": "32Gi", "pods": "110"},
            "conditions": [
                {"reason": "KubeletHasSufficientMemory", "status": "False", "type": "MemoryPressure"},
                {"reason": "KubeletHasNoDiskPressure", "status": "False", "type": "DiskPressure"},
                {"reason": "KubeletHasSufficientPID", "status": "False", "type": "PIDPressure"},
                cond,
            ],
            "nodeInfo": {"kubeletVersion": "v1.33.5+rke2r1", "containerRuntimeVersion": "containerd://2.1.4-k3s1",
                         "osImage": "Debian GNU/Linux 12 (bookworm)", "architecture": "amd64"},
        },
    }


def _list(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}}


def test_readiness_of_every_planned_cluster_node(plan: Any) -> None:
    cluster = [n.name for n in plan.nodes if n.is_kubernetes_node]
    items = [_node(n) for n in cluster[1:]]
    items[0] = _node(cluster[1], ready="False", reason="KubeletNotReady")
    items[1] = _node(cluster[2], unschedulable=True)
    items.append(_node("old-node-07", ready="Unknown", reason="NodeStatusUnknown"))
    report = st.readiness(plan, _list(items))
    assert report.absent == [cluster[0]]
    assert report.unknown == ["old-node-07"]
    assert report.not_ready == [cluster[1]]
    assert report.nodes[cluster[1]].reason == "KubeletNotReady"
    assert report.nodes[cluster[2]].ready and report.nodes[cluster[2]].unschedulable
    assert report.nodes[cluster[3]].kubelet == "v1.33.5+rke2r1"
    assert not any(n.role.value in ("bastion", "nfs", "backup") for n in plan.nodes if n.name in report.absent)


@pytest.mark.parametrize("doc,why", [
    ({"kind": "Node"}, "not a list of nodes"),
    (_list([{"metadata": {}}]), r"items\[0\]: a node without metadata.name"),
])
def test_other_documents_are_refused(plan: Any, doc: Any, why: str) -> None:
    with pytest.raises(st.NodeListError, match=why):
        st.readiness(plan, copy.deepcopy(doc))


def test_a_node_without_a_ready_condition_is_not_ready() -> None:
    item = _node("k8s-server-01")
    item["status"]["conditions"] = item["status"]["conditions"][:3]
    state = st.parse_nodes(_list([item]))["k8s-server-01"]
    assert not state.ready and state.reason == "no Ready condition"


def test_status_without_a_reachable_cloud_is_one_line(root: Path, tmp_path: Path) -> None:
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text("clouds: {}\n")
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(clouds),
           "PATH": str(Path(sys.executable).parent) + os.pathsep + "/usr/bin:/bin"}
    res = subprocess.run([AIINFN, "status", "cnaf"], capture_output=True, text=True, cwd=root, env=env, timeout=120)
    assert res.returncode == 1, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "cnaf" in lines[0], res.stderr


@pytest.mark.filterwarnings("ignore:The _compute_attributes method is deprecated")  # the SDK's own internals
def test_live_servers_reads_openstacksdk_servers_by_flavor_and_image_name() -> None:
    """openstacksdk's own Server resources as a compute API at microversion 2.47+ returns them (the flavor
    embedded with its original name; a server booted from a volume has no image)."""
    from types import SimpleNamespace

    from openstack.compute.v2.server import Server

    servers = [
        Server(id="1", name="k8s-server-01", status="ACTIVE", flavor={"original_name": "cpu-8c-32g", "vcpus": 8},
               image={"id": "img-1"}, metadata={"aiinfn:site": "cnaf"}),
        Server(id="2", name="gpu-t4-01", status="ACTIVE", flavor={"original_name": "gpu-t4x1"}, image="",
               metadata={"aiinfn:site": "cnaf"}),
        Server(id="3", name="other-01", status="ACTIVE", flavor={"original_name": "x"}, metadata={"aiinfn:site": "b"}),
    ]
    conn = SimpleNamespace(
        compute=SimpleNamespace(servers=lambda details: iter(servers), find_flavor=None),
        image=SimpleNamespace(find_image=lambda ref, ignore_missing: SimpleNamespace(name="debian-12")),
    )
    got = st.live_servers(conn, "cnaf")
    assert [(s.name, s.flavor, s.image) for s in got] == [("gpu-t4-01", "gpu-t4x1", ""),
                                                          ("k8s-server-01", "cpu-8c-32g", "debian-12")]
