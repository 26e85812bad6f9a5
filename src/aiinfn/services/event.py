"""An event's objects at one site: its namespaces, queue, access, warm seats, image pre-pull, and its
registration with the hub.

Registered by the event's own stack (scope ``event``), on the site's cluster, next to the site's
objects and never in place of one: every object here is named after the event (or lives in one of its
namespaces), so creating or destroying the event's stack cannot touch anything the site's stack owns.

* namespace ``event-<name>`` (tenant: labelled with the event, Pod Security ``restricted``, bound by
  the tenant admission policies, isolated as a tenant by services.network.tenant) where the
  participants' notebooks run, plus the hub's paths to them: its proxy and the hub reach the
  notebooks, which reach the hub's API and its tokens service; the hub's service account may spawn
  there (``notebooks.hub_role``, the hub's own rule for a namespace it spawns into);
* a ClusterQueue ``event-<name>`` in the site's events cohort (``kueue.EVENTS_COHORT``, whose own quota
  is the site's event reserve) with **no quota of its own**: every resource has nominal quota 0 and a
  borrowing limit of the event's allocation at this site, so the queue adds nothing to the cohort
  (Kueue can never admit more than exists) and takes at most its seats; it reclaims the reserve from
  whoever borrowed it (hierarchical reclaim: the events cohort is within its own quota, the borrower
  is not), never preempts another event's queue (``borrowWithinCohort: Never``), and within itself a
  notebook preempts a placeholder. With ``may_take_guarantees`` the limit includes units projects are
  guaranteed: those can only be borrowed while idle, and are then held for the window (project work
  runs at ``batch`` at most, below what the event's workloads run at). A LocalQueue ``default`` in
  each namespace whose workloads go through it;
* tutors (``tutors_group``) get what a project member gets (``aiinfn-project-member``), participants
  may read the namespace (``view``): they act through the hub; the batch service's Role
  (``services.batch.event_rbac``, where the site runs it) lets participants queue batch jobs in the
  event's queue during the window;
* warm seats: in ``event-<name>-hold`` (a platform namespace of the event: Kueue-managed, restricted,
  default deny, no tenant label, so only the operator writes there) one Deployment of pause pods per
  kind, each pod one seat (the per-participant CPU and memory and one unit of the kind), as Kueue
  workloads of the event's queue at priority ``event-placeholder`` (500): above ``batch`` (tenants'
  highest, and the interactive queue's borrowing threshold), below ``interactive`` (notebooks, which
  preempt them within the queue). They keep the devices free for participants; the tenant priority
  policy refuses that priority in tenant namespaces, which is why they are not in ``event-<name>``;
* image pre-pull: a DaemonSet in ``event-<name>-pull`` (restricted, default deny, not Kueue-managed)
  on every node of the kinds the event uses here: an init container with the event image (so the
  kubelet pulls it) that exits at once, then a pause container. It must tolerate the accelerator
  taints, which the tenant scheduling policy refuses outside Kueue, and Kueue does not admit
  DaemonSets: hence its own platform namespace, out of the tenant policies' reach;
* the participants' profiles name the accelerator's node labels and no toleration: Kueue admits each
  notebook on the event's flavor and adds that flavor's tolerations itself;
* a registration ConfigMap in the hub's namespace (``registration``): the event's groups, window,
  profiles and assignments, which the site's hub reads;
* at teardown only (``phase="archive"``): one Job per participant's home (the claims ``down`` found in
  the namespace, with the owner the spawner recorded on each), running as that owner, copying it to
  the site's S3 or to a retained claim of the platform NFS.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode

from .. import versions
from ..config.models import Event, SizeLimits
from ..planning import Plan
from ..planning.events import CPU_ONLY, EventAllocation
from ..planning.labels import (
    ACCELERATOR_LABEL,
    ARCHIVE_CLAIM_ANNOTATION,
    EVENT_LABEL,
    HUB_REGISTRATION_LABEL,
    KUEUE_MANAGED_LABEL,
    NAMESPACE_NAME_LABEL,
    OWNER_GID_ANNOTATION,
    OWNER_UID_ANNOTATION,
    PRIORITY_CLASS_LABEL,
    QUEUE_NAME_LABEL,
    ROLE_LABEL,
    accelerator_toleration,
)
from . import batch, jupyterhub, kueue, network, notebooks, projects
from .bundle import Bundle, ConfigSecret, Manifest, Secret, manifests, namespace_object

#: zero-to-jupyterhub's pod labels: the proxy and the hub (in the hub's namespace).
HUB_PODS = {"app": "jupyterhub", "component": "hub"}
PROXY_PODS = {"app": "jupyterhub", "component": "proxy"}
NOTEBOOK_PORT = 8888
HUB_API_PORT = 8081
#: Label of the event's own pods (placeholders, pre-pull, archive), by what they do.
PART_LABEL = "app.kubernetes.io/component"
NOBODY = 65534
#: The archive Job's claim for an NFS archive, and where it mounts things.
ARCHIVE_CLAIM = "aiinfn-archive"
RESTRICTED: dict[str, Any] = {
    "runAsNonRoot": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def hold_namespace(event: Event) -> str:
    return f"{event.namespace}-hold"


def pull_namespace(event: Event) -> str:
    return f"{event.namespace}-pull"


def namespaces(event: Event) -> list[str]:
    """Every namespace the event may have at a site."""
    return [event.namespace, hold_namespace(event), pull_namespace(event)]


def namespace(event: Event) -> dict[str, Any]:
    return namespace_object(event.namespace, "restricted", {EVENT_LABEL: event.name, KUEUE_MANAGED_LABEL: "true"})


def kinds_here(alloc: EventAllocation) -> list[str]:
    """The accelerator kinds the event has seats of here, in preference order."""
    return [k for k, n in alloc.units.items() if n]


def hub_host(plan: Plan) -> str:
    """The site's hub hostname (as the hub's own values name it)."""
    env = plan.env
    hub = env.services.jupyterhub
    return (hub.hostname if hub else None) or env.network.ingress.hostname or f"hub.{env.site.domain}"


# --------------------------------------------------------------------------- the queue


def cluster_queue(event: Event, plan: Plan, alloc: EventAllocation) -> dict[str, Any]:
    """The event's queue: nominal quota 0 everywhere, borrowing at most the event's seats here."""
    caps = {k: c for k, c in plan.capacity.items() if alloc.units.get(k)}
    groups = kueue.resource_groups(caps, {}, 0, 0, None)
    limits = {"cpu": alloc.cpu_quota, "memory": f"{alloc.memory_quota_gb}Gi"}
    for group in groups:
        for flavor in group["flavors"]:
            for r in flavor["resources"]:
                if flavor["name"] == kueue.CPU_FLAVOR:
                    r["borrowingLimit"] = limits[r["name"]]
                else:
                    key = next(k for k in caps if kueue.flavor_name(k) == flavor["name"])
                    r["borrowingLimit"] = alloc.units[key]
    return {
        "apiVersion": kueue.KUEUE_API,
        "kind": "ClusterQueue",
        "metadata": {"name": event.namespace, "labels": {EVENT_LABEL: event.name}},
        "spec": {
            "cohortName": kueue.EVENTS_COHORT,
            "namespaceSelector": {"matchExpressions": [{
                "key": NAMESPACE_NAME_LABEL, "operator": "In", "values": [event.namespace, hold_namespace(event)]}]},
            "queueingStrategy": "BestEffortFIFO",
            "preemption": {
                "withinClusterQueue": "LowerPriority",
                "reclaimWithinCohort": "Any",
                "borrowWithinCohort": {"policy": "Never"},
            },
            "resourceGroups": groups,
        },
    }


# --------------------------------------------------------------------------- the hub


def materials_link(event: Event, plan: Plan) -> str | None:
    """The nbgitpuller link that clones (then, on each click, updates) the event's materials repository
    into ``<event>-materials/`` of a participant's home and opens ``materials.open`` there; beside the
    hub's own copy of the exercises and solutions in ``<event>/`` (aiinfn.hub.materials)."""
    m = event.materials
    if m is None:
        return None
    folder = f"{event.name}-materials"
    target = f"{folder}/{m.open}" if m.open else folder
    query = urlencode({"repo": m.repository, "branch": m.branch, "targetPath": folder,
                       "urlpath": f"lab/tree/{target}"}, quote_via=quote, safe="")
    return f"https://{hub_host(plan)}/hub/user-redirect/git-pull?{query}"


