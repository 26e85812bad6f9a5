"""``aiinfn status SITE``: the live site against its plan.

* servers (openstacksdk): every server tagged ``aiinfn:site=<site>`` matched by name to the plan's nodes:
  ``missing`` (planned, no server), ``strays`` (tagged for the site, not planned), ``duplicates`` and, per
  server, ``drift``: a flavor, image or metadata tag other than the plan's, or a status other than ACTIVE.
  (A server booted from a volume has no image of its own in Nova: its image is not compared.)
* nodes (kubectl's ``get nodes -o json``, where a kubeconfig is available): each planned cluster node's
  ``Ready`` condition, cluster nodes the plan does not know, planned nodes the cluster lacks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ..planning import Plan
from ..planning.nodes import SITE_TAG, TAG_PREFIX, server_metadata


@dataclass(frozen=True)
class LiveServer:
    name: str
    status: str
    flavor: str
    image: str
    metadata: dict[str, str]
    id: str = ""


@dataclass
class ServerReport:
    ok: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    strays: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    drift: dict[str, list[str]] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.strays or self.duplicates or self.drift)

    def document(self) -> dict[str, Any]:
        return {"ok": self.ok, "missing": self.missing, "strays": self.strays, "duplicates": self.duplicates,
                "drift": self.drift}


def compare(plan: Plan, servers: list[LiveServer]) -> ServerReport:
    """Match ``servers`` (those tagged for the site) to ``plan``'s nodes."""
    planned = {n.name: n for n in plan.nodes}
    counts = Counter(s.name for s in servers)
    report = ServerReport(duplicates=sorted(n for n, c in counts.items() if c > 1))
    found = {s.name: s for s in servers if counts[s.name] == 1}
    report.strays = sorted(n for n in found if n not in planned)
    report.missing = [n for n in planned if n not in found and n not in report.duplicates]
    for name, node in planned.items():
        server = found.get(name)
        if server is None:
            continue
        diffs = []
        if server.flavor != node.flavor:
            diffs.append(f"flavor {server.flavor!r}, plan {node.flavor!r}")
        if server.image and server.image != plan.env.site.image:
            diffs.append(f"image {server.image!r}, plan {plan.env.site.image!r}")
        want = server_metadata(plan.env, node)
        have = {k: v for k, v in server.metadata.items() if k.startswith(TAG_PREFIX)}
        diffs += [f"{k} {have.get(k)!r}, plan {v!r}" for k, v in want.items() if have.get(k) != v]
        diffs += [f"{k} {v!r}, not in the plan" for k, v in sorted(have.items()) if k not in want]
        if server.status != "ACTIVE":
            diffs.append(f"status {server.status}")
        if diffs:
            report.drift[name] = diffs
        else:
            report.ok.append(name)
    return report


def live_servers(conn: Any, site: str) -> list[LiveServer]:
    """The project's servers whose metadata says ``aiinfn:site=<site>``, with their flavor and image names."""
    images: dict[str, str] = {}
    flavors: dict[str, str] = {}

    def image_name(ref: Any) -> str:
        # an openstacksdk resource (attributes) or a plain mapping (keys)
        image_id = getattr(ref, "id", None) or (ref.get("id") if isinstance(ref, Mapping) else None)
        if not image_id:
            return ""  # booted from a volume
        if image_id not in images:
            img = conn.image.find_image(image_id, ignore_missing=True)
            images[image_id] = str(img.name) if img is not None else str(image_id)
        return images[image_id]

    def flavor_name(ref: Any) -> str:
        # compute microversion 2.47+ embeds the flavor: its original name; older ones give its id
        name = getattr(ref, "original_name", None) or getattr(ref, "name", None)
        if not name and isinstance(ref, Mapping):
            name = ref.get("original_name") or ref.get("name")
        if name:
            return str(name)
        fid = getattr(ref, "id", None) or (ref.get("id") if isinstance(ref, Mapping) else None)
        if fid and fid not in flavors:
            f = conn.compute.find_flavor(fid, ignore_missing=True)
            flavors[fid] = str(f.name) if f is not None else str(fid)
        return flavors.get(fid, "") if fid else ""

    out = []
    for s in conn.compute.servers(details=True):
        md = {str(k): str(v) for k, v in (s.metadata or {}).items()}
        if md.get(SITE_TAG) != site:
            continue
        out.append(LiveServer(str(s.name), str(s.status), flavor_name(s.flavor), image_name(s.image), md, str(s.id)))
    return sorted(out, key=lambda x: x.name)


# --------------------------------------------------------------------------- node readiness


@dataclass(frozen=True)
class NodeState:
    name: str
    ready: bool
    reason: str
    kubelet: str
    unschedulable: bool


@dataclass
class NodeReport:
    nodes: dict[str, NodeState] = field(default_factory=dict)
    #: Planned cluster nodes the cluster does not list.
    absent: list[str] = field(default_factory=list)
    #: Cluster nodes the plan does not know.
    unknown: list[str] = field(default_factory=list)

    @property
    def not_ready(self) -> list[str]:
        return sorted(n for n, s in self.nodes.items() if not s.ready)

    def document(self) -> dict[str, Any]:
        return {"nodes": {n: {"ready": s.ready, "reason": s.reason, "kubelet": s.kubelet,
                              "unschedulable": s.unschedulable} for n, s in sorted(self.nodes.items())},
                "absent": self.absent, "unknown": self.unknown, "not_ready": self.not_ready}


class NodeListError(ValueError):
    """Not the output of ``kubectl get nodes -o json``."""


def parse_nodes(doc: Any) -> dict[str, NodeState]:
    """``kubectl get nodes -o json`` (a ``List`` of ``Node``) -> node name -> state."""
    if not isinstance(doc, Mapping) or not isinstance(doc.get("items"), list):
        raise NodeListError("not a list of nodes (kubectl get nodes -o json)")
    out = {}
    for i, item in enumerate(doc["items"]):
        meta = item.get("metadata") if isinstance(item, Mapping) else None
        if not isinstance(meta, Mapping) or not isinstance(meta.get("name"), str):
            raise NodeListError(f"items[{i}]: a node without metadata.name")
        status = item.get("status") or {}
        conds = [c for c in status.get("conditions") or [] if isinstance(c, Mapping) and c.get("type") == "Ready"]
        ready = bool(conds) and conds[-1].get("status") == "True"
        reason = str(conds[-1].get("reason") or "") if conds else "no Ready condition"
        kubelet = str((status.get("nodeInfo") or {}).get("kubeletVersion") or "")
        out[meta["name"]] = NodeState(meta["name"], ready, reason, kubelet,
                                      bool((item.get("spec") or {}).get("unschedulable")))
    return out


def readiness(plan: Plan, doc: Any) -> NodeReport:
    states = parse_nodes(doc)
    cluster = [n.name for n in plan.nodes if n.is_kubernetes_node]
    return NodeReport(
        nodes={n: states[n] for n in cluster if n in states},
        absent=[n for n in cluster if n not in states],
        unknown=sorted(n for n in states if n not in cluster),
    )
