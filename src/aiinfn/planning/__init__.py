"""Planning: turn a validated Environment into derived facts (step 2 of the flow of data)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..catalogue import accelerators as cat
from ..catalogue import mig
from ..config.models import Environment, Role
from .capacity import HostFit, Kind, KindCapacity, capacity, fit_on_hosts
from .nodes import Node, inventory
from .quotas import ProjectQuota, project_quotas, unassigned

#: Share of a node kept for the system (kubelet, RKE2, CNI): 1 CPU and 10 % of memory.
SYSTEM_RESERVED_CPU = 1
SYSTEM_RESERVED_MEMORY = 0.10


@dataclass(frozen=True)
class Plan:
    env: Environment
    nodes: list[Node]
    capacity: dict[str, KindCapacity]
    host_fit: HostFit
    quotas: list[ProjectQuota]
    shared_pool: dict[str, int]

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def first(self, role: Role) -> Node | None:
        """The first node of ``role`` in file order (the RKE2 server others join, the NFS node ...)."""
        return next((n for n in self.nodes if n.role is role), None)

    def schedulable(self) -> tuple[int, int]:
        """CPU cores and memory (GiB) users' pods can get: agents and accelerator nodes, minus the
        share each node keeps for the system (SYSTEM_RESERVED_CPU, SYSTEM_RESERVED_MEMORY)."""
        cpu = 0
        mem = 0
        for n in self.nodes:
            if n.role not in (Role.AGENT, Role.GPU, Role.FPGA):
                continue
            f = self.env.flavors[n.flavor]
            cpu += max(f.vcpus - SYSTEM_RESERVED_CPU, 0)
            mem += math.floor(f.ram_gb * (1 - SYSTEM_RESERVED_MEMORY))
        return cpu, mem

    def reserved_kinds(self) -> dict[str, str]:
        """Kinds whose nodes are all reserved for one IAM group: kind -> group."""
        out: dict[str, str] = {}
        for key, cap in self.capacity.items():
            groups = {self.node(n).reserved_for for n in cap.nodes}
            only = next(iter(groups))
            if len(groups) == 1 and only is not None:
                out[key] = only
        return out

    def visible_kinds(self, group: str | None) -> dict[str, KindCapacity]:
        """The kinds a queue of IAM group ``group`` may hold: all but those reserved for another group
        (``None``: the whole cohort, which holds no reserved kind)."""
        reserved = self.reserved_kinds()
        return {k: c for k, c in self.capacity.items() if k not in reserved or reserved[k] == group}

    def mig_parted_config(self) -> dict[str, object]:
        """The mig-parted config file (``config.yaml`` of the MIG manager's ConfigMap).

        Holds NVIDIA's two generic configs plus one named config per distinct node layout.
        """
        configs: dict[str, object] = {
            "all-disabled": [{"devices": "all", "mig-enabled": False}],
        }
        for n in self.nodes:
            if n.accelerator is None or n.mig_config is None or n.mig_config in configs:
                continue
            model = cat.model(n.accelerator)
            configs[n.mig_config] = mig.mig_parted_entries(
                model, [list(x) if x is not None else None for x in n.mig_layouts]
            )
        return {"version": "v1", "mig-configs": configs}


def make_plan(env: Environment) -> Plan:
    nodes = inventory(env)
    caps = capacity(env, nodes)
    quotas = project_quotas(env, caps)
    return Plan(
        env=env,
        nodes=nodes,
        capacity=caps,
        host_fit=fit_on_hosts(env, nodes),
        quotas=quotas,
        shared_pool=unassigned(caps, quotas),
    )


__all__ = ["Kind", "KindCapacity", "Node", "Plan", "make_plan"]
