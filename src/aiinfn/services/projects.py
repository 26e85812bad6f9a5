"""Projects: a namespace per project, its IAM group's access and network policies; the admins' access.

Kubernetes sees IAM groups with the prefix the API server's OIDC settings give them (``oidc:``, set
by the rke2 role), so a project's group ``ai-infn/lhc`` is the RBAC group ``oidc:ai-infn/lhc``.

Members get ``aiinfn-project-member`` in their namespace, narrower than ``edit``: what a researcher
runs (pods with exec, attach, logs and port-forward; jobs, cron jobs, deployments and stateful sets;
config maps, secrets, claims and services) and reads (events, quotas, limit ranges, service accounts,
Kueue workloads and local queues), never RBAC, NetworkPolicies, quotas, limit ranges, ephemeral
containers, service-account tokens or impersonation. The namespace enforces Pod Security
``restricted``, carries the project's group (``NAMESPACE_GROUP_LABEL``: which reserved nodes its
workloads may name, services.policy) and is isolated by services.network.tenant.
"""

from __future__ import annotations

from typing import Any

from ..planning import Plan
from ..planning.labels import KUEUE_MANAGED_LABEL, NAMESPACE_GROUP_LABEL, PROJECT_LABEL, group_label_value
from . import network
from .bundle import Bundle, manifests, namespace_object

#: Prefix kube-apiserver gives IAM groups from the OIDC token (set by the rke2 role).
OIDC_GROUPS_PREFIX = "oidc:"
RBAC_API = "rbac.authorization.k8s.io/v1"
MEMBER_ROLE = "aiinfn-project-member"
_WRITE = ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"]
_READ = ["get", "list", "watch"]


def member_role() -> dict[str, Any]:
    """What a project member may do in the project's namespace (bound there by a RoleBinding)."""
    rules = [
        ("", ["pods", "configmaps", "secrets", "persistentvolumeclaims", "services"], _WRITE),
        ("", ["pods/log", "pods/status", "events", "endpoints", "resourcequotas", "limitranges", "serviceaccounts"],
         _READ),
        ("", ["pods/exec", "pods/attach", "pods/portforward"], ["get", "create"]),
        ("batch", ["jobs", "cronjobs"], _WRITE),
        ("batch", ["jobs/status", "cronjobs/status"], _READ),
        ("apps", ["deployments", "statefulsets"], _WRITE),
        ("apps", ["replicasets", "deployments/status", "statefulsets/status"], _READ),
        ("kueue.x-k8s.io", ["workloads", "workloads/status", "localqueues", "localqueues/status"], _READ),
        ("events.k8s.io", ["events"], _READ),
    ]
    return {
        "apiVersion": RBAC_API,
        "kind": "ClusterRole",
        "metadata": {"name": MEMBER_ROLE},
        "rules": [{"apiGroups": [g], "resources": r, "verbs": v} for g, r, v in rules],
    }


def member_binding(name: str, namespace: str, group: str) -> dict[str, Any]:
    """``group`` gets ``aiinfn-project-member`` in ``namespace``."""
    return {
        "apiVersion": RBAC_API,
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": MEMBER_ROLE},
        "subjects": [group_subject(group)],
    }


def group_subject(group: str) -> dict[str, str]:
    """An IAM group as an RBAC subject."""
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": OIDC_GROUPS_PREFIX + group}


def objects(plan: Plan) -> list[dict[str, Any]]:
    """Namespaces, access for IAM groups and default-deny network policies of every project."""
    out: list[dict[str, Any]] = [member_role()]
    ranges = network.Ranges.of(plan)
    for q in plan.quotas:
        ns = q.namespace
        labels = {PROJECT_LABEL: q.project, KUEUE_MANAGED_LABEL: "true",
                  NAMESPACE_GROUP_LABEL: group_label_value(q.iam_group)}
        out.append(namespace_object(ns, "restricted", labels))
        out.append(member_binding("project-members", ns, q.iam_group))
        out.extend(network.tenant(ns, ranges))
    out.append(
        {
            "apiVersion": RBAC_API,
            "kind": "ClusterRoleBinding",
            "metadata": {"name": "aiinfn-platform-admins"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "cluster-admin"},
            "subjects": [group_subject(g) for g in plan.env.iam.admin_groups],
        }
    )
    return out


def bundle(plan: Plan) -> Bundle:
    return Bundle("projects", manifests(*objects(plan)))
