"""Offloading through interLink: per target a virtual node, its Kueue flavors and a queue to borrow from.

For each ``offload.targets.<t>`` of the site:

* a Helm release of the interLink chart (``versions.INTERLINK_CHART``) in the ``interlink`` namespace:
  the virtual kubelet ``interlink-<t>`` (its image pinned, never the chart's ``latest``), talking to the
  target's interLink API at ``endpoint`` (the API and its plugin run on the facility's edge node:
  docs/offload.md, roles/interlink_edge), advertising the CPU, memory, pods and GPUs the target offers;
  auth by mTLS (the chart's ``<node>-tls-certs`` Secret, filled from Pulumi secrets) or OIDC (the
  chart's refresh container running ``aiinfn.batch.interlink_token`` over the client's refresh token,
  both read from a Secret's files: no secret is a Helm value);
* two Kueue ResourceFlavors that select that node by its hostname label and tolerate its
  ``virtual-node.interlink/no-schedule`` taint: ``offload-<t>`` (CPU and memory) and, when the target
  offers GPUs, ``offload-<t>-gpu`` (``nvidia.com/gpu``: one flavor per resource group, as Kueue wants);
* a ClusterQueue ``offload-<t>`` in the cohort that owns that capacity and admits no namespace of its
  own (no namespaceSelector: nothing is eligible), so its quota is only lent. The project queues list
  the offload flavors with no quota of their own (``lend``), so batch work borrows them; the interactive
  queue never lists them, so a notebook can never be admitted onto a virtual node (and no hub profile
  selects or tolerates one).

The namespace enforces Pod Security ``baseline``: the chart's containers set no security context
(restricted refuses them); they use no host namespace, path or privilege. NetworkPolicies: the virtual
kubelets reach the Kubernetes API, the targets' endpoints and IAM on the internet; the API server
reaches their kubelet port (logs).
"""

from __future__ import annotations

from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from .. import versions
from ..config.models import OffloadTarget
from ..config.validate_offload import offload_queue_name
from ..planning import Plan
from ..planning.labels import HOSTNAME_LABEL, PLATFORM_LABEL, ROLE_LABEL, virtual_node_name, virtual_node_toleration
from . import network
from .bundle import Bundle, ConfigSecret, Release, Secret, manifests, namespace

NAMESPACE = "interlink"
GPU_RESOURCE = "nvidia.com/gpu"
#: The virtual kubelet's own HTTP server (logs, exec), which the API server calls.
KUBELET_PORT = 10250
REFRESHER = "interlink-token-refresher"
OIDC_MOUNT = "/etc/aiinfn/interlink-oidc"
TLS_MOUNT = "/etc/vk/certs"
VK_PODS_LABEL = "app"


def cpu_flavor(target: str) -> str:
    return offload_queue_name(target)


def gpu_flavor(target: str) -> str:
    return f"{offload_queue_name(target)}-gpu"


def gpus(t: OffloadTarget) -> int:
    return sum(t.accelerators.values())


def release_name(target: str) -> str:
    return f"interlink-{target}"


def oidc_secret(target: str) -> str:
    return f"{virtual_node_name(target)}-oidc"


def tls_secret(target: str) -> str:
    """The Secret the chart mounts for ``interlink.tls`` (its own name: ``<nodeName>-tls-certs``)."""
    return f"{virtual_node_name(target)}-tls-certs"


def endpoint_parts(endpoint: str) -> tuple[str, int]:
    """``https://edge.example.org:8443`` -> (``https://edge.example.org``, 8443)."""
    u = urlsplit(endpoint)
    return f"{u.scheme}://{u.hostname}", u.port or 443


