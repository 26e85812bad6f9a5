"""Kueue's objects, read straight from services.kueue for every shipped site: what a user's job meets.

The stack and artifact tests check the same objects after planning a whole stack (slow, and once per session);
these check them per function, in a second, so that a mutant of services/kueue.py costs seconds to kill
(benchmarks/mutation_score.py runs this file for that module). The oracles are not the product's: the Kueue
v0.19.2 CRDs (../shared, unknown fields refused as the API server's pruning would), Kubernetes' toleration rule
written out here, and the plan's capacity (the units each node of a kind carries) for the quotas.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from aiinfn import versions
from aiinfn.config.loader import list_environments, load
from aiinfn.planning import Plan, make_plan
from aiinfn.planning.labels import KUEUE_MANAGED_LABEL, PLATFORM_LABEL, POD_SECURITY_ENFORCE, RESERVED_TAINT
from aiinfn.services import kueue, policy
from aiinfn.services.bundle import Release

SUPPORT = Path(__file__).resolve().parents[1] / "support"
if str(SUPPORT) not in sys.path:
    sys.path.insert(0, str(SUPPORT))

import schemas  # noqa: E402 - found through SUPPORT

SITES = list_environments(kind="site")
#: The integrations Kueue 0.19's Configuration names (``integrations.frameworks``; Kueue's documentation):
#: a name outside it is no integration of Kueue's, so that kind of job would not be queued as the design says.
KUEUE_FRAMEWORKS = {
    "batch/job", "pod", "deployment", "statefulset", "jobset.x-k8s.io/jobset", "kubeflow.org/mpijob",
    "kubeflow.org/paddlejob", "kubeflow.org/pytorchjob", "kubeflow.org/tfjob", "kubeflow.org/xgboostjob",
    "kubeflow.org/jaxjob", "trainer.kubeflow.org/trainjob", "ray.io/rayjob", "ray.io/raycluster",
    "workload.codeflare.dev/appwrapper", "leaderworkerset.x-k8s.io/leaderworkerset",
}
HUB = "jupyterhub"
#: DNS-1123 subdomain: the rule for a ResourceFlavor's (a cluster-scoped object's) name.
SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@pytest.fixture(scope="module", params=SITES)
def plan(request: pytest.FixtureRequest) -> Plan:
    return make_plan(load(request.param))


@pytest.fixture(scope="module")
def kueue_crds(shared: Path) -> dict[tuple[str, str], dict[str, Any]]:
    return schemas.crd_schemas(shared / "schemas" / f"kueue-v{versions.KUEUE}")


def _tolerates(tolerations: list[dict[str, Any]], taint: dict[str, str]) -> bool:
    """Kubernetes' rule (core/v1 Toleration): key and effect match (empty matches any), Exists or Equal value."""
    for t in tolerations:
        if t.get("key") and t["key"] != taint["key"]:
            continue
        if t.get("effect") and t["effect"] != taint["effect"]:
            continue
        if t.get("operator", "Equal") == "Exists" or t.get("value") == taint.get("value"):
            return True
    return False


def _by_kind(objs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o for o in objs if o["kind"] == kind}


def _nominal(groups: list[dict[str, Any]]) -> dict[tuple[str, str], Any]:
    """``(flavor, resource) -> nominalQuota`` of a queue's or cohort's resource groups."""
    return {(f["name"], r["name"]): r["nominalQuota"] for g in groups for f in g["flavors"] for r in f["resources"]}


def _entries(groups: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(f["name"], r["name"]): r for g in groups for f in g["flavors"] for r in f["resources"]}


