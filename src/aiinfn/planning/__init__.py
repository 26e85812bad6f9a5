"""Planning: turn a validated Environment into derived facts (step 2 of the flow of data)."""

from __future__ import annotations

from dataclasses import dataclass

from ..catalogue import accelerators as cat
from ..catalogue import mig
from ..config.models import Environment
from .capacity import HostFit, Kind, KindCapacity, capacity, fit_on_hosts
from .nodes import Node, inventory
from .quotas import EventAllocation, ProjectQuota, event_allocation, project_quotas, unassigned


@dataclass(frozen=True)
class Plan:
    env: Environment
    nodes: list[Node]
    capacity: dict[str, KindCapacity]
    host_fit: HostFit
    quotas: list[ProjectQuota]
    shared_pool: dict[str, int]
    event: EventAllocation | None

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

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
        event=event_allocation(env, caps),
    )


__all__ = ["Kind", "KindCapacity", "Node", "Plan", "make_plan"]