def values(plan: Plan, name: str, t: OffloadTarget) -> dict[str, Any]:
    """The chart's values for target ``name`` (only keys of the chart's values.yaml)."""
    address, port = endpoint_parts(t.endpoint)
    node = virtual_node_name(name)
    resources_: dict[str, Any] = {"CPUs": t.cpu, "memGiB": t.memory_gb, "pods": t.pods}
    if t.accelerators:
        resources_["accelerators"] = [
            {"resourceType": GPU_RESOURCE, "model": model.lower(), "available": count}
            for model, count in t.accelerators.items()
        ]
    out: dict[str, Any] = {
        "nodeName": node,
        "interlink": {"enabled": False, "address": address, "port": port},
        "virtualNode": {
            "image": versions.INTERLINK_VIRTUAL_KUBELET_IMAGE,
            "resources": resources_,
            "HTTP": {"insecure": False, "CACert": ""},
        },
        "plugin": {"enabled": False},
        "sshBastion": {"enabled": False},
        "podScheduling": {"nodeSelector": {ROLE_LABEL: "agent"}},
    }
    if t.auth.type == "mtls":
        out["interlink"]["tls"] = {"enabled": True, "certFile": f"{TLS_MOUNT}/tls.crt",
                                   "keyFile": f"{TLS_MOUNT}/tls.key", "caCertFile": f"{TLS_MOUNT}/ca.crt"}
        out["OAUTH"] = {"enabled": False}
    else:
        issuer = plan.env.iam.issuer.rstrip("/")
        out["OAUTH"] = {
            "enabled": True,
            "image": versions.JOB_IMAGE,
            "TokenURL": f"{issuer}/token",
            "ClientID": t.auth.client_id,
            # file references, read by aiinfn.batch.interlink_token (mounted over the chart's refresh.py)
            "ClientSecret": f"file:{OIDC_MOUNT}/client-secret",
            "RefreshToken": f"file:{OIDC_MOUNT}/refresh-token",
            "GrantType": "refresh_token",
            "Audience": t.auth.audience or "",
            "extraVolumeMounts": [
                {"name": "aiinfn-oidc", "mountPath": OIDC_MOUNT, "readOnly": True},
                {"name": "aiinfn-refresher", "mountPath": "/opt/refresh.py", "subPath": "refresh.py",
                 "readOnly": True},
            ],
        }
        out["extraVolumes"] = [
            {"name": "aiinfn-oidc", "secret": {"secretName": oidc_secret(name)}},
            {"name": "aiinfn-refresher", "configMap": {"name": REFRESHER}},
        ]
    return out


def flavors(name: str, t: OffloadTarget) -> list[dict[str, Any]]:
    spec = {"nodeLabels": {HOSTNAME_LABEL: virtual_node_name(name)}, "tolerations": [virtual_node_toleration()]}
    names = [cpu_flavor(name), *([gpu_flavor(name)] if gpus(t) else [])]
    return [{"apiVersion": versions.KUEUE_API, "kind": "ResourceFlavor", "metadata": {"name": f},
             "spec": {k: (dict(v) if isinstance(v, dict) else list(v)) for k, v in spec.items()}} for f in names]


def cluster_queue(name: str, t: OffloadTarget, cohort: str) -> dict[str, Any]:
    groups: list[dict[str, Any]] = [{
        "coveredResources": ["cpu", "memory"],
        "flavors": [{"name": cpu_flavor(name), "resources": [
            {"name": "cpu", "nominalQuota": t.cpu}, {"name": "memory", "nominalQuota": f"{t.memory_gb}Gi"}]}],
    }]
    if gpus(t):
        groups.append({"coveredResources": [GPU_RESOURCE], "flavors": [
            {"name": gpu_flavor(name), "resources": [{"name": GPU_RESOURCE, "nominalQuota": gpus(t)}]}]})
    return {
        "apiVersion": versions.KUEUE_API,
        "kind": "ClusterQueue",
        "metadata": {"name": offload_queue_name(name)},
        # no namespaceSelector: no namespace submits here; the project queues borrow its quota
        "spec": {"cohortName": cohort, "queueingStrategy": "BestEffortFIFO", "resourceGroups": groups},
    }


