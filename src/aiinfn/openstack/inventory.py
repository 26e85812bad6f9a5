"""Dynamic inventory: the site's servers found by their metadata tags, grouped as the plan groups them.

A server belongs to the site when its Nova metadata says ``aiinfn:site=<site>``. Its tags
(``aiinfn:pool``, ``aiinfn:role``, ``aiinfn:accelerators``, ``aiinfn:mig-config``) give a grouping of
their own (``groups_from_tags``), and each server is matched by name to the plan's node: when the
tags are the ones the plan assigns, the server enters the inventory with exactly the groups and host
variables of the inventory the plan renders (``render.ansible_inventory``), and its real fixed IP as
``ansible_host``. Servers the plan does not know, servers whose tags disagree with the plan, duplicate
names and planned nodes without a server are reported, never guessed.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..config.models import Role
from ..planning import Plan
from ..planning.nodes import SITE_TAG, TAG_PREFIX, Node, server_metadata
from ..render import ansible_inventory, host_vars, inventory_groups, site_vars, unsafe_json

#: Roles whose nodes join the Kubernetes cluster (group k8s_cluster), as Node.is_kubernetes_node.
KUBERNETES_ROLES = frozenset({Role.SERVER.value, Role.AGENT.value, Role.GPU.value, Role.FPGA.value})


@dataclass(frozen=True)
class FoundServer:
    """A server as Nova lists it: name, metadata, addresses (Nova's ``addresses`` mapping), status."""

    name: str
    metadata: dict[str, str]
    addresses: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    status: str = "ACTIVE"
    id: str = ""


def expected_tags(plan: Plan, node: Node) -> dict[str, str]:
    """The metadata the stacks give ``node``'s server (``planning.nodes.server_metadata``)."""
    return server_metadata(plan.env, node)


def site_network(plan: Plan) -> str:
    """The Neutron network the nodes' ports are on (stacks/infra/network.py)."""
    return plan.env.network.existing_network or f"aiinfn-{plan.env.site.name}"


def fixed_ip(addresses: dict[str, list[dict[str, Any]]] | None, network: str | None = None) -> str | None:
    """The fixed IPv4 address on ``network`` (else on any network) of Nova's ``addresses`` mapping."""
    addresses = addresses or {}
    names = [network] if network in addresses else []
    names += sorted(n for n in addresses if n != network)
    for name in names:
        for a in addresses[name] or []:
            if a.get("version", 4) == 4 and a.get("OS-EXT-IPS:type", "fixed") == "fixed" and a.get("addr"):
                return str(a["addr"])
    return None


def groups_from_tags(tags: dict[str, dict[str, str]]) -> dict[str, list[str]]:
    """The plan's grouping (``render.inventory_groups``), computed from servers' tags alone.

    ``tags`` maps server name -> metadata, in the order the servers should appear in each group.
    """
    groups: dict[str, list[str]] = {}

    def add(group: str, name: str) -> None:
        groups.setdefault(group.replace("-", "_").lower(), []).append(name)

    for name, md in tags.items():
        role = md.get(f"{TAG_PREFIX}role", "")
        add(f"role_{role}", name)
        add(f"pool_{md.get(f'{TAG_PREFIX}pool', '')}", name)
        model = md.get(f"{TAG_PREFIX}accelerators", "none").rpartition(":")[0]
        if model:
            add(f"accel_{model}", name)
        if role in KUBERNETES_ROLES:
            add("k8s_cluster", name)
    return dict(sorted(groups.items()))


@dataclass
class Inventory:
    """The hosts found, as a plan restricted to them, plus what was reported instead of guessed."""

    plan: Plan
    addresses: dict[str, str]
    #: Groups computed from the tags of the servers included: equal to ``groups`` by construction of
    #: ``build`` (a server whose tags disagree is left out), kept to show it.
    tag_groups: dict[str, list[str]] = field(default_factory=dict)
    unplanned: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    drift: dict[str, list[str]] = field(default_factory=dict)
    duplicates: list[str] = field(default_factory=list)
    not_active: dict[str, str] = field(default_factory=dict)
    no_address: list[str] = field(default_factory=list)

    @property
    def groups(self) -> dict[str, list[str]]:
        return inventory_groups(self.plan)

    @property
    def hosts(self) -> dict[str, dict[str, Any]]:
        return {n.name: host_vars(self.plan, n, self.addresses.get(n.name)) for n in self.plan.nodes}

    def yaml(self) -> str:
        """The inventory YAML, rendered by the same template as the plan's ``ansible/inventory.yaml``."""
        return ansible_inventory(self.plan, self.addresses)

    def ansible_list(self) -> dict[str, Any]:
        """Ansible's script-inventory ``--list`` document of the same inventory as ``yaml()``.

        Every string is an ``__ansible_unsafe`` marker (``render.unsafe_json``), as ``!unsafe`` is in the YAML:
        Ansible's script plugin would otherwise template the plan's values on the operator's machine.
        """
        groups = self.groups
        hosts = self.hosts
        doc: dict[str, Any] = {"_meta": {"hostvars": {name: unsafe_json(v) for name, v in hosts.items()}}}
        grouped: set[str] = set()
        for group, members in groups.items():
            grouped.update(members)
            doc[group] = {"hosts": list(members)}
        ungrouped = [h for h in hosts if h not in grouped]
        if ungrouped:
            doc["ungrouped"] = {"hosts": ungrouped}
        names = [*groups, *(["ungrouped"] if ungrouped else [])]
        doc["all"] = {"vars": unsafe_json(site_vars(self.plan)), "children": names}
        return doc

    def host(self, name: str) -> dict[str, Any]:
        """``--host NAME``: the host's variables (empty for a host not in the inventory, as Ansible expects)."""
        return dict(self.ansible_list()["_meta"]["hostvars"].get(name, {}))

    def notes(self) -> list[str]:
        """One line per thing reported instead of guessed."""
        site = self.plan.env.site.name
        out = [f"server {n} is tagged for site {site} but not in the plan: left out" for n in self.unplanned]
        out += [f"{n} names more than one server of site {site}: left out; delete the strays" for n in self.duplicates]
        out += [f"server {n} has tags other than the plan's ({'; '.join(d)}): left out; run `pulumi up` to "
                "align it" for n, d in self.drift.items()]
        out += [f"planned node {n} has no server in the cloud" for n in self.missing]
        out += [f"server {n} is {s}, not ACTIVE" for n, s in self.not_active.items()]
        out += [f"server {n} has no fixed IPv4 address: no ansible_host" for n in self.no_address]
        return out


def build(plan: Plan, servers: list[FoundServer]) -> Inventory:
    """Match ``servers`` (already those of the site) to ``plan``'s nodes."""
    planned = {n.name: n for n in plan.nodes}
    counts = Counter(s.name for s in servers)
    duplicates = sorted(n for n, c in counts.items() if c > 1)
    found = {s.name: s for s in servers if counts[s.name] == 1}
    drift: dict[str, list[str]] = {}
    for name, server in found.items():
        if name not in planned:
            continue
        want = expected_tags(plan, planned[name])
        have = {k: v for k, v in server.metadata.items() if k.startswith(TAG_PREFIX)}
        diffs = [f"{k}={have.get(k)!r}, plan {v!r}" for k, v in want.items() if have.get(k) != v]
        if diffs:
            drift[name] = diffs
    nodes = [n for n in plan.nodes if n.name in found and n.name not in drift]
    sub = dataclasses.replace(plan, nodes=nodes)
    network = site_network(plan)
    addresses: dict[str, str] = {}
    no_address = []
    for n in nodes:
        ip = fixed_ip(found[n.name].addresses, network)
        if ip:
            addresses[n.name] = ip
        else:
            no_address.append(n.name)
    return Inventory(
        plan=sub,
        addresses=addresses,
        tag_groups=groups_from_tags({n.name: found[n.name].metadata for n in nodes}),
        unplanned=sorted(n for n in found if n not in planned),
        missing=[n for n in planned if n not in found and n not in duplicates],
        drift=drift,
        duplicates=duplicates,
        not_active={n.name: found[n.name].status for n in nodes if found[n.name].status != "ACTIVE"},
        no_address=no_address,
    )


def site_servers(conn: Any, site: str) -> list[FoundServer]:
    """The project's servers whose metadata says ``aiinfn:site=<site>``."""
    out = []
    for s in conn.compute.servers(details=True):
        md = {str(k): str(v) for k, v in (s.metadata or {}).items()}
        if md.get(SITE_TAG) == site:
            out.append(FoundServer(s.name, md, dict(s.addresses or {}), str(s.status), str(s.id)))
    return sorted(out, key=lambda f: f.name)


def inventory(env: str, cloud: str | None = None, *, timeout: float | None = None) -> Inventory:
    """Load ``env``, plan its nodes (no Pulumi run needed), list the cloud's servers and match them."""
    from ..config.loader import load_site
    from ..planning import make_plan
    from .connect import DEFAULT_TIMEOUT, calling, connect

    plan = make_plan(load_site(env, purpose="the inventory"))
    name = cloud or plan.env.site.cloud
    limit = timeout or DEFAULT_TIMEOUT
    conn = connect(name, timeout=limit)
    try:
        with calling(name, "list the project's servers", timeout=limit):
            servers = site_servers(conn, plan.env.site.name)
    finally:
        conn.close()
    return build(plan, servers)
