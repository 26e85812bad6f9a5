"""Match a site's live resources to the resources its plan registers, and say how each one differs.

The plan's own registrations (``preview.build``) are the reference: every adopted resource keeps
the type, the name and the parent the Pulumi program gives it, so the URN an import creates is the
URN `pulumi up` expects and the resource is adopted, never replaced by a new one.

Matching, in the order the program registers:

* network, router and security groups by the name the plan gives them in the cloud, or the name (or
  ID) the mapping file names for them; the subnet is the matched network's subnet with the plan's
  CIDR; the router interface is the router's port on that subnet;
* each node's server by the node's name (or the mapping's); its port is the server's own port (on
  the site network when it has several); its data volumes and the stateful volumes by name (or the
  mapping's); an attachment is adopted when the volume is attached to that server;
* each security group rule by what it allows (direction, protocol, ports, remote group or prefix);
* keypair and server group by name.

Every attribute the live resource has other than the plan says is a ``Difference`` with its
effect on the next `pulumi up`, from the replacement rules of docs/diff.md.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import AiinfnError
from ..planning.nodes import TAG_PREFIX
from ..preview import Preview
from .live import Live

INSTANCE = "openstack:compute/instance:Instance"
PORT = "openstack:networking/port:Port"
VOLUME = "openstack:blockstorage/volume:Volume"
ATTACH = "openstack:compute/volumeAttach:VolumeAttach"
NETWORK = "openstack:networking/network:Network"
SUBNET = "openstack:networking/subnet:Subnet"
ROUTER = "openstack:networking/router:Router"
ROUTER_IF = "openstack:networking/routerInterface:RouterInterface"
SECGROUP = "openstack:networking/secGroup:SecGroup"
RULE = "openstack:networking/secGroupRule:SecGroupRule"
KEYPAIR = "openstack:compute/keypair:Keypair"
SERVER_GROUP = "openstack:compute/serverGroup:ServerGroup"
FLAVOR = "openstack:compute/flavor:Flavor"

#: Types adoption imports, in the order it matches them (a resource's references come first).
ADOPTABLE = (NETWORK, SUBNET, ROUTER, ROUTER_IF, SECGROUP, RULE, KEYPAIR, SERVER_GROUP, FLAVOR, INSTANCE, PORT,
             VOLUME, ATTACH)

#: Effects of a difference on the next `pulumi up` (docs/diff.md, "Replacement rules and their sources").
REPLACE = "replace"
REPLACEMENT_REQUIRED = "replacement required"
RESIZE = "resize"
UPDATE = "update"
IGNORED = "ignored"
CREATE = "create"
KEPT = "kept"
FORCES_REPLACEMENT = frozenset({REPLACE, REPLACEMENT_REQUIRED})

MAPPING_KEYS = {"servers": dict, "volumes": dict, "security_groups": dict, "network": str, "router": str}


class AdoptError(AiinfnError):
    """Adoption cannot decide (a name that means two live resources, a mapping that names nothing)."""

    exit_code = 1


@dataclass(frozen=True)
class Difference:
    """One attribute where the live resource is not what the plan registers."""

    resource: str  # the plan's resource name (Pulumi logical name)
    type: str
    attribute: str
    live: Any
    plan: Any
    effect: str
    why: str

    @property
    def forces_replacement(self) -> bool:
        return self.effect in FORCES_REPLACEMENT

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "forces_replacement": self.forces_replacement}


@dataclass(frozen=True)
class Adopted:
    type: str
    name: str  # the plan's logical name
    urn: str
    parent: str  # the parent's URN ("" for a root resource)
    id: str  # the ID pulumi import takes for this type
    live_name: str
    how: str  # "name" or "mapping" (or what it was derived from)


@dataclass
class Adoption:
    site: str
    stack: str
    adopted: list[Adopted] = field(default_factory=list)
    #: planned resources no live resource matched: `pulumi up` creates them
    missing: list[tuple[str, str]] = field(default_factory=list)  # (type, name)
    differences: list[Difference] = field(default_factory=list)
    #: live servers tagged for the site (or named in no way the plan knows) left alone
    unmatched_servers: list[str] = field(default_factory=list)

    def replacements(self) -> list[Difference]:
        return [d for d in self.differences if d.forces_replacement]

    def imports(self) -> dict[str, str]:
        """The plan's resource name -> cloud ID, for the stack's ``aiinfn:imports``."""
        return {a.name: a.id for a in self.adopted}

    def document(self) -> dict[str, Any]:
        return {
            "site": self.site,
            "stack": self.stack,
            "adopted": [asdict(a) for a in self.adopted],
            "missing": [{"type": t, "name": n} for t, n in self.missing],
            "differences": [d.as_dict() for d in self.differences],
            "unmatched_servers": self.unmatched_servers,
            "summary": {"adopted": len(self.adopted), "missing": len(self.missing),
                        "differences": len(self.differences), "replacements": len(self.replacements())},
        }


def check_mapping(data: Any, source: str) -> dict[str, Any]:
    """The mapping file's content, checked: one line naming the field for anything else."""
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise AdoptError(f"{source}: the mapping must be a mapping of {', '.join(MAPPING_KEYS)}")
    for key, value in data.items():
        if key not in MAPPING_KEYS:
            raise AdoptError(f"{source}: {key}: not a mapping field (valid: {', '.join(MAPPING_KEYS)})")
        want = MAPPING_KEYS[key]
        if not isinstance(value, want):
            raise AdoptError(f"{source}: {key}: must be {'a mapping of names' if want is dict else 'a name'}")
        if want is dict:
            for k, v in value.items():
                if not isinstance(v, str) or not v:
                    raise AdoptError(f"{source}: {key}.{k}: must be the live resource's name or ID")
    return dict(data)


