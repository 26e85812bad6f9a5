"""What the hub reads from the Kubernetes API (shipped to the hub as ``aiinfn_cluster.py``).

Everything here is a read, through KubeSpawner's own client and configuration (in the pod: the hub's
ServiceAccount token; in tests: a kubeconfig pointing at a stand-in API):

* **event registrations**: ConfigMaps labelled ``<hub registration label>=event`` in the
  hub's own namespace (``event.json``: event, groups, admin_groups, starts, ends, namespace,
  profiles). The hub's Role allows get/list/watch of ConfigMaps in that namespace only. A malformed
  registration is logged and ignored, never trusted in part.
* **availability per accelerator kind**: the total from the allocatable extended resource of the
  nodes a user may use (nodes reserved for another group, interLink's virtual nodes and cordoned
  nodes left out) and the use from the Kueue ClusterQueues' ``flavorsUsage`` (every accelerator pod
  of a managed namespace is a Kueue workload); how many notebooks already wait for the kind (pending
  Workloads of the notebooks' namespace asking for its node labels).
* **a queued notebook's Workload** (by the pod's UID among the owners), to show its state.
* **the expected wait** for a kind with nothing free (``expected_wait``): every unit in use is released
  at the latest at a known time only when a notebook holds it (its Workload in the notebooks'
  namespace, admitted at the ``Admitted`` condition's ``lastTransitionTime``) and the hub bounds a
  session's life (the culler's ``maxAge``, checked every ``every`` seconds: a session ends at the latest
  ``maxAge + every`` after it started). The culler's idle timeout gives no bound (a session in use is
  never idle) and units held by anything else (batch jobs of other namespaces, which the hub cannot
  read) have no known end. The k-th notebook in the queue (Kueue admits the interactive queue's
  workloads in order of creation at one priority) gets the k-th unit released; one released to a waiter
  is released again at most a session's bound later. So the wait is "at most" that time, or unknown.

The pure functions (``parse_registration``, ``availability``, ``waiting``, ``workload_state``) take
the API's JSON, so they are tested without a cluster. Standard library and kubernetes_asyncio (which
KubeSpawner brings) only.
"""

from __future__ import annotations

import datetime as dt
import heapq
import json
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

#: The label and taint keys of planning/labels.py, handed over in the hub's settings (``labels``:
#: ``hub_registration``, ``reserved_for``, ``virtual_taint``, ``virtual_type``): this file cannot import
#: the project, and the keys have one home.
LABELS: dict[str, str] = {}
KUEUE_GROUP = "kueue.x-k8s.io"
KUEUE_VERSION = "v1beta2"


def group_label_value(group: str) -> str:
    """An IAM group as the platform writes it in label values (planning.labels.group_label_value)."""
    out = "".join(ch if ch.isalnum() or ch in "_.-" else "." for ch in group).strip("._-")
    return out[:63].rstrip("._-")


# --------------------------------------------------------------------------- registrations


@dataclass(frozen=True)
class Registration:
    """An event as the site's hub knows it (from its registration ConfigMap)."""

    event: str
    groups: tuple[str, ...]
    admin_groups: tuple[str, ...]
    starts: dt.date
    ends: dt.date
    namespace: str
    profiles: tuple[dict[str, Any], ...]
    #: The participants' group (the first of ``groups``): whom tutors administer.
    participants: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def open_on(self, day: dt.date) -> bool:
        """Inclusive window, in the site's time zone (UTC)."""
        return self.starts <= day <= self.ends

    def profiles_for(self, user: str, groups: set[str]) -> list[dict[str, Any]]:
        """The event's profiles ``user`` sees at this site: every one for tutors and for a count-sized
        event (no ``assignments``), else only the profile of their seat here (none: seated elsewhere)."""
        if not groups & set(self.groups):
            return []
        seats = self.extra.get("assignments") or {}
        if not seats or groups & set(self.admin_groups):
            return list(self.profiles)
        return [p for p in self.profiles if p.get("slug") == seats.get(user)]


