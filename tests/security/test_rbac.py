"""What a project member may do in their namespace: the ClusterRole ``aiinfn-project-member``,
judged by RBAC's own rule semantics (a request is allowed when one rule names its API group,
resource or resource/subresource, and verb; ``resourceNames`` limits by name; no wildcard here).

No API server runs here to ask (SubjectAccessReview): the authorizer below is the RBAC rule match,
which is all RBAC does for a namespaced RoleBinding.
"""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from aiinfn import versions
from aiinfn.config.loader import load
from aiinfn.planning import make_plan
from aiinfn.services import event, projects


def allows(role: dict[str, Any], verb: str, group: str, resource: str, name: str = "") -> bool:
    for rule in role["rules"]:
        if (group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]
                and (not rule.get("resourceNames") or name in rule["resourceNames"])):
            return True
    return False


RESEARCHER = [
    ("create", "", "pods"), ("delete", "", "pods"), ("get", "", "pods/log"), ("create", "", "pods/exec"),
    ("create", "", "pods/portforward"), ("create", "batch", "jobs"), ("delete", "batch", "jobs"),
    ("create", "batch", "cronjobs"), ("create", "", "configmaps"), ("create", "", "secrets"),
    ("get", "", "secrets"), ("create", "", "persistentvolumeclaims"), ("create", "", "services"),
    ("create", "apps", "deployments"), ("list", "kueue.x-k8s.io", "workloads"),
    ("get", "kueue.x-k8s.io", "localqueues"), ("list", "", "events"), ("get", "", "resourcequotas"),
]
FORBIDDEN = [
    ("create", "rbac.authorization.k8s.io", "roles"), ("create", "rbac.authorization.k8s.io", "rolebindings"),
    ("bind", "rbac.authorization.k8s.io", "clusterroles"), ("escalate", "rbac.authorization.k8s.io", "roles"),
    ("create", "networking.k8s.io", "networkpolicies"), ("delete", "networking.k8s.io", "networkpolicies"),
    ("update", "", "resourcequotas"), ("delete", "", "resourcequotas"), ("create", "", "limitranges"),
    ("delete", "", "limitranges"), ("create", "", "serviceaccounts/token"), ("create", "", "serviceaccounts"),
    ("update", "", "pods/ephemeralcontainers"), ("impersonate", "", "users"), ("impersonate", "", "serviceaccounts"),
    ("create", "kueue.x-k8s.io", "workloads"), ("update", "kueue.x-k8s.io", "workloads"),
    ("create", "kueue.x-k8s.io", "localqueues"), ("update", "", "namespaces"), ("create", "", "persistentvolumes"),
    ("create", "admissionregistration.k8s.io", "validatingadmissionpolicybindings"),
    ("update", "", "pods/status"), ("create", "", "pods/binding"), ("create", "", "pods/eviction"),
]


@pytest.fixture(scope="module")
def role() -> dict[str, Any]:
    r = projects.member_role()
    kubernetes_validate.validate(r, versions.KUBERNETES, strict=True)
    return r


@pytest.mark.parametrize(("verb", "group", "resource"), RESEARCHER)
def test_a_researcher_can_do_their_work(role: dict[str, Any], verb: str, group: str, resource: str) -> None:
    assert allows(role, verb, group, resource)


@pytest.mark.parametrize(("verb", "group", "resource"), FORBIDDEN)
def test_a_member_cannot_change_the_namespaces_boundaries(role: dict[str, Any], verb: str, group: str,
                                                          resource: str) -> None:
    assert not allows(role, verb, group, resource)


def test_no_wildcard_and_only_namespaced_bindings(role: dict[str, Any]) -> None:
    for rule in role["rules"]:
        assert "*" not in rule["apiGroups"] + rule["resources"] + rule["verbs"], rule
    plan = make_plan(load("cnaf"))
    objs = projects.objects(plan)
    for q in plan.quotas:
        (rb,) = [o for o in objs if o["kind"] == "RoleBinding" and o["metadata"]["namespace"] == q.namespace]
        assert rb["roleRef"]["name"] == projects.MEMBER_ROLE and rb["subjects"][0]["name"] == f"oidc:{q.iam_group}"
    crbs = [o for o in objs if o["kind"] == "ClusterRoleBinding"]
    assert [c["roleRef"]["name"] for c in crbs] == ["cluster-admin"]
    assert {s["name"] for c in crbs for s in c["subjects"]} == {f"oidc:{g}" for g in plan.env.iam.admin_groups}


def test_event_tutors_get_the_member_role_and_participants_only_view() -> None:
    ev = load("hackathon-example")
    refs = {o["metadata"]["name"]: o["roleRef"]["name"] for o in event.access(ev) if o["kind"] == "RoleBinding"}
    assert refs == {"event-participants": "view", "event-tutors": projects.MEMBER_ROLE}
