"""Node inventory: every VM the environment asks for, with a stable name and its derived facts.

Names come from the environment (explicit ``nodes:``) or from ``count:`` as ``<prefix>-01``,
``<prefix>-02`` ...; never from a position in a list, so adding a node never renames another.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..catalogue import accelerators as cat
from ..catalogue import mig
from ..config.models import Environment, NodePool, Role
from .labels import (
    ACCELERATOR_CLASS_LABEL,
    ACCELERATOR_LABEL,
    MIG_CONFIG_LABEL,
    MIG_PROFILE_LABEL,
    POOL_LABEL,
    RESERVED_FOR_LABEL,
    RESERVED_TAINT,
    ROLE_LABEL,
    SERVER_TAINT,
    SITE_LABEL,
    group_label_value,
    mig_label_value,
)

#: Prefix of the Nova metadata keys (and Neutron tags) a site's resources carry.
TAG_PREFIX = "aiinfn:"
SITE_TAG = "aiinfn:site"


@dataclass(frozen=True)
class NodeTaint:
    key: str
    value: str
    effect: str

    def as_k8s(self) -> dict[str, str]:
        return {"key": self.key, "value": self.value, "effect": self.effect}


@dataclass(frozen=True)
class Node:
    name: str
    pool: str
    role: Role
    flavor: str
    accelerator: str | None
    accelerator_count: int
    #: One entry per GPU: its MIG layout, or None when MIG is off on that GPU.
    mig_layouts: tuple[tuple[str, ...] | None, ...]
    mig_config: str | None
    labels: dict[str, str] = field(default_factory=dict)
    taints: tuple[NodeTaint, ...] = ()
    reserved_for: str | None = None
    ingress: bool = False

    @property
    def is_kubernetes_node(self) -> bool:
        return self.role in (Role.SERVER, Role.AGENT, Role.GPU, Role.FPGA)

    @property
    def mig_enabled(self) -> bool:
        return any(layout is not None for layout in self.mig_layouts)


def pool_node_names(pool_name: str, pool: NodePool) -> list[str]:
    if pool.nodes is not None:
        return list(pool.nodes)
    prefix = pool.name_prefix or pool_name
    width = max(2, len(str(pool.count or 0)))
    return [f"{prefix}-{i:0{width}d}" for i in range(1, (pool.count or 0) + 1)]


def _labels_and_taints(
    env: Environment, pool_name: str, pool: NodePool, config_name: str | None
) -> tuple[dict[str, str], tuple[NodeTaint, ...]]:
    labels = {
        SITE_LABEL: env.site.name,
        POOL_LABEL: pool_name,
        ROLE_LABEL: pool.role.value,
    }
    taints: list[NodeTaint] = []
    if pool.accelerators is not None:
        m = cat.model(pool.accelerators.model)
        labels[ACCELERATOR_LABEL] = m.name
        labels[ACCELERATOR_CLASS_LABEL] = m.device_class.value
        taints.append(NodeTaint(ACCELERATOR_LABEL, m.name, "NoSchedule"))
        if m.device_class is cat.DeviceClass.GPU:
            labels[MIG_CONFIG_LABEL] = config_name or "all-disabled"
            profiles = set(pool.mig or ())
            if env.kubernetes.mig_strategy == "single" and len(profiles) == 1:
                labels[MIG_PROFILE_LABEL] = mig_label_value(profiles.pop())
    if pool.reserved_for:
        value = group_label_value(pool.reserved_for)
        labels[RESERVED_FOR_LABEL] = value
        taints.append(NodeTaint(RESERVED_TAINT, value, "NoSchedule"))
    if pool.role is Role.SERVER:
        taints.append(NodeTaint(*SERVER_TAINT))
    labels.update(pool.labels)
    taints.extend(NodeTaint(t.key, t.value, t.effect.value) for t in pool.taints)
    return labels, tuple(taints)


def pool_nodes(env: Environment, pool_name: str, pool: NodePool) -> list[Node]:
    accel = pool.accelerators
    model = cat.model(accel.model) if accel else None
    layouts: tuple[tuple[str, ...] | None, ...] = ()
    config_name: str | None = None
    if accel and model:
        per_gpu: tuple[str, ...] | None = tuple(pool.mig) if pool.mig is not None else None
        layouts = tuple(per_gpu for _ in range(accel.per_node))
        if model.mig_capable:
            config_name = mig.config_name(model, [list(x) if x is not None else None for x in layouts])
    labels, taints = _labels_and_taints(env, pool_name, pool, config_name)
    return [
        Node(
            name=name,
            pool=pool_name,
            role=pool.role,
            flavor=pool.flavor,
            accelerator=model.name if model else None,
            accelerator_count=accel.per_node if accel else 0,
            mig_layouts=layouts,
            mig_config=config_name,
            labels=labels,
            taints=taints,
            reserved_for=pool.reserved_for,
            ingress=pool.ingress,
        )
        for name in pool_node_names(pool_name, pool)
    ]


def inventory(env: Environment) -> list[Node]:
    """Every node of the environment, pool by pool, in file order."""
    out: list[Node] = []
    for pool_name, pool in env.node_pools.items():
        out.extend(pool_nodes(env, pool_name, pool))
    return out


def server_metadata(env: Environment, node: Node) -> dict[str, str]:
    """The Nova metadata of ``node``'s server: what the dynamic inventory finds and groups it by.

    The stacks write it and the dynamic inventory compares a server's metadata with it; Nova
    metadata values are strings.
    """
    accel = f"{node.accelerator}:{node.accelerator_count}" if node.accelerator else "none"
    return {
        SITE_TAG: env.site.name,
        f"{TAG_PREFIX}pool": node.pool,
        f"{TAG_PREFIX}role": node.role.value,
        f"{TAG_PREFIX}accelerators": accel,
        f"{TAG_PREFIX}mig-config": node.mig_config or "none",
    }


def site_tags(env: Environment, **extra: str) -> list[str]:
    """Neutron tags of a site's network resources (``aiinfn:site=<site>`` and ``aiinfn:<k>=<v>``)."""
    return [f"{SITE_TAG}={env.site.name}", *(f"{TAG_PREFIX}{k}={v}" for k, v in extra.items())]
