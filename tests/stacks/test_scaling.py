"""Adding or removing a node touches only that node (Pulumi mock runtime; see conftest.py).

URNs depend only on names and parent types, so comparing URN sets and the recorded inputs of every
resource proves what `pulumi up` would be asked to create, keep or delete. What a node brings to the
queues is worked out here from the flavor, by the documented rules (each node keeps 1 CPU and 10 % of
its memory for the system; a project is guaranteed floor(share x units), the interactive queue the
rest), not read back from the product.
"""

from __future__ import annotations

import math
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
    types = sorted(r.type for r in after.run.registrations if r.urn in added)
    assert types == ["aiinfn:infra:Node", "openstack:compute/instance:Instance", "openstack:networking/port:Port"]
    changed = [urn for urn in b if b[urn] != a[urn]]
    # The only other change: the interactive queue's CPU and memory quota grows by what the new node brings.
    assert [u.split("::")[-1] for u in changed] == ["cnaf-overlay-clusterqueue-interactive"], changed
    cohort_b, cohort_a = b[changed[0]][0], a[changed[0]][0]
    cpu = next(g for g in cohort_a["spec"]["resourceGroups"] if "cpu" in g["coveredResources"])
    cpu_b = next(g for g in cohort_b["spec"]["resourceGroups"] if "cpu" in g["coveredResources"])
    flavor = after.env.flavors[after.env.node_pools["agent"].flavor]
    quota = {r["name"]: r["nominalQuota"] for r in cpu["flavors"][0]["resources"]}
    quota_b = {r["name"]: r["nominalQuota"] for r in cpu_b["flavors"][0]["resources"]}
    assert quota["cpu"] - quota_b["cpu"] == flavor.vcpus - 1
    gib = {k: int(str(v).removesuffix("Gi")) for k, v in (("after", quota["memory"]), ("before", quota_b["memory"]))}
    assert gib["after"] - gib["before"] == math.floor(flavor.ram_gb * 0.9)
    assert [g for g in cohort_a["spec"]["resourceGroups"] if "cpu" not in g["coveredResources"]] == [
        g for g in cohort_b["spec"]["resourceGroups"] if "cpu" not in g["coveredResources"]]


def test_removing_a_named_node_removes_only_its_resources(plan_variant: Callable[..., Preview]) -> None:
    names = ["gpu-rtx5000-01", "gpu-rtx5000-02", "gpu-rtx5000-03"]
    pool = {"role": "gpu", "flavor": "gpu-rtx5000x1", "accelerators": {"model": "RTX5000", "per_node": 1}}
    # shares that guarantee at least one unit of 2 or 3 (a share rounding to no unit is refused)
    projects = {"lhc-ml": {"shares": {"RTX5000": 0.7}}, "astro": {"shares": {"RTX5000": 0.0}}}
    before = plan_variant("cnaf", "cnaf-rtx-3", {"node_pools": {"rtx5000": {**pool, "count": None, "nodes": names,
                                                                             "name_prefix": None}},
                                                 "projects": projects})
    after = plan_variant("cnaf", "cnaf-rtx-2", {"node_pools": {"rtx5000": {**pool, "count": None,
                                                                            "nodes": [names[0], names[2]],
                                                                            "name_prefix": None}},
                                                "projects": projects})
    b, a = _state(before), _state(after)
    assert set(a) <= set(b)
    assert set(b) - set(a) == _node_urns(before, "gpu-rtx5000-02")
    changed = [urn.split("::")[-1] for urn in a if b[urn] != a[urn]]
    # Capacity shrank by one RTX 5000 and its node: only what is derived from capacity follows (the
    # queues' quotas; the hub's spawn form counts free units live, so the hub release is untouched).
    # each RTX 5000 quota is floor(share x 2 units) now (3 before); the interactive queue holds the rest,
    # and its CPU and memory lost the node's
    shares = {p: spec.shares["RTX5000"] for p, spec in after.env.projects.items() if "RTX5000" in spec.shares}
    guaranteed = {p: math.floor(share * 2 + 1e-9) for p, share in shares.items()}
    moved = [p for p, share in shares.items() if math.floor(share * 3 + 1e-9) != guaranteed[p]]
    assert moved, "the variant must move some project's quota"
    assert sorted(changed) == sorted(["cnaf-overlay-clusterqueue-interactive",
                                      *(f"cnaf-overlay-clusterqueue-{p}" for p in moved)]), changed
    for project, units in {**guaranteed, "interactive": 2 - sum(guaranteed.values())}.items():
        (queue,) = [r for r in after.run.registrations if r.name == f"cnaf-overlay-clusterqueue-{project}"]
        assert _rtx_quota(redact(queue.inputs)) == units, project
    (hub,) = [r for r in after.run.registrations if r.name == "cnaf-overlay-jupyterhub"]
    profiles = redact(hub.inputs["values"])["singleuser"]["profileList"]
    assert any(p["slug"] == "rtx5000" for p in profiles)  # one RTX 5000 left: the kind is still offered


def _rtx_quota(cq: dict[str, Any]) -> int:
    for group in cq["spec"]["resourceGroups"]:
        for f in group["flavors"]:
            if f["name"] == "rtx5000":
                return int(f["resources"][0]["nominalQuota"])
    raise AssertionError(f"no rtx5000 flavor in {cq['metadata']['name']}")


def test_stateful_volumes_survive_a_pool_change(plan_variant: Callable[..., Preview]) -> None:
    """Resizing compute never replaces the NFS or backup volumes, nor the databases' claims (same URN,
    same inputs, still protected)."""
    before = plan_variant("cnaf", "cnaf-a", {})
    after = plan_variant("cnaf", "cnaf-b", {"node_pools": {"agent": {"count": 1}}})
    b, a = _state(before), _state(after)
    protected = sorted(urn.rpartition("::")[2] for urn, state in b.items() if state[2])
    assert protected == ["cnaf-overlay-harbor-database", "cnaf-overlay-hub-db", "cnaf-stateful-borg-repo",
                         "cnaf-stateful-nfs-data"]
    for urn, state in b.items():
        if state[2]:
            assert a.get(urn) == state, urn