def profile_slug(event: Event, kind: str) -> str:
    return event.name if kind == CPU_ONLY else f"{event.name}-{jupyterhub.profile_slug(kind)}"


def shm_gb(event: Event, plan: Plan) -> int:
    """Each participant's /dev/shm here (GiB): ``per_participant.shm_gb``, else the site's sizing default
    (``max_shm_gb``) at most half the participant's memory, at least 1. It is memory (a memory-backed
    emptyDir counts against the notebook's memory limit), so it never exceeds ``memory_gb``."""
    share = event.per_participant
    if share.shm_gb is not None:
        return share.shm_gb
    hub = plan.env.services.jupyterhub
    site = hub.sizing.default.max_shm_gb if hub is not None else SizeLimits().max_shm_gb
    return max(1, min(site, int(share.memory_gb // 2)))


def profiles(event: Event, plan: Plan, alloc: EventAllocation) -> list[dict[str, Any]]:
    """The participants' profiles at this site: one per kind they have seats of here, in preference
    order (one CPU-only profile for an event without accelerators). Each carries ``shm_gb``, the
    /dev/shm the platform spawner mounts (a memory-backed emptyDir; KubeSpawner ignores the key)."""
    share = event.per_participant
    shm = shm_gb(event, plan)
    labels = {QUEUE_NAME_LABEL: kueue.LOCAL_QUEUE, PRIORITY_CLASS_LABEL: "interactive",
              "hub.jupyter.org/network-access-hub": "true"}
    common = {
        "namespace": event.namespace,
        "image": event.image,
        "cpu_guarantee": share.cpu,
        "cpu_limit": share.cpu,
        "mem_guarantee": f"{share.memory_gb:g}G",
        "mem_limit": f"{share.memory_gb:g}G",
        "extra_labels": labels,
    }
    out: list[dict[str, Any]] = []
    for key in kinds_here(alloc):
        kind = plan.capacity[key].kind
        out.append({
            "display_name": f"{event.name}: {key}",
            "slug": profile_slug(event, key),
            "description": f"{event.description or event.name}: one {key}",
            "shm_gb": shm,
            "kubespawner_override": {
                **common,
                "node_selector": dict(kind.node_labels),
                "extra_resource_limits": {kind.resource: "1"},
                "extra_resource_guarantees": {kind.resource: "1"},
            },
        })
    if not share.accelerators and alloc.participants:
        out.append({"display_name": event.name, "slug": profile_slug(event, CPU_ONLY),
                    "description": event.description or event.name, "shm_gb": shm,
                    "kubespawner_override": dict(common)})
    return out


@dataclass(frozen=True)
class MaterialsState:
    """What ``aiinfn event materials`` has done: solutions released now, participants' copies reset."""

    released: bool = False
    #: username -> when their copy was reset (ISO time, UTC)
    resets: tuple[tuple[str, str], ...] = ()


def materials_block(event: Event, state: MaterialsState | None = None) -> dict[str, Any] | None:
    """The registration's ``materials`` block, built and checked by the hub's own materials library."""
    from ..hub import materials

    m = event.materials
    if m is None:
        return None
    state = state or MaterialsState()
    return materials.block(m.repository, m.branch, exercises=m.exercises.rstrip("/"),
                           solutions=m.solutions.rstrip("/"), solutions_at=m.solutions_at, released=state.released,
                           resets=dict(state.resets))


def registration(event: Event, plan: Plan, alloc: EventAllocation,
                 materials: MaterialsState | None = None) -> dict[str, Any]:
    """What the site's hub learns of the event: who may log in, when, and with which profiles.

    ``event.json`` holds ``event``, ``groups`` (who may log in), ``admin_groups`` (the tutors),
    ``starts`` and ``ends`` (ISO dates, the window), ``namespace`` (where notebooks spawn) and
    ``profiles`` (KubeSpawner profiles), as before; added, for the hub's side (agreed extension, every
    earlier key unchanged): ``site`` (this site), ``assignments`` (roster events: IAM username ->
    the slug of the one profile that person may spawn here; a group member not listed is seated at
    another site and gets no event profile here; empty for a count, where every member sees every
    profile and the queue's limits hold the counts; tutors see every profile) and ``materials``
    (``repository``, ``branch``, ``open``, or null: what the hub's materials copy pulls).
    """
    doc = {
        "event": event.name,
        "groups": [event.iam_group, *([event.tutors_group] if event.tutors_group else [])],
        "admin_groups": [event.tutors_group] if event.tutors_group else [],
        "starts": event.starts.isoformat(),
        "ends": event.ends.isoformat(),
        "namespace": event.namespace,
        "profiles": profiles(event, plan, alloc),
        "site": alloc.site,
        "assignments": {u: profile_slug(event, k) for u, k in sorted(alloc.assignments.items())},
        "materials": materials_block(event, materials),
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


def batch_access(plan: Plan, ns: str) -> list[dict[str, Any]]:
    """The batch service's Role in the event's namespace, when the site runs it (services.batch):
    participants submit to the event's queue during the window. No NetworkPolicy: the service talks to
    the Kubernetes API only, never to a pod of the namespace."""
    env = plan.env
    if env.services.batch is None or env.services.jupyterhub is None:
        return []
    return batch.event_rbac(ns)


def network_policies(event: Event, plan: Plan) -> list[dict[str, Any]]:
    """A tenant's isolation, plus the hub's path to the participants' notebooks and theirs to its API."""
    ns = event.namespace
    hub = jupyterhub.NAMESPACE
    return [
        *network.tenant(ns, network.Ranges.of(plan)),
        network.policy("allow-hub", ns, ingress=[{
            "from": [network.in_namespace(hub, PROXY_PODS), network.in_namespace(hub, HUB_PODS)],
            "ports": network.tcp(NOTEBOOK_PORT),
        }], egress=[{"to": [network.in_namespace(hub, HUB_PODS)],
                     "ports": network.tcp(HUB_API_PORT, jupyterhub.TOKENS_PORT)}]),
    ]


# --------------------------------------------------------------------------- warm seats and pre-pull


def _pod_security(uid: int = NOBODY) -> dict[str, Any]:
    return {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid, "seccompProfile": {"type": "RuntimeDefault"}}


def placeholders(event: Event, plan: Plan, alloc: EventAllocation) -> list[dict[str, Any]]:
    """One Deployment of pause pods per kind: each pod holds one seat through the event's queue."""
    share = event.per_participant
    ns = hold_namespace(event)
    out = []
    counts = alloc.placeholder_units if share.accelerators else {CPU_ONLY: alloc.placeholders}
    for key, n in counts.items():
        if not n:
            continue
        part = f"placeholder-{profile_slug(event, key).removeprefix(event.name + '-') if key != CPU_ONLY else 'cpu'}"
        resources: dict[str, Any] = {"cpu": f"{share.cpu:g}", "memory": f"{share.memory_gb:g}G"}
        selector: dict[str, str] = {ROLE_LABEL: "agent"}
        if key != CPU_ONLY:
            kind = plan.capacity[key].kind
            resources[kind.resource] = "1"
            selector = dict(kind.node_labels)
        labels = {PART_LABEL: part, EVENT_LABEL: event.name}
        out.append({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": part, "namespace": ns, "labels": labels},
            "spec": {
                "replicas": n,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": {**labels, QUEUE_NAME_LABEL: kueue.LOCAL_QUEUE,
                                            PRIORITY_CLASS_LABEL: kueue.EVENT_PLACEHOLDER_PRIORITY[0]}},
                    "spec": {
                        "automountServiceAccountToken": False,
                        "terminationGracePeriodSeconds": 0,
                        "nodeSelector": selector,
                        "securityContext": _pod_security(),
                        "containers": [{
                            "name": "seat",
                            "image": versions.PAUSE_IMAGE,
                            "resources": {"requests": dict(resources), "limits": dict(resources)},
                            "securityContext": dict(RESTRICTED),
                        }],
                    },
                },
            },
        })
    return out


def prepull(event: Event, plan: Plan, alloc: EventAllocation) -> dict[str, Any] | None:
    """The DaemonSet that pulls the event image on every node of the kinds the event uses here."""
    if not event.prepull or not alloc.participants:
        return None
    kinds = [plan.capacity[k].kind for k in kinds_here(alloc)]
    if kinds:
        terms = [{"matchExpressions": [{"key": k, "operator": "In", "values": [v]}
                                       for k, v in sorted(kind.node_labels.items())]} for kind in kinds]
        tolerations = [accelerator_toleration(m) for m in dict.fromkeys(kind.model for kind in kinds)]
    else:
        terms = [{"matchExpressions": [{"key": ROLE_LABEL, "operator": "In", "values": ["agent"]},
                                       {"key": ACCELERATOR_LABEL, "operator": "DoesNotExist"}]}]
        tolerations = []
    small = {"cpu": "10m", "memory": "16Mi"}
    labels = {PART_LABEL: "prepull", EVENT_LABEL: event.name}
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": "prepull", "namespace": pull_namespace(event), "labels": labels},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "automountServiceAccountToken": False,
                    "terminationGracePeriodSeconds": 0,
                    "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": terms}}},
                    "tolerations": tolerations,
                    "securityContext": _pod_security(),
                    "initContainers": [{
                        "name": "pull", "image": event.image, "command": ["sh", "-c", "exit 0"],
                        "resources": {"requests": dict(small), "limits": dict(small)},
                        "securityContext": dict(RESTRICTED),
                    }],
                    "containers": [{
                        "name": "pause", "image": versions.PAUSE_IMAGE,
                        "resources": {"requests": dict(small), "limits": dict(small)},
                        "securityContext": dict(RESTRICTED),
                    }],
                },
            },
        },
    }


