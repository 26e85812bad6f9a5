"""ValidatingAdmissionPolicies evaluated offline, the way kube-apiserver 1.33 applies them.

No API server runs on these machines. This module does what the API server's admission does with a
policy and its bindings, with a CEL implementation from PyPI (``common-expression-language``, the
Rust cel interpreter) standing in for cel-go:

1. a binding applies when its ``matchResources.namespaceSelector`` selects the request's namespace
   (``matchLabels``; ``matchExpressions`` with In, NotIn, Exists, DoesNotExist);
2. its policy applies when a ``matchConstraints.resourceRules`` entry names the object's group,
   version, resource and the request's operation, and every ``matchConditions`` expression is true;
3. ``variables`` are evaluated in order, each seeing the earlier ones as ``variables.<name>``;
4. every ``validations`` expression must be true; one that is false denies with its message, and
   one that fails to evaluate denies too (``failurePolicy: Fail``, which every policy here sets).

The variables bound are the API server's: ``object``, ``oldObject`` (null on CREATE), ``request``
(``operation``, ``userInfo``, ``namespace``), ``params`` (null: no policy here has a paramKind) and
``namespaceObject``. Gaps, named: cel-go type-checks expressions against the objects' OpenAPI schemas
at compile time and enforces a cost budget, neither of which this interpreter does; Kubernetes' CEL
extension libraries are absent here, so a policy using one fails to evaluate (the policies use
standard CEL only).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cel

#: kind -> (API group, version, resource), for the kinds the tests submit.
RESOURCES = {
    "Pod": ("", "v1", "pods"),
    "PodTemplate": ("", "v1", "podtemplates"),
    "ReplicationController": ("", "v1", "replicationcontrollers"),
    "PersistentVolumeClaim": ("", "v1", "persistentvolumeclaims"),
    "Service": ("", "v1", "services"),
    "Deployment": ("apps", "v1", "deployments"),
    "ReplicaSet": ("apps", "v1", "replicasets"),
    "StatefulSet": ("apps", "v1", "statefulsets"),
    "DaemonSet": ("apps", "v1", "daemonsets"),
    "Job": ("batch", "v1", "jobs"),
    "CronJob": ("batch", "v1", "cronjobs"),
    "JobSet": ("jobset.x-k8s.io", "v1alpha2", "jobsets"),
}


@dataclass(frozen=True)
class Request:
    """Who submits what, where."""

    object: dict[str, Any]
    namespace: dict[str, Any]
    username: str = "alice"
    groups: tuple[str, ...] = ("oidc:ai-infn/lhc", "system:authenticated")
    operation: str = "CREATE"
    old_object: dict[str, Any] | None = None

    def bindings(self) -> dict[str, Any]:
        return {
            "object": self.object,
            "oldObject": self.old_object,
            "params": None,
            "namespaceObject": self.namespace,
            "request": {
                "operation": self.operation,
                "namespace": self.namespace["metadata"]["name"],
                "name": self.object.get("metadata", {}).get("name", ""),
                "userInfo": {"username": self.username, "groups": list(self.groups)},
            },
        }


@dataclass
class Decision:
    allowed: bool
    #: (policy, message) of every denial; an evaluation error is a denial whose message starts "error:"
    denials: list[tuple[str, str]] = field(default_factory=list)
    #: policies that applied (bound to the namespace, matching the resource and the conditions)
    applied: list[str] = field(default_factory=list)


def selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A label selector's verdict on ``labels``."""
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
    return True


def _matches(policy: dict[str, Any], obj: dict[str, Any], operation: str) -> bool:
    group, version, resource = RESOURCES[obj["kind"]]
    for rule in policy["spec"]["matchConstraints"]["resourceRules"]:
        if (group in rule["apiGroups"] or "*" in rule["apiGroups"]) and (
                version in rule["apiVersions"] or "*" in rule["apiVersions"]) and (
                resource in rule["resources"] or "*" in rule["resources"]) and (
                operation in rule["operations"] or "*" in rule["operations"]):
            return True
    return False


def expressions(policy: dict[str, Any]) -> list[str]:
    spec = policy["spec"]
    return [e["expression"] for part in ("matchConditions", "variables", "validations") for e in spec.get(part, [])]


def compile_all(policies: list[dict[str, Any]]) -> int:
    """Parse every expression of ``policies`` (a syntax error raises); the number of expressions."""
    n = 0
    for p in policies:
        for expr in expressions(p):
            cel.compile(expr)
            n += 1
    return n


def evaluate(objects: list[dict[str, Any]], request: Request) -> Decision:
    """What the API server's admission decides for ``request`` under the policies and bindings in
    ``objects`` (other objects are ignored)."""
    policies = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ValidatingAdmissionPolicy"}
    bound = [o for o in objects if o["kind"] == "ValidatingAdmissionPolicyBinding"]
    labels = request.namespace["metadata"].get("labels") or {}
    decision = Decision(True)
    context = request.bindings()
    for b in bound:
        selector = (b["spec"].get("matchResources") or {}).get("namespaceSelector") or {}
        if not selects(selector, labels):
            continue
        policy = policies[b["spec"]["policyName"]]
        name = policy["metadata"]["name"]
        if not _matches(policy, request.object, request.operation):
            continue
        try:
            if not all(cel.evaluate(m["expression"], context) is True
                       for m in policy["spec"].get("matchConditions", [])):
                continue
        except Exception as e:  # a failing match condition denies under failurePolicy Fail
            decision.denials.append((name, f"error: match condition: {e}"))
            continue
        decision.applied.append(name)
        variables: dict[str, Any] = {}
        ctx = {**context, "variables": variables}
        try:
            for v in policy["spec"].get("variables", []):
                variables[v["name"]] = cel.evaluate(v["expression"], ctx)
                ctx = {**context, "variables": variables}
            for check in policy["spec"]["validations"]:
                if cel.evaluate(check["expression"], ctx) is not True:
                    decision.denials.append((name, check["message"]))
        except Exception as e:
            decision.denials.append((name, f"error: {e}"))
    decision.allowed = not decision.denials
    return decision
