"""Kueue: the chart, one ResourceFlavor per accelerator kind, the cohort, its queues and priorities.

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
  so batch work never preempts a running notebook;
* the site's event reserve (``event_reserve``, site policy: a share of each kind's shared pool, CPU
  and memory): a Cohort `aiinfn-events`, child of `aiinfn`, whose own quota is the reserve, taken out
  of the interactive queue's shared pool (so the
  cohort's quotas still add up to exactly the capacity); lent to the tree while no event uses it.
  Events' stacks add their ClusterQueues to it with no quota of their own (planning.events,
  services.event); the priority `event-placeholder` (500, between batch and interactive) is what
  their warm placeholders run at. Both exist whether or not an event does: an event never changes
  the site's objects.

Every workload of a namespace labelled ``kueue.x-k8s.io/managed=true`` (projects, events, and any
namespace of users' notebooks) goes through Kueue, queue label or not (``manageJobsWithoutQueueName``
with ``managedJobsNamespaceSelector`` on that label; Kueue's LocalQueue defaulting puts unlabelled
work in the namespace's ``default`` queue). Only those namespaces: in any other (the platform's own,
the hub's) Kueue manages no pod at all, so their pods are never held back. Configuration API
``config.kueue.x-k8s.io/v1beta2`` (served by Kueue 0.19), with ClusterQueue resource metrics on for
accounting (``metrics.enableClusterQueueResources``).
"""

from __future__ import annotations

import re
from typing import Any

from .. import versions
from ..planning import KindCapacity, Plan
from ..planning.labels import (
    INTERACTIVE_LABEL,
    KIND_LABEL,
    KUEUE_MANAGED_LABEL,
    PLATFORM_LABEL,
    PROJECT_LABEL,
    kind_tolerations,
)
from ..serialize import yaml_dump
from . import network, offload
from .bundle import Bundle, Release, manifests, namespace

NAMESPACE = "kueue-system"
KUEUE_API = versions.KUEUE_API
COHORT = "aiinfn"
CPU_FLAVOR = "cpu"
LOCAL_QUEUE = "default"
INTERACTIVE_QUEUE = "interactive"
PRIORITIES = {"interactive": 1000, "batch": 100}
#: The cohort of events' ClusterQueues (a child of COHORT) and its priority of warm placeholders: above
#: what tenants may use (batch) and what the interactive queue preempts while borrowing, below notebooks.
EVENTS_COHORT = "aiinfn-events"
EVENT_PLACEHOLDER_PRIORITY = ("event-placeholder", 500)
RELEASE = "kueue"
CONFIG_API = "config.kueue.x-k8s.io/v1beta2"
#: Ports of the controller manager: visibility API, admission webhooks (both called by the API
#: server) and metrics.
VISIBILITY_PORT = 8082
WEBHOOK_PORT = 9443
METRICS_PORT = 8443


def flavor_name(kind: str) -> str:
    """``A100-80GB/1g.10gb`` -> ``a100-80gb-1g.10gb`` (a valid ResourceFlavor name)."""
    return re.sub(r"[^a-z0-9.-]+", "-", kind.lower()).strip("-.")


def manager_config() -> dict[str, Any]:
    """Kueue's Configuration: every workload of a managed namespace through Kueue, and only there."""
    return {
        "apiVersion": CONFIG_API,
        "kind": "Configuration",
        "manageJobsWithoutQueueName": True,
        "managedJobsNamespaceSelector": {"matchLabels": {KUEUE_MANAGED_LABEL: "true"}},
        "metrics": {"enableClusterQueueResources": True},
        "integrations": {"frameworks": ["batch/job", "pod", "jobset.x-k8s.io/jobset"]},
    }


def values() -> dict[str, Any]:
    return {
        "enablePrometheus": True,
        "managerConfig": {"controllerManagerConfigYaml": yaml_dump(manager_config())},
    }


def network_policies(plan: Plan) -> list[dict[str, Any]]:
    """The controller manager: it calls the API server, which calls its webhooks and visibility API;
    Prometheus scrapes its metrics."""
    ranges = network.Ranges.of(plan)
    return [
        *network.baseline(NAMESPACE),
        network.allow_apiserver(NAMESPACE, ranges),
        network.allow_from_apiserver(NAMESPACE, ranges, [WEBHOOK_PORT, VISIBILITY_PORT]),
        network.allow_from_prometheus(NAMESPACE, [METRICS_PORT]),
    ]


def resource_flavors(plan: Plan) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"apiVersion": KUEUE_API, "kind": "ResourceFlavor", "metadata": {"name": CPU_FLAVOR}, "spec": {}}
    ]
    reserved = plan.reserved_kinds()
    for key, cap in plan.capacity.items():
        out.append(
            {
                "apiVersion": KUEUE_API,
                "kind": "ResourceFlavor",
                "metadata": {"name": flavor_name(key), "labels": {KIND_LABEL: flavor_name(key)}},
                "spec": {
                    "nodeLabels": dict(cap.kind.node_labels),
                    "tolerations": kind_tolerations(cap.kind.model, reserved.get(key)),
                },
            }
        )
    return out


