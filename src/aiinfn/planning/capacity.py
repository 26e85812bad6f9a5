"""Capacity: what the node inventory yields per accelerator kind, and whether the hosts can hold it.

A *kind* is what a user or a queue asks for: a whole device (``T4``, ``V70``) or one MIG profile of
a model (``A100-80GB/1g.10gb``). Kueue ResourceFlavors, project shares, JupyterHub profiles and
event allocations are all expressed in kinds.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from ..catalogue import accelerators as cat
from ..config.models import Environment, Flavor
from .labels import ACCELERATOR_LABEL, MIG_PROFILE_LABEL, mig_label_value
from .nodes import Node


@dataclass(frozen=True)
class Kind:
    key: str
    model: str
    profile: str | None
    memory_gb: int
    #: Kubernetes extended resource the kind is requested with.
    resource: str
    #: Node labels that select nodes offering this kind.
    node_labels: dict[str, str]

    @property
    def is_mig(self) -> bool:
        return self.profile is not None


@dataclass
class KindCapacity:
    kind: Kind
    units: int = 0
    devices: int = 0
    nodes: dict[str, int] = field(default_factory=dict)


def kind_key(model: str, profile: str | None) -> str:
    return f"{model}/{profile}" if profile else model


def make_kind(model_name: str, profile: str | None, mig_strategy: str) -> Kind:
    m = cat.model(model_name)
    labels = {ACCELERATOR_LABEL: m.name}
    if profile is None:
        return Kind(kind_key(m.name, None), m.name, None, m.memory_gb, m.resource, labels)
    assert m.mig is not None
    prof = m.mig.profiles[profile]
    if mig_strategy == "mixed":
        resource = f"nvidia.com/{prof.resource_suffix}"
    else:
        resource = "nvidia.com/gpu"
        # Our own label, set on the node from the plan: it holds for PCIe and SXM cards alike,
        # unlike GPU feature discovery's product name.
        labels[MIG_PROFILE_LABEL] = mig_label_value(profile)
    return Kind(kind_key(m.name, profile), m.name, profile, prof.memory_gb, resource, labels)


def capacity(env: Environment, nodes: list[Node]) -> dict[str, KindCapacity]:
    """Units of every kind the cluster offers, with the nodes that offer them (stable order)."""
    out: dict[str, KindCapacity] = {}
    strategy = env.kubernetes.mig_strategy
    for node in nodes:
        if node.accelerator is None:
            continue
        gpus = node.mig_layouts or (None,) * node.accelerator_count
        for layout in gpus:
            profiles: list[str | None] = list(layout) if layout is not None else [None]
            for profile in profiles:
                k = make_kind(node.accelerator, profile, strategy)
                cap = out.setdefault(k.key, KindCapacity(k))
                cap.units += 1
                cap.nodes[node.name] = cap.nodes.get(node.name, 0) + 1
            for key in dict.fromkeys(kind_key(node.accelerator, p) for p in profiles):
                out[key].devices += 1
    return out


# --------------------------------------------------------------------------- hosts


@dataclass
class HostSlot:
    name: str
    cores: float
    ram_gb: float
    accelerators: dict[str, int]
    vms: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class HostFit:
    """Where each VM lands under first-fit-decreasing packing, or the first VM that fits nowhere."""

    placements: dict[str, str]
    unplaced: str | None
    reason: str = ""


def fit_on_hosts(env: Environment, nodes: list[Node]) -> HostFit:
    """Pack the node VMs onto the declared physical hosts (largest accelerator demand first).

    First-fit decreasing is not optimal packing, so a failure here means "no obvious placement";
    Nova's scheduler may still find one. It is a planning guard, not a scheduler.
    """
    slots: list[HostSlot] = []
    for h in env.site.hosts:
        for i in range(1, h.count + 1):
            name = h.name if h.count == 1 else f"{h.name}-{i}"
            slots.append(HostSlot(name, h.cores * h.cpu_allocation_ratio, float(h.ram_gb), dict(h.accelerators)))

    def demand(n: Node) -> tuple[int, int, int]:
        f = env.flavors[n.flavor]
        return (n.accelerator_count, f.vcpus, f.ram_gb)

    placements: dict[str, str] = {}
    for node in sorted(nodes, key=demand, reverse=True):
        f: Flavor = env.flavors[node.flavor]
        need_acc = {m: c for m, c in f.accelerators.items()}
        for slot in slots:
            if slot.cores >= f.vcpus and slot.ram_gb >= f.ram_gb and all(
                slot.accelerators.get(m, 0) >= c for m, c in need_acc.items()
            ):
                slot.cores -= f.vcpus
                slot.ram_gb -= f.ram_gb
                for m, c in need_acc.items():
                    slot.accelerators[m] -= c
                slot.vms.append(node.name)
                placements[node.name] = slot.name
                break
        else:
            acc = ", ".join(f"{c}x {m}" for m, c in need_acc.items())
            need = f"{f.vcpus} vCPU, {f.ram_gb} GB" + (f", {acc}" if acc else "")
            return HostFit(placements, node.name, f"flavor {node.flavor!r} needs {need}")
    return HostFit(placements, None)


def installed_accelerators(env: Environment) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for h in env.site.hosts:
        for m, c in h.accelerators.items():
            totals[m] += c * h.count
    return dict(totals)


def requested_accelerators(nodes: list[Node]) -> dict[str, int]:
    totals: dict[str, int] = defaultdict(int)
    for n in nodes:
        if n.accelerator:
            totals[n.accelerator] += n.accelerator_count
    return dict(totals)
