"""Dynamic inventory: the site's servers found by their metadata tags, grouped as the plan groups them.

A server belongs to the site when its metadata says `aiinfn:site=<site>`. Each one found is matched by
name to the plan's node, so the groups and host variables are exactly those of the inventory the plan
renders (`render.ansible_inventory`), with the server's real fixed IP as `ansible_host`. Servers the
plan does not know, and planned nodes the cloud does not have, are reported, never guessed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..planning import Plan
from ..render import host_vars, inventory_groups


@dataclass(frozen=True)
class FoundServer:
    name: str
    metadata: dict[str, str]
    fixed_ip: str | None


@dataclass
class Inventory:
    hosts: dict[str, dict[str, Any]]
    groups: dict[str, list[str]]
    unplanned: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def ansible_list(self) -> dict[str, Any]:
        """Ansible's script-inventory `--list` document."""
        doc: dict[str, Any] = {"_meta": {"hostvars": self.hosts}}
        doc["all"] = {"children": sorted(self.groups)}
        for group, members in self.groups.items():
            doc[group] = {"hosts": members}
        return doc


def fixed_ip(server: Any) -> str | None:
    """The first fixed IPv4 address of an openstacksdk Server (or a dict with `addresses`)."""
    addresses = server.get("addresses") if isinstance(server, dict) else getattr(server, "addresses", None)
    for entries in (addresses or {}).values():
        for a in entries:
            if a.get("version", 4) == 4 and a.get("OS-EXT-IPS:type", "fixed") == "fixed":
                return str(a["addr"])
    return None


def site_servers(conn: Any, site: str) -> list[FoundServer]:
    out = []
    for s in conn.compute.servers(details=True):
        md = dict(s.metadata or {})
        if md.get("aiinfn:site") == site:
            out.append(FoundServer(s.name, md, fixed_ip(s)))
    return sorted(out, key=lambda f: f.name)


def build(plan: Plan, servers: list[FoundServer]) -> Inventory:
    found = {s.name: s for s in servers}
    planned = {n.name: n for n in plan.nodes}
    nodes = [n for n in plan.nodes if n.name in found]
    sub = Plan(plan.env, nodes, plan.capacity, plan.host_fit, plan.quotas, plan.shared_pool, plan.event)
    hosts = {n.name: host_vars(plan, n, found[n.name].fixed_ip) for n in nodes}
    return Inventory(
        hosts=hosts,
        groups=inventory_groups(sub),
        unplanned=sorted(set(found) - set(planned)),
        missing=[n for n in planned if n not in found],
    )