def today() -> dt.date:
    return dt.datetime.now(dt.UTC).date()


def parse_registration(doc: Mapping[str, Any]) -> Registration:
    """``event.json`` as a Registration; ValueError naming the first bad field."""
    def text(key: str) -> str:
        v = doc.get(key)
        if not isinstance(v, str) or not v:
            raise ValueError(f"{key} is missing or not a string")
        return v

    def names(key: str) -> tuple[str, ...]:
        v = doc.get(key, [])
        if not isinstance(v, list) or not all(isinstance(x, str) and x for x in v):
            raise ValueError(f"{key} is not a list of names")
        return tuple(v)

    try:
        starts, ends = dt.date.fromisoformat(text("starts")), dt.date.fromisoformat(text("ends"))
    except ValueError as e:
        raise ValueError(f"starts/ends: {e}") from None
    profiles = doc.get("profiles", [])
    if not isinstance(profiles, list) or not all(isinstance(p, dict) and isinstance(p.get("slug"), str)
                                                 for p in profiles):
        raise ValueError("profiles is not a list of profiles with a slug")
    groups = names("groups")
    if not groups:
        raise ValueError("groups is empty")
    known = {"event", "groups", "admin_groups", "starts", "ends", "namespace", "profiles"}
    return Registration(text("event"), groups, names("admin_groups"), starts, ends, text("namespace"),
                        tuple(profiles), groups[0], {k: v for k, v in doc.items() if k not in known})


def registrations_from(items: Iterable[Mapping[str, Any]], log: Any = None) -> list[Registration]:
    """The valid registrations among ConfigMaps (as the API lists them), in name order."""
    out = []
    for cm in sorted(items, key=lambda c: str(c.get("metadata", {}).get("name"))):
        name = cm.get("metadata", {}).get("name")
        try:
            out.append(parse_registration(json.loads((cm.get("data") or {})["event.json"])))
        except (KeyError, TypeError, ValueError) as e:
            if log is not None:
                log.warning("ignoring event registration %s: %s", name, e)
    return out


# --------------------------------------------------------------------------- availability


@dataclass(frozen=True)
class Kind:
    key: str
    slug: str
    resource: str
    node_labels: dict[str, str]
    flavor: str


@dataclass(frozen=True)
class Free:
    free: int
    total: int
    waiting: int
    #: Units given out now (Kueue's use of the kind's flavor across ClusterQueues).
    used: int = 0


def quantity(value: Any) -> int:
    """An integer quantity of an extended resource (``"4"``, ``4``); anything else is 0."""
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return 0


def usable(node: Mapping[str, Any], groups: set[str]) -> bool:
    """Whether a notebook of a user in ``groups`` could land on ``node``."""
    meta, spec = node.get("metadata", {}), node.get("spec", {})
    labels = meta.get("labels") or {}
    if spec.get("unschedulable") or LABELS["virtual_type"] in labels:
        return False
    if any(t.get("key") == LABELS["virtual_taint"] for t in spec.get("taints") or []):
        return False
    reserved = labels.get(LABELS["reserved_for"])
    return reserved is None or reserved in {group_label_value(g) for g in groups}


def availability(kinds: Iterable[Kind], nodes: Iterable[Mapping[str, Any]],
                 cluster_queues: Iterable[Mapping[str, Any]], groups: set[str],
                 waiting_by_kind: Mapping[str, int] | None = None) -> dict[str, Free]:
    """Free and total units per kind for a user in ``groups``."""
    nodes = list(nodes)
    used: dict[tuple[str, str], int] = {}
    for cq in cluster_queues:
        for fl in (cq.get("status") or {}).get("flavorsUsage") or []:
            for r in fl.get("resources") or []:
                key = (str(fl.get("name")), str(r.get("name")))
                used[key] = used.get(key, 0) + quantity(r.get("total"))
    out = {}
    for k in kinds:
        total = 0
        for n in nodes:
            labels = n.get("metadata", {}).get("labels") or {}
            if all(labels.get(a) == b for a, b in k.node_labels.items()) and usable(n, groups):
                total += quantity((n.get("status") or {}).get("allocatable", {}).get(k.resource))
        in_use = used.get((k.flavor, k.resource), 0)
        out[k.key] = Free(max(0, total - in_use), total, (waiting_by_kind or {}).get(k.key, 0), in_use)
    return out


