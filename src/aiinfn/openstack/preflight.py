"""Preflight: check against the live cloud what `pulumi up` will need, before it changes anything.

What the plan needs comes from the offline plan's registrations (``needs``: pure, no cloud); what the
cloud has comes from the project's credentials (``run``). Every check gives a status (ok, warn, fail), a
detail and, when it fails, the remedy. One failing API call fails its own check, never the whole run.
"""

from __future__ import annotations

import functools
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from ..catalogue.accelerators import pci_alias_spec
from ..preview import Preview
from .connect import find, first_line, http_status, keystone_cause
from .requirements import Requirements, requirements

#: Nova validates flavor extra specs (the PCI alias format among them) only from this microversion on.
MIN_COMPUTE_MICROVERSION = (2, 86)

#: Quotas preflight compares, in table order: name -> (service, label).
QUOTAS: dict[str, tuple[str, str]] = {
    "instances": ("compute", "instances"),
    "cores": ("compute", "cores"),
    "ram": ("compute", "RAM (MB)"),
    "server_groups": ("compute", "server groups"),
    "server_group_members": ("compute", "server group members"),
    "volumes": ("volume", "volumes"),
    "gigabytes": ("volume", "volume gigabytes"),
    "floating_ips": ("network", "floating IPs"),
    "ports": ("network", "ports"),
    "networks": ("network", "networks"),
    "subnets": ("network", "subnets"),
    "routers": ("network", "routers"),
    "security_groups": ("network", "security groups"),
    "security_group_rules": ("network", "security group rules"),
}

Status = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    remedy: str = ""

    @property
    def ok(self) -> bool:
        """Passed, or passed with a warning: only ``fail`` stops `pulumi up`."""
        return self.status != "fail"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class FlavorSpec:
    """A flavor as the plan expects it on the cloud."""

    name: str
    vcpus: int
    ram_mb: int
    ephemeral_gb: int
    aliases: dict[str, int]
    extra_specs: dict[str, str]
    managed: bool

    @property
    def alias_spec(self) -> str | None:
        return pci_alias_spec(self.aliases)


@dataclass(frozen=True)
class Needs:
    """Everything preflight compares with the cloud, derived from the plan alone."""

    environment: str
    site: str
    quotas: dict[str, int]
    flavors: list[FlavorSpec]
    image: str
    external_network: str
    availability_zone: str
    volume_types: list[str]
    uses_volumes: bool
    keypair: tuple[str, str] | None = None
    existing_network: tuple[str, str] | None = None
    manage_flavors: bool = False
    requirements: Requirements = field(default_factory=Requirements)


class AliasError(ValueError):
    """A ``pci_passthrough:alias`` value Nova cannot use at boot."""


def parse_alias(spec: str | None) -> dict[str, int]:
    """``"a100:2,t4:1"`` -> ``{"a100": 2, "t4": 1}``; AliasError for an entry without a usable count.

    Nova before microversion 2.86 stores ``a100`` (no count) without complaint; every boot with such
    a flavor then fails, which is what this catches.
    """
    out: dict[str, int] = {}
    if spec is None or not spec.strip():
        return out
    for entry in spec.split(","):
        name, sep, count = (part.strip() for part in entry.partition(":"))
        if not name:
            raise AliasError(f"empty alias name in {spec!r}")
        if not sep or not count:
            raise AliasError(f"alias {name!r} has no count (write {name}:N)")
        if not count.isdigit() or int(count) < 1:
            raise AliasError(f"alias {name!r} has count {count!r}, not a positive whole number")
        if name in out:
            raise AliasError(f"alias {name!r} appears twice in {spec!r}")
        out[name] = int(count)
    return out


def parse_microversion(value: str | tuple[int, ...] | None) -> tuple[int, int] | None:
    """``"2.93"`` or keystoneauth's ``(2, 93)`` -> ``(2, 93)``; None when absent or unreadable."""
    if not value:
        return None
    try:
        major, minor = (str(value).split(".") if isinstance(value, str) else list(value))[:2]
        return int(major), int(minor)
    except (TypeError, ValueError):
        return None


