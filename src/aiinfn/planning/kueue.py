"""Kubernetes objects derived from the plan: Kueue queues and the projects' namespaces and access.

Pure data (plain dicts, exactly the manifests the overlay applies), so the same objects are
validated by the tests against the Kueue CRDs and the Kubernetes OpenAPI schema, written to
build/<env>/k8s/, and registered by stacks/overlay.

Queueing model:
* one ResourceFlavor per accelerator kind (node labels + the tolerations of its node taint), plus
  `cpu` for CPU and memory;
* one Cohort (`aiinfn`); its `interactive` ClusterQueue (notebooks, in the hub's namespace) owns what
  no project is guaranteed (the shared pool, and all CPU and memory), so idle accelerators are
  borrowed by anyone;
* one ClusterQueue per project in that cohort, with nominal quota = floor(share x units), so the
  sum over projects never exceeds capacity; projects may borrow unless `borrowing: false`;
* accelerators reserved for an IAM group (`reserved_for`) appear only in that group's queues, and
  their flavor tolerates the `reserved` taint;
* WorkloadPriorityClasses `interactive` (1000) above `batch` (100): a pending notebook preempts
  batch work that borrowed its quota (reclaimWithinCohort: Any) or that runs on idle project quota it
  borrows (borrowWithinCohort: LowerPriority); project queues reclaim only from lower priorities,
  so batch work never preempts a running notebook.
"""

from __future__ import annotations

import math
import re
from typing import Any

from .. import versions
from ..config.models import Role
from . import Plan
from .capacity import KindCapacity
from .nodes import RESERVED_TAINT, group_label_value

KUEUE_API = versions.KUEUE_API
COHORT = "aiinfn"
CPU_FLAVOR = "cpu"
LOCAL_QUEUE = "default"
INTERACTIVE_QUEUE = "interactive"
#: Namespace label that lets a namespace's pods use the interactive queue (the hub's namespace).
INTERACTIVE_LABEL = "aiinfn.infn.it/interactive"
PRIORITIES = {"interactive": 1000, "batch": 100}
#: Prefix kube-apiserver gives IAM groups from the OIDC token (set by the rke2 role).
OIDC_GROUPS_PREFIX = "oidc:"
PROJECT_LABEL = "aiinfn.infn.it/project"
#: Share of a node kept for the system (kubelet, RKE2, CNI): 1 CPU and 10 % of memory.
SYSTEM_RESERVED_CPU = 1
SYSTEM_RESERVED_MEMORY = 0.10


def flavor_name(kind: str) -> str:
    """``A100-80GB/1g.10gb`` -> ``a100-80gb-1g.10gb`` (a valid ResourceFlavor name)."""
    name = re.sub(r"[^a-z0-9.-]+", "-", kind.lower()).strip("-.")
    return name


def schedulable(plan: Plan) -> tuple[int, int]:
    """CPU cores and memory (GiB) users' pods can get: agents and accelerator nodes, minus reserve."""
    cpu = 0
    mem = 0
    for n in plan.nodes:
        if n.role not in (Role.AGENT, Role.GPU, Role.FPGA):
            continue
        f = plan.env.flavors[n.flavor]
        cpu += max(f.vcpus - SYSTEM_RESERVED_CPU, 0)
        mem += math.floor(f.ram_gb * (1 - SYSTEM_RESERVED_MEMORY))
    return cpu, mem


def reserved_kinds(plan: Plan) -> dict[str, str]:
    """Kinds whose nodes are all reserved for one IAM group: kind -> group."""
    groups: dict[str, set[str | None]] = {}
    for key, cap in plan.capacity.items():
        groups[key] = {plan.node(n).reserved_for for n in cap.nodes}
    return {k: next(iter(g)) for k, g in groups.items() if len(g) == 1 and None not in g}  # type: ignore[misc]


def _visible(plan: Plan, group: str | None) -> dict[str, KindCapacity]:
    """The kinds a queue may hold: all but those reserved for another group (None: the cohort)."""
    reserved = reserved_kinds(plan)
    return {k: c for k, c in plan.capacity.items() if k not in reserved or reserved[k] == group}


def resource_flavors(plan: Plan) -> list[dict[str, Any]]:
    out = [{"apiVersion": KUEUE_API, "kind": "ResourceFlavor", "metadata": {"name": CPU_FLAVOR}, "spec": {}}]
    reserved = reserved_kinds(plan)
    for key, cap in plan.capacity.items():
        tolerations = [
            {"key": "aiinfn.infn.it/accelerator", "operator": "Equal", "value": cap.kind.model, "effect": "NoSchedule"}
        ]
        if key in reserved:
            tolerations.append(
                {"key": RESERVED_TAINT, "operator": "Equal", "value": group_label_value(reserved[key]),
                 "effect": "NoSchedule"}
            )
        out.append(
            {
                "apiVersion": KUEUE_API,
                "kind": "ResourceFlavor",
                "metadata": {"name": flavor_name(key), "labels": {"aiinfn.infn.it/kind": flavor_name(key)}},
                "spec": {
                    "nodeLabels": dict(cap.kind.node_labels),
                    "tolerations": tolerations,
                },
            }
        )
    return out


