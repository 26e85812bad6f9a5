"""Preflight: check against the live cloud what `pulumi up` will need, before it changes anything."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from .requirements import Requirements

#: Nova validates flavor extra specs (the PCI alias format) only from this microversion on.
MIN_COMPUTE_MICROVERSION = (2, 86)

#: quota name -> (service, limit key, usage key) in openstacksdk's normalised quota objects
QUOTAS: dict[str, str] = {
    "instances": "compute",
    "cores": "compute",
    "ram": "compute",
    "volumes": "volume",
    "gigabytes": "volume",
    "floating_ips": "network",
    "ports": "network",
    "security_groups": "network",
    "security_group_rules": "network",
    "networks": "network",
    "subnets": "network",
    "routers": "network",
}


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    remedy: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_microversion(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        major, minor = str(text).split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        return None


def quota_check(name: str, limit: int, used: int, need: int) -> Check:
    """A quota covers the plan when limit is unlimited (-1) or used + need <= limit."""
    if limit < 0:
        return Check(f"quota {name}", True, f"unlimited (using {used}, plan adds {need})")
    free = limit - used
    if need <= free:
        return Check(f"quota {name}", True, f"{used}/{limit} used, plan adds {need}")
    return Check(
        f"quota {name}",
        False,
        f"{used}/{limit} used, plan adds {need}: {need - free} short",
        f"ask the cloud admins to raise {name} to at least {used + need}, or plan fewer resources",
    )


def run(conn: Any, req: Requirements) -> list[Check]:
    checks: list[Check] = [Check("authentication", True, f"project {conn.current_project_id}")]
    checks.append(_microversion(conn))
    checks.append(_image(conn, req))
    checks.append(_external_network(conn, req))
    checks.append(_availability_zone(conn, req))
    if req.keypair:
        checks.append(_keypair(conn, req))
    checks.extend(_flavors(conn, req))
    checks.extend(_quotas(conn, req))
    return checks


def _microversion(conn: Any) -> Check:
    data = conn.compute.get_endpoint_data()
    got = parse_microversion(getattr(data, "max_microversion", None))
    want = ".".join(map(str, MIN_COMPUTE_MICROVERSION))
    if got is not None and got >= MIN_COMPUTE_MICROVERSION:
        return Check("compute microversion", True, f"{got[0]}.{got[1]} (>= {want})")
    return Check(
        "compute microversion",
        False,
        f"{'none' if got is None else f'{got[0]}.{got[1]}'} < {want}: Nova would not validate flavor extra specs",
        "upgrade Nova, or check that the PCI alias of every GPU flavor has a count by hand",
    )


def _image(conn: Any, req: Requirements) -> Check:
    image = conn.image.find_image(req.image)
    if image is None:
        return Check(f"image {req.image}", False, "not found", "upload the image or fix site.image")
    return Check(f"image {req.image}", True, f"{image.id} ({getattr(image, 'status', '?')})")


def _external_network(conn: Any, req: Requirements) -> Check:
    net = conn.network.find_network(req.external_network)
    if net is None:
        return Check(f"network {req.external_network}", False, "not found", "fix site.external_network")
    if not getattr(net, "is_router_external", False):
        return Check(f"network {req.external_network}", False, "exists but is not external",
                     "choose a network with router:external")
    return Check(f"network {req.external_network}", True, f"{net.id} (external)")


def _availability_zone(conn: Any, req: Requirements) -> Check:
    zones = {z.name for z in conn.compute.availability_zones() if getattr(z, "state", {}).get("available", True)}
    if req.availability_zone in zones:
        return Check(f"availability zone {req.availability_zone}", True, "available")
    return Check(f"availability zone {req.availability_zone}", False, f"not among {sorted(zones)}",
                 "fix site.availability_zone")


def _keypair(conn: Any, req: Requirements) -> Check:
    assert req.keypair is not None
    name, public = req.keypair
    kp = conn.compute.find_keypair(name)
    if kp is None:
        return Check(f"keypair {name}", True, "free: the plan creates it")
    if (kp.public_key or "").split()[:2] == public.split()[:2]:
        return Check(f"keypair {name}", True, "exists with the same public key")
    return Check(f"keypair {name}", False, "exists with another public key",
                 "delete it, or put its public key in site.ssh_public_key")


def _flavors(conn: Any, req: Requirements) -> list[Check]:
    out = []
    for f in req.flavors:
        flavor = conn.compute.find_flavor(f.name, get_extra_specs=True)
        if f.managed:
            if flavor is None:
                out.append(Check(f"flavor {f.name}", True, "absent: the plan creates it (needs admin rights)"))
            else:
                out.append(Check(f"flavor {f.name}", False, "already exists, but the plan would create it",
                                 "set site.manage_flavors: false, or delete the flavor"))
            continue
        if flavor is None:
            out.append(Check(f"flavor {f.name}", False, "not found",
                             f"ask the cloud admins for flavor {f.name}, or fix the environment's flavors"))
            continue
        problems = []
        if flavor.vcpus != f.vcpus:
            problems.append(f"vcpus {flavor.vcpus} (plan: {f.vcpus})")
        if flavor.ram != f.ram_mb:
            problems.append(f"ram {flavor.ram} MB (plan: {f.ram_mb})")
        alias = (flavor.extra_specs or {}).get("pci_passthrough:alias")
        if alias != f.pci_alias:
            problems.append(f"pci_passthrough:alias {alias!r} (plan: {f.pci_alias!r})")
        if problems:
            out.append(Check(f"flavor {f.name}", False, "; ".join(problems),
                             "align the environment's flavor with the cloud's, or ask for the right flavor"))
        else:
            out.append(Check(f"flavor {f.name}", True, f"{f.vcpus} vCPU, {f.ram_mb} MB" +
                             (f", {f.pci_alias}" if f.pci_alias else "")))
    if any(f.managed for f in req.flavors) and "admin" not in _roles(conn):
        out.append(Check("flavor management", False, "the plan creates flavors but the credentials are not admin",
                         "use admin credentials, or set site.manage_flavors: false with existing flavors"))
    return out


def _roles(conn: Any) -> set[str]:
    try:
        return set(conn.session.auth.get_access(conn.session).role_names or [])
    except Exception:  # a cloud that does not say: treat as no roles
        return set()


def _quotas(conn: Any, req: Requirements) -> list[Check]:
    project = conn.current_project_id
    out = []
    limits = conn.compute.get_limits().absolute
    compute = {
        "instances": (limits.instances, limits.instances_used),
        "cores": (limits.total_cores, limits.total_cores_used),
        "ram": (limits.total_ram, limits.total_ram_used),
    }
    net = conn.network.get_quota(project, details=True)
    volume = conn.block_storage.get_quota_set(project, usage=True)
    for name, service in QUOTAS.items():
        need = req.quota(name)
        if need == 0:
            continue
        if service == "compute":
            limit, used = compute[name]
        elif service == "network":
            detail = getattr(net, name)  # openstacksdk's QuotaDetails: {"limit", "used", "reserved"}
            limit, used = int(detail["limit"]), int(detail["used"])
        else:
            limit = int(getattr(volume, name))
            used = int((volume.usage or {}).get(name, 0))
        out.append(quota_check(name, int(limit), int(used), need))
    return out