def quota_check(name: str, limit: int, used: int, need: int, label: str | None = None) -> Check:
    """A quota covers the plan when it is unlimited (-1) or when used + need <= limit."""
    title = f"quota {label or name}"
    if limit < 0:
        return Check(title, "ok", f"unlimited (using {used}, plan adds {need})")
    free = limit - used
    if need <= free:
        return Check(title, "ok", f"{used}/{limit} used, plan adds {need}")
    return Check(
        title,
        "fail",
        f"{used}/{limit} used, plan adds {need}: {need - free} short",
        f"ask the cloud admins to raise {name} to at least {used + need}, or plan fewer resources",
    )


def needs(report: Preview) -> Needs:
    """What the plan needs from the project: counts from the registrations, names from the environment."""
    env = report.plan.env
    regs = report.run.registrations
    req = requirements(report)
    quotas = {name: req.quota(name) for name in QUOTAS}
    by_type = Counter(r.type for r in regs)
    # Neutron makes a port for every router interface, and one for DHCP on every subnet that has it.
    quotas["ports"] += by_type["openstack:networking/routerInterface:RouterInterface"]
    quotas["ports"] += sum(
        1 for r in regs if r.type == "openstack:networking/subnet:Subnet" and r.inputs.get("enableDhcp", True)
    )
    groups = [r for r in regs if r.type == "openstack:compute/serverGroup:ServerGroup"]
    quotas["server_groups"] = len(groups)
    members = Counter(
        str(hint.get("group"))
        for r in regs
        if r.type == "openstack:compute/instance:Instance"
        for hint in r.inputs.get("schedulerHints") or []
        if hint.get("group")
    )
    quotas["server_group_members"] = max(members.values(), default=0)

    volume_types: set[str] = set()
    uses_volumes = False
    for r in regs:
        if r.type == "openstack:compute/instance:Instance":
            for bd in r.inputs.get("blockDevices") or []:
                if bd.get("destinationType") == "volume":
                    uses_volumes = True
                    if bd.get("volumeType"):
                        volume_types.add(str(bd["volumeType"]))
        elif r.type == "openstack:blockstorage/volume:Volume":
            uses_volumes = True
            if r.inputs.get("volumeType"):
                volume_types.add(str(r.inputs["volumeType"]))

    flavors = []
    for f in req.flavors:
        declared = env.flavors[f.name]
        aliases = env.pci_aliases(f.name)
        flavors.append(FlavorSpec(f.name, f.vcpus, f.ram_mb, declared.ephemeral_gb, aliases,
                                  dict(declared.extra_specs), f.managed))
    existing = (env.network.existing_network, str(env.network.cidr)) if env.network.existing_network else None
    return Needs(
        environment=env.name,
        site=env.site.name,
        quotas=quotas,
        flavors=flavors,
        image=req.image,
        external_network=req.external_network,
        availability_zone=req.availability_zone,
        volume_types=sorted(volume_types),
        uses_volumes=uses_volumes,
        keypair=req.keypair,
        existing_network=existing,
        manage_flavors=env.site.manage_flavors,
        requirements=req,
    )


# --------------------------------------------------------------------------- against the cloud


def run(conn: Any, need: Needs, *, timeout: float | None = None) -> list[Check]:
    """Every check, in the order an operator fixes them. Authentication already passed in ``connect``."""
    project = getattr(conn, "current_project", None)
    who = f"project {getattr(project, 'name', None) or conn.current_project_id}"
    checks: list[Check] = [Check("authentication", "ok", who)]

    def guarded(name: str, reading: str, fn: Callable[[], list[Check] | Check]) -> None:
        try:
            result = fn()
        except Exception as e:  # one failing API call fails its own check, with the reason in one line
            detail, remedy = failure(reading, e, timeout)
            checks.append(Check(name, "fail", detail, remedy))
            return
        checks.extend(result if isinstance(result, list) else [result])

    guarded("compute microversion", "the compute API versions", lambda: _microversion(conn))
    guarded(f"image {need.image}", "images", lambda: _image(conn, need.image))
    guarded(f"network {need.external_network}", "networks", lambda: _external_network(conn, need.external_network))
    if need.existing_network:
        name, cidr = need.existing_network
        guarded(f"network {name}", "networks", lambda: _existing_network(conn, name, cidr))
    zone = need.availability_zone
    guarded(f"availability zone {zone}", "compute availability zones",
            lambda: _availability_zone(conn, zone, "compute"))
    if need.uses_volumes:
        guarded(f"availability zone {zone} (volumes)", "volume availability zones",
                lambda: _availability_zone(conn, zone, "volume"))
    if need.volume_types:
        guarded("volume types", "volume types", lambda: _volume_types(conn, need.volume_types))
    if need.keypair:
        kp_name, public = need.keypair
        guarded(f"keypair {kp_name}", "keypairs", lambda: _keypair(conn, kp_name, public))
    for spec in need.flavors:
        guarded(f"flavor {spec.name}", "flavors", functools.partial(_flavor, conn, spec))
    if need.manage_flavors:
        guarded("flavor management", "flavor permissions", lambda: _may_manage_flavors(conn))
    for service in ("compute", "volume", "network"):
        if any(need.quotas.get(n) for n, (svc, _) in QUOTAS.items() if svc == service):
            guarded(f"quotas ({service})", f"{service} quotas and usage",
                    functools.partial(_quotas, conn, need.quotas, service))
    return checks


