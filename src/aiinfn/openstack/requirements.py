"""What a plan needs from an OpenStack project, derived from the registrations of the offline plan.

Pure data: preflight compares it with the live cloud (quotas on top of current usage, flavors,
image, networks), and tests check it against the plan without a cloud.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..catalogue.accelerators import pci_alias_spec
from ..preview import Preview

#: Registration types -> the quota they consume (one each).
COUNTED = {
    "openstack:compute/instance:Instance": "instances",
    "openstack:networking/port:Port": "ports",
    "openstack:networking/floatingIp:FloatingIp": "floating_ips",
    "openstack:networking/secGroup:SecGroup": "security_groups",
    "openstack:networking/secGroupRule:SecGroupRule": "security_group_rules",
    "openstack:networking/network:Network": "networks",
    "openstack:networking/subnet:Subnet": "subnets",
    "openstack:networking/router:Router": "routers",
    "openstack:blockstorage/volume:Volume": "volumes",
}
#: Neutron creates two egress rules (IPv4, IPv6) in every new security group.
DEFAULT_RULES_PER_GROUP = 2


@dataclass(frozen=True)
class FlavorNeed:
    name: str
    vcpus: int
    ram_mb: int
    disk_gb: int
    pci_alias: str | None
    managed: bool


@dataclass
class Requirements:
    """Resources the plan adds (counts, cores, RAM, gigabytes) and the names it expects to exist."""

    counts: dict[str, int] = field(default_factory=dict)
    cores: int = 0
    ram_mb: int = 0
    gigabytes: int = 0
    image: str = ""
    external_network: str = ""
    availability_zone: str = ""
    keypair: tuple[str, str] | None = None
    flavors: list[FlavorNeed] = field(default_factory=list)
    existing_network: str | None = None

    def quota(self, name: str) -> int:
        if name == "cores":
            return self.cores
        if name == "ram":
            return self.ram_mb
        if name == "gigabytes":
            return self.gigabytes
        return self.counts.get(name, 0)


def requirements(report: Preview) -> Requirements:
    env = report.plan.env
    regs = report.run.registrations
    counts = Counter(COUNTED[r.type] for r in regs if r.type in COUNTED)
    counts["security_group_rules"] += DEFAULT_RULES_PER_GROUP * counts["security_groups"]
    boot_volumes = 0
    gigabytes = 0
    cores = 0
    ram = 0
    for r in regs:
        if r.type == "openstack:compute/instance:Instance":
            node = report.plan.node(r.inputs["name"])
            flavor = env.flavors[node.flavor]
            cores += flavor.vcpus
            ram += flavor.ram_gb * 1024
            for bd in r.inputs.get("blockDevices", []):
                if bd.get("destinationType") == "volume":
                    boot_volumes += 1
                    gigabytes += int(bd.get("volumeSize", 0))
        elif r.type == "openstack:blockstorage/volume:Volume":
            gigabytes += int(r.inputs.get("size", 0))
    counts["volumes"] += boot_volumes
    flavors = []
    used = dict.fromkeys(p.flavor for p in env.node_pools.values())
    for name in used:
        f = env.flavors[name]
        alias = pci_alias_spec(env.pci_aliases(name))
        flavors.append(FlavorNeed(name, f.vcpus, f.ram_gb * 1024, f.disk_gb, alias, env.site.manage_flavors))
    keypairs = [r for r in regs if r.type == "openstack:compute/keypair:Keypair"]
    return Requirements(
        counts=dict(counts),
        cores=cores,
        ram_mb=ram,
        gigabytes=gigabytes,
        image=env.site.image,
        external_network=env.site.external_network,
        availability_zone=env.site.availability_zone,
        keypair=(keypairs[0].inputs["name"], keypairs[0].inputs["publicKey"]) if keypairs else None,
        flavors=flavors,
        existing_network=env.network.existing_network,
    )


def summary(req: Requirements) -> dict[str, Any]:
    return {
        **req.counts,
        "cores": req.cores,
        "ram_mb": req.ram_mb,
        "gigabytes": req.gigabytes,
    }
