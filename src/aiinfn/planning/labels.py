"""Every label key, taint and toleration the platform sets or matches, in one place.

Nodes carry them (RKE2 node labels and taints from the plan), Kueue ResourceFlavors match them,
JupyterHub profiles select and tolerate them, and namespaces and queues are found by them. Writing
one of these keys anywhere else is a bug: a typo there silently selects nothing.
"""

from __future__ import annotations

import re
from typing import Any

#: Prefix of every label and taint key the platform owns.
LABEL_PREFIX = "aiinfn.infn.it"
SITE_LABEL = f"{LABEL_PREFIX}/site"
POOL_LABEL = f"{LABEL_PREFIX}/pool"
ROLE_LABEL = f"{LABEL_PREFIX}/role"
#: The accelerator model a node carries (``A100-80GB``); also the key of the accelerator taint.
ACCELERATOR_LABEL = f"{LABEL_PREFIX}/accelerator"
#: ``gpu`` or ``fpga``.
ACCELERATOR_CLASS_LABEL = f"{LABEL_PREFIX}/accelerator-kind"
#: The MIG profile every GPU of the node is split into (single strategy), written as a label value.
MIG_PROFILE_LABEL = f"{LABEL_PREFIX}/mig-profile"
#: The IAM group a reserved node is for (as a label value).
RESERVED_FOR_LABEL = f"{LABEL_PREFIX}/reserved-for"
#: NVIDIA's MIG manager applies the mig-parted config this label names.
MIG_CONFIG_LABEL = "nvidia.com/mig.config"
#: Taint key of nodes reserved for one IAM group.
RESERVED_TAINT = "reserved"
#: RKE2 servers run only critical add-ons.
SERVER_TAINT = ("CriticalAddonsOnly", "true", "NoExecute")
#: Kueue ResourceFlavor label naming the accelerator kind it stands for.
KIND_LABEL = f"{LABEL_PREFIX}/kind"
#: Namespace and ClusterQueue label naming the project they belong to.
PROJECT_LABEL = f"{LABEL_PREFIX}/project"
#: Namespace label of an event's namespace (the event's name).
EVENT_LABEL = f"{LABEL_PREFIX}/event"
#: Namespace label that lets a namespace's pods use the interactive queue (the hub's namespace).
INTERACTIVE_LABEL = f"{LABEL_PREFIX}/interactive"
#: Keys no environment may set on a pool (the platform's own, and the scheduling taints above).
RESERVED_KEY_PREFIXES = (f"{LABEL_PREFIX}/", "nvidia.com/", "node-role.kubernetes.io/", "kubernetes.io/",
                         "k8s.io/", "node.kubernetes.io/")
RESERVED_TAINT_KEYS = (RESERVED_TAINT, SERVER_TAINT[0])
#: What the kubelet of the pinned Kubernetes (1.33) may set on its own Node through --node-labels (how RKE2's
#: `node-label` reaches it): in the kubernetes.io and k8s.io namespaces (and their subdomains) only these keys
#: and the keys under these namespaces (or their subdomains); any other key there stops the kubelet from
#: starting (k8s.io/kubelet/pkg/apis/well_known_labels.go, cmd/kubelet/app/options ValidateKubeletFlags).
KUBERNETES_LABEL_DOMAINS = ("kubernetes.io", "k8s.io")
KUBELET_SELF_LABELS = frozenset({
    "kubernetes.io/hostname", "topology.kubernetes.io/zone", "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/region",
    "beta.kubernetes.io/instance-type", "node.kubernetes.io/instance-type", "kubernetes.io/os", "kubernetes.io/arch",
    "beta.kubernetes.io/os", "beta.kubernetes.io/arch",
})
KUBELET_SELF_LABEL_NAMESPACES = ("kubelet.kubernetes.io", "node.kubernetes.io")


def _in_domain(namespace: str, domain: str) -> bool:
    return namespace == domain or namespace.endswith("." + domain)


def kubelet_may_self_label(key: str) -> bool:
    """Whether the kubelet accepts ``key`` in --node-labels (False: it refuses to start)."""
    namespace = key.split("/", 1)[0] if "/" in key else ""
    if not any(_in_domain(namespace, d) for d in KUBERNETES_LABEL_DOMAINS):
        return True
    return key in KUBELET_SELF_LABELS or any(_in_domain(namespace, d) for d in KUBELET_SELF_LABEL_NAMESPACES)