def _admitted(workload: Mapping[str, Any]) -> bool:
    conditions = (workload.get("status") or {}).get("conditions") or []
    return any(c.get("type") in ("QuotaReserved", "Admitted") and c.get("status") == "True" for c in conditions)


def _asks_for(workload: Mapping[str, Any], k: Kind) -> bool:
    """Whether a Workload asks for kind ``k`` (its node labels and resource)."""
    for ps in (workload.get("spec") or {}).get("podSets") or []:
        spec = ((ps.get("template") or {}).get("spec")) or {}
        selector = spec.get("nodeSelector") or {}
        wanted: set[str] = set()
        for c in spec.get("containers") or []:
            res = c.get("resources") or {}
            wanted |= set(res.get("requests") or {}) | set(res.get("limits") or {})
        if k.resource in wanted and all(selector.get(a) == b for a, b in k.node_labels.items()):
            return True
    return False


def waiting(kinds: Iterable[Kind], workloads: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Pending Workloads (not yet given quota) per kind they ask for (node labels and resource)."""
    out: dict[str, int] = {}
    kinds = list(kinds)
    for w in workloads:
        if _admitted(w):
            continue
        for k in kinds:
            if _asks_for(w, k):
                out[k.key] = out.get(k.key, 0) + 1
    return out


def _time(value: Any) -> float | None:
    """An API timestamp (RFC 3339, ``2026-12-01T10:00:00Z``) as POSIX seconds; None if absent or bad."""
    if not isinstance(value, str) or not value:
        return None
    try:
        t = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (t if t.tzinfo else t.replace(tzinfo=dt.UTC)).timestamp()


def _admitted_at(workload: Mapping[str, Any]) -> float | None:
    conditions = {c.get("type"): c for c in (workload.get("status") or {}).get("conditions") or []}
    for kind in ("Admitted", "QuotaReserved"):
        c = conditions.get(kind)
        if c is not None and c.get("status") == "True":
            return _time(c.get("lastTransitionTime"))
    return None


def queue_position(k: Kind, workloads: Iterable[Mapping[str, Any]], pod_uid: str | None = None) -> int:
    """The place in the queue of kind ``k``: of the Workload of pod ``pod_uid`` (1 + the pending ones
    created before it), or of a spawn about to join (1 + every pending one)."""
    pending = [w for w in workloads if not _admitted(w) and _asks_for(w, k)]

    def key(w: Mapping[str, Any]) -> tuple[float, str]:
        meta = w.get("metadata") or {}
        return (_time(meta.get("creationTimestamp")) or 0.0, str(meta.get("name")))

    mine = next((w for w in pending if any(o.get("uid") == pod_uid
                                           for o in (w.get("metadata") or {}).get("ownerReferences") or [])), None)
    if pod_uid is None or mine is None:
        return len(pending) + 1
    return 1 + sum(1 for w in pending if key(w) < key(mine))


def expected_wait(k: Kind, free: Free, workloads: Iterable[Mapping[str, Any]], position: int, now: float,
                  session_bound: float) -> float | None:
    """Seconds the ``position``-th waiter for kind ``k`` waits at most (0: a unit is free; None: no bound).

    ``workloads``: those of the notebooks' namespace; ``session_bound``: the longest a notebook session
    lives (0: unbounded). See the module docstring for why this is an upper bound.
    """
    if free.free > 0 and position <= free.free:
        return 0.0
    if session_bound <= 0:
        return None
    held = sorted(t + session_bound for w in workloads
                  if _admitted(w) and _asks_for(w, k) and (t := _admitted_at(w)) is not None)
    held = held[: free.used]
    # units in use by anything else end at no known time; free units are released now
    releases = [now] * max(0, free.free) + held + [float("inf")] * max(0, free.used - len(held))
    heapq.heapify(releases)
    start = now
    for _ in range(position):
        if not releases:
            return None
        start = max(now, heapq.heappop(releases))
        if start == float("inf"):
            return None
        heapq.heappush(releases, start + session_bound)
    return start - now


def describe_wait(seconds: float | None) -> str:
    """An estimate as the form says it."""
    if seconds is None:
        return "expected wait unknown (a unit is held with no known end)"
    if seconds <= 0:
        return "no wait expected"
    return f"expected wait at most ~{math.ceil(seconds / 60)} min"


def workload_state(workloads: Iterable[Mapping[str, Any]], pod_uid: str) -> str | None:
    """The state of the Workload Kueue made for the pod ``pod_uid``, as one line (None: no Workload)."""
    for w in workloads:
        owners = w.get("metadata", {}).get("ownerReferences") or []
        if not any(o.get("uid") == pod_uid for o in owners):
            continue
        conditions = {c.get("type"): c for c in (w.get("status") or {}).get("conditions") or []}
        for kind in ("Evicted", "Admitted", "QuotaReserved"):
            c = conditions.get(kind)
            if c is None:
                continue
            if c.get("status") == "True":
                return f"{kind}: {c.get('message') or c.get('reason') or ''}".strip()
            return f"waiting in the queue ({c.get('reason') or 'Pending'}): {c.get('message') or 'no quota yet'}"
        return "waiting in the queue: Kueue has not looked at it yet"
    return None


# --------------------------------------------------------------------------- the API


class Cluster:
    """Reads through KubeSpawner's Kubernetes client (the hub's ServiceAccount), each cached ``ttl`` s."""

    def __init__(self, hub_namespace: str, ttl: float = 10.0) -> None:
        self.hub_namespace = hub_namespace
        self.ttl = ttl
        self._cache: dict[str, tuple[float, Any]] = {}

    @staticmethod
    def _api(kind: str) -> Any:
        from kubespawner.clients import load_config, shared_client

        load_config()
        return shared_client(kind)

    async def _cached(self, key: str, fetch: Any) -> Any:
        hit = self._cache.get(key)
        if hit is not None and time.monotonic() - hit[0] < self.ttl:
            return hit[1]
        value = await fetch()
        self._cache[key] = (time.monotonic(), value)
        return value

    async def _list(self, path: str, params: dict[str, str] | None = None) -> list[dict[str, Any]]:
        api = self._api("CoreV1Api").api_client
        query = list((params or {}).items())
        resp = await api.call_api(path, "GET", query_params=query, response_types_map={200: "object"},
                                  auth_settings=["BearerToken"], _return_http_data_only=True,
                                  _preload_content=True)
        return list((resp or {}).get("items") or [])

    async def registrations(self, log: Any = None) -> list[Registration]:
        async def fetch() -> list[Registration]:
            items = await self._list(f"/api/v1/namespaces/{self.hub_namespace}/configmaps",
                                     {"labelSelector": f"{LABELS['hub_registration']}=event"})
            return registrations_from(items, log)
        return list(await self._cached("registrations", fetch))

    async def nodes(self) -> list[dict[str, Any]]:
        return list(await self._cached("nodes", lambda: self._list("/api/v1/nodes")))

    async def cluster_queues(self) -> list[dict[str, Any]]:
        return list(await self._cached("clusterqueues", lambda: self._list(
            f"/apis/{KUEUE_GROUP}/{KUEUE_VERSION}/clusterqueues")))

    async def workloads(self, namespace: str, fresh: bool = False) -> list[dict[str, Any]]:
        key = f"workloads/{namespace}"
        if fresh:
            self._cache.pop(key, None)
        return list(await self._cached(key, lambda: self._list(
            f"/apis/{KUEUE_GROUP}/{KUEUE_VERSION}/namespaces/{namespace}/workloads")))
