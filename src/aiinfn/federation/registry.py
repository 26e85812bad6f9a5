"""Synchronized software environments: Harbor replication from the primary site to the replicas.

Registered by the federation stack at the primary site, in Harbor's namespace there: the Job
``aiinfn-harbor-replication-<digest>`` (``aiinfn.jobs.harbor_replication``, with the setup Job's
client beside it, in the pinned job image, no Kubernetes API access: no token mounted) that makes
Harbor's registry endpoints and push-based replication policies through Harbor's API, the admin
password of the primary (the site's own Secret) and the replicas' replication account
(``registry.robot_secret``, a Pulumi secret of the federation stack) as files of its Secret mounts.
Its pods carry the setup Job's label, so the site's Harbor NetworkPolicies let them reach Harbor's core
and nothing else. The name carries a digest of the programs and settings: a change runs it again.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from typing import Any

from .. import versions
from ..config.models import Federation
from ..planning import Plan
from ..services import harbor
from ..services.bundle import Bundle, ConfigSecret, Secret, manifests

NAME = "aiinfn-harbor-replication"
CREDENTIALS_MOUNT = "/var/run/secrets/aiinfn/replication"


def replica_urls(fed: Federation, plans: dict[str, Plan]) -> dict[str, str]:
    reg = fed.registry
    assert reg is not None
    return {r: f"https://{harbor.host(plans[r])}" for r in reg.replicas}


def objects(fed: Federation, plans: dict[str, Plan]) -> list[dict[str, Any]]:
    reg = fed.registry
    assert reg is not None
    ns = harbor.NAMESPACE
    files = {f: resources.files("aiinfn.jobs").joinpath(f).read_text()
             for f in ("harbor_replication.py", "harbor_setup.py")}
    env = {
        "HARBOR_URL": "http://harbor-core",
        "PROJECTS": ",".join(reg.projects),
        "REPLICAS": json.dumps([{"name": n, "url": u} for n, u in replica_urls(fed, plans).items()], sort_keys=True),
        "HARBOR_ADMIN_PASSWORD_FILE": f"{harbor.ADMIN_MOUNT}/HARBOR_ADMIN_PASSWORD",
        "REPLICA_CREDENTIALS_FILE": f"{CREDENTIALS_MOUNT}/credentials",
    }
    digest = hashlib.sha256((repr(sorted(files.items())) + repr(sorted(env.items())) + versions.JOB_IMAGE)
                            .encode()).hexdigest()[:10]
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": NAME, "namespace": ns}, "data": files},
        {
            "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": f"{NAME}-{digest}", "namespace": ns},
            "spec": {
                "backoffLimit": 10,
                "ttlSecondsAfterFinished": 86400,
                "template": {
                    "metadata": {"labels": dict(harbor.SETUP_PODS)},
                    "spec": {
                        "automountServiceAccountToken": False,
                        "restartPolicy": "OnFailure",
                        "securityContext": {"runAsNonRoot": True, "runAsUser": 65534,
                                            "seccompProfile": {"type": "RuntimeDefault"}},
                        "containers": [{
                            "name": "replication",
                            "image": versions.JOB_IMAGE,
                            "command": ["python3", "/job/harbor_replication.py"],
                            "env": [{"name": k, "value": v} for k, v in env.items()],
                            "volumeMounts": [
                                {"name": "job", "mountPath": "/job", "readOnly": True},
                                {"name": "admin", "mountPath": harbor.ADMIN_MOUNT, "readOnly": True},
                                {"name": "credentials", "mountPath": CREDENTIALS_MOUNT, "readOnly": True}],
                            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                        }],
                        "volumes": [
                            {"name": "job", "configMap": {"name": NAME}},
                            {"name": "admin", "secret": {"secretName": harbor.ADMIN_SECRET, "items": [
                                {"key": "HARBOR_ADMIN_PASSWORD", "path": "HARBOR_ADMIN_PASSWORD"}]}},
                            {"name": "credentials", "secret": {"secretName": NAME}}],
                    },
                },
            },
        },
    ]


def bundle(fed: Federation, plans: dict[str, Plan]) -> Bundle | None:
    reg = fed.registry
    if reg is None or not reg.replicas:
        return None
    secret = Secret(f"secret-{harbor.NAMESPACE}-{NAME}", name=NAME, namespace=harbor.NAMESPACE,
                    data={"credentials": ConfigSecret(reg.robot_secret)})
    cm, job = objects(fed, plans)
    return Bundle("harbor-replication", (secret, *manifests(cm), *manifests(job, after=(secret.key,))))


def describe(fed: Federation, plans: dict[str, Plan]) -> dict[str, Any] | None:
    reg = fed.registry
    if reg is None:
        return None
    return {"mode": "replication", "primary": reg.primary, "primary_url": f"https://{harbor.host(plans[reg.primary])}",
            "replicas": list(reg.replicas), "replica_urls": replica_urls(fed, plans), "projects": list(reg.projects),
            "pull_from_primary": [n for n in plans if n != reg.primary and n not in reg.replicas]}
