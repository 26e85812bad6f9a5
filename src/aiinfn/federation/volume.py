"""One JuiceFS file system mounted at every site of the federation.

At each site (through the site's kubeconfig, by the federation stack): the Secret
``aiinfn-juicefs-shared`` in the ``juicefs`` namespace (the site's own JuiceFS CSI driver, checked
present by validation) with the file system's name, metadata URL and S3 keys from the federation
stack's Pulumi secrets; then, per federated project, a statically provisioned PersistentVolume
``aiinfn-shared-<project>`` on the file system's directory ``/projects/<project>`` (the same directory
at every site: a job finds its project's data wherever it runs), pre-bound to the claim ``aiinfn-shared``
in the project's namespace (a claim naming no volume: the tenant policies refuse claims by volume
name, the volume's ``claimRef`` binds it). Both are retained: they hold users' data.
"""

from __future__ import annotations

from typing import Any

from ..config.models import Federation
from ..planning import Plan
from ..services.bundle import Bundle, ConfigSecret, Manifest, Secret
from ..services.juicefs import NAMESPACE

SECRET = "aiinfn-juicefs-shared"
CLAIM = "aiinfn-shared"
DRIVER = "csi.juicefs.com"


def projects(fed: Federation) -> list[str]:
    """The federated projects (every queue's), in the file's order."""
    return list(dict.fromkeys(p for q in fed.queues.values() for p in q.projects))


def objects(fed: Federation, plan: Plan) -> list[dict[str, Any]]:
    vol = fed.volume
    assert vol is not None
    ns = {q.project: q.namespace for q in plan.quotas}
    out: list[dict[str, Any]] = []
    for p in projects(fed):
        pv = f"{CLAIM}-{p}"
        out.append({
            "apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": pv},
            "spec": {
                "capacity": {"storage": f"{vol.size_gb}Gi"},
                "accessModes": ["ReadWriteMany"],
                "persistentVolumeReclaimPolicy": "Retain",
                "storageClassName": "",
                "mountOptions": [f"subdir=/projects/{p}"],
                "claimRef": {"namespace": ns.get(p, p), "name": CLAIM},
                "csi": {"driver": DRIVER, "volumeHandle": f"{vol.name}-{p}", "fsType": "juicefs",
                        "nodePublishSecretRef": {"name": SECRET, "namespace": NAMESPACE}},
            },
        })
        out.append({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": CLAIM, "namespace": ns.get(p, p)},
            "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "",
                     "resources": {"requests": {"storage": f"{vol.size_gb}Gi"}}},
        })
    return out


def bundle(fed: Federation, plan: Plan) -> Bundle | None:
    vol = fed.volume
    if vol is None:
        return None
    secret = Secret(f"secret-{NAMESPACE}-{SECRET}", name=SECRET, namespace=NAMESPACE, data={
        "name": vol.name,
        "metaurl": ConfigSecret(vol.metadata_url_secret),
        "storage": "s3",
        "bucket": vol.bucket,
        "access-key": ConfigSecret(vol.access_key_secret),
        "secret-key": ConfigSecret(vol.secret_key_secret),
    })
    items: list[Any] = [secret]
    for o in objects(fed, plan):
        key = "-".join(x for x in (o["kind"].lower(), o["metadata"].get("namespace", ""), o["metadata"]["name"]) if x)
        items.append(Manifest(key, (secret.key,), o, protect=True))
    return Bundle("shared-volume", tuple(items))


def describe(fed: Federation, plans: dict[str, Plan]) -> dict[str, Any] | None:
    vol = fed.volume
    if vol is None:
        return None
    plan = plans[fed.manager]
    ns = {q.project: q.namespace for q in plan.quotas}
    return {"name": vol.name, "bucket": vol.bucket, "sites": list(plans), "claim": CLAIM,
            "namespaces": [ns.get(p, p) for p in projects(fed)],
            "secrets": [vol.metadata_url_secret, vol.access_key_secret, vol.secret_key_secret]}