def _groups(
    caps: dict[str, KindCapacity], quota: dict[str, int], cpu: int | None, mem: int | None, borrowing: bool | None
) -> list[dict[str, Any]]:
    """resourceGroups: cpu+memory on the `cpu` flavor, then one group per accelerator resource."""

    def entry(name: str, amount: int | str) -> dict[str, Any]:
        e: dict[str, Any] = {"name": name, "nominalQuota": amount}
        if borrowing is False:
            e["borrowingLimit"] = 0
        return e

    groups: list[dict[str, Any]] = [
        {
            "coveredResources": ["cpu", "memory"],
            "flavors": [
                {"name": CPU_FLAVOR, "resources": [entry("cpu", cpu or 0), entry("memory", f"{mem or 0}Gi")]}
            ],
        }
    ]
    by_resource: dict[str, list[str]] = {}
    for key, cap in caps.items():
        by_resource.setdefault(cap.kind.resource, []).append(key)
    for resource, kinds in by_resource.items():
        groups.append(
            {
                "coveredResources": [resource],
                "flavors": [
                    {"name": flavor_name(k), "resources": [entry(resource, quota.get(k, 0))]} for k in kinds
                ],
            }
        )
    return groups


def cohort(plan: Plan) -> dict[str, Any]:
    return {"apiVersion": KUEUE_API, "kind": "Cohort", "metadata": {"name": COHORT}, "spec": {}}


def interactive_queue(plan: Plan) -> dict[str, Any]:
    """The ClusterQueue of notebooks: it owns the shared pool and all CPU and memory.

    Batch work of any project may borrow what it leaves idle; a notebook that needs it back preempts
    that batch work (reclaimWithinCohort), and may itself borrow idle project quota from lower
    priority work. Project queues reclaim only from lower priorities, so a running notebook is never
    preempted for batch work.
    """
    cpu, mem = schedulable(plan)
    return {
        "apiVersion": KUEUE_API,
        "kind": "ClusterQueue",
        "metadata": {"name": INTERACTIVE_QUEUE},
        "spec": {
            "cohortName": COHORT,
            "namespaceSelector": {"matchLabels": {INTERACTIVE_LABEL: "true"}},
            "queueingStrategy": "BestEffortFIFO",
            "preemption": {
                "withinClusterQueue": "Never",
                "reclaimWithinCohort": "Any",
                "borrowWithinCohort": {"policy": "LowerPriority", "maxPriorityThreshold": PRIORITIES["batch"]},
            },
            "resourceGroups": _groups(_visible(plan, None), plan.shared_pool, cpu, mem, None),
        },
    }


def interactive_local_queue(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": KUEUE_API,
        "kind": "LocalQueue",
        "metadata": {"name": INTERACTIVE_QUEUE, "namespace": namespace},
        "spec": {"clusterQueue": INTERACTIVE_QUEUE},
    }


def cluster_queues(plan: Plan) -> list[dict[str, Any]]:
    out = []
    for q in plan.quotas:
        out.append(
            {
                "apiVersion": KUEUE_API,
                "kind": "ClusterQueue",
                "metadata": {"name": q.project, "labels": {PROJECT_LABEL: q.project}},
                "spec": {
                    "cohortName": COHORT,
                    "namespaceSelector": {"matchLabels": {PROJECT_LABEL: q.project}},
                    "queueingStrategy": "BestEffortFIFO",
                    "preemption": {
                        "withinClusterQueue": "LowerPriority",
                        "reclaimWithinCohort": "LowerPriority",
                        "borrowWithinCohort": {
                            "policy": "LowerPriority",
                            "maxPriorityThreshold": PRIORITIES["batch"],
                        },
                    },
                    "resourceGroups": _groups(_visible(plan, q.iam_group), q.nominal, 0, 0, q.borrowing),
                },
            }
        )
    return out


def local_queues(plan: Plan) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": KUEUE_API,
            "kind": "LocalQueue",
            "metadata": {"name": LOCAL_QUEUE, "namespace": q.namespace},
            "spec": {"clusterQueue": q.project},
        }
        for q in plan.quotas
    ]


def priority_classes() -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": KUEUE_API,
            "kind": "WorkloadPriorityClass",
            "metadata": {"name": name},
            "value": value,
            "description": f"{name} workloads"
            + (": notebooks and sessions, always admitted first" if name == "interactive" else ": preemptible"),
        }
        for name, value in PRIORITIES.items()
    ]


def kueue_objects(plan: Plan) -> list[dict[str, Any]]:
    from .jupyterhub import NAMESPACE as HUB_NAMESPACE

    return [
        *resource_flavors(plan),
        cohort(plan),
        interactive_queue(plan),
        *cluster_queues(plan),
        interactive_local_queue(HUB_NAMESPACE),
        *local_queues(plan),
        *priority_classes(),
    ]


def project_objects(plan: Plan) -> list[dict[str, Any]]:
    """Namespaces, access for IAM groups and default-deny network policies of every project."""
    out: list[dict[str, Any]] = []
    for q in plan.quotas:
        ns = q.namespace
        out.append(
            {
                "apiVersion": "v1",
                "kind": "Namespace",
                "metadata": {"name": ns, "labels": {PROJECT_LABEL: q.project, "kueue.x-k8s.io/managed": "true"}},
            }
        )
        out.append(
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "project-members", "namespace": ns},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": OIDC_GROUPS_PREFIX + q.iam_group}
                ],
            }
        )
        out.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": "default-deny-ingress", "namespace": ns},
                "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
            }
        )
        out.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": "allow-same-namespace", "namespace": ns},
                "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"from": [{"podSelector": {}}]}]},
            }
        )
    out.append(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "aiinfn-platform-admins"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [
                {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": OIDC_GROUPS_PREFIX + g}
                for g in plan.env.iam.admin_groups
            ],
        }
    )
    return out
