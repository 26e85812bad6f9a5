"""Platform services around the hub: TLS (cert-manager), JuiceFS, Harbor.

Values and manifests only; secrets are referenced by Secret name and filled by the stack from Pulumi
secrets, never written here.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Any

from .. import versions
from . import Plan

CERT_MANAGER_NAMESPACE = "cert-manager"
CLUSTER_ISSUER = "aiinfn"
JUICEFS_NAMESPACE = "juicefs"
JUICEFS_SECRET = "aiinfn-juicefs"
HARBOR_NAMESPACE = "harbor"
HARBOR_ADMIN_SECRET = "aiinfn-harbor-admin"
HARBOR_S3_SECRET = "aiinfn-harbor-s3"
HARBOR_DB_CLAIM = "aiinfn-harbor-database"
HARBOR_PROJECTS = ("environments", "apptainer")
HARBOR_ROBOT = "nodes"
HARBOR_ROBOT_SECRET = "aiinfn-harbor-robot-nodes"
HARBOR_BOOTSTRAP = "aiinfn-harbor-bootstrap"
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


def harbor_host(plan: Plan) -> str | None:
    """Harbor's public host name (``harbor.<domain>`` unless set), or None without Harbor."""
    h = plan.env.services.harbor
    if h is None:
        return None
    return h.hostname or f"harbor.{plan.env.site.domain}"


def harbor_values(plan: Plan) -> dict[str, Any] | None:
    h = plan.env.services.harbor
    host = harbor_host(plan)
    if h is None or host is None:
        return None
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


def harbor_bootstrap_objects(plan: Plan) -> list[dict[str, Any]]:
    """A Job that creates Harbor's projects and the nodes' robot account (aiinfn.jobs.harbor_bootstrap),
    with the least access it needs: read/write Secrets in Harbor's namespace only.

    The Job's name carries a digest of its program and settings, so a change runs it again.
    """
    if plan.env.services.harbor is None:
        return []
    ns = HARBOR_NAMESPACE
    program = resources.files("aiinfn.jobs").joinpath("harbor_bootstrap.py").read_text()
    env = {
        "HARBOR_URL": "http://harbor-core",
        "HARBOR_PROJECTS": ",".join(HARBOR_PROJECTS),
        "HARBOR_ROBOT": HARBOR_ROBOT,
        "TARGET_NAMESPACE": ns,
        "TARGET_SECRET": HARBOR_ROBOT_SECRET,
    }
    digest = hashlib.sha256((program + repr(sorted(env.items())) + versions.JOB_IMAGE).encode()).hexdigest()[:10]
    meta = {"name": HARBOR_BOOTSTRAP, "namespace": ns}
    admin_password = {"name": HARBOR_ADMIN_SECRET, "key": "HARBOR_ADMIN_PASSWORD"}
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": meta,
            "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "create", "update"]}],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": HARBOR_BOOTSTRAP},
            "subjects": [{"kind": "ServiceAccount", "name": HARBOR_BOOTSTRAP, "namespace": ns}],
        },
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"harbor_bootstrap.py": program}},
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": f"{HARBOR_BOOTSTRAP}-{digest}", "namespace": ns},
            "spec": {
                "backoffLimit": 10,
                "ttlSecondsAfterFinished": 86400,
                "template": {
                    "spec": {
                        "serviceAccountName": HARBOR_BOOTSTRAP,
                        "restartPolicy": "OnFailure",
                        "securityContext": {"runAsNonRoot": True, "runAsUser": 65534},
                        "containers": [
                            {
                                "name": "bootstrap",
                                "image": versions.JOB_IMAGE,
                                "command": ["python3", "/job/harbor_bootstrap.py"],
                                "env": [{"name": k, "value": v} for k, v in env.items()]
                                + [
                                    {
                                        "name": "HARBOR_ADMIN_PASSWORD",
                                        "valueFrom": {"secretKeyRef": admin_password},
                                    }
                                ],
                                "volumeMounts": [{"name": "job", "mountPath": "/job", "readOnly": True}],
                                "securityContext": {
                                    "allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]},
                                },
                            }
                        ],
                        "volumes": [{"name": "job", "configMap": {"name": HARBOR_BOOTSTRAP}}],
                    }
                },
            },
        },
    ]


def claim(name: str, namespace: str, storage_class: str, size_gb: int) -> dict[str, Any]:
    """A ReadWriteOnce claim for a service's database (the stack protects it)."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": storage_class,
            "resources": {"requests": {"storage": f"{size_gb}Gi"}},
        },
    }


def harbor_db_claim(plan: Plan, storage_class: str) -> dict[str, Any] | None:
    """Harbor's database claim (the stack protects it: `protect`, `retain_on_delete`)."""
    h = plan.env.services.harbor
    return None if h is None else claim(HARBOR_DB_CLAIM, HARBOR_NAMESPACE, storage_class, h.database_size_gb)
