"""Overlay settings shared by the stack and by `aiinfn plan`'s artifacts: chart values, names."""

from __future__ import annotations

from typing import Any

from ..render import yaml_dump
from . import Plan

GPU_OPERATOR_NAMESPACE = "gpu-operator"
KUEUE_NAMESPACE = "kueue-system"
NFS_NAMESPACE = "nfs-provisioner"
MIG_CONFIGMAP = "aiinfn-mig-parted-config"


def gpu_operator_values(plan: Plan) -> dict[str, Any]:
    """GPU Operator on passthrough VMs: drivers and container toolkit come from the nodes (Ansible)."""
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


def kueue_values() -> dict[str, Any]:
    return {
        "enablePrometheus": True,
        "managerConfig": {
            "controllerManagerConfigYaml": yaml_dump(
                {
                    "apiVersion": "config.kueue.x-k8s.io/v1beta1",
                    "kind": "Configuration",
                    "manageJobsWithoutQueueName": False,
                    "integrations": {"frameworks": ["batch/job", "pod", "jobset.x-k8s.io/jobset"]},
                }
            )
        },
    }




def mig_configmap(plan: Plan) -> dict[str, Any]:
    """The MIG manager's ConfigMap: our mig-parted config under the key it reads, ``config.yaml``."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": MIG_CONFIGMAP, "namespace": GPU_OPERATOR_NAMESPACE},
        "data": {"config.yaml": yaml_dump(plan.mig_parted_config())},
    }


def nfs_provisioner_values(plan: Plan, server: str) -> dict[str, Any]:
    """The platform filesystem as a StorageClass: one directory per volume on the NFS export.

    Volumes are kept (Retain) and archived rather than deleted when their claim goes away: homes
    are user data.
    """
    nfs = plan.env.storage.nfs
    assert nfs is not None
    return {
        "nfs": {"server": server, "path": nfs.export_path, "mountOptions": ["nfsvers=4.2", "hard", "noatime"]},
        "storageClass": {
            "name": nfs.storage_class,
            "defaultClass": True,
            "reclaimPolicy": "Retain",
            "archiveOnDelete": True,
            "accessModes": "ReadWriteMany",
        },
    }


def platform_namespaces() -> list[dict[str, Any]]:
    """The namespaces of the platform's own services (projects' namespaces come from the projects)."""
    from . import jupyterhub, monitoring, services
    from .kueue import INTERACTIVE_LABEL

    names = [GPU_OPERATOR_NAMESPACE, KUEUE_NAMESPACE, NFS_NAMESPACE, jupyterhub.NAMESPACE, monitoring.NAMESPACE,
             services.CERT_MANAGER_NAMESPACE, services.JUICEFS_NAMESPACE, services.HARBOR_NAMESPACE]
    return [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": ns, "labels": {INTERACTIVE_LABEL: "true"} if ns == jupyterhub.NAMESPACE else {}},
        }
        for ns in names
    ]