def _one(items: list[dict[str, Any]], key: str, kind: str) -> dict[str, Any] | None:
    """The live item whose ID or name is ``key``; a name two items share is refused."""
    by_id = [i for i in items if i["id"] == key]
    if by_id:
        return by_id[0]
    named = [i for i in items if i["name"] == key]
    if len(named) > 1:
        raise AdoptError(f"{len(named)} live {kind} are named {key!r}: name the one to adopt by its ID in the "
                         "mapping file (--mapping)")
    return named[0] if named else None


class _Matcher:
    def __init__(self, report: Preview, live: Live, mapping: dict[str, Any]) -> None:
        self.report = report
        self.live = live
        self.mapping = mapping
        self.env = report.plan.env
        self.regs = [r for r in report.run.registrations]
        self.by_mock_id = {r.id: r for r in self.regs if r.custom and r.id}
        self.by_urn = {r.urn: r for r in self.regs}
        #: the plan's mocked ID -> the live ID it is adopted as
        self.ids: dict[str, str] = {}
        self.live_of: dict[str, dict[str, Any]] = {}  # URN -> live item
        self.out = Adoption(site=self.env.site.name, stack=report.stack)
        self.used: dict[str, str] = {}  # live ID -> URN that adopted it

    # ---------------------------------------------------------------- helpers
    def differ(self, reg: Any, attribute: str, live: Any, plan: Any, effect: str, why: str) -> None:
        self.out.differences.append(Difference(reg.name, reg.type, attribute, live, plan, effect, why))

    def adopt(self, reg: Any, item: dict[str, Any] | None, how: str, import_id: str | None = None) -> bool:
        if item is None:
            self.out.missing.append((reg.type, reg.name))
            return False
        if item["id"] in self.used and reg.type not in (ATTACH,):
            raise AdoptError(f"live {item['name'] or item['id']!r} ({item['id']}) would be adopted twice, as "
                             f"{self.used[item['id']].rsplit('::', 1)[-1]} and {reg.name}: fix the mapping file")
        self.used[item["id"]] = reg.urn
        self.ids[reg.id] = item["id"]
        self.live_of[reg.urn] = item
        self.out.adopted.append(Adopted(reg.type, reg.name, reg.urn, reg.parent, import_id or item["id"],
                                        item.get("name", ""), how))
        return True

    def named(self, reg: Any, items: list[dict[str, Any]], kind: str, mapped: str | None) -> tuple[Any, str]:
        key = mapped or reg.inputs.get("name", "")
        return _one(items, key, kind), "mapping" if mapped else "name"

    def renamed(self, reg: Any, item: dict[str, Any]) -> None:
        want = reg.inputs.get("name")
        if want is not None and item.get("name") != want:
            self.differ(reg, "name", item.get("name"), want, UPDATE, "renamed in place")

    def tags(self, reg: Any, item: dict[str, Any]) -> None:
        want = sorted(reg.inputs.get("tags") or [])
        if sorted(item.get("tags") or []) != want:
            self.differ(reg, "tags", sorted(item.get("tags") or []), want, UPDATE, "tags are updated in place")

    def live_id(self, mock_id: str) -> str | None:
        return self.ids.get(mock_id)

    def of_type(self, t: str) -> list[Any]:
        return [r for r in self.regs if r.type == t]

    # ---------------------------------------------------------------- per type
    def network(self) -> None:
        for reg in self.of_type(NETWORK):
            item, how = self.named(reg, self.live.networks, "networks", self.mapping.get("network"))
            if self.adopt(reg, item, how):
                assert item is not None
                self.renamed(reg, item)
                if reg.inputs.get("mtu") is not None and item.get("mtu") != reg.inputs["mtu"]:
                    self.differ(reg, "mtu", item.get("mtu"), reg.inputs["mtu"], UPDATE, "updated in place")
                self.tags(reg, item)
        for reg in self.of_type(SUBNET):
            net = self.live_id(reg.inputs.get("networkId", ""))
            cidr = reg.inputs.get("cidr")
            subnets = [s for s in self.live.subnets if s["network_id"] == net]
            item = next((s for s in subnets if s["cidr"] == cidr), None)
            how = "cidr"
            if item is None:
                item, how = _one(subnets, reg.inputs.get("name", ""), "subnets"), "name"
            if self.adopt(reg, item, how):
                assert item is not None
                self.renamed(reg, item)
                if item["cidr"] != cidr:
                    self.differ(reg, "cidr", item["cidr"], cidr, REPLACE, "cidr is ForceNew")
                if bool(reg.inputs.get("enableDhcp", True)) != item["enable_dhcp"]:
                    self.differ(reg, "enableDhcp", item["enable_dhcp"], reg.inputs.get("enableDhcp"), UPDATE,
                                "updated in place")
                want_dns = list(reg.inputs.get("dnsNameservers") or [])
                if want_dns != item["dns_nameservers"]:
                    self.differ(reg, "dnsNameservers", item["dns_nameservers"], want_dns, UPDATE, "updated in place")
                self.tags(reg, item)
        for reg in self.of_type(ROUTER):
            item, how = self.named(reg, self.live.routers, "routers", self.mapping.get("router"))
            if self.adopt(reg, item, how):
                assert item is not None
                self.renamed(reg, item)
                self.tags(reg, item)
                ext = next((n for n in self.live.networks if n["name"] == self.env.site.external_network), None)
                if ext is not None and item["external_network_id"] != ext["id"]:
                    self.differ(reg, "externalNetworkId", item["external_network_id"] or None, ext["id"], UPDATE,
                                "the gateway is moved in place")
        for reg in self.of_type(ROUTER_IF):
            router, subnet = self.live_id(reg.inputs.get("routerId", "")), self.live_id(reg.inputs.get("subnetId", ""))
            port = next((p for p in self.live.ports if p["device_id"] == router and router
                         and p["device_owner"] == "network:router_interface"
                         and any(f["subnet_id"] == subnet for f in p["fixed_ips"])), None)
            # the provider imports a router interface by its port's ID
            self.adopt(reg, port, "router port on the subnet")

    def security_groups(self) -> None:
        prefix = f"{self.env.site.name}-secgroups-"
        wanted = self.mapping.get("security_groups") or {}
        groups = {r.name.removeprefix(prefix) for r in self.of_type(SECGROUP)}
        for key in wanted:
            if key not in groups:
                raise AdoptError(f"mapping: security_groups.{key}: the plan has no such group "
                                 f"(groups: {', '.join(sorted(groups))})")
        for reg in self.of_type(SECGROUP):
            key = reg.name.removeprefix(prefix)
            item, how = self.named(reg, self.live.security_groups, "security groups", wanted.get(key))
            if self.adopt(reg, item, how):
                assert item is not None
                self.renamed(reg, item)
                if reg.inputs.get("description") is not None and item["description"] != reg.inputs["description"]:
                    self.differ(reg, "description", item["description"], reg.inputs["description"], UPDATE,
                                "updated in place")
                self.tags(reg, item)
        taken: set[str] = set()
        for reg in self.of_type(RULE):
            i = reg.inputs
            group = self.live_id(i.get("securityGroupId", ""))
            sg = next((g for g in self.live.security_groups if g["id"] == group), None)
            if sg is None:
                self.out.missing.append((reg.type, reg.name))
                continue
            remote = self.live_id(i["remoteGroupId"]) if i.get("remoteGroupId") else None
            want = (i.get("direction"), i.get("ethertype", "IPv4"), i.get("protocol"),
                    _int(i.get("portRangeMin")), _int(i.get("portRangeMax")), remote, i.get("remoteIpPrefix"))
            rule = next((r for r in sg["rules"] if r["id"] not in taken and _rule_key(r) == want), None)
            if rule is None:
                self.out.missing.append((reg.type, reg.name))
                self.differ(reg, "rule", None, _rule_text(want), CREATE, f"group {sg['name']} lacks it: up adds it")
                continue
            taken.add(str(rule["id"]))
            self.adopt(reg, {"id": str(rule["id"]), "name": sg["name"]}, "rule content")
        for g in self.live.security_groups:
            if g["id"] not in self.used:
                continue
            reg = self.by_urn[self.used[g["id"]]]
            for r in g["rules"]:
                if r["id"] in taken or r.get("direction") == "egress":  # Neutron's default egress rules
                    continue
                self.differ(reg, "rule", _rule_text(_rule_key(r)), None, KEPT,
                            "not in the plan: Pulumi does not manage it and leaves it in place")

    def keypair_and_groups(self) -> None:
        for reg in self.of_type(KEYPAIR):
            name = reg.inputs.get("name", "")
            if name in self.live.keypairs:
                # the provider imports a keypair by its name
                self.adopt(reg, {"id": name, "name": name}, "name")
                want = str(reg.inputs.get("publicKey", "")).split()[:2]
                if self.live.keypairs[name].split()[:2] != want:
                    self.differ(reg, "publicKey", "(another key)", "(the environment's site.ssh_public_key)",
                                REPLACE, "ForceNew; Nova refuses a second keypair of the same name (409)")
            else:
                self.out.missing.append((reg.type, reg.name))
        for reg in self.of_type(SERVER_GROUP):
            item, how = self.named(reg, self.live.server_groups, "server groups", None)
            self.adopt(reg, item, how)
        for reg in self.of_type(FLAVOR):
            fid = next((i for i, n in self.live.flavors.items() if n == reg.inputs.get("name")), None)
            self.adopt(reg, {"id": fid, "name": reg.inputs.get("name")} if fid else None, "name")

    def servers(self) -> None:
        wanted = self.mapping.get("servers") or {}
        planned = {n.name for n in self.report.plan.nodes}
        for node in wanted:
            if node not in planned:
                raise AdoptError(f"mapping: servers.{node}: the plan has no such node "
                                 f"(nodes: {', '.join(sorted(planned))})")
        network_id = next((self.live_id(r.id) for r in self.of_type(NETWORK)), None)
        if network_id is None and self.env.network.existing_network:
            net = _one(self.live.networks, self.env.network.existing_network, "networks")
            network_id = net["id"] if net else None
        groups = {r.id: r for r in self.of_type(SERVER_GROUP)}
        instances = {r.inputs.get("name"): r for r in self.of_type(INSTANCE)}
        ports = {r.inputs.get("name"): r for r in self.of_type(PORT)}
        for node_name, reg in instances.items():
            node = self.report.plan.node(node_name)
            mapped = wanted.get(node_name)
            server = _one(self.live.servers, mapped or node_name, "servers")
            if not self.adopt(reg, server, "mapping" if mapped else "name"):
                continue
            assert server is not None
            self.renamed(reg, server)
            if server["flavor"] != node.flavor:
                self.differ(reg, "flavor", server["flavor"], node.flavor, RESIZE,
                            "Nova resizes the VM in place, which stops and restarts it")
            image = self.live.images.get(server["image_id"], server["image_id"]) or "(boot volume)"
            if image != self.env.site.image:
                self.differ(reg, "image", image, self.env.site.image, IGNORED,
                            "image and boot disk are immutable after boot (ignore_changes)")
            az = reg.inputs.get("availabilityZone")
            if az is not None and server["availability_zone"] != az:
                self.differ(reg, "availabilityZone", server["availability_zone"], az, REPLACE, "ForceNew")
            if server["key_name"] != reg.inputs.get("keyPair"):
                self.differ(reg, "keyPair", server["key_name"], reg.inputs.get("keyPair"), REPLACE, "ForceNew")
            want_md = dict(reg.inputs.get("metadata") or {})
            for key in sorted(set(want_md) | set(server["metadata"])):
                have = server["metadata"].get(key)
                if have != want_md.get(key):
                    why = "metadata is updated in place" + ("" if key.startswith(TAG_PREFIX) or key in want_md
                                                            else "; up removes a key the plan does not set")
                    self.differ(reg, f"metadata.{key}", have, want_md.get(key), UPDATE, why)
            hint = [h.get("group") for h in reg.inputs.get("schedulerHints") or [] if h.get("group")]
            if hint:
                group_id = self.live_id(hint[0])
                members: list[str] = next((g["members"] for g in self.live.server_groups if g["id"] == group_id), [])
                if server["id"] not in members:
                    self.differ(reg, "serverGroup", None, groups[hint[0]].inputs.get("name"), IGNORED,
                                "Nova adds a server to a group only at boot: adopted servers keep their placement "
                                "(schedulerHints ignored for adopted servers)")
            own = [p for p in self.live.ports if p["device_id"] == server["id"]]
            port_reg = ports.get(node_name)
            if len(own) > 1:
                self.differ(reg, "networks", len(own), 1, REPLACE,
                            f"the server has {len(own)} interfaces, the plan one: networks is ForceNew")
            if port_reg is None:
                continue
            on_net = [p for p in own if p["network_id"] == network_id] or own
            port = next((p for p in on_net if p["name"] == node_name), on_net[0] if on_net else None)
            if self.adopt(port_reg, port, "the server's port"):
                assert port is not None
                self.port(port_reg, port, network_id)
        for node_name, port_reg in ports.items():  # ports of nodes without a server: by name
            if port_reg.urn in self.live_of or any(m == (port_reg.type, port_reg.name) for m in self.out.missing):
                continue
            item = _one([p for p in self.live.ports if not p["device_id"]], node_name, "ports")
            if self.adopt(port_reg, item, "name"):
                assert item is not None
                self.port(port_reg, item, network_id)
        site_tag = f"{self.env.site.name}"
        self.out.unmatched_servers = sorted(
            s["name"] for s in self.live.servers
            if s["id"] not in self.used and s["metadata"].get(f"{TAG_PREFIX}site") == site_tag)

    def port(self, reg: Any, port: dict[str, Any], network_id: str | None) -> None:
        self.renamed(reg, port)
        if network_id and port["network_id"] != network_id:
            self.differ(reg, "networkId", port["network_id"], network_id, REPLACE,
                        "networkId is ForceNew; the new port replaces the server too (networks is ForceNew)")
        fixed = reg.inputs.get("fixedIps") or []
        want_subnets = sorted(filter(None, (self.live_id(f.get("subnetId", "")) for f in fixed)))
        have_subnets = sorted(f["subnet_id"] for f in port["fixed_ips"])
        if want_subnets and have_subnets != want_subnets:
            self.differ(reg, "fixedIps", have_subnets, want_subnets, UPDATE, "the port gets a new address")
        names = {g["id"]: g["name"] for g in self.live.security_groups}
        want_groups = sorted(self.report_name(m) for m in reg.inputs.get("securityGroupIds") or [])
        have_groups = sorted(names.get(g, g) for g in port["security_group_ids"])
        if have_groups != want_groups:
            self.differ(reg, "securityGroupIds", have_groups, want_groups, UPDATE, "updated in place")
        self.tags(reg, port)

    def report_name(self, mock_id: str) -> str:
        """The cloud name the plan gives the resource of ``mock_id``."""
        reg = self.by_mock_id.get(mock_id)
        return str(reg.inputs.get("name", mock_id)) if reg is not None else mock_id

    def volumes(self) -> None:
        wanted = self.mapping.get("volumes") or {}
        regs = self.of_type(VOLUME)
        names = {r.inputs.get("name") for r in regs}
        for key in wanted:
            if key not in names:
                raise AdoptError(f"mapping: volumes.{key}: the plan has no such volume (volumes: "
                                 f"{', '.join(sorted(str(n) for n in names))})")
        for reg in regs:
            mapped = wanted.get(reg.inputs.get("name"))
            item = _one(self.live.volumes, mapped or reg.inputs.get("name", ""), "volumes")
            if not self.adopt(reg, item, "mapping" if mapped else "name"):
                continue
            assert item is not None
            self.renamed(reg, item)
            size = _int(reg.inputs.get("size"))
            if size is not None and item["size"] > size:
                self.differ(reg, "size", item["size"], size, REPLACEMENT_REQUIRED,
                            "Cinder cannot shrink a volume: pulumi up would fail")
            elif size is not None and item["size"] < size:
                self.differ(reg, "size", item["size"], size, UPDATE, "the volume is extended")
            vtype = reg.inputs.get("volumeType")
            if vtype is not None and item["volume_type"] != vtype:
                self.differ(reg, "volumeType", item["volume_type"], vtype, UPDATE,
                            "retype (Cinder refuses if the data must move)")
            az = reg.inputs.get("availabilityZone")
            if az is not None and item["availability_zone"] != az:
                self.differ(reg, "availabilityZone", item["availability_zone"], az, REPLACE, "ForceNew")
            want_md = dict(reg.inputs.get("metadata") or {})
            for key in sorted(set(want_md) | set(item["metadata"])):
                if item["metadata"].get(key) != want_md.get(key):
                    self.differ(reg, f"metadata.{key}", item["metadata"].get(key), want_md.get(key), UPDATE,
                                "metadata is updated in place")
        servers = {s["id"]: s["name"] for s in self.live.servers}
        for reg in self.of_type(ATTACH):
            server = self.live_id(reg.inputs.get("instanceId", ""))
            volume = self.live_id(reg.inputs.get("volumeId", ""))
            vol = next((v for v in self.live.volumes if v["id"] == volume), None)
            if server and vol is not None and server in vol["attached_to"]:
                # the provider imports an attachment as <instance ID>/<volume ID>
                self.adopt(reg, {"id": f"{server}/{volume}", "name": vol["name"]}, "attachment",
                           import_id=f"{server}/{volume}")
                continue
            self.out.missing.append((reg.type, reg.name))
            if vol is not None and vol["attached_to"]:
                vreg = next(r for r in self.of_type(VOLUME) if self.ids.get(r.id) == vol["id"])
                others = [servers.get(s, s) for s in vol["attached_to"]]
                self.differ(vreg, "attachment", others, self.report_name(reg.inputs.get("instanceId", "")),
                            REPLACEMENT_REQUIRED, "the volume is in use by another server: attaching it fails")

    def run(self) -> Adoption:
        self.network()
        self.security_groups()
        self.keypair_and_groups()
        self.servers()
        self.volumes()
        # floating IPs and their associations are not adopted: up creates them (a new address)
        self.out.missing += [(r.type, r.name) for r in self.regs
                             if r.custom and r.type.startswith("openstack:") and r.type not in ADOPTABLE]
        order = {t: i for i, t in enumerate(ADOPTABLE)}
        self.out.adopted.sort(key=lambda a: (order[a.type], a.name))
        self.out.missing = sorted(set(self.out.missing), key=lambda m: (order.get(m[0], 99), m[1]))
        return self.out


def _int(v: Any) -> int | None:
    return None if v is None else int(v)


def _rule_key(r: dict[str, Any]) -> tuple[Any, ...]:
    return (r.get("direction"), r.get("ethertype") or "IPv4", r.get("protocol"), _int(r.get("port_range_min")),
            _int(r.get("port_range_max")), r.get("remote_group_id"), r.get("remote_ip_prefix"))


def _rule_text(key: tuple[Any, ...]) -> str:
    direction, ethertype, proto, lo, hi, group, prefix = key
    ports = "" if lo is None else f" {lo}" if lo == hi else f" {lo}-{hi}"
    src = f" from group {group}" if group else f" from {prefix}" if prefix else ""
    return f"{direction} {ethertype} {proto or 'any'}{ports}{src}"


def match(report: Preview, live: Live, mapping: dict[str, Any] | None = None) -> Adoption:
    """Match ``live`` to ``report``'s registrations (a site's offline plan)."""
    if report.scope != "site":
        raise AdoptError(f"adopt takes a site; {report.env.name!r} is {report.scope} file")
    return _Matcher(report, live, mapping or {}).run()