# --------------------------------------------------------------------------- teardown


#: Where the platform spawner records the owner of an event home claim (hub/spawner.py): the
#: participant's UID and private GID from the hub's identity database (hub/identity.py).


@dataclass(frozen=True)
class ArchiveClaim:
    """A participant's home claim and its owner, as ``aiinfn event down`` found it."""

    name: str
    uid: int
    gid: int

    def __str__(self) -> str:
        return f"{self.name}:{self.uid}:{self.gid}"

    @classmethod
    def parse(cls, text: str) -> ArchiveClaim:
        """``name:uid:gid`` (a claim name has no colon); ValueError naming the claim when its owner is
        unknown or not a user's (root or a system account)."""
        name, _, rest = str(text).partition(":")
        uid, _, gid = rest.partition(":")
        if not (uid.isdigit() and gid.isdigit()):
            raise ValueError(f"claim {name!r}: its owner's UID/GID is not recorded ({OWNER_UID_ANNOTATION}, "
                             f"{OWNER_GID_ANNOTATION}), so no archive pod can read it as its owner")
        if int(uid) < 1000 or int(gid) < 1000:
            raise ValueError(f"claim {name!r}: owner {uid}:{gid} is root or a system account, not a participant")
        return cls(name, int(uid), int(gid))

    @classmethod
    def of(cls, pvc: dict[str, Any]) -> ArchiveClaim:
        """A claim as ``kubectl get pvc -o json`` lists it."""
        meta = pvc.get("metadata") or {}
        notes = meta.get("annotations") or {}
        return cls.parse(f"{meta.get('name', '')}:{notes.get(OWNER_UID_ANNOTATION, '')}:"
                         f"{notes.get(OWNER_GID_ANNOTATION, '')}")


