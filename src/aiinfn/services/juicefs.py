"""JuiceFS: the CSI driver and a StorageClass (Retain) for data that crosses sites.

The provisioner and node-publish secret holds the metadata engine's URL and the S3 keys, all Pulumi
secrets.
"""

from __future__ import annotations

from typing import Any

from ..planning import Plan
from .bundle import Bundle, ConfigSecret, Manifest, Release, Secret, namespace

NAMESPACE = "juicefs"
SECRET = "aiinfn-juicefs"
RELEASE = "juicefs-csi-driver"


def values() -> dict[str, Any]:
    return {"storageClasses": [], "controller": {"replicas": 2}, "node": {"hostNetwork": False}}


def storage_class(plan: Plan) -> dict[str, Any] | None:
    jfs = plan.env.storage.juicefs
    if jfs is None or not jfs.enabled or plan.env.storage.s3 is None:
        return None
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": jfs.storage_class},
        "provisioner": "csi.juicefs.com",
        "reclaimPolicy": "Retain",
        "allowVolumeExpansion": True,
        "parameters": {
            "csi.storage.k8s.io/provisioner-secret-name": SECRET,
            "csi.storage.k8s.io/provisioner-secret-namespace": NAMESPACE,
            "csi.storage.k8s.io/node-publish-secret-name": SECRET,
            "csi.storage.k8s.io/node-publish-secret-namespace": NAMESPACE,
        },
    }


def bundle(plan: Plan) -> Bundle | None:
    sc = storage_class(plan)
    jfs = plan.env.storage.juicefs
    if sc is None or jfs is None:
        return None
    return Bundle(
        "juicefs",
        (
            namespace(NAMESPACE, "privileged"),  # the CSI node plugin mounts on the host
            Secret(SECRET, (f"ns-{NAMESPACE}",), name=SECRET, namespace=NAMESPACE, data={
                "name": f"aiinfn-{plan.env.site.name}",
                "metaurl": ConfigSecret(jfs.metadata_url_secret),
                "storage": "s3",
                "bucket": jfs.bucket,
                "access-key": ConfigSecret(jfs.access_key_secret),
                "secret-key": ConfigSecret(jfs.secret_key_secret),
            }),
            Release(RELEASE, (f"ns-{NAMESPACE}",), chart="juicefs-csi-driver", namespace=NAMESPACE, values=values()),
            Manifest(f"storageclass-{jfs.storage_class}", (RELEASE, SECRET), sc),
        ),
    )