def _microversion(conn: Any) -> Check:
    data = conn.compute.get_endpoint_data()
    got = parse_microversion(getattr(data, "max_microversion", None))
    want = ".".join(map(str, MIN_COMPUTE_MICROVERSION))
    if got is not None and got >= MIN_COMPUTE_MICROVERSION:
        return Check("compute microversion", "ok", f"{got[0]}.{got[1]} (>= {want}: Nova validates flavor extra specs)")
    shown = "none" if got is None else f"{got[0]}.{got[1]}"
    return Check(
        "compute microversion",
        "fail",
        f"{shown} < {want}: Nova would accept a malformed pci_passthrough:alias and fail every boot with it",
        "upgrade Nova to Ussuri (2.86) or later; until then check every GPU flavor's alias by hand",
    )


def _image(conn: Any, name: str) -> Check:
    images = list(conn.image.images(name=name))
    title = f"image {name}"
    if not images:
        return Check(title, "fail", "not found (or not visible to this project)",
                     f"upload image {name!r} to Glance, share it with the project, or fix site.image")
    active = [i for i in images if getattr(i, "status", None) == "active"]
    if not active:
        states = ", ".join(sorted({str(getattr(i, "status", "?")) for i in images}))
        return Check(title, "fail", f"exists but is not active ({states})",
                     "wait for the upload to finish, or upload the image again")
    newest = max(active, key=lambda i: str(getattr(i, "created_at", "")))
    more = f"; {len(active)} active images share the name, the newest is used" if len(active) > 1 else ""
    return Check(title, "ok", f"{newest.id} (active){more}")


def _external_network(conn: Any, name: str) -> Check:
    nets = list(conn.network.networks(name=name))
    title = f"network {name}"
    if not nets:
        return Check(title, "fail", "not found", "fix site.external_network (see `openstack network list --external`)")
    external = [n for n in nets if getattr(n, "is_router_external", False)]
    if not external:
        return Check(title, "fail", "exists but is not external (router:external is false)",
                     "set site.external_network to a network with router:external")
    if len(external) > 1:
        return Check(title, "fail", f"{len(external)} external networks share the name",
                     "ask the cloud admins which one to use and reference it by a unique name")
    return Check(title, "ok", f"{external[0].id} (external)")


def _existing_network(conn: Any, name: str, cidr: str) -> Check:
    title = f"network {name}"
    net = find(conn.network.find_network, name)
    if net is None:
        return Check(title, "fail", "not found", "create it, or fix network.existing_network")
    subnets = [s for s in conn.network.subnets(network_id=net.id) if str(s.cidr) == cidr]
    if not subnets:
        return Check(title, "fail", f"has no subnet {cidr}", f"add subnet {cidr} to it, or fix network.cidr")
    return Check(title, "ok", f"{net.id}, subnet {cidr}")


def _availability_zone(conn: Any, zone: str, service: str) -> Check:
    """``zone`` among the available zones of ``service`` (compute: servers; volume: Cinder)."""
    if service == "compute":
        title, what, remedy = f"availability zone {zone}", "servers", "fix site.availability_zone"
        zones = conn.compute.availability_zones()
    else:
        title, what = f"availability zone {zone} (volumes)", "volumes"
        remedy = "fix site.availability_zone, or ask for Cinder in that zone"
        zones = conn.block_storage.availability_zones()
    names = {z.name for z in zones if (z.state or {}).get("available", True)}
    if zone in names:
        return Check(title, "ok", f"available for {what}")
    return Check(title, "fail", f"not a {service} zone (zones: {', '.join(sorted(names)) or 'none'})", remedy)


