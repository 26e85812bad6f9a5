"""Platform services around the hub: TLS (cert-manager), JuiceFS, Harbor.

Values and manifests only; secrets are referenced by Secret name and filled by the stack from Pulumi
secrets, never written here.
"""

from __future__ import annotations

from typing import Any

from . import Plan

CERT_MANAGER_NAMESPACE = "cert-manager"
CLUSTER_ISSUER = "aiinfn"
JUICEFS_NAMESPACE = "juicefs"
JUICEFS_SECRET = "aiinfn-juicefs"
HARBOR_NAMESPACE = "harbor"
HARBOR_ADMIN_SECRET = "aiinfn-harbor-admin"
HARBOR_S3_SECRET = "aiinfn-harbor-s3"
HARBOR_DB_CLAIM = "aiinfn-harbor-database"
INGRESS_CLASS = "nginx"  # RKE2's bundled ingress-nginx


def tls_annotations() -> dict[str, str]:
    return {"cert-manager.io/cluster-issuer": CLUSTER_ISSUER}


def cert_manager_values() -> dict[str, Any]:
    return {"crds": {"enabled": True, "keep": True}, "prometheus": {"servicemonitor": {"enabled": True}}}


def cluster_issuer(plan: Plan) -> dict[str, Any]:
    """ACME (Let's Encrypt by default) when the site gives a contact address, else self-signed."""
    tls = plan.env.services.tls
    if tls.acme_email:
        spec: dict[str, Any] = {
            "acme": {
                "email": tls.acme_email,
                "server": tls.acme_server,
                "privateKeySecretRef": {"name": "aiinfn-acme-account"},
                "solvers": [{"http01": {"ingress": {"ingressClassName": INGRESS_CLASS}}}],
            }
        }
    else:
        spec = {"selfSigned": {}}
    return {"apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer", "metadata": {"name": CLUSTER_ISSUER},
            "spec": spec}


def juicefs_values() -> dict[str, Any]:
    return {"storageClasses": [], "controller": {"replicas": 2}, "node": {"hostNetwork": False}}


def juicefs_storage_class(plan: Plan) -> dict[str, Any] | None:
    jfs = plan.env.storage.juicefs
    if jfs is None or not jfs.enabled:
        return None
    ref = {"name": JUICEFS_SECRET, "namespace": JUICEFS_NAMESPACE}
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": jfs.storage_class},
        "provisioner": "csi.juicefs.com",
        "reclaimPolicy": "Retain",
        "allowVolumeExpansion": True,
        "parameters": {
            "csi.storage.k8s.io/provisioner-secret-name": ref["name"],
            "csi.storage.k8s.io/provisioner-secret-namespace": ref["namespace"],
            "csi.storage.k8s.io/node-publish-secret-name": ref["name"],
            "csi.storage.k8s.io/node-publish-secret-namespace": ref["namespace"],
        },
    }


def harbor_values(plan: Plan) -> dict[str, Any] | None:
    h = plan.env.services.harbor
    if h is None:
        return None
    host = h.hostname or f"harbor.{plan.env.site.domain}"
    values: dict[str, Any] = {
        "externalURL": f"https://{host}",
        "expose": {
            "type": "ingress",
            "tls": {"enabled": True, "certSource": "secret", "secret": {"secretName": "harbor-tls"}},
            "ingress": {"hosts": {"core": host}, "className": INGRESS_CLASS, "annotations": tls_annotations()},
        },
        "existingSecretAdminPassword": HARBOR_ADMIN_SECRET,
        "existingSecretAdminPasswordKey": "HARBOR_ADMIN_PASSWORD",
        "database": {"type": "internal"},
        "persistence": {
            "enabled": True,
            "resourcePolicy": "keep",
            "persistentVolumeClaim": {"database": {"existingClaim": HARBOR_DB_CLAIM}},
        },
        "metrics": {"enabled": True, "serviceMonitor": {"enabled": True}},
    }
    s3 = plan.env.storage.s3
    if h.s3_bucket and s3 is not None:
        values["persistence"]["imageChartStorage"] = {
            "type": "s3",
            "disableredirect": True,
            "s3": {
                "region": s3.region,
                "bucket": h.s3_bucket,
                "regionendpoint": s3.endpoint,
                "existingSecret": HARBOR_S3_SECRET,
                "secure": True,
                "v4auth": True,
            },
        }
    return values