def test_every_object_is_what_the_kueue_crds_accept(plan: Plan, kueue_crds: dict[tuple[str, str], Any]) -> None:
    objs = kueue.objects(plan, HUB)
    for obj in objs:
        key = (obj["apiVersion"], obj["kind"])
        assert key in kueue_crds, f"{key} is not served by Kueue v{versions.KUEUE}"
        schemas.assert_valid(obj, kueue_crds[key])
    names = [(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objs]
    assert len(names) == len(set(names)), "two objects of one kind share a name"


def test_every_queue_is_in_the_cohort_and_the_events_cohort_hangs_under_it(plan: Plan) -> None:
    objs = kueue.objects(plan, HUB)
    queues = _by_kind(objs, "ClusterQueue")
    assert set(queues) == {kueue.INTERACTIVE_QUEUE, *(q.project for q in plan.quotas)}
    assert {q["spec"]["cohortName"] for q in queues.values()} == {kueue.COHORT}
    cohorts = _by_kind(objs, "Cohort")
    assert set(cohorts) == {kueue.COHORT, kueue.EVENTS_COHORT}
    assert "parentName" not in cohorts[kueue.COHORT]["spec"]
    assert cohorts[kueue.EVENTS_COHORT]["spec"]["parentName"] == kueue.COHORT


def test_each_flavor_selects_exactly_the_nodes_of_its_kind_and_tolerates_their_taints(plan: Plan) -> None:
    flavors = _by_kind(kueue.resource_flavors(plan), "ResourceFlavor")
    assert set(flavors) == {kueue.CPU_FLAVOR, *(kueue.flavor_name(k) for k in plan.capacity)}
    assert flavors[kueue.CPU_FLAVOR]["spec"] == {}  # CPU and memory: any node
    for key, cap in plan.capacity.items():
        name = kueue.flavor_name(key)
        assert SUBDOMAIN.match(name) and len(name) <= 253, name
        spec = flavors[name]["spec"]
        selected = {n.name for n in plan.nodes if n.is_kubernetes_node
                    and all(n.labels.get(k) == v for k, v in spec["nodeLabels"].items())}
        assert selected == set(cap.nodes), f"{name} selects {selected}, the kind is on {set(cap.nodes)}"
        for node in selected:
            for taint in plan.node(node).taints:  # PreferNoSchedule only steers: it never keeps a pod off
                if taint.effect != "PreferNoSchedule":
                    assert _tolerates(spec["tolerations"], taint.as_k8s()), f"{name}: {taint} of {node}"
        assert flavors[name]["metadata"]["labels"] == {kueue.KIND_LABEL: name}
    assert len({kueue.flavor_name(k) for k in plan.capacity}) == len(plan.capacity)


def test_flavor_names_are_lowercase_subdomains() -> None:
    assert kueue.flavor_name("A100-80GB/1g.10gb") == "a100-80gb-1g.10gb"
    assert kueue.flavor_name("H100-80GB/1g.10gb+me") == "h100-80gb-1g.10gb-me"
    assert kueue.flavor_name("-T4-") == "t4"


def test_the_quotas_of_every_unreserved_kind_add_up_to_its_capacity(plan: Plan) -> None:
    """Cohort-wide: interactive queue + projects + the events cohort hold each unit exactly once."""
    objs = kueue.objects(plan, HUB)
    groups = [q["spec"]["resourceGroups"] for q in _by_kind(objs, "ClusterQueue").values()]
    groups.append(_by_kind(objs, "Cohort")[kueue.EVENTS_COHORT]["spec"]["resourceGroups"])
    reserved = plan.reserved_kinds()
    for key, cap in plan.capacity.items():
        if key in reserved:
            continue
        total = sum(_nominal(g).get((kueue.flavor_name(key), cap.kind.resource), 0) for g in groups)
        assert total == cap.units, f"{key}: queues hold {total} units, the nodes carry {cap.units}"
    cpu, mem = plan.schedulable()
    assert sum(_nominal(g).get((kueue.CPU_FLAVOR, "cpu"), 0) for g in groups) == cpu
    assert sum(int(_nominal(g).get((kueue.CPU_FLAVOR, "memory"), "0Gi").removesuffix("Gi")) for g in groups) == mem


def test_each_project_queue_holds_its_quota_and_no_cpu_of_its_own(plan: Plan) -> None:
    queues = _by_kind(kueue.project_queues(plan), "ClusterQueue")
    reserved = plan.reserved_kinds()
    for q in plan.quotas:
        queue = queues[q.project]
        assert queue["metadata"]["labels"] == {kueue.PROJECT_LABEL: q.project}
        assert queue["spec"]["namespaceSelector"] == {"matchLabels": {kueue.PROJECT_LABEL: q.project}}
        nominal = _nominal(queue["spec"]["resourceGroups"])
        for key, cap in plan.capacity.items():
            found = nominal.get((kueue.flavor_name(key), cap.kind.resource))
            if key in reserved and reserved[key] != q.iam_group:
                assert found is None, f"{q.project} sees {key}, reserved for {reserved[key]}"
            else:
                assert found == q.nominal.get(key, 0), f"{q.project}: {key}"
        assert nominal[(kueue.CPU_FLAVOR, "cpu")] == 0
        assert nominal[(kueue.CPU_FLAVOR, "memory")] == "0Gi"
        # one group per resource, each flavor in one group only (Kueue refuses a flavor in two groups)
        covered = [tuple(g["coveredResources"]) for g in queue["spec"]["resourceGroups"]]
        assert len(covered) == len(set(covered))
        flavor_names = [f["name"] for g in queue["spec"]["resourceGroups"] for f in g["flavors"]]
        assert len(flavor_names) == len(set(flavor_names))


def test_the_interactive_queue_owns_the_shared_pool_minus_the_event_reserve(plan: Plan) -> None:
    queue = kueue.interactive_queue(plan)
    assert queue["spec"]["namespaceSelector"] == {"matchLabels": {kueue.INTERACTIVE_LABEL: "true"}}
    nominal = _nominal(queue["spec"]["resourceGroups"])
    units, res_cpu, res_mem = kueue.event_reserve(plan)
    cpu, mem = plan.schedulable()
    assert nominal[(kueue.CPU_FLAVOR, "cpu")] == cpu - plan.env.event_reserve.cpu
    assert nominal[(kueue.CPU_FLAVOR, "memory")] == f"{mem - plan.env.event_reserve.memory_gb}Gi"
    assert (res_cpu, res_mem) == (plan.env.event_reserve.cpu, plan.env.event_reserve.memory_gb)
    for key, cap in plan.visible_kinds(None).items():
        assert nominal[(kueue.flavor_name(key), cap.kind.resource)] == plan.shared_pool[key] - units.get(key, 0)
    events = kueue.events_cohort(plan)["spec"]["resourceGroups"]
    reserve = _nominal(events)
    assert reserve[(kueue.CPU_FLAVOR, "cpu")] == plan.env.event_reserve.cpu
    assert reserve[(kueue.CPU_FLAVOR, "memory")] == f"{plan.env.event_reserve.memory_gb}Gi"
    for key, cap in plan.visible_kinds(None).items():
        assert reserve[(kueue.flavor_name(key), cap.kind.resource)] == units.get(key, 0)
    # neither the cohort's own queue nor the reserve is capped: they lend and borrow freely
    for groups in (queue["spec"]["resourceGroups"], events):
        assert not any("borrowingLimit" in e for e in _entries(groups).values())


def test_cnaf_reserves_its_whole_a100_shared_pool_for_events() -> None:
    """environments/cnaf.yaml: ``event_reserve: {accelerators: {A100-80GB/1g.10gb: 1.0}, cpu: 64, memory_gb: 256}``."""
    plan = make_plan(load("cnaf"))
    units, cpu, mem = kueue.event_reserve(plan)
    assert (units.get("A100-80GB/1g.10gb"), cpu, mem) == (plan.shared_pool["A100-80GB/1g.10gb"], 64, 256)
    assert plan.shared_pool["A100-80GB/1g.10gb"] > 0
    nominal = _nominal(kueue.interactive_queue(plan)["spec"]["resourceGroups"])
    assert nominal[("a100-80gb-1g.10gb", "nvidia.com/gpu")] == 0


def test_a_reserved_kind_is_only_in_its_groups_queues_and_its_flavor_tolerates_the_reservation() -> None:
    plan = make_plan(load("cnaf"))
    reserved = plan.reserved_kinds()
    assert reserved == {"V70": "ai-infn/fpga"}
    flavor = _by_kind(kueue.resource_flavors(plan), "ResourceFlavor")["v70"]
    taints = [t.as_k8s() for n in plan.capacity["V70"].nodes for t in plan.node(n).taints]
    assert any(t["key"] == RESERVED_TAINT for t in taints)
    assert all(_tolerates(flavor["spec"]["tolerations"], t) for t in taints)
    # a pod with the flavor's tolerations but not the reservation's stays off the reserved nodes
    unreserved = [t for t in flavor["spec"]["tolerations"] if t["key"] != RESERVED_TAINT]
    assert not all(_tolerates(unreserved, t) for t in taints)
    holders = {q["metadata"]["name"] for q in [kueue.interactive_queue(plan), *kueue.project_queues(plan)]
               if ("v70", "amd.com/xilinx-v70") in _nominal(q["spec"]["resourceGroups"])}
    assert holders == {q.project for q in plan.quotas if q.iam_group == "ai-infn/fpga"} == {"fpga-lab"}
    # an unreserved flavor tolerates only its accelerator taint, not a reservation
    t4 = _by_kind(kueue.resource_flavors(plan), "ResourceFlavor")["t4"]
    assert [t["key"] for t in t4["spec"]["tolerations"]] == [kueue.kind_tolerations("T4", None)[0]["key"]]


def test_a_project_that_may_not_borrow_is_capped_at_its_accelerators_only(root: Path, tmp_path: Path) -> None:
    path = tmp_path / "variant.yaml"
    cnaf = YAML(typ="safe", pure=True).load((root / "environments" / "cnaf.yaml").read_text())
    projects = cnaf["projects"]
    first = next(iter(projects))
    YAML(typ="safe", pure=True).dump({"extends": str(root / "environments" / "cnaf.yaml"),
                                      "projects": {first: {"borrowing": False}}}, path.open("w"))
    plan = make_plan(load(path))
    queues = _by_kind(kueue.project_queues(plan), "ClusterQueue")
    for q in plan.quotas:
        entries = _entries(queues[q.project]["spec"]["resourceGroups"])
        accel = {k: e for k, e in entries.items() if k[0] != kueue.CPU_FLAVOR and k[1] not in ("cpu", "memory")}
        assert accel, q.project
        if q.project == first:
            assert not q.borrowing
            assert all(e.get("borrowingLimit") == 0 for e in accel.values()), accel
        else:
            assert not any("borrowingLimit" in e for e in accel.values())
        # CPU and memory are nobody's guarantee: capping them would admit nothing
        assert "borrowingLimit" not in entries[(kueue.CPU_FLAVOR, "cpu")]
        assert "borrowingLimit" not in entries[(kueue.CPU_FLAVOR, "memory")]


def test_resource_groups_cap_what_it_is_told_to_and_nothing_with_no_guarantee() -> None:
    plan = make_plan(load("recas"))
    groups = kueue.resource_groups(plan.capacity, {"T4": 3}, 5, 7, False)
    assert groups[0] == {"coveredResources": ["cpu", "memory"], "flavors": [{"name": kueue.CPU_FLAVOR, "resources": [
        {"name": "cpu", "nominalQuota": 5, "borrowingLimit": 0},
        {"name": "memory", "nominalQuota": "7Gi", "borrowingLimit": 0}]}]}
    assert groups[1:] == [{"coveredResources": ["nvidia.com/gpu"], "flavors": [
        {"name": "t4", "resources": [{"name": "nvidia.com/gpu", "nominalQuota": 3, "borrowingLimit": 0}]}]}]
    free = kueue.resource_groups(plan.capacity, {}, 0, 0, True)
    assert _entries(free) == {("cpu", "cpu"): {"name": "cpu", "nominalQuota": 0},
                              ("cpu", "memory"): {"name": "memory", "nominalQuota": "0Gi"},
                              ("t4", "nvidia.com/gpu"): {"name": "nvidia.com/gpu", "nominalQuota": 0}}
    uncapped = kueue.resource_groups(plan.capacity, {"T4": 1}, 0, 0, False)
    assert _entries(uncapped)[("cpu", "cpu")] == {"name": "cpu", "nominalQuota": 0}
    assert _entries(uncapped)[("t4", "nvidia.com/gpu")]["borrowingLimit"] == 0


def test_kinds_sharing_a_resource_are_flavors_of_one_group() -> None:
    """Kueue admits a workload on one flavor of the group covering its resource: all nvidia.com/gpu kinds
    of a site must be flavors of one group, or a job asking for nvidia.com/gpu would see one kind only."""
    plan = make_plan(load("cnaf"))
    groups = kueue.resource_groups(plan.capacity, {}, 0, 0, True)
    by_resource = {tuple(g["coveredResources"]): [f["name"] for f in g["flavors"]] for g in groups}
    gpus = [kueue.flavor_name(k) for k, c in plan.capacity.items() if c.kind.resource == "nvidia.com/gpu"]
    assert len(gpus) >= 3
    assert by_resource[("nvidia.com/gpu",)] == gpus
    assert by_resource[("amd.com/xilinx-v70",)] == ["v70"]
    assert by_resource[("cpu", "memory")] == [kueue.CPU_FLAVOR]


def test_notebooks_preempt_batch_and_batch_never_preempts_notebooks(plan: Plan) -> None:
    prios = {p["metadata"]["name"]: p["value"] for p in kueue.priority_classes()}
    event_name = kueue.EVENT_PLACEHOLDER_PRIORITY[0]
    assert set(prios) == {"interactive", "batch", event_name}
    assert prios["interactive"] > prios[event_name] > prios["batch"]
    descriptions = {p["metadata"]["name"]: p["description"] for p in kueue.priority_classes()}
    assert "preemptible" in descriptions["batch"] and "preemptible" not in descriptions["interactive"]
    interactive = kueue.interactive_queue(plan)["spec"]["preemption"]
    # a notebook takes back what batch borrowed from its pool, and may preempt batch on idle project quota
    assert interactive["reclaimWithinCohort"] == "Any"
    assert interactive["withinClusterQueue"] == "Never"
    assert interactive["borrowWithinCohort"]["policy"] == "LowerPriority"
    assert prios["batch"] <= interactive["borrowWithinCohort"]["maxPriorityThreshold"] < prios[event_name]
    for queue in kueue.project_queues(plan):
        pre = queue["spec"]["preemption"]
        assert pre["reclaimWithinCohort"] == "LowerPriority"
        assert pre["withinClusterQueue"] == "LowerPriority"
        assert pre["borrowWithinCohort"]["policy"] == "LowerPriority"
        assert pre["borrowWithinCohort"]["maxPriorityThreshold"] < prios["interactive"]
        assert queue["spec"]["queueingStrategy"] == "BestEffortFIFO"
    assert kueue.interactive_queue(plan)["spec"]["queueingStrategy"] == "BestEffortFIFO"


def test_every_project_namespace_has_a_default_local_queue_to_its_cluster_queue(plan: Plan) -> None:
    objs = kueue.objects(plan, HUB)
    local = {(o["metadata"]["namespace"], o["metadata"]["name"]): o["spec"]["clusterQueue"]
             for o in objs if o["kind"] == "LocalQueue"}
    expected = {(q.namespace, kueue.LOCAL_QUEUE): q.project for q in plan.quotas}
    assert local == {**expected, (HUB, kueue.INTERACTIVE_QUEUE): kueue.INTERACTIVE_QUEUE}
    without_hub = kueue.objects(plan, None)
    assert {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in without_hub if o["kind"] == "LocalQueue"} \
        == set(expected)
    assert kueue.local_queue("q", "ns", "cq") == {"apiVersion": kueue.KUEUE_API, "kind": "LocalQueue",
                                                 "metadata": {"name": "q", "namespace": "ns"},
                                                 "spec": {"clusterQueue": "cq"}}


def test_the_manager_manages_every_workload_of_managed_namespaces_and_only_those() -> None:
    config = YAML(typ="safe", pure=True).load(kueue.values()["managerConfig"]["controllerManagerConfigYaml"])
    assert config["apiVersion"] == "config.kueue.x-k8s.io/v1beta2"
    assert config["kind"] == "Configuration"
    assert config["manageJobsWithoutQueueName"] is True
    assert config["managedJobsNamespaceSelector"] == {"matchLabels": {KUEUE_MANAGED_LABEL: "true"}}
    assert config["metrics"] == {"enableClusterQueueResources": True}
    frameworks = config["integrations"]["frameworks"]
    assert set(frameworks) <= KUEUE_FRAMEWORKS, set(frameworks) - KUEUE_FRAMEWORKS
    # every kind of workload the platform's admission policy lets a tenant submit goes through Kueue
    submitted = {group for group, _, _ in policy.WORKLOADS if group not in ("", "apps")}
    assert submitted == {"batch", "jobset.x-k8s.io"}
    assert set(frameworks) == {"batch/job", "pod", "jobset.x-k8s.io/jobset"}
    assert kueue.values()["enablePrometheus"] is True


def test_the_controller_is_reachable_by_the_api_server_and_prometheus_only(plan: Plan) -> None:
    policies = {p["metadata"]["name"]: p for p in kueue.network_policies(plan)}
    assert all(p["metadata"]["namespace"] == kueue.NAMESPACE for p in policies.values())
    ingress_ports = {port["port"] for p in policies.values() for rule in p["spec"].get("ingress", [])
                     for port in rule.get("ports", [])}
    assert ingress_ports == {kueue.WEBHOOK_PORT, kueue.VISIBILITY_PORT, kueue.METRICS_PORT}
    assert (kueue.WEBHOOK_PORT, kueue.VISIBILITY_PORT, kueue.METRICS_PORT) == (9443, 8082, 8443)


def test_the_bundle_installs_the_release_in_its_namespace_before_the_queues(plan: Plan) -> None:
    """The order ``aiinfn up`` applies: the namespace, then its policies and the release, then the queues
    (whose CRDs the release installs); the bundle keeps its name (its Pulumi resources are named after it:
    renaming it would replace every Kueue object)."""
    bundle = kueue.bundle(plan, HUB)
    assert bundle.service == "kueue"
    ns_key = f"ns-{kueue.NAMESPACE}"
    (ns,) = [m for m in bundle.manifests if m.kind == "Namespace"]
    assert (ns.key, ns.after, ns.manifest["metadata"]["name"]) == (ns_key, (), kueue.NAMESPACE)
    labels = ns.manifest["metadata"]["labels"]
    assert labels[PLATFORM_LABEL] == "true"  # the platform's own: no user pod, no Kueue management
    assert labels[POD_SECURITY_ENFORCE] == "restricted"
    assert KUEUE_MANAGED_LABEL not in labels
    (release,) = [i for i in bundle.items if isinstance(i, Release)]
    assert (release.key, release.chart, release.namespace) == (kueue.RELEASE, "kueue", kueue.NAMESPACE)
    assert release.after == (ns_key,)
    assert release.crd_groups == ("kueue.x-k8s.io",)
    config = YAML(typ="safe", pure=True).load(release.values["managerConfig"]["controllerManagerConfigYaml"])
    assert config["managedJobsNamespaceSelector"] == {"matchLabels": {KUEUE_MANAGED_LABEL: "true"}}
    assert release.values["enablePrometheus"] is True
    policies = [m for m in bundle.manifests if m.kind == "NetworkPolicy"]
    assert len(policies) == len(kueue.network_policies(plan)) >= 4
    assert all(m.namespace == kueue.NAMESPACE and ns_key in m.after for m in policies)
    kueue_objects = [m for m in bundle.manifests if m.api_group == "kueue.x-k8s.io"]
    assert len(kueue_objects) == len(kueue.objects(plan, HUB))
    assert all(m.after == (kueue.RELEASE,) for m in kueue_objects)
    assert {m.kind for m in bundle.manifests} == {"Namespace", "NetworkPolicy", *(o["kind"] for o in kueue.objects(
        plan, HUB))}


def test_a_project_borrows_offload_capacity_exactly_when_it_may_borrow(root: Path, tmp_path: Path) -> None:
    """Offload targets (tests/stacks/test_offload.py plans the same through the stack): every project queue
    lists each target's flavors at no quota of its own, capped at 0 only for a project that may not borrow."""
    cnaf = YAML(typ="safe", pure=True).load((root / "environments" / "cnaf.yaml").read_text())
    first = next(iter(cnaf["projects"]))
    targets = {"tier1": {"kind": "htcondor", "endpoint": "https://interlink.t1.example.org:8443",
                         "auth": {"type": "mtls", "cert_secret": "c", "key_secret": "k", "ca_secret": "a"},
                         "cpu": 1024, "memory_gb": 4096}}
    path = tmp_path / "offload.yaml"
    YAML(typ="safe", pure=True).dump({"extends": str(root / "environments" / "cnaf.yaml"),
                                      "services": {"batch": {}}, "offload": {"targets": targets},
                                      "projects": {first: {"borrowing": False}}}, path.open("w"))
    plan = make_plan(load(path))
    queues = _by_kind(kueue.project_queues(plan), "ClusterQueue")
    for q in plan.quotas:
        entries = _entries(queues[q.project]["spec"]["resourceGroups"])
        offloaded = {k: e for k, e in entries.items() if k[0] == "offload-tier1"}
        assert set(offloaded) == {("offload-tier1", "cpu"), ("offload-tier1", "memory")}, q.project
        assert all(e["nominalQuota"] in (0, "0Gi") for e in offloaded.values())
        assert all(("borrowingLimit" in e) == (not q.borrowing) for e in offloaded.values()), q.project
    assert any(not q.borrowing for q in plan.quotas) and any(q.borrowing for q in plan.quotas)