def lend(plan: Plan, groups: list[dict[str, Any]], borrowing: bool) -> list[dict[str, Any]]:
    """A project queue's resource groups with every offload flavor added at no quota of its own (so
    its batch work may borrow the target's; never when the project may not borrow)."""
    targets = plan.env.offload.targets
    if not targets:
        return groups

    def entry(resource: str) -> dict[str, Any]:
        e: dict[str, Any] = {"name": resource, "nominalQuota": "0Gi" if resource == "memory" else 0}
        if not borrowing:
            e["borrowingLimit"] = 0
        return e

    out = [dict(g, flavors=list(g["flavors"])) for g in groups]
    for name, t in targets.items():
        for g in out:
            if g["coveredResources"] == ["cpu", "memory"]:
                g["flavors"].append({"name": cpu_flavor(name), "resources": [entry("cpu"), entry("memory")]})
        if gpus(t):
            gpu = next((g for g in out if g["coveredResources"] == [GPU_RESOURCE]), None)
            if gpu is None:
                gpu = {"coveredResources": [GPU_RESOURCE], "flavors": []}
                out.append(gpu)
            gpu["flavors"].append({"name": gpu_flavor(name), "resources": [entry(GPU_RESOURCE)]})
    return out


def refresher() -> dict[str, Any]:
    text = resources.files("aiinfn.batch").joinpath("interlink_token.py").read_text()
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": REFRESHER, "namespace": NAMESPACE},
            "data": {"refresh.py": text}}


def network_policies(plan: Plan) -> list[dict[str, Any]]:
    ranges = network.Ranges.of(plan)
    ports = sorted({endpoint_parts(t.endpoint)[1] for t in plan.env.offload.targets.values()} | {443})
    return [
        *network.baseline(NAMESPACE, same_namespace=False),
        network.allow_apiserver(NAMESPACE, ranges),
        network.allow_from_apiserver(NAMESPACE, ranges, [KUBELET_PORT], name="allow-kubelet"),
        # the targets' interLink APIs and the platform's IAM (token refresh), on the internet
        network.allow_public_egress(NAMESPACE, ranges, ports, name="allow-targets"),
    ]


def bundle(plan: Plan, cohort: str) -> Bundle | None:
    """The site's offload targets (none: no bundle). ``cohort``: the Kueue cohort (services.kueue.COHORT)."""
    targets = plan.env.offload.targets
    if not targets:
        return None
    ns = f"ns-{NAMESPACE}"
    items: list[Any] = [
        namespace(NAMESPACE, "baseline", {PLATFORM_LABEL: "true"}),  # see the module's docstring
        *manifests(*network_policies(plan), after=(ns,)),
    ]
    if any(t.auth.type == "oidc" for t in targets.values()):
        items.extend(manifests(refresher(), after=(ns,)))
    for name, t in targets.items():
        deps: tuple[str, ...] = (ns,)
        if t.auth.type == "mtls":
            items.append(Secret(f"offload-{name}-tls", (ns,), name=tls_secret(name), namespace=NAMESPACE, data={
                "tls.crt": ConfigSecret(t.auth.cert_secret), "tls.key": ConfigSecret(t.auth.key_secret),
                "ca.crt": ConfigSecret(t.auth.ca_secret)}))
            deps = (ns, f"offload-{name}-tls")
        else:
            items.append(Secret(f"offload-{name}-oidc", (ns,), name=oidc_secret(name), namespace=NAMESPACE, data={
                "client-secret": ConfigSecret(t.auth.client_secret),
                "refresh-token": ConfigSecret(t.auth.refresh_token_secret)}))
            deps = (ns, f"offload-{name}-oidc", f"configmap-{NAMESPACE}-{REFRESHER}")
        items.append(Release(release_name(name), deps, chart="interlink", namespace=NAMESPACE,
                             values=values(plan, name, t), name=release_name(name)))
        items.extend(manifests(*flavors(name, t), cluster_queue(name, t, cohort)))
    return Bundle("offload", tuple(items))
