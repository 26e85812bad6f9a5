"""Harbor: the platform's registry of managed environments (OCI and Apptainer images).

External URL and ingress with TLS, admin password from a Pulumi secret, registry storage in S3
(RadosGW, ``disableredirect``), the internal database on a claim the stack protects, and
``resourcePolicy: keep``. A setup Job (``aiinfn.jobs.harbor_setup``) then creates the private projects
and the nodes' pull robot, with the least access it needs.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Any

from .. import versions
from ..planning import Plan
from . import tls
from .bundle import Bundle, ConfigSecret, Manifest, Release, Secret, claim, manifests, namespace

NAMESPACE = "harbor"
ADMIN_SECRET = "aiinfn-harbor-admin"
S3_SECRET = "aiinfn-harbor-s3"
DB_CLAIM = "aiinfn-harbor-database"
PROJECTS = ("environments", "apptainer")
ROBOT = "nodes"
ROBOT_SECRET = "aiinfn-harbor-robot-nodes"
SETUP = "aiinfn-harbor-setup"
RELEASE = "harbor"


def host(plan: Plan) -> str | None:
    """Harbor's public host name (``harbor.<domain>`` unless set), or None without Harbor."""
    h = plan.env.services.harbor
    if h is None:
        return None
    return h.hostname or f"harbor.{plan.env.site.domain}"


def values(plan: Plan) -> dict[str, Any]:
    h = plan.env.services.harbor
    name = host(plan)
    assert h is not None and name is not None
    out: dict[str, Any] = {
        "externalURL": f"https://{name}",
        "expose": {
            "type": "ingress",
            "tls": {"enabled": True, "certSource": "secret", "secret": {"secretName": "harbor-tls"}},
            "ingress": {
                "hosts": {"core": name},
                "className": tls.INGRESS_CLASS,
                "annotations": tls.ingress_annotations(),
            },
        },
        "existingSecretAdminPassword": ADMIN_SECRET,
        "existingSecretAdminPasswordKey": "HARBOR_ADMIN_PASSWORD",
        "database": {"type": "internal"},
        "persistence": {
            "enabled": True,
            "resourcePolicy": "keep",
            "persistentVolumeClaim": {"database": {"existingClaim": DB_CLAIM}},
        },
        "metrics": {"enabled": True, "serviceMonitor": {"enabled": True}},
    }
    s3 = plan.env.storage.s3
    if h.s3_bucket and s3 is not None:
        out["persistence"]["imageChartStorage"] = {
            "type": "s3",
            "disableredirect": True,
            "s3": {
                "region": s3.region,
                "bucket": h.s3_bucket,
                "regionendpoint": s3.endpoint,
                "existingSecret": S3_SECRET,
                "secure": True,
                "v4auth": True,
            },
        }
    return out


def setup_objects() -> list[dict[str, Any]]:
    """The Job that creates Harbor's projects and the nodes' robot account (aiinfn.jobs.harbor_setup),
    with the least access it needs: read/write Secrets in Harbor's namespace only.

    The Job's name carries a digest of its program and settings, so a change runs it again.
    """
    ns = NAMESPACE
    program = resources.files("aiinfn.jobs").joinpath("harbor_setup.py").read_text()
    env = {
        "HARBOR_URL": "http://harbor-core",
        "HARBOR_PROJECTS": ",".join(PROJECTS),
        "HARBOR_ROBOT": ROBOT,
        "TARGET_NAMESPACE": ns,
        "TARGET_SECRET": ROBOT_SECRET,
    }
    digest = hashlib.sha256((program + repr(sorted(env.items())) + versions.JOB_IMAGE).encode()).hexdigest()[:10]
    meta = {"name": SETUP, "namespace": ns}
    admin_password = {"name": ADMIN_SECRET, "key": "HARBOR_ADMIN_PASSWORD"}
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
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": SETUP},
            "subjects": [{"kind": "ServiceAccount", "name": SETUP, "namespace": ns}],
        },
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"harbor_setup.py": program}},
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": f"{SETUP}-{digest}", "namespace": ns},
            "spec": {
                "backoffLimit": 10,
                "ttlSecondsAfterFinished": 86400,
                "template": {
                    "spec": {
                        "serviceAccountName": SETUP,
                        "restartPolicy": "OnFailure",
                        "securityContext": {"runAsNonRoot": True, "runAsUser": 65534},
                        "containers": [
                            {
                                "name": "setup",
                                "image": versions.JOB_IMAGE,
                                "command": ["python3", "/job/harbor_setup.py"],
                                "env": [{"name": k, "value": v} for k, v in env.items()]
                                + [{"name": "HARBOR_ADMIN_PASSWORD", "valueFrom": {"secretKeyRef": admin_password}}],
                                "volumeMounts": [{"name": "job", "mountPath": "/job", "readOnly": True}],
                                "securityContext": {
                                    "allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]},
                                },
                            }
                        ],
                        "volumes": [{"name": "job", "configMap": {"name": SETUP}}],
                    }
                },
            },
        },
    ]


def bundle(plan: Plan, storage_class: str | None) -> Bundle | None:
    h = plan.env.services.harbor
    if h is None or storage_class is None:
        return None
    ns = f"ns-{NAMESPACE}"
    items: list[Any] = [
        namespace(NAMESPACE, "baseline"),
        Secret(ADMIN_SECRET, (ns,), name=ADMIN_SECRET, namespace=NAMESPACE,
               data={"HARBOR_ADMIN_PASSWORD": ConfigSecret(h.admin_password_secret)}),
    ]
    if h.s3_access_key_secret and h.s3_secret_key_secret:
        items.append(Secret(S3_SECRET, (ns,), name=S3_SECRET, namespace=NAMESPACE, data={
            "REGISTRY_STORAGE_S3_ACCESSKEY": ConfigSecret(h.s3_access_key_secret),
            "REGISTRY_STORAGE_S3_SECRETKEY": ConfigSecret(h.s3_secret_key_secret),
        }))
    items.append(Manifest("harbor-database", (ns,), claim(DB_CLAIM, NAMESPACE, storage_class, h.database_size_gb),
                          protect=True))
    items.append(Release(RELEASE, (ns, tls.RELEASE, *(i.key for i in items[1:])), chart="harbor",
                         namespace=NAMESPACE, values=values(plan)))
    items.extend(manifests(*setup_objects(), after=(RELEASE,)))
    return Bundle("harbor", tuple(items))