def _volume_types(conn: Any, wanted: list[str]) -> Check:
    have = {t.name for t in conn.block_storage.types()}
    missing = [t for t in wanted if t not in have]
    if missing:
        return Check("volume types", "fail", f"{', '.join(missing)} not found (types: {', '.join(sorted(have))})",
                     "fix site.volume_type and the pools' volume_type, or ask the cloud admins for the type")
    return Check("volume types", "ok", ", ".join(wanted))


def _keypair(conn: Any, name: str, public: str) -> Check:
    title = f"keypair {name}"
    kp = find(conn.compute.find_keypair, name)
    if kp is None:
        return Check(title, "ok", "name is free: the plan creates it from site.ssh_public_key")
    if (kp.public_key or "").split()[:2] == public.split()[:2]:
        return Check(title, "ok", "exists with the same public key")
    return Check(title, "fail", "exists with another public key",
                 f"delete keypair {name!r} (`openstack keypair delete {name}`), or put its key in site.ssh_public_key")


def flavor_problems(spec: FlavorSpec, vcpus: int, ram_mb: int, ephemeral_gb: int,
                    extra_specs: dict[str, str]) -> list[str]:
    """How a flavor on the cloud differs from what the plan expects (empty: it matches)."""
    problems = []
    if vcpus != spec.vcpus:
        problems.append(f"{vcpus} vCPUs (plan: {spec.vcpus})")
    if ram_mb != spec.ram_mb:
        problems.append(f"{ram_mb} MB RAM (plan: {spec.ram_mb})")
    if ephemeral_gb != spec.ephemeral_gb:
        problems.append(f"{ephemeral_gb} GB ephemeral disk (plan: {spec.ephemeral_gb})")
    raw = extra_specs.get("pci_passthrough:alias")
    try:
        aliases = parse_alias(raw)
    except AliasError as e:
        problems.append(f"pci_passthrough:alias {raw!r}: {e}, so every boot with it fails "
                        f"(plan: {spec.alias_spec!r})")
    else:
        if aliases != spec.aliases:
            problems.append(f"pci_passthrough:alias {raw!r} (plan: {spec.alias_spec!r})")
    for key, value in sorted(spec.extra_specs.items()):
        if extra_specs.get(key) != value:
            problems.append(f"{key}={extra_specs.get(key)!r} (plan: {value!r})")
    return problems


def _flavor(conn: Any, spec: FlavorSpec) -> Check:
    title = f"flavor {spec.name}"
    flavor = find(conn.compute.find_flavor, spec.name, get_extra_specs=True)
    if flavor is None:
        if spec.managed:
            return Check(title, "ok", "absent: the plan creates it")
        return Check(title, "fail", "not found (or not accessible to this project)",
                     f"ask the cloud admins for flavor {spec.name!r} with {spec.vcpus} vCPUs, {spec.ram_mb} MB"
                     + (f", pci_passthrough:alias={spec.alias_spec}" if spec.aliases else "")
                     + ", or fix the environment's flavors")
    problems = flavor_problems(spec, int(flavor.vcpus), int(flavor.ram), int(flavor.ephemeral or 0),
                               dict(flavor.extra_specs or {}))
    if spec.managed:
        if problems:
            return Check(title, "fail", "exists with other specs: " + "; ".join(problems),
                         "flavor names are unique: rename the environment's flavor, or delete the cloud's one")
        return Check(title, "warn", "exists with the plan's specs",
                     "fine if this stack created it; otherwise `pulumi import` it, or `pulumi up` fails on the name")
    if problems:
        return Check(title, "fail", "; ".join(problems),
                     "ask the cloud admins to fix the flavor, or describe the cloud's flavor in the environment")
    shown = f"{spec.vcpus} vCPUs, {spec.ram_mb} MB" + (f", {spec.alias_spec}" if spec.aliases else "")
    return Check(title, "ok", shown)


def _may_manage_flavors(conn: Any) -> Check:
    """Ask Nova to delete a flavor that cannot exist: 404 means the policy let us (we may create flavors
    too: both are admin-only by default), 403 means it did not. Nothing changes either way."""
    probe = f"aiinfn-preflight-{uuid.uuid4()}"
    resp = conn.compute.delete(f"/flavors/{probe}", microversion="2.1")
    code = resp.status_code
    if code == 404:
        return Check("flavor management", "ok", "the credentials may create and delete flavors")
    if code == 403:
        return Check("flavor management", "fail", "the credentials may not create flavors (HTTP 403)",
                     "use admin credentials, or set site.manage_flavors: false and have the flavors made")
    return Check("flavor management", "fail", f"unexpected answer HTTP {code} to a flavor permission probe",
                 "check the compute API, then rerun")


