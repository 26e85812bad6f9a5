"""NVIDIA GPU Operator on passthrough VMs, with the MIG manager fed the plan's mig-parted config.

Drivers and the container toolkit come from the nodes (the nvidia_driver role), so the operator's are
off. Each GPU node's ``nvidia.com/mig.config`` label names its entry of the ConfigMap below.

Pod Security ``privileged``: the device plugin, MIG manager, DCGM exporter and validators are
privileged and mount host paths (/dev, /run/nvidia, the kubelet's device-plugin socket), and no
level below admits them. Its pods talk to the API server and are scraped by Prometheus (DCGM 9400,
the operator's metrics 8080); nothing else reaches them.
"""

from __future__ import annotations

from typing import Any

from ..planning import Plan
from ..planning.labels import PLATFORM_LABEL
from ..serialize import yaml_dump
from . import network
from .bundle import Bundle, Manifest, Release, manifests, namespace

NAMESPACE = "gpu-operator"
MIG_CONFIGMAP = "aiinfn-mig-parted-config"


def values(plan: Plan) -> dict[str, Any]:
    return {
        "driver": {"enabled": False},
        "toolkit": {"enabled": False},
        "mig": {"strategy": plan.env.kubernetes.mig_strategy},
        "migManager": {
            "enabled": True,
            "config": {"name": MIG_CONFIGMAP, "default": "all-disabled"},
        },
        "dcgmExporter": {"enabled": True, "serviceMonitor": {"enabled": True}},
        "nfd": {"enabled": True},
    }


def mig_configmap(plan: Plan) -> dict[str, Any]:
    """The MIG manager's ConfigMap: our mig-parted config under the key it reads, ``config.yaml``."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": MIG_CONFIGMAP, "namespace": NAMESPACE},
        "data": {"config.yaml": yaml_dump(plan.mig_parted_config())},
    }


def network_policies(plan: Plan) -> list[dict[str, Any]]:
    ranges = network.Ranges.of(plan)
    return [
        *network.baseline(NAMESPACE),
        network.allow_apiserver(NAMESPACE, ranges),
        network.allow_from_prometheus(NAMESPACE, [9400, 8080]),
    ]


def bundle(plan: Plan) -> Bundle:
    return Bundle(
        "gpu-operator",
        (
            namespace(NAMESPACE, "privileged", {PLATFORM_LABEL: "true"}),  # see the module's docstring
            *manifests(*network_policies(plan)),
            Manifest("mig-parted-config", (f"ns-{NAMESPACE}",), mig_configmap(plan)),
            Release("gpu-operator", ("mig-parted-config",), chart="gpu-operator", namespace=NAMESPACE,
                    values=values(plan)),
        ),
    )