#: ConfigMaps in the hub's namespace the hub reads to learn of an event (``event``).
HUB_REGISTRATION_LABEL = f"{LABEL_PREFIX}/hub-registration"
#: Annotations of an event home claim: its owner's UID and private GID (the hub's spawner writes them,
#: the archive Job of ``aiinfn event down`` runs as them); and the claim an archive Job copies.
OWNER_UID_ANNOTATION = f"{LABEL_PREFIX}/owner-uid"
OWNER_GID_ANNOTATION = f"{LABEL_PREFIX}/owner-gid"
ARCHIVE_CLAIM_ANNOTATION = f"{LABEL_PREFIX}/claim"
#: Namespaces whose workloads Kueue manages.
KUEUE_MANAGED_LABEL = "kueue.x-k8s.io/managed"
#: Pod Security admission (the pinned Kubernetes' built-in admission plugin) reads these namespace labels.
POD_SECURITY_ENFORCE = "pod-security.kubernetes.io/enforce"
POD_SECURITY_ENFORCE_VERSION = "pod-security.kubernetes.io/enforce-version"
POD_SECURITY_WARN = "pod-security.kubernetes.io/warn"
POD_SECURITY_AUDIT = "pod-security.kubernetes.io/audit"
#: Kueue's queue label on a workload's pods.
QUEUE_NAME_LABEL = "kueue.x-k8s.io/queue-name"
PRIORITY_CLASS_LABEL = "kueue.x-k8s.io/priority-class"
#: Namespace label of a project's namespace: its IAM group as a label value (``group_label_value``), the
#: group whose reserved nodes the namespace's workloads may name.
NAMESPACE_GROUP_LABEL = f"{LABEL_PREFIX}/group"
#: Namespace label of every namespace a platform service owns (Prometheus scrapes monitors only there).
PLATFORM_LABEL = f"{LABEL_PREFIX}/platform"
#: Node label the kubelet sets to the node's name (node selectors and affinities may name a node by it).
HOSTNAME_LABEL = "kubernetes.io/hostname"
#: Label every namespace carries with its own name (set by the API server).
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
#: Extended resources of accelerators: requests of these outside Kueue are refused in tenant namespaces.
ACCELERATOR_RESOURCE_PREFIXES = ("nvidia.com/", "amd.com/", "xilinx.com/")


#: interLink's virtual kubelet (0.6) labels its node ``kubernetes.io/hostname=<node name>`` and this type
#: label, and taints it ``virtual-node.interlink/no-schedule=true:NoSchedule``: only pods that tolerate the
#: taint (Kueue adds it from an offload flavor) land there.
VIRTUAL_NODE_TYPE_LABEL = "virtual-node.interlink/type"
VIRTUAL_NODE_TAINT = "virtual-node.interlink/no-schedule"
#: Label of a batch Job and its pods (aiinfn.batch): the owner's hub name as a label value; the
#: annotation holds the name itself.
BATCH_OWNER_LABEL = f"{LABEL_PREFIX}/batch-owner"
BATCH_OWNER_ANNOTATION = f"{LABEL_PREFIX}/batch-owner"
#: Label of a batch Job sent to an offload target: the target's name.
OFFLOAD_TARGET_LABEL = f"{LABEL_PREFIX}/offload-target"
#: Pods that may call the batch service (the notebooks carry it).
BATCH_ACCESS_LABEL = f"{LABEL_PREFIX}/batch-access"


def virtual_node_name(target: str) -> str:
    """The virtual node of offload target ``target`` (a Node name: at most 63 characters)."""
    return f"interlink-{target}"


def virtual_node_toleration() -> dict[str, Any]:
    """Tolerates the taint of interLink's virtual nodes (only offload flavors carry it)."""
    return {"key": VIRTUAL_NODE_TAINT, "operator": "Equal", "value": "true", "effect": "NoSchedule"}


def group_label_value(group: str) -> str:
    """An IAM group as a label/taint value: ``ai-infn/lhcb`` -> ``ai-infn.lhcb``."""
    value = re.sub(r"[^A-Za-z0-9_.-]", ".", group).strip("._-")
    return value[:63].rstrip("._-")


def mig_label_value(profile: str) -> str:
    """A MIG profile as a label value (``+`` is not allowed there: ``1g.10gb+me`` -> ``1g.10gb.me``)."""
    return profile.replace("+", ".")


def accelerator_toleration(model: str) -> dict[str, Any]:
    """Tolerates the taint every accelerator node carries (``aiinfn.infn.it/accelerator=<model>``)."""
    return {"key": ACCELERATOR_LABEL, "operator": "Equal", "value": model, "effect": "NoSchedule"}


def reserved_toleration(group: str) -> dict[str, Any]:
    """Tolerates the taint of nodes reserved for IAM group ``group``."""
    return {"key": RESERVED_TAINT, "operator": "Equal", "value": group_label_value(group), "effect": "NoSchedule"}


def kind_tolerations(model: str, reserved_for: str | None) -> list[dict[str, Any]]:
    """What a pod on a node of this accelerator kind must tolerate (the flavor and the profile agree)."""
    out = [accelerator_toleration(model)]
    if reserved_for is not None:
        out.append(reserved_toleration(reserved_for))
    return out


def pod_security(level: str, version: str) -> dict[str, str]:
    """Namespace labels that enforce Pod Security ``level`` (``restricted``, ``baseline``, ``privileged``)
    at Kubernetes ``version`` (``v1.33``), and warn and audit at ``restricted`` whatever is enforced."""
    return {
        POD_SECURITY_ENFORCE: level,
        POD_SECURITY_ENFORCE_VERSION: version,
        POD_SECURITY_WARN: "restricted",
        POD_SECURITY_AUDIT: "restricted",
    }
