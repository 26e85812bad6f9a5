"""The areas provisioner: makes each user's home and their groups' areas before their first notebook.

``aiinfn.hub.provisioner`` (shipped in a ConfigMap, run by ``versions.JOB_IMAGE``'s Python) in the
namespace ``aiinfn-provisioner``:

* Pod Security ``baseline``: the program runs as root in its container *only to switch identity*: it
  keeps the capabilities ``SETUID`` and ``SETGID`` (restricted allows none but NET_BIND_SERVICE; baseline
  allows these), drops every other one, no privilege escalation, seccomp ``RuntimeDefault``, read-only
  root filesystem. The export squashes root, so it never acts as root on the filesystem: each directory
  is created by a child that is its owner (docs/security.md). No ServiceAccount token: it has no
  Kubernetes API access at all.
* the platform areas through its own static PersistentVolume pre-bound to its claim ``aiinfn-areas``;
* its token: generated (``RandomPassword``), a Secret here (a file of the pod) and one in the hub's
  namespace (``AIINFN_PROVISIONER_TOKEN`` of the hub, hub.extraEnv), never a Helm value;
* NetworkPolicies: only the hub's pods reach it (``PORT``); it reaches nothing but DNS (the kubelet,
  not the pod, talks NFS).
"""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Any

from .. import versions
from ..planning import Plan
from ..planning.labels import PLATFORM_LABEL
from . import jupyterhub, network, notebooks
from .bundle import Bundle, Generated, Manifest, RandomPassword, Secret, manifests, namespace

NAMESPACE = jupyterhub.PROVISIONER_NAMESPACE
NAME = "aiinfn-provisioner"
PORT = jupyterhub.PROVISIONER_PORT
PODS = {"app.kubernetes.io/name": NAME}
TOKEN_SECRET = jupyterhub.PROVISIONER_TOKEN_SECRET
TOKEN_KEY = jupyterhub.PROVISIONER_TOKEN_KEY
PROGRAM_DIR = "/srv/aiinfn-provisioner"
AREAS_MOUNT = "/areas"


def program() -> str:
    return resources.files("aiinfn.hub").joinpath("provisioner.py").read_text()


def deployment(digest: str) -> dict[str, Any]:
    env = {
        "AIINFN_AREAS": AREAS_MOUNT,
        "AIINFN_PROVISIONER_TOKEN_FILE": f"/var/run/{NAME}/{TOKEN_KEY}",
        "AIINFN_PROVISIONER_PORT": str(PORT),
    }
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": dict(PODS)},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": dict(PODS)},
            "template": {
                "metadata": {"labels": dict(PODS), "annotations": {"aiinfn.provisioner/digest": digest}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "provisioner",
                        "image": versions.JOB_IMAGE,
                        "command": ["python3", f"{PROGRAM_DIR}/provisioner.py", "serve"],
                        "env": [{"name": k, "value": v} for k, v in env.items()],
                        "ports": [{"name": "http", "containerPort": PORT}],
                        "readinessProbe": {"httpGet": {"path": "/health", "port": PORT}, "periodSeconds": 10},
                        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"},
                                      "limits": {"cpu": "1", "memory": "256Mi"}},
                        "securityContext": {
                            "runAsUser": 0,
                            "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"], "add": ["SETUID", "SETGID"]},
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                        "volumeMounts": [
                            {"name": "program", "mountPath": PROGRAM_DIR, "readOnly": True},
                            {"name": "token", "mountPath": f"/var/run/{NAME}", "readOnly": True},
                            {"name": "areas", "mountPath": AREAS_MOUNT},
                        ],
                    }],
                    "volumes": [
                        {"name": "program", "configMap": {"name": NAME, "defaultMode": 0o644}},
                        {"name": "token", "secret": {"secretName": TOKEN_SECRET, "defaultMode": 0o400}},
                        {"name": "areas", "persistentVolumeClaim": {"claimName": notebooks.AREAS_CLAIM}},
                    ],
                },
            },
        },
    }


def network_policies() -> list[dict[str, Any]]:
    return [
        *network.baseline(NAMESPACE, same_namespace=False),
        network.policy("allow-hub", NAMESPACE, pods=PODS, ingress=[{
            "from": [network.in_namespace(jupyterhub.NAMESPACE, notebooks.HUB_PODS)], "ports": network.tcp(PORT)}]),
    ]


def objects() -> list[dict[str, Any]]:
    text = program()
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": NAME, "namespace": NAMESPACE},
          "data": {"provisioner.py": text}}
    digest = hashlib.sha256((text + versions.JOB_IMAGE).encode()).hexdigest()[:16]
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": NAME, "namespace": NAMESPACE},
               "spec": {"selector": dict(PODS), "ports": [{"name": "http", "port": PORT, "targetPort": PORT}]}}
    return [*network_policies(), cm, deployment(digest), service]


def bundle(plan: Plan, storage_class: str | None) -> Bundle | None:
    if plan.env.services.jupyterhub is None or storage_class is None:
        return None
    ns = f"ns-{NAMESPACE}"
    token = Generated("provisioner-token")
    pv, pvc = notebooks.areas_volume(plan, "aiinfn-areas-provisioner", NAMESPACE)
    return Bundle("provisioner", (
        namespace(NAMESPACE, "baseline", {PLATFORM_LABEL: "true"}),  # see the module's docstring
        RandomPassword("provisioner-token", length=48, special=False),
        Secret("provisioner-token-service", (ns,), name=TOKEN_SECRET, namespace=NAMESPACE, data={TOKEN_KEY: token}),
        Secret("provisioner-token-hub", (f"ns-{jupyterhub.NAMESPACE}",), name=TOKEN_SECRET,
               namespace=jupyterhub.NAMESPACE, data={TOKEN_KEY: token}),
        Manifest("pv-aiinfn-areas-provisioner", (), pv),
        Manifest("pvc-aiinfn-areas-provisioner", (ns, "pv-aiinfn-areas-provisioner"), pvc),
        *manifests(*objects(), after=(ns, "provisioner-token-service", "pvc-aiinfn-areas-provisioner")),
    ))
