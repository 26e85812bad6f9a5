"""The platform filesystem as the default StorageClass: one directory per volume on the NFS export.

Volumes are kept (Retain) and archived rather than deleted when their claim goes away: homes are
user data.

The provisioner mounts only ``<export>/volumes`` (``VOLUMES_DIR``, made by the nfs_server role), never the
export root: it cannot reach the platform areas (homes, groups' areas) beside it. Volumes made before
this lived in the export root; their PersistentVolumes keep their paths (Retain: the provisioner never
touches them again).

Pod Security ``baseline``: the provisioner mounts its directory as an ``nfs`` volume, which
``restricted`` forbids (and which it needs: it creates and archives every volume's directory);
baseline admits it without host access or privilege. The kubelet mounts NFS on the host, so the
provisioner's only traffic is to the API server.
"""

from __future__ import annotations

from typing import Any

from ..config.models import Role
from ..planning import Plan
from ..planning.labels import PLATFORM_LABEL
from . import network
from .bundle import Bundle, NodeAddress, Release, manifests, namespace

NAMESPACE = "nfs-provisioner"
RELEASE = "nfs-provisioner"
#: The export's directory the provisioner mounts and makes the volumes in (roles/nfs_server: nfs_server_volumes_dir).
VOLUMES_DIR = "volumes"


def storage_class(plan: Plan) -> str | None:
    """The platform StorageClass, or None when the site has no platform filesystem."""
    nfs = plan.env.storage.nfs
    return nfs.storage_class if nfs is not None and plan.first(Role.NFS) is not None else None


def values(plan: Plan, server: str | NodeAddress) -> dict[str, Any]:
    nfs = plan.env.storage.nfs
    assert nfs is not None
    return {
        "nfs": {"server": server, "path": f"{nfs.export_path}/{VOLUMES_DIR}",
                "mountOptions": ["nfsvers=4.2", "hard", "noatime"]},
        "storageClass": {
            "name": nfs.storage_class,
            "defaultClass": True,
            "reclaimPolicy": "Retain",
            "archiveOnDelete": True,
            "accessModes": "ReadWriteMany",
        },
    }


def bundle(plan: Plan) -> Bundle | None:
    node = plan.first(Role.NFS)
    if storage_class(plan) is None or node is None:
        return None
    return Bundle(
        "nfs",
        (
            namespace(NAMESPACE, "baseline", {PLATFORM_LABEL: "true"}),  # see the module's docstring
            *manifests(*network.baseline(NAMESPACE),
                       network.allow_apiserver(NAMESPACE, network.Ranges.of(plan))),
            Release(RELEASE, (f"ns-{NAMESPACE}",), chart="nfs-subdir-external-provisioner", namespace=NAMESPACE,
                    values=values(plan, NodeAddress(node.name))),
        ),
    )
