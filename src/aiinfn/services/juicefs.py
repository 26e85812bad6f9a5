"""JuiceFS: the CSI driver and a StorageClass (Retain) for data that crosses sites.

The provisioner and node-publish secret holds the metadata engine's URL and the S3 keys, all Pulumi
secrets.

Pod Security ``privileged``: the CSI node plugin is privileged and mounts the kubelet's directories
(bidirectional mount propagation) to publish volumes on the host; no level below admits it. Network:
the API server, Prometheus on the metrics port (9567), and the metadata engine and S3 on the internet
(any port: the engine's depends on its kind), never the cluster's ranges or the metadata service.
"""

from __future__ import annotations

from typing import Any

from ..planning import Plan
from ..planning.labels import PLATFORM_LABEL
from . import network
from .bundle import Bundle, ConfigSecret, Manifest, Release, Secret, manifests, namespace

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
    ranges = network.Ranges.of(plan)
    return Bundle(
        "juicefs",
        (
            namespace(NAMESPACE, "privileged", {PLATFORM_LABEL: "true"}),  # see the module's docstring
            *manifests(*network.baseline(NAMESPACE), network.allow_apiserver(NAMESPACE, ranges),
                       network.allow_from_prometheus(NAMESPACE, [9567]),
                       network.allow_public_egress(NAMESPACE, ranges, None)),
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