def _limits_and_usage(conn: Any, service: str) -> dict[str, tuple[int, int]]:
    """quota name -> (limit, usage incl. reservations) of ``service`` for the current project."""
    project = conn.current_project_id
    if service == "compute":
        limits = conn.compute.get_limits().absolute
        return {
            "instances": (limits.instances, limits.instances_used),
            "cores": (limits.total_cores, limits.total_cores_used),
            "ram": (limits.total_ram, limits.total_ram_used),
            "server_groups": (limits.server_groups, limits.server_groups_used),
            # a new group has no members yet: the limit applies per group
            "server_group_members": (limits.server_group_members, 0),
        }
    if service == "network":
        # Neutron makes the project's `default` security group on first use: make sure it is counted
        list(conn.network.security_groups(project_id=project, name="default"))
        net = conn.network.get_quota(project, details=True)
        out = {}
        for name, (svc, _) in QUOTAS.items():
            if svc == "network":
                d = getattr(net, name) or {}
                out[name] = (int(d.get("limit", -1)), int(d.get("used", 0)) + int(d.get("reserved", 0)))
        return out
    volume = conn.block_storage.get_quota_set(project, usage=True)
    usage = volume.usage or {}
    reserved = getattr(volume, "reservation", None) or {}
    return {
        n: (int(getattr(volume, n)), int(usage.get(n, 0)) + int(reserved.get(n, 0))) for n in ("volumes", "gigabytes")
    }


def _quotas(conn: Any, wanted: dict[str, int], service: str) -> list[Check]:
    have = _limits_and_usage(conn, service)
    out = []
    for name, (svc, label) in QUOTAS.items():
        need = wanted.get(name, 0)
        if svc == service and need and name in have:
            limit, used = have[name]
            out.append(quota_check(name, int(limit), int(used), need, label))
    return out


def failure(reading: str, error: BaseException, timeout: float | None = None) -> tuple[str, str]:
    """(detail, remedy) of a check whose API call failed with ``error`` while reading ``reading``."""
    from keystoneauth1 import exceptions as ks
    from openstack import exceptions as sdk

    status = http_status(error)
    inner = keystone_cause(error)
    if status == 403:
        return (f"the credentials may not read {reading} (HTTP 403)",
                f"ask the cloud admins for a role that may read {reading}, or use credentials that have it")
    if isinstance(inner, ks.ConnectTimeout):
        limit = f"within {timeout:g} s" if timeout else "in time"
        return (f"no answer {limit} while reading {reading}",
                "check the service's health and the network path to its endpoint, or raise --timeout")
    if isinstance(inner, ks.ConnectionError):
        return (f"cannot reach the service while reading {reading} (connection failed)",
                "check that the service runs and that its catalog endpoint is reachable from here")
    if isinstance(inner, ks.EndpointNotFound) or isinstance(error, sdk.EndpointNotFound):
        return (f"the service catalog has no endpoint to read {reading}", "check region_name in clouds.yaml")
    what = f"HTTP {status}" if status else type(inner or error).__name__
    return (f"{what} while reading {reading}: {first_line(inner or error)}",
            "check the service's health (its logs), then rerun")


# --------------------------------------------------------------------------- the command


@dataclass
class Result:
    environment: str
    cloud: str
    checks: list[Check]
    needs: Needs

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def document(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "cloud": self.cloud,
            "ok": self.ok,
            "checks": [c.as_dict() for c in self.checks],
            "plan_adds": {k: v for k, v in self.needs.quotas.items() if v},
        }


def preflight(env: str, cloud: str | None = None, *, timeout: float | None = None,
              report: Preview | None = None) -> Result:
    """Plan ``env`` offline, connect to ``cloud`` (default: site.cloud) and run every check."""
    from .. import preview
    from .connect import DEFAULT_TIMEOUT, connect

    report = report or preview.build(env)
    need = needs(report)
    name = cloud or report.plan.env.site.cloud
    limit = timeout or DEFAULT_TIMEOUT
    conn = connect(name, timeout=limit)
    try:
        checks = run(conn, need, timeout=limit)
    finally:
        conn.close()
    return Result(report.env.name, name, checks, need)
