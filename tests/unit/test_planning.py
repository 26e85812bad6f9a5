"""Planning: stable node names, capacity per kind, quotas that never exceed capacity, events, hosts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from ruamel.yaml import YAML

from aiinfn.config.loader import layer, load
from aiinfn.config.models import Event
from aiinfn.errors import ConfigError
from aiinfn.planning import make_plan
from aiinfn.planning.capacity import KindCapacity, make_kind
from aiinfn.planning.events import make_event_plan
from aiinfn.planning.quotas import project_quotas, unassigned


def _variant(root: Path, tmp_path: Path, overrides: dict[str, Any], base: str = "cnaf") -> Path:
    path = tmp_path / "variant.yaml"
    YAML(typ="safe", pure=True).dump({"extends": str(root / "environments" / f"{base}.yaml"), **overrides},
                                     path.open("w"))
    return path


def test_count_pools_get_stable_zero_padded_names(root: Path, tmp_path: Path) -> None:
    three = make_plan(load(_variant(root, tmp_path, {"node_pools": {"agent": {"count": 3}}})))
    four = make_plan(load(_variant(root, tmp_path, {"node_pools": {"agent": {"count": 4}}})))
    a3 = [n.name for n in three.nodes if n.pool == "agent"]
    a4 = [n.name for n in four.nodes if n.pool == "agent"]
    assert a3 == ["k8s-agent-01", "k8s-agent-02", "k8s-agent-03"]
    assert a4[:3] == a3 and a4[3] == "k8s-agent-04"


def test_mig_layout_yields_one_unit_per_slice_and_the_right_resource(root: Path, tmp_path: Path) -> None:
    single = make_plan(load("cnaf"))
    cap = single.capacity["A100-80GB/1g.10gb"]
    assert (cap.units, cap.devices) == (28, 4)
    assert cap.kind.resource == "nvidia.com/gpu"
    assert cap.kind.node_labels["aiinfn.infn.it/mig-profile"] == "1g.10gb"
    assert cap.nodes == {"gpu-a100-01": 28}  # units per node, as `aiinfn plan -o json` reports them
    assert single.capacity["T4"].nodes == {"gpu-t4-01": 4, "gpu-t4-02": 4}
    assert (single.capacity["T4"].kind.memory_gb, cap.kind.memory_gb) == (16, 10)  # the hub's profile names
    assert (cap.kind.profile, cap.kind.is_mig, single.capacity["T4"].kind.is_mig) == ("1g.10gb", True, False)
    node = single.node("gpu-a100-01")
    assert cap.kind.node_labels.items() <= node.labels.items()  # the flavor selects the node
    mixed_env = _variant(root, tmp_path, {
        "kubernetes": {"mig_strategy": "mixed"},
        "node_pools": {"a100": {"mig": ["3g.40gb", "2g.20gb", "1g.10gb", "1g.10gb"]}},
        "projects": {},
    })
    mixed = make_plan(load(mixed_env))
    assert mixed.capacity["A100-80GB/3g.40gb"].units == 4
    assert mixed.capacity["A100-80GB/1g.10gb"].units == 8
    assert mixed.capacity["A100-80GB/2g.20gb"].kind.resource == "nvidia.com/mig-2g.20gb"
    node = mixed.node("gpu-a100-01")
    assert node.labels["nvidia.com/mig.config"] == node.mig_config
    assert node.mig_config and len(node.mig_config) <= 63


@given(st.lists(st.floats(min_value=0, max_value=1, allow_nan=False), min_size=1, max_size=8),
       st.integers(min_value=1, max_value=200))
def test_nominal_quotas_never_exceed_capacity(shares: list[float], units: int) -> None:
    total = sum(shares)
    if total > 1:
        shares = [s / total for s in shares]
    env = load("cnaf")
    projects = {f"p{i}": {"iam_group": f"g/{i}", "shares": {"T4": s}} for i, s in enumerate(shares)}
    env = env.model_copy(update={"projects": {k: env.projects["lhc-ml"].model_copy(update=v)
                                               for k, v in projects.items()}})
    caps = {"T4": KindCapacity(make_kind("T4", None, "single"), units=units, devices=units)}
    quotas = project_quotas(env, caps)
    assert sum(q.nominal["T4"] for q in quotas) <= units
    assert unassigned(caps, quotas)["T4"] >= 0
    for q, s in zip(quotas, shares, strict=True):
        assert q.nominal["T4"] <= s * units + 1e-6


def test_quotas_carry_each_project_as_declared() -> None:
    # mutants that dropped a project's priority or borrowing (to None) survived the mutation score's run
    env = load("cnaf")
    astro = env.projects["astro"].model_copy(update={"borrowing": False})
    env = env.model_copy(update={"projects": {**env.projects, "astro": astro}})
    quotas = {q.project: q for q in project_quotas(env, make_plan(env).capacity)}
    assert list(quotas) == list(env.projects)
    for name, p in env.projects.items():
        q = quotas[name]
        assert (q.namespace, q.iam_group, q.priority) == (p.namespace or name, p.iam_group, p.priority)
        assert q.borrowing is p.borrowing
    assert (quotas["astro"].borrowing, quotas["lhc-ml"].borrowing, quotas["astro"].priority) == (False, True, 50)


def test_event_takes_kinds_in_order_of_preference() -> None:
    event = load("hackathon-example")
    assert isinstance(event, Event)
    plans = {name: make_plan(env) for name, env in event.site_environments().items()}
    event_plan = make_event_plan(event, plans)
    # 26 people free to go anywhere all get their first kind (cnaf's A100 slices: its reserve of 7 and 19
    # of projects' guarantees, which the example allows); the 4 the roster puts at recas get its T4s
    ev = event_plan.allocations["cnaf"]
    assert ev.participants == 26
    assert ev.units == {"A100-80GB/1g.10gb": 26, "T4": 0}
    assert ev.remaining == {"A100-80GB/1g.10gb": 2, "T4": 8}
    assert event_plan.allocations["recas"].units == {"A100-80GB/1g.10gb": 0, "T4": 4}
    assert event_plan.shortfall == 0


def test_hosts_must_hold_every_vm(root: Path, tmp_path: Path) -> None:
    """A100 host shrunk below the A100 node's flavor: the plan names the node and what it needs."""
    data = layer(root / "environments" / "cnaf.yaml").data
    hosts = data["site"]["hosts"]
    for h in hosts:
        if h["name"] == "hv-a100":
            h["ram_gb"] = 512
    path = _variant(root, tmp_path, {"site": {"hosts": hosts}})
    with pytest.raises(ConfigError) as e:
        load(path)
    assert "node_pools.a100" in str(e.value) and "gpu-a100-01" in str(e.value)
    assert "flavor 'gpu-a100x4' needs 112 vCPU, 896 GB, 4x A100-80GB" in str(e.value)


