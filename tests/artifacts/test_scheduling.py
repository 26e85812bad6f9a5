"""Where pods can land, judged by Kubernetes' taint and toleration rules over what the plan writes.

Each node's labels and taints are read from the file its cloud-init writes (``/etc/aiinfn/node.json``
in build/<site>/cloud-init/<node>.yaml, what the node registers with), each ResourceFlavor from
build/<site>/k8s/kueue.yaml. The oracle is the scheduler's rule (Kubernetes 1.33, kube-scheduler's
TaintToleration filter), written here independently of the product: a pod fits a node only if each of
the node's ``NoSchedule`` and ``NoExecute`` taints is tolerated by one of the pod's tolerations (same
key, or an empty key with ``Exists``; ``Exists`` or an equal value; the same effect, or none);
``PreferNoSchedule`` never keeps a pod off. Node affinity is the flavor's ``nodeLabels`` as a node
selector.

Gap: other scheduler filters (resources, affinity beyond the selector, topology) are not modelled.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from ruamel.yaml import YAML

from aiinfn import preview
from aiinfn.config.loader import list_environments
from aiinfn.services.kueue import flavor_name

SITES = list_environments(kind="site")
HARD = ("NoSchedule", "NoExecute")


def tolerates(toleration: dict[str, Any], taint: dict[str, Any]) -> bool:
    if toleration.get("effect") and toleration["effect"] != taint["effect"]:
        return False
    operator = toleration.get("operator", "Equal")
    if not toleration.get("key"):
        return operator == "Exists"
    if toleration["key"] != taint["key"]:
        return False
    return operator == "Exists" or toleration.get("value", "") == taint.get("value", "")


def fits(tolerations: list[dict[str, Any]], selector: dict[str, str], node: dict[str, Any]) -> bool:
    if not selector.items() <= node["labels"].items():
        return False
    return all(any(tolerates(t, taint) for t in tolerations) for taint in node["taints"] if taint["effect"] in HARD)


@pytest.fixture(scope="module", params=SITES)
def site(request: pytest.FixtureRequest) -> tuple[preview.Preview, dict[str, dict[str, Any]]]:
    report = preview.build(request.param)
    nodes = {}
    for path, text in report.artifacts.items():
        if path.startswith("cloud-init/"):
            doc = YAML(typ="safe", pure=True).load(text)
            (node_json,) = [f["content"] for f in doc.get("write_files") or [] if f["path"] == "/etc/aiinfn/node.json"]
            node = json.loads(node_json)
            nodes[node["name"]] = node
    assert set(nodes) == {n.name for n in report.plan.nodes}
    return report, nodes


def _flavors(report: preview.Preview) -> dict[str, dict[str, Any]]:
    docs = YAML(typ="safe", pure=True).load_all(report.artifacts["k8s/kueue.yaml"])
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "ResourceFlavor"}


def test_a_pod_without_tolerations_never_lands_on_an_accelerator_node(
    site: tuple[preview.Preview, dict[str, dict[str, Any]]]
) -> None:
    """CPU-only work (system pods, builds, services) keeps off the GPUs and FPGAs, and every agent node
    takes it (servers are the control plane's: whether they take work is their own taint's business)."""
    report, nodes = site
    accelerated = [n for n in report.plan.nodes if n.accelerator]
    agents = [n for n in report.plan.nodes if n.role.value == "agent"]
    assert accelerated and agents
    for node in accelerated:
        assert not fits([], {}, nodes[node.name]), (node.name, nodes[node.name]["taints"])
    for node in agents:
        assert fits([], {}, nodes[node.name]), (node.name, nodes[node.name]["taints"])


def test_each_flavor_lands_exactly_on_the_nodes_of_its_kind(
    site: tuple[preview.Preview, dict[str, dict[str, Any]]]
) -> None:
    """A workload Kueue admits on a flavor gets its node selector and tolerations: it fits every node
    offering that kind, and no other, reserved nodes included."""
    report, nodes = site
    flavors = _flavors(report)
    assert report.plan.capacity
    for key, cap in report.plan.capacity.items():
        rf = flavors[flavor_name(key)]["spec"]
        tolerations, selector = rf.get("tolerations") or [], rf.get("nodeLabels") or {}
        landing = {n for n, node in nodes.items() if fits(tolerations, selector, node)}
        assert landing == set(cap.nodes) and landing, key


def test_the_oracle_has_teeth() -> None:
    taint = {"key": "k", "value": "v", "effect": "NoSchedule"}
    node = {"labels": {"a": "b"}, "taints": [taint]}
    assert not fits([], {}, node)
    assert fits([{"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"}], {"a": "b"}, node)
    assert fits([{"operator": "Exists"}], {}, node)
    assert not fits([{"key": "k", "value": "w"}], {}, node)
    assert not fits([{"key": "k", "operator": "Exists", "effect": "NoExecute"}], {}, node)
    assert not fits([{"key": "k", "operator": "Exists"}], {"a": "c"}, node)
    assert fits([], {}, {"labels": {}, "taints": [{**taint, "effect": "PreferNoSchedule"}]})
