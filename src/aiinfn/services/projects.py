"""Projects: a namespace per project, its IAM group's access and network policies; the admins' access.

Kubernetes sees IAM groups with the prefix the API server's OIDC settings give them (``oidc:``, set
by the rke2 role), so a project's group ``ai-infn/lhc`` is the RBAC group ``oidc:ai-infn/lhc``.
"""

from __future__ import annotations

from typing import Any

from ..planning import Plan
from ..planning.labels import KUEUE_MANAGED_LABEL, PROJECT_LABEL
from .bundle import Bundle, manifests, namespace_object

#: Prefix kube-apiserver gives IAM groups from the OIDC token (set by the rke2 role).
OIDC_GROUPS_PREFIX = "oidc:"
RBAC_API = "rbac.authorization.k8s.io/v1"


def group_subject(group: str) -> dict[str, str]:
    """An IAM group as an RBAC subject."""
    return {"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": OIDC_GROUPS_PREFIX + group}


def objects(plan: Plan) -> list[dict[str, Any]]:
    """Namespaces, access for IAM groups and default-deny network policies of every project."""
    out: list[dict[str, Any]] = []
    for q in plan.quotas:
        ns = q.namespace
        out.append(namespace_object(ns, "restricted", {PROJECT_LABEL: q.project, KUEUE_MANAGED_LABEL: "true"}))
        out.append(
            {
                "apiVersion": RBAC_API,
                "kind": "RoleBinding",
                "metadata": {"name": "project-members", "namespace": ns},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
                "subjects": [group_subject(q.iam_group)],
            }
        )
        out.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": "default-deny-ingress", "namespace": ns},
                "spec": {"podSelector": {}, "policyTypes": ["Ingress"]},
            }
        )
        out.append(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "NetworkPolicy",
                "metadata": {"name": "allow-same-namespace", "namespace": ns},
                "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"from": [{"podSelector": {}}]}]},
            }
        )
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