def test_accelerators_are_summed_over_hosts_and_nodes(root: Path, tmp_path: Path) -> None:
    """The T4 host split in two entries and a third T4 node: 12 asked for, 4 + 4 installed."""
    data = layer(root / "environments" / "cnaf.yaml").data
    hosts = data["site"]["hosts"]
    t4 = next(h for h in hosts if h["name"] == "hv-t4")
    t4["count"] = 1
    hosts.append({**t4, "name": "hv-t4-b"})
    path = _variant(root, tmp_path, {"site": {"hosts": hosts}, "node_pools": {"t4": {"count": 3}}})
    with pytest.raises(ConfigError) as e:
        load(path)
    assert "node_pools.t4.accelerators: pools ask for 12x T4 but the site's hosts have 8" in str(e.value)


def test_every_vm_is_placed_on_a_declared_host() -> None:
    plan = make_plan(load("cnaf"))
    assert plan.host_fit.unplaced is None
    assert set(plan.host_fit.placements) == {n.name for n in plan.nodes}
    assert plan.host_fit.placements["gpu-a100-01"] == "hv-a100"
    # a host of count 2 is two slots, hv-t4-1 and hv-t4-2, each filled by one T4 node
    assert {n: plan.host_fit.placements[n] for n in ("gpu-t4-01", "gpu-t4-02")} == {
        "gpu-t4-01": "hv-t4-1", "gpu-t4-02": "hv-t4-2"}


def _t4_hosts(root: Path, tmp_path: Path, extra: tuple[dict[str, Any], ...] = (), **t4_host: Any) -> Path:
    data = layer(root / "environments" / "cnaf.yaml").data
    hosts = data["site"]["hosts"]
    next(h for h in hosts if h["name"] == "hv-t4").update(t4_host)
    return _variant(root, tmp_path, {"site": {"hosts": [*hosts, *extra]}})


def test_a_host_exactly_the_size_of_its_node_holds_it(root: Path, tmp_path: Path) -> None:
    plan = make_plan(load(_t4_hosts(root, tmp_path, cores=28, ram_gb=224)))  # gpu-t4x4: 28 vCPU, 224 GB
    assert plan.host_fit.placements["gpu-t4-02"] == "hv-t4-2"


@pytest.mark.parametrize("t4_host, extra", [
    ({"ram_gb": 256, "accelerators": {"T4": 8}}, ()),  # room for the devices of both nodes, the RAM of one
    ({"cores": 32, "accelerators": {"T4": 8}}, ()),  # the cores of one
    # the devices of one; the other 4 T4 on a host too small for a node
    ({"accelerators": {"T4": 4}}, ({"name": "hv-t4-small", "cores": 64, "ram_gb": 100, "accelerators": {"T4": 4}},)),
], ids=["ram", "cores", "accelerators"])
def test_a_host_holds_no_more_than_it_has(root: Path, tmp_path: Path, t4_host: dict[str, Any],
                                          extra: tuple[dict[str, Any], ...]) -> None:
    """One T4 host (count 1) for the two T4 nodes: what the first node takes is gone for the second."""
    with pytest.raises(ConfigError) as e:
        load(_t4_hosts(root, tmp_path, extra, count=1, **t4_host))
    assert "node 'gpu-t4-02' fits on no host" in str(e.value)


def test_cpu_allocation_ratio_multiplies_a_hosts_cores(root: Path, tmp_path: Path) -> None:
    """32 cores at 2.0 hold a 28-vCPU T4 node."""
    plan = make_plan(load(_t4_hosts(root, tmp_path, cores=32, cpu_allocation_ratio=2.0)))
    assert plan.host_fit.placements["gpu-t4-01"] == "hv-t4-1"


@pytest.mark.parametrize("site", ["cnaf", "recas", "example"])
def test_every_unit_is_guaranteed_to_one_project_or_in_the_shared_pool(site: str) -> None:
    """The shared pool (the interactive queue's quota) and the projects' guarantees hold each unit of a kind
    exactly once, a kind a project has no share of included (cnaf: RTX5000 is not theory's)."""
    plan = make_plan(load(site))
    assert set(plan.shared_pool) == set(plan.capacity)
    for key, cap in plan.capacity.items():
        guaranteed = [q.nominal[key] for q in plan.quotas if key in q.nominal]
        assert plan.shared_pool[key] >= 0
        assert plan.shared_pool[key] + sum(guaranteed) == cap.units, key
    if site == "cnaf":
        assert any("RTX5000" not in q.nominal for q in plan.quotas)
        assert plan.shared_pool["RTX5000"] > 0
