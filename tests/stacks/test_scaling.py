"""Adding or removing a node touches only that node (Pulumi mock runtime; see conftest.py).

URNs depend only on names and parent types, so comparing URN sets and the recorded inputs of every
resource proves what `pulumi up` would be asked to create, keep or delete.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiinfn.offline import redact
from aiinfn.preview import Preview


def _state(report: Preview) -> dict[str, Any]:
    return {r.urn: (redact(r.inputs), r.parent, r.protect, sorted(r.depends_on)) for r in report.run.registrations}


def _node_urns(report: Preview, node: str) -> set[str]:
    site = report.env.site.name
    prefix = f"{site}-{node}"
    return {r.urn for r in report.run.registrations if r.name == prefix or r.name.startswith(prefix + "-")}


def test_adding_a_node_to_a_count_pool_adds_only_that_node(plan_variant: Callable[..., Preview]) -> None:
    before = plan_variant("cnaf", "cnaf-agents-2", {"node_pools": {"agent": {"count": 2}}})
    after = plan_variant("cnaf", "cnaf-agents-3", {"node_pools": {"agent": {"count": 3}}})
    b, a = _state(before), _state(after)
    added = set(a) - set(b)
    assert set(b) <= set(a), f"removed: {sorted(set(b) - set(a))}"
    assert added == _node_urns(after, "k8s-agent-03")
    assert len(added) >= 3  # component, port, instance
    changed = [urn for urn in b if b[urn] != a[urn]]
    # The only other change: the interactive queue's CPU and memory quota grows by what the new node brings.
    assert [u.split("::")[-1] for u in changed] == ["cnaf-overlay-clusterqueue-interactive"], changed
    cohort_b, cohort_a = b[changed[0]][0], a[changed[0]][0]
    cpu = next(g for g in cohort_a["spec"]["resourceGroups"] if "cpu" in g["coveredResources"])
    cpu_b = next(g for g in cohort_b["spec"]["resourceGroups"] if "cpu" in g["coveredResources"])
    flavor = after.env.flavors[after.env.node_pools["agent"].flavor]
    grown = cpu["flavors"][0]["resources"][0]["nominalQuota"] - cpu_b["flavors"][0]["resources"][0]["nominalQuota"]
    assert grown == flavor.vcpus - 1
    assert [g for g in cohort_a["spec"]["resourceGroups"] if "cpu" not in g["coveredResources"]] == [
        g for g in cohort_b["spec"]["resourceGroups"] if "cpu" not in g["coveredResources"]]


def test_removing_a_named_node_removes_only_its_resources(plan_variant: Callable[..., Preview]) -> None:
    names = ["gpu-rtx5000-01", "gpu-rtx5000-02", "gpu-rtx5000-03"]
    pool = {"role": "gpu", "flavor": "gpu-rtx5000x1", "accelerators": {"model": "RTX5000", "per_node": 1}}
    before = plan_variant("cnaf", "cnaf-rtx-3", {"node_pools": {"rtx5000": {**pool, "count": None, "nodes": names,
                                                                             "name_prefix": None}}})
    after = plan_variant("cnaf", "cnaf-rtx-2", {"node_pools": {"rtx5000": {**pool, "count": None,
                                                                            "nodes": [names[0], names[2]],
                                                                            "name_prefix": None}}})
    b, a = _state(before), _state(after)
    assert set(a) <= set(b)
    assert set(b) - set(a) == _node_urns(before, "gpu-rtx5000-02")
    changed = [urn.split("::")[-1] for urn in a if b[urn] != a[urn]]
    # Capacity shrank by one RTX 5000 and its node: only what is derived from capacity follows (the
    # queues' quotas, and the hub's profile that shows how many RTX 5000 there are).
    assert set(changed) <= {"cnaf-overlay-clusterqueue-interactive", "cnaf-overlay-clusterqueue-lhc-ml",
                            "cnaf-overlay-clusterqueue-astro", "cnaf-overlay-jupyterhub"}, changed


def test_stateful_volumes_survive_a_pool_change(plan_variant: Callable[..., Preview]) -> None:
    """Resizing compute never replaces the NFS or backup volumes (same URN, same inputs, protected)."""
    before = plan_variant("cnaf", "cnaf-a", {})
    after = plan_variant("cnaf", "cnaf-b", {"node_pools": {"agent": {"count": 1}}})
    b, a = _state(before), _state(after)
    for urn, state in b.items():
        if state[2]:  # protected
            assert a.get(urn) == state