def archive_job_name(claim: str) -> str:
    """A stable Job name per claim (claim names are up to 63 characters; a Job's must leave room)."""
    import hashlib

    return f"aiinfn-archive-{hashlib.sha256(claim.encode()).hexdigest()[:10]}"


def archive_objects(event: Event, plan: Plan, claims: Sequence[str | ArchiveClaim]
                    ) -> tuple[list[dict[str, Any]], list[Secret]]:
    """The Jobs that copy every participant's home (``claims`` of the event's namespace, each with its
    owner) before the namespace goes: to a retained claim on the platform NFS, under
    ``<directory>/<event>/<site>/<claim>/``, or to the site's S3 under ``<prefix>/<event>/<site>/<claim>/``
    (keys from Pulumi secrets). Nothing for ``teardown: delete`` or when there is no claim.

    Participants' files belong to their own UIDs, often with private modes (0600/0700), and the
    namespace is a tenant's (restricted: no root, no added capability). So there is one Job per claim,
    its pod running as that claim's owner (the UID/GID the spawner recorded on the claim): it reads
    what its owner can, and no pod reads a home that is not its owner's. On NFS an init container
    running as nobody first makes the event's folder sticky and writable by all
    (``mkdir -p -m 1777``, idempotent across the Jobs), so each owner creates and owns its own
    subfolder and none can remove another's."""
    td = event.teardown
    if not claims or td.to == "delete":
        return [], []
    owners = [c if isinstance(c, ArchiveClaim) else ArchiveClaim.parse(c) for c in claims]
    ns = event.namespace
    secrets: list[Secret] = []
    objs: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
    env: list[dict[str, Any]] = [{"name": "HOME", "value": "/tmp"}]
    init: list[dict[str, Any]] = []
    if td.to == "nfs":
        nfs = plan.env.storage.nfs
        storage_class = nfs.storage_class if nfs is not None else ""
        objs.append({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": ARCHIVE_CLAIM, "namespace": ns, "labels": {EVENT_LABEL: event.name}},
            "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": storage_class,
                     "resources": {"requests": {"storage": f"{max(1, len(owners)) * 10}Gi"}}},
        })
        volumes.append({"name": "archive", "persistentVolumeClaim": {"claimName": ARCHIVE_CLAIM}})
        mounts.append({"name": "archive", "mountPath": "/archive"})
        folder = f"/archive/{td.directory}/{event.name}/{plan.env.name}"
        init.append({
            "name": "folder",
            "image": versions.ARCHIVE_IMAGE,
            "command": ["mkdir", "-p", "-m", "1777", folder],
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}},
            "volumeMounts": [{"name": "archive", "mountPath": "/archive"}],
            "securityContext": dict(RESTRICTED) | {"runAsUser": NOBODY, "runAsGroup": NOBODY},
        })
    else:
        s3 = plan.env.storage.s3
        secret = f"{event.namespace}-archive-s3"
        secrets.append(Secret(f"secret-{ns}-{secret}", (f"ns-{ns}",), name=secret, namespace=ns, data={
            "access-key": ConfigSecret(str(td.access_key_secret)),
            "secret-key": ConfigSecret(str(td.secret_key_secret))}))
        env += [
            {"name": "RCLONE_S3_PROVIDER", "value": "Other"},
            {"name": "RCLONE_S3_ENDPOINT", "value": s3.endpoint if s3 else ""},
            {"name": "RCLONE_S3_REGION", "value": s3.region if s3 else ""},
            {"name": "RCLONE_S3_ACCESS_KEY_ID", "valueFrom": {"secretKeyRef": {"name": secret, "key": "access-key"}}},
            {"name": "RCLONE_S3_SECRET_ACCESS_KEY",
             "valueFrom": {"secretKeyRef": {"name": secret, "key": "secret-key"}}},
        ]
        folder = f":s3:{td.bucket}/{td.prefix}/{event.name}/{plan.env.name}"
    for claim in owners:
        labels = {PART_LABEL: "archive", EVENT_LABEL: event.name}
        objs.append({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": archive_job_name(claim.name), "namespace": ns, "labels": labels,
                         "annotations": {ARCHIVE_CLAIM_ANNOTATION: claim.name}},
            "spec": {
                "backoffLimit": 3,
                "template": {
                    "metadata": {"labels": {**labels, QUEUE_NAME_LABEL: kueue.LOCAL_QUEUE}},
                    "spec": {
                        "restartPolicy": "Never",
                        "automountServiceAccountToken": False,
                        "securityContext": _pod_security(claim.uid) | {"runAsGroup": claim.gid},
                        "initContainers": copy.deepcopy(init),
                        "containers": [{
                            "name": "archive",
                            "image": versions.ARCHIVE_IMAGE,
                            # the arguments are the program's own words and the operator's settings: no shell
                            "args": ["copy", "/home-src", f"{folder}/{claim.name}", "--links",
                                     "--stats-one-line", "-v"],
                            "env": copy.deepcopy(env),
                            "resources": {"requests": {"cpu": "500m", "memory": "512Mi"},
                                          "limits": {"cpu": "1", "memory": "1Gi"}},
                            "volumeMounts": [{"name": "home", "mountPath": "/home-src", "readOnly": True},
                                             *copy.deepcopy(mounts)],
                            "securityContext": dict(RESTRICTED),
                        }],
                        "volumes": [{"name": "home", "persistentVolumeClaim": {"claimName": claim.name,
                                                                               "readOnly": True}},
                                    *copy.deepcopy(volumes)],
                    },
                },
            },
        })
    return objs, secrets


