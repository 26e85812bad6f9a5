"""An event's objects at one site: its namespace, queue, access, and its registration with the hub.

Registered by the event's own stack (scope ``event``), on the site's cluster, next to the site's
objects and never in place of one: every object here is named after the event, so creating or
destroying the event's stack cannot touch anything the site's stack owns.

* namespace ``event-<name>`` (labelled with the event, Pod Security ``restricted``), isolated as a
  tenant (services.network.tenant) but for the hub: its proxy and the hub reach the participants'
  notebooks, which reach the hub's API;
* a ClusterQueue ``event-<name>`` in the site's cohort holding the units the event is allocated at
  this site, and a LocalQueue ``default`` in the event's namespace;
* the tutors' IAM group gets what a project member gets (``aiinfn-project-member``), participants may
  read the namespace (``view``);
* the participants' profiles name the accelerator's node labels and no toleration: Kueue admits each
  notebook on the event's flavor and adds that flavor's tolerations itself (services.policy refuses a
  toleration of the platform's taints written into a tenant's pod);
* a registration ConfigMap in the hub's namespace: the event's groups, window and profiles, which the
  site's hub reads to let participants log in during the window and show them the event's profiles.
"""

from __future__ import annotations

import json
from typing import Any

from ..config.models import Event
from ..planning import Plan
from ..planning.events import EventAllocation
from ..planning.labels import (
    EVENT_LABEL,
    HUB_REGISTRATION_LABEL,
    KUEUE_MANAGED_LABEL,
    QUEUE_NAME_LABEL,
)
from . import jupyterhub, kueue, network, projects
from .bundle import Bundle, Manifest, manifests, namespace_object


def namespace(event: Event) -> dict[str, Any]:
    return namespace_object(event.namespace, "restricted", {EVENT_LABEL: event.name, KUEUE_MANAGED_LABEL: "true"})


def cluster_queue(event: Event, plan: Plan, alloc: EventAllocation) -> dict[str, Any]:
    caps = {k: c for k, c in plan.capacity.items() if alloc.units.get(k)}
    return {
        "apiVersion": kueue.KUEUE_API,
        "kind": "ClusterQueue",
        "metadata": {"name": event.namespace, "labels": {EVENT_LABEL: event.name}},
        "spec": {
            "cohortName": kueue.COHORT,
            "namespaceSelector": {"matchLabels": {EVENT_LABEL: event.name}},
            "queueingStrategy": "BestEffortFIFO",
            "preemption": {"withinClusterQueue": "LowerPriority", "reclaimWithinCohort": "LowerPriority"},
            "resourceGroups": kueue.resource_groups(
                caps, alloc.units, int(alloc.cpu + 0.999999), int(alloc.memory_gb + 0.999999), None
            ),
        },
    }


def profiles(event: Event, plan: Plan, alloc: EventAllocation) -> list[dict[str, Any]]:
    """The participants' profiles at this site: one per kind they are allocated here, in preference order."""
    share = event.per_participant
    out: list[dict[str, Any]] = []
    for key in share.accelerators:
        if not alloc.units.get(key):
            continue
        kind = plan.capacity[key].kind
        out.append({
            "display_name": f"{event.name}: {key}",
            "slug": f"{event.name}-{jupyterhub.profile_slug(key)}",
            "description": f"{event.description or event.name}: one {key}",
            "kubespawner_override": {
                "namespace": event.namespace,
                "image": event.image,
                "node_selector": dict(kind.node_labels),
                "extra_resource_limits": {kind.resource: "1"},
                "extra_resource_guarantees": {kind.resource: "1"},
                "cpu_guarantee": share.cpu,
                "cpu_limit": share.cpu,
                "mem_guarantee": f"{share.memory_gb:g}G",
                "mem_limit": f"{share.memory_gb:g}G",
                "extra_labels": {QUEUE_NAME_LABEL: kueue.LOCAL_QUEUE},
            },
        })
    if not share.accelerators:
        out.append({
            "display_name": f"{event.name}",
            "slug": event.name,
            "description": event.description or event.name,
            "kubespawner_override": {
                "namespace": event.namespace,
                "image": event.image,
                "extra_labels": {QUEUE_NAME_LABEL: kueue.LOCAL_QUEUE},
                "cpu_guarantee": share.cpu,
                "cpu_limit": share.cpu,
                "mem_guarantee": f"{share.memory_gb:g}G",
                "mem_limit": f"{share.memory_gb:g}G",
            },
        })
    return out


def registration(event: Event, plan: Plan, alloc: EventAllocation) -> dict[str, Any]:
    """What the site's hub learns of the event: who may log in, when, and with which profiles."""
    doc = {
        "event": event.name,
        "groups": [event.iam_group, *([event.tutors_group] if event.tutors_group else [])],
        "admin_groups": [event.tutors_group] if event.tutors_group else [],
        "starts": event.starts.isoformat(),
        "ends": event.ends.isoformat(),
        "namespace": event.namespace,
        "profiles": profiles(event, plan, alloc),
    }
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {
            "name": f"aiinfn-event-{event.name}",
            "namespace": jupyterhub.NAMESPACE,
            "labels": {HUB_REGISTRATION_LABEL: "event", EVENT_LABEL: event.name},
        },
        "data": {"event.json": json.dumps(doc, indent=2, sort_keys=True)},
    }


def access(event: Event) -> list[dict[str, Any]]:
    ns = event.namespace
    out: list[dict[str, Any]] = [
        {
            "apiVersion": projects.RBAC_API,
            "kind": "RoleBinding",
            "metadata": {"name": "event-participants", "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
            "subjects": [projects.group_subject(event.iam_group)],
        }
    ]
    if event.tutors_group:
        out.append(projects.member_binding("event-tutors", ns, event.tutors_group))
    return out


#: zero-to-jupyterhub's pod labels: the proxy and the hub (in the hub's namespace).
HUB_PODS = {"app": "jupyterhub", "component": "hub"}
PROXY_PODS = {"app": "jupyterhub", "component": "proxy"}
NOTEBOOK_PORT = 8888
HUB_API_PORT = 8081


def network_policies(event: Event, plan: Plan) -> list[dict[str, Any]]:
    """A tenant's isolation, plus the hub's path to the participants' notebooks and theirs to its API."""
    ns = event.namespace
    hub = jupyterhub.NAMESPACE
    return [
        *network.tenant(ns, network.Ranges.of(plan)),
        network.policy("allow-hub", ns, ingress=[{
            "from": [network.in_namespace(hub, PROXY_PODS), network.in_namespace(hub, HUB_PODS)],
            "ports": network.tcp(NOTEBOOK_PORT),
        }], egress=[{"to": [network.in_namespace(hub, HUB_PODS)], "ports": network.tcp(HUB_API_PORT)}]),
    ]


def bundle(event: Event, plan: Plan, alloc: EventAllocation) -> Bundle:
    """The event's objects at the site ``plan`` describes."""
    ns = namespace(event)
    items: list[Manifest] = [Manifest(f"ns-{event.namespace}", (), ns)]
    items.extend(manifests(*access(event), *network_policies(event, plan)))
    items.extend(manifests(
        cluster_queue(event, plan, alloc),
        kueue.local_queue(kueue.LOCAL_QUEUE, event.namespace, event.namespace),
    ))
    items.extend(manifests(registration(event, plan, alloc)))
    return Bundle("event", tuple(items))
