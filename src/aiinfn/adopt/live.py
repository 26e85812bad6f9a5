"""What the live project holds, read once through openstacksdk (list calls only, nothing is changed).

``read(conn)`` makes one list call per kind (servers, ports, volumes, networks, subnets, routers,
security groups with their rules, flavors, images, keypairs, server groups), so its cost grows with
the number of pages, not with one request per server. Everything is kept as plain dicts with the
fields adoption compares, so the matching (``adopt.match``) is pure and testable without a cloud.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Live:
    """The project's resources by kind, each a plain dict (``id`` and ``name`` always present)."""

    servers: list[dict[str, Any]] = field(default_factory=list)
    ports: list[dict[str, Any]] = field(default_factory=list)
    volumes: list[dict[str, Any]] = field(default_factory=list)
    networks: list[dict[str, Any]] = field(default_factory=list)
    subnets: list[dict[str, Any]] = field(default_factory=list)
    routers: list[dict[str, Any]] = field(default_factory=list)
    security_groups: list[dict[str, Any]] = field(default_factory=list)
    flavors: dict[str, str] = field(default_factory=dict)  # id -> name
    images: dict[str, str] = field(default_factory=dict)  # id -> name
    keypairs: dict[str, str] = field(default_factory=dict)  # name -> public key
    server_groups: list[dict[str, Any]] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {k: len(getattr(self, k)) for k in ("servers", "ports", "volumes", "networks", "subnets", "routers",
                                                   "security_groups")}


def _flavor_name(flavor: Any, flavors: dict[str, str]) -> str:
    """The flavor a server runs: Nova embeds its name from microversion 2.47, else it gives only the ID."""
    if flavor is None:
        return ""
    get = flavor.get if isinstance(flavor, dict) else lambda k, d=None: getattr(flavor, k, d)
    name = get("original_name") or get("name")
    if name:
        return str(name)
    fid = get("id") or ""
    return flavors.get(str(fid), str(fid))


def _image_id(image: Any) -> str:
    if not image:
        return ""
    get = image.get if isinstance(image, dict) else lambda k, d=None: getattr(image, k, d)
    return str(get("id") or "")


def read(conn: Any) -> Live:
    """List what adoption compares. Read only: every call is a GET."""
    live = Live()
    live.flavors = {str(f.id): str(f.name) for f in conn.compute.flavors(details=False)}
    live.images = {str(i.id): str(i.name) for i in conn.image.images()}
    for s in conn.compute.servers(details=True):
        live.servers.append({
            "id": str(s.id),
            "name": str(s.name),
            "flavor": _flavor_name(s.flavor, live.flavors),
            "image_id": _image_id(s.image),
            "key_name": s.key_name or None,
            "availability_zone": s.availability_zone or None,
            "metadata": {str(k): str(v) for k, v in (s.metadata or {}).items()},
            "volumes": [str(v["id"]) for v in (s.attached_volumes or [])],
            "status": str(s.status),
        })
    for p in conn.network.ports():
        live.ports.append({
            "id": str(p.id),
            "name": str(p.name or ""),
            "network_id": str(p.network_id),
            "device_id": str(p.device_id or ""),
            "device_owner": str(p.device_owner or ""),
            "fixed_ips": [{"subnet_id": str(f.get("subnet_id")), "ip_address": str(f.get("ip_address"))}
                          for f in (p.fixed_ips or [])],
            "security_group_ids": sorted(str(g) for g in (p.security_group_ids or [])),
            "tags": sorted(str(t) for t in (p.tags or [])),
        })
    for v in conn.block_storage.volumes(details=True):
        live.volumes.append({
            "id": str(v.id),
            "name": str(v.name or ""),
            "size": int(v.size or 0),
            "volume_type": v.volume_type or None,
            "availability_zone": v.availability_zone or None,
            "metadata": {str(k): str(val) for k, val in (v.metadata or {}).items()},
            "attached_to": sorted(str(a.get("server_id")) for a in (v.attachments or [])),
        })
    for n in conn.network.networks():
        live.networks.append({"id": str(n.id), "name": str(n.name or ""), "mtu": n.mtu,
                              "tags": sorted(str(t) for t in (n.tags or [])), "external": bool(n.is_router_external)})
    for sn in conn.network.subnets():
        live.subnets.append({"id": str(sn.id), "name": str(sn.name or ""), "network_id": str(sn.network_id),
                             "cidr": str(sn.cidr), "enable_dhcp": bool(sn.is_dhcp_enabled),
                             "dns_nameservers": [str(d) for d in (sn.dns_nameservers or [])],
                             "tags": sorted(str(t) for t in (sn.tags or []))})
    for r in conn.network.routers():
        gateway = r.external_gateway_info or {}
        live.routers.append({"id": str(r.id), "name": str(r.name or ""),
                             "external_network_id": str(gateway.get("network_id") or ""),
                             "tags": sorted(str(t) for t in (r.tags or []))})
    for g in conn.network.security_groups():
        live.security_groups.append({
            "id": str(g.id),
            "name": str(g.name or ""),
            "description": str(g.description or ""),
            "tags": sorted(str(t) for t in (g.tags or [])),
            "rules": [{k: rule.get(k) for k in ("id", "direction", "ethertype", "protocol", "port_range_min",
                                                "port_range_max", "remote_group_id", "remote_ip_prefix")}
                      for rule in (g.security_group_rules or [])],
        })
    live.keypairs = {str(k.name): str(k.public_key or '') for k in conn.compute.keypairs()}
    live.server_groups = [{"id": str(g.id), "name": str(g.name), "members": sorted(str(m) for m in g.member_ids or [])}
                          for g in conn.compute.server_groups()]
    return live