# --------------------------------------------------------------------------- the bundle


def bundle(event: Event, plan: Plan, alloc: EventAllocation, *, phase: str = "run",
           claims: Sequence[str | ArchiveClaim] = (), materials: MaterialsState | None = None) -> Bundle:
    """The event's objects at the site ``plan`` describes (``phase="archive"``: plus the archive Job
    over ``claims``, what ``aiinfn event down`` applies before destroying the stack)."""
    ns = event.namespace
    items: list[Any] = [Manifest(f"ns-{ns}", (), namespace(event))]
    items.extend(manifests(*access(event), *notebooks.hub_role(ns), *network_policies(event, plan),
                           *batch_access(plan, ns), after=(f"ns-{ns}",)))
    items.extend(manifests(
        cluster_queue(event, plan, alloc),
        kueue.local_queue(kueue.LOCAL_QUEUE, ns, ns),
        after=(f"ns-{ns}",),
    ))
    holds = placeholders(event, plan, alloc)
    if holds:
        hold = hold_namespace(event)
        items.append(Manifest(f"ns-{hold}", (), namespace_object(hold, "restricted", {KUEUE_MANAGED_LABEL: "true"})))
        items.extend(manifests(*network.baseline(hold, same_namespace=False), after=(f"ns-{hold}",)))
        queue = kueue.local_queue(kueue.LOCAL_QUEUE, hold, ns)
        items.extend(manifests(queue, after=(f"ns-{hold}",)))
        from .bundle import object_key

        items.extend(manifests(*holds, after=(f"ns-{hold}", object_key(queue), f"clusterqueue-{ns}")))
    pull = prepull(event, plan, alloc)
    if pull is not None:
        pns = pull_namespace(event)
        items.append(Manifest(f"ns-{pns}", (), namespace_object(pns, "restricted")))
        items.extend(manifests(*network.baseline(pns, same_namespace=False), pull, after=(f"ns-{pns}",)))
    items.extend(manifests(registration(event, plan, alloc, materials)))
    if phase == "archive":
        objs, secrets = archive_objects(event, plan, claims)
        items.extend(secrets)
        items.extend(manifests(*objs, after=(f"ns-{ns}", *(s.key for s in secrets), f"localqueue-{ns}-default")))
    return Bundle("event", tuple(items))
