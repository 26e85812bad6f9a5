"""Invariants of the overlay (GPU Operator, Kueue, projects), for every shipped environment.

Pulumi mock runtime through the shared harness (see conftest.py); the objects' schemas are checked
in tests/artifacts/test_k8s_objects.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from ruamel.yaml import YAML

from aiinfn import versions
from aiinfn.config.loader import list_environments
from aiinfn.offline import is_secret, redact
from aiinfn.preview import Preview
from aiinfn.services import jupyterhub, kueue, projects
from aiinfn.services.kueue import INTERACTIVE_QUEUE, PRIORITIES, flavor_name

SHIPPED = list_environments(kind="site")


def kueue_objects(plan: Any) -> list[dict[str, Any]]:
    return kueue.objects(plan, jupyterhub.USERS_NAMESPACE if plan.env.services.jupyterhub else None)


def project_objects(plan: Any) -> list[dict[str, Any]]:
    return projects.objects(plan)


def reserved_kinds(plan: Any) -> dict[str, str]:
    return plan.reserved_kinds()


@pytest.fixture(params=SHIPPED)
def report(request: pytest.FixtureRequest, shipped_reports: dict[str, Preview]) -> Preview:
    return shipped_reports[request.param]


def _by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


def _quota(obj: dict[str, Any], flavor: str) -> int | None:
    for group in obj["spec"]["resourceGroups"]:
        for f in group["flavors"]:
            if f["name"] == flavor:
                return int(f["resources"][0]["nominalQuota"])
    return None


def _interactive(objs: list[dict[str, Any]]) -> dict[str, Any]:
    (cq,) = [o for o in _by_kind(objs, "ClusterQueue") if o["metadata"]["name"] == INTERACTIVE_QUEUE]
    return cq


def _projects(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [o for o in _by_kind(objs, "ClusterQueue") if o["metadata"]["name"] != INTERACTIVE_QUEUE]


def test_quotas_add_up_to_exactly_the_capacity(report: Preview) -> None:
    """For every kind, the interactive queue's shared pool plus every project's nominal quota equals
    the units that exist: never more (over-admission), never less (idle hardware nobody can borrow),
    except for kinds reserved to a group, whose unclaimed units nobody else may use."""
    objs = kueue_objects(report.plan)
    interactive = _interactive(objs)
    reserved = reserved_kinds(report.plan)
    for key, cap in report.plan.capacity.items():
        flavor = flavor_name(key)
        # the queues' nominal quotas and the events cohort's (the site's event reserve, out of the shared pool)
        total = sum(q or 0 for q in [_quota(cq, flavor) for cq in _by_kind(objs, "ClusterQueue")
                                     + [c for c in _by_kind(objs, "Cohort") if c["spec"].get("resourceGroups")]])
        if key in reserved:
            assert _quota(interactive, flavor) is None
            assert total <= cap.units
        else:
            assert total == cap.units, key


def test_every_kind_has_a_flavor_and_a_quota_line(report: Preview) -> None:
    objs = kueue_objects(report.plan)
    flavors = {o["metadata"]["name"]: o for o in _by_kind(objs, "ResourceFlavor")}
    reserved = reserved_kinds(report.plan)
    for key, cap in report.plan.capacity.items():
        rf = flavors[flavor_name(key)]
        assert rf["spec"]["nodeLabels"] == cap.kind.node_labels
        assert any(t["value"] == cap.kind.model for t in rf["spec"]["tolerations"])
        for cq in _projects(objs):
            project = report.env.projects[cq["metadata"]["name"]]
            visible = key not in reserved or reserved[key] == project.iam_group
            assert (_quota(cq, flavor_name(key)) is not None) == visible, (key, cq["metadata"]["name"])
        assert (_quota(_interactive(objs), flavor_name(key)) is not None) == (key not in reserved)


def test_interactive_work_outranks_batch_and_reclaims_borrowed_quota(report: Preview) -> None:
    objs = kueue_objects(report.plan)
    prio = {o["metadata"]["name"]: o["value"] for o in _by_kind(objs, "WorkloadPriorityClass")}
    assert prio["interactive"] > prio["batch"]
    interactive = _interactive(objs)["spec"]["preemption"]
    # a notebook takes back the shared pool from batch work that borrowed it ...
    assert interactive["reclaimWithinCohort"] == "Any"
    # ... and may borrow idle project quota, preempting only batch work there
    assert interactive["borrowWithinCohort"]["policy"] == "LowerPriority"
    assert interactive["borrowWithinCohort"]["maxPriorityThreshold"] == PRIORITIES["batch"] < prio["interactive"]
    for cq in _projects(objs):
        pre = cq["spec"]["preemption"]
        # batch work reclaims its project's quota only from lower priorities: never from notebooks
        assert pre["reclaimWithinCohort"] == "LowerPriority"
        assert pre["borrowWithinCohort"]["maxPriorityThreshold"] < prio["interactive"]


def test_notebooks_are_interactive_workloads(report: Preview) -> None:
    objs = kueue_objects(report.plan)
    (lq,) = [o for o in _by_kind(objs, "LocalQueue") if o["metadata"]["name"] == INTERACTIVE_QUEUE]
    assert lq["spec"]["clusterQueue"] == INTERACTIVE_QUEUE
    hub = [r for r in report.run.by_type("kubernetes:helm.sh/v3:Release") if r.inputs["name"] == "jupyterhub"]
    if not hub:
        return
    labels = hub[0].inputs["values"]["singleuser"]["extraLabels"]
    assert labels["kueue.x-k8s.io/queue-name"] == INTERACTIVE_QUEUE
    assert labels["kueue.x-k8s.io/priority-class"] == "interactive"
    (ns,) = [r for r in report.run.by_type("kubernetes:core/v1:Namespace")
             if r.inputs["metadata"]["name"] == lq["metadata"]["namespace"]]
    selector = _interactive(objs)["spec"]["namespaceSelector"]["matchLabels"]
    assert selector.items() <= ns.inputs["metadata"]["labels"].items()


def test_every_project_has_namespace_queue_access_and_default_deny(report: Preview) -> None:
    objs = project_objects(report.plan) + kueue_objects(report.plan)
    for name, project in report.env.projects.items():
        ns = project.namespace or name
        assert any(o["kind"] == "Namespace" and o["metadata"]["name"] == ns for o in objs)
        lq = [o for o in objs if o["kind"] == "LocalQueue" and o["metadata"]["namespace"] == ns]
        assert len(lq) == 1 and lq[0]["spec"]["clusterQueue"] == name
        rb = [o for o in objs if o["kind"] == "RoleBinding" and o["metadata"]["namespace"] == ns]
        assert rb and rb[0]["subjects"][0]["name"].endswith(project.iam_group)
        # members get the project role, narrower than `edit` (tests/security/test_rbac.py says how)
        assert [b["roleRef"] for b in rb] == [{"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                               "name": projects.MEMBER_ROLE}]
        # every pod of the namespace isolated in both directions (allows are listed and judged in
        # tests/security/test_reachability.py)
        deny = [o for o in objs if o["kind"] == "NetworkPolicy" and o["metadata"]["namespace"] == ns
                and o["metadata"]["name"] == "default-deny"]
        assert deny and deny[0]["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def test_registered_objects_are_the_planned_ones(report: Preview) -> None:
    """What the stack registers is what plan writes to build/<env>/k8s/ (and what tests validate)."""
    planned = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o
               for o in kueue_objects(report.plan)}
    registered = [r for r in report.run.registrations if r.type.startswith("kubernetes:kueue.x-k8s.io/")]
    assert len(registered) == len(planned)
    for r in registered:
        inputs = redact(r.inputs)
        key = (inputs["kind"], inputs["metadata"].get("namespace"), inputs["metadata"]["name"])
        assert inputs == planned[key]
    docs = list(YAML(typ="safe", pure=True).load_all(report.artifacts["k8s/kueue.yaml"]))
    assert [d for d in docs if d["apiVersion"] == versions.KUEUE_API] == list(planned.values())


def test_gpu_operator_gets_our_mig_config_and_charts_are_pinned(report: Preview) -> None:
    releases = {r.inputs["name"]: r for r in report.run.by_type("kubernetes:helm.sh/v3:Release")}
    expected = {"gpu-operator", "kueue", "cert-manager", "kube-prometheus-stack"}
    env = report.env
    if env.storage.nfs is not None:
        expected |= {"nfs-subdir-external-provisioner"}
        if env.services.jupyterhub is not None:
            expected |= {"jupyterhub"}
        if env.services.harbor is not None:
            expected |= {"harbor"}
    if env.storage.juicefs is not None and env.storage.juicefs.enabled:
        expected |= {"juicefs-csi-driver"}
    if env.storage.block is not None:
        expected |= {"openstack-cinder-csi"}
    assert set(releases) == expected
    for name, rel in releases.items():
        assert rel.inputs["version"] == versions.CHARTS[name][2]
    values = releases["gpu-operator"].inputs["values"]
    assert values["migManager"]["config"]["name"] == "aiinfn-mig-parted-config"
    assert values["mig"]["strategy"] == report.env.kubernetes.mig_strategy
    assert values["driver"]["enabled"] is False  # drivers come from the passthrough VMs
    (cm,) = [r for r in report.run.by_type("kubernetes:core/v1:ConfigMap")
             if r.inputs["metadata"]["name"] == "aiinfn-mig-parted-config"]
    config = YAML(typ="safe", pure=True).load(cm.inputs["data"]["config.yaml"])
    assert config == report.plan.mig_parted_config()
    for node in report.plan.nodes:
        label = node.labels.get("nvidia.com/mig.config")
        if label:
            assert label in config["mig-configs"]


def test_cluster_credentials_stay_secret(report: Preview) -> None:
    (provider,) = report.run.by_type("pulumi:providers:kubernetes")
    assert is_secret(provider.inputs["kubeconfig"])
    assert redact(provider.inputs)["kubeconfig"] == "[secret]"


def test_each_flavor_selects_exactly_the_nodes_offering_its_kind(report: Preview) -> None:
    """A ResourceFlavor's node labels match every node that offers the kind and no other node, so a
    workload admitted on that flavor lands where its accelerator is."""
    flavors = {o["metadata"]["name"]: o for o in kueue_objects(report.plan) if o["kind"] == "ResourceFlavor"}
    for key, cap in report.plan.capacity.items():
        selector = flavors[flavor_name(key)]["spec"]["nodeLabels"].items()
        for node in report.plan.nodes:
            assert (selector <= node.labels.items()) == (node.name in cap.nodes), (key, node.name)


def test_every_registered_kubernetes_object_is_in_build_k8s(report: Preview) -> None:
    """`aiinfn plan` writes every Kubernetes object the stack registers (Secrets aside, whose values
    are secret) and every Helm values file, identical to what is registered."""
    written: dict[tuple[str, str | None, str], dict[str, Any]] = {}
    for path, text in report.artifacts.items():
        if path.startswith("k8s/") and not path.startswith("k8s/values/"):
            for doc in YAML(typ="safe", pure=True).load_all(text):
                written[(doc["kind"], doc["metadata"].get("namespace"), doc["metadata"]["name"])] = doc
    skip = ("kubernetes:helm.sh/v3:Release", "kubernetes:core/v1:Secret")
    registered = [r for r in report.run.registrations if r.type.startswith("kubernetes:") and r.type not in skip]
    assert registered
    for r in registered:
        inputs = redact(r.inputs)
        key = (inputs["kind"], inputs["metadata"].get("namespace"), inputs["metadata"]["name"])
        assert key in written, key
        assert written[key] == inputs, key
    for r in report.run.by_type("kubernetes:helm.sh/v3:Release"):
        values = YAML(typ="safe", pure=True).load(report.artifacts[f"k8s/values/{r.inputs['name']}.yaml"])
        assert values == redact(r.inputs["values"]), r.inputs["name"]


BUILTIN_GROUPS = ("v1", "apps/v1", "batch/v1", "rbac.authorization.k8s.io/v1", "networking.k8s.io/v1",
                  "storage.k8s.io/v1", "admissionregistration.k8s.io/v1")


def test_every_builtin_object_written_is_valid_for_the_pinned_kubernetes(report: Preview) -> None:
    """Strict OpenAPI validation (kubernetes-validate, the pinned minor) of every built-in object in
    build/<env>/k8s/; custom resources are checked against their CRDs in tests/artifacts."""
    import kubernetes_validate

    checked = 0
    for path, text in report.artifacts.items():
        if not path.startswith("k8s/") or path.startswith("k8s/values/"):
            continue
        for doc in YAML(typ="safe", pure=True).load_all(text):
            if doc["apiVersion"] in BUILTIN_GROUPS:
                kubernetes_validate.validate(doc, versions.KUBERNETES, strict=True)
                checked += 1
    assert checked >= 20