def resource_groups(
    caps: dict[str, KindCapacity], quota: dict[str, int], cpu: int, mem: int, borrowing: bool | None
) -> list[dict[str, Any]]:
    """resourceGroups: cpu+memory on the `cpu` flavor, then one group per accelerator resource."""

    def entry(name: str, amount: int | str, capped: bool = True) -> dict[str, Any]:
        e: dict[str, Any] = {"name": name, "nominalQuota": amount}
        if borrowing is False and capped:
            e["borrowingLimit"] = 0
        return e

    # `borrowing: false` caps a project at its accelerator guarantee. CPU and memory are guaranteed to no
    # project (the cohort's interactive queue holds them all), so capping them too would admit nothing.
    groups: list[dict[str, Any]] = [
        {
            "coveredResources": ["cpu", "memory"],
            "flavors": [{"name": CPU_FLAVOR, "resources": [entry("cpu", cpu, capped=bool(cpu)),
                                                           entry("memory", f"{mem}Gi", capped=bool(mem))]}],
        }
    ]
    by_resource: dict[str, list[str]] = {}
    for key, cap in caps.items():
        by_resource.setdefault(cap.kind.resource, []).append(key)
    for resource, kinds in by_resource.items():
        groups.append(
            {
                "coveredResources": [resource],
                "flavors": [{"name": flavor_name(k), "resources": [entry(resource, quota.get(k, 0))]} for k in kinds],
            }
        )
    return groups


def cohort() -> dict[str, Any]:
    return {"apiVersion": KUEUE_API, "kind": "Cohort", "metadata": {"name": COHORT}, "spec": {}}


def event_reserve(plan: Plan) -> tuple[dict[str, int], int, int]:
    """The site's event reserve: units per kind of the cohort, CPU cores, memory GiB (0 where none)."""
    from ..planning.events import reserve_of

    res = plan.env.event_reserve
    return reserve_of(plan), res.cpu, res.memory_gb


def events_cohort(plan: Plan) -> dict[str, Any]:
    """The cohort events' queues join: its own quota is the site's event reserve (lent while unused)."""
    units, cpu, mem = event_reserve(plan)
    return {
        "apiVersion": KUEUE_API,
        "kind": "Cohort",
        "metadata": {"name": EVENTS_COHORT},
        "spec": {"parentName": COHORT,
                 "resourceGroups": resource_groups(plan.visible_kinds(None), units, cpu, mem, None)},
    }


def interactive_queue(plan: Plan) -> dict[str, Any]:
    """The ClusterQueue of notebooks: it owns the shared pool and all CPU and memory.

    Batch work of any project may borrow what it leaves idle; a notebook that needs it back preempts
    that batch work (reclaimWithinCohort), and may itself borrow idle project quota from lower
    priority work. Project queues reclaim only from lower priorities, so a running notebook is never
    preempted for batch work.
    """
    cpu, mem = plan.schedulable()
    reserved, reserved_cpu, reserved_mem = event_reserve(plan)
    shared = {k: n - reserved.get(k, 0) for k, n in plan.shared_pool.items()}
    cpu, mem = cpu - reserved_cpu, mem - reserved_mem
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
            "resourceGroups": resource_groups(plan.visible_kinds(None), shared, cpu, mem, None),
        },
    }


def local_queue(name: str, namespace: str, cluster_queue: str) -> dict[str, Any]:
    return {
        "apiVersion": KUEUE_API,
        "kind": "LocalQueue",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"clusterQueue": cluster_queue},
    }


def project_queues(plan: Plan) -> list[dict[str, Any]]:
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
                    "resourceGroups": offload.lend(plan, resource_groups(
                        plan.visible_kinds(q.iam_group), q.nominal, 0, 0, q.borrowing), q.borrowing),
                },
            }
        )
    return out


def priority_classes() -> list[dict[str, Any]]:
    name, value = EVENT_PLACEHOLDER_PRIORITY
    return [
        *(
            {
                "apiVersion": KUEUE_API,
                "kind": "WorkloadPriorityClass",
                "metadata": {"name": name},
                "value": value,
                "description": f"{name} workloads"
                + (": notebooks and sessions, always admitted first" if name == "interactive" else ": preemptible"),
            }
            for name, value in PRIORITIES.items()
        ),
        {
            "apiVersion": KUEUE_API,
            "kind": "WorkloadPriorityClass",
            "metadata": {"name": name},
            "value": value,
            "description": "events' warm placeholders: held against borrowers, given up to participants",
        },
    ]


def objects(plan: Plan, interactive_namespace: str | None) -> list[dict[str, Any]]:
    """Every Kueue object of the site: flavors, cohort, queues, local queues, priorities."""
    return [
        *resource_flavors(plan),
        cohort(),
        events_cohort(plan),
        interactive_queue(plan),
        *project_queues(plan),
        *([local_queue(INTERACTIVE_QUEUE, interactive_namespace, INTERACTIVE_QUEUE)] if interactive_namespace else []),
        *(local_queue(LOCAL_QUEUE, q.namespace, q.project) for q in plan.quotas),
        *priority_classes(),
    ]


def bundle(plan: Plan, interactive_namespace: str | None) -> Bundle:
    """The Kueue release and the site's queues (the interactive LocalQueue in ``interactive_namespace``)."""
    return Bundle(
        "kueue",
        (
            # the controller manager runs as non-root, no privilege, seccomp RuntimeDefault (chart defaults)
            namespace(NAMESPACE, "restricted", {PLATFORM_LABEL: "true"}),
            *manifests(*network_policies(plan), after=(f"ns-{NAMESPACE}",)),
            Release(RELEASE, (f"ns-{NAMESPACE}",), chart="kueue", namespace=NAMESPACE, values=values(),
                    crd_groups=("kueue.x-k8s.io",)),
            *manifests(*objects(plan, interactive_namespace), after=(RELEASE,)),
        ),
    )
