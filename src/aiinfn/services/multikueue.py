"""Kueue MultiKueue: federated batch queues, submitted at the manager site, run at a worker site.

Three bundles, each registered by the stack that owns its objects:

* ``worker_access(plan)``, in a **worker's site stack** (only when the stack names its federation,
  ``aiinfn:federation``): the ServiceAccount ``aiinfn-multikueue`` in ``kueue-system``, bound to the
  ClusterRole Kueue documents for MultiKueue workers (batch Jobs: create, delete, get, list, watch and
  get their status; Kueue Workloads: the same, and get, patch, update their status), and its token
  Secret. The site stack turns the token, the cluster's CA and the federation's ``api_servers`` entry
  into a kubeconfig (``aiinfn.federation.kubeconfig``) exported as the secret output
  ``multikueue_kubeconfig``.
* ``manager(fed, plans)``, in the **federation stack** at the manager: per federated queue an
  AdmissionCheck (controller ``kueue.x-k8s.io/multikueue``) whose parameters name a MultiKueueConfig
  listing the workers, a ClusterQueue whose ``admissionChecksStrategy`` names that check (its quota is
  what the workers have, on one flavor with no node labels: the manager only gates, the worker's own
  queue places the pods), and the queue's LocalQueue in each federated project's namespace; per worker
  a MultiKueueCluster whose kubeconfig is the Secret ``multikueue-<worker>`` in ``kueue-system``, filled
  from the worker stack's output; and the NetworkPolicy that lets ``kueue-system`` reach the workers'
  API port (6443) outside the cluster's own ranges.
* ``worker_queues(fed, plan)``, in the **federation stack** at each worker: the same LocalQueue names
  in the same namespaces, pointing at the project's own ClusterQueue there, so a dispatched workload is
  admitted by the worker's quotas and priorities like its own batch work.

Only batch Jobs are federated: the notebooks' namespace has no federated queue, and the Kueue
configuration's MultiKueue integration is Kueue's default set (batch/Job among them).
"""

from __future__ import annotations

from typing import Any

from .. import versions
from ..config.models import Federation
from ..planning import Plan
from ..planning.labels import PROJECT_LABEL
from . import network
from .bundle import Bundle, ConfigSecret, Secret, manifests
from .kueue import NAMESPACE as KUEUE_NAMESPACE

KUEUE_API = versions.KUEUE_API
CONTROLLER = "kueue.x-k8s.io/multikueue"
#: The flavor of the manager's federated queues (no node labels: the manager runs no federated pod).
FLAVOR = "multikueue"
WORKER_SA = "aiinfn-multikueue"
WORKER_ROLE = "aiinfn-multikueue-worker"
WORKER_TOKEN = "aiinfn-multikueue-token"
#: What Kueue's MultiKueue needs on a worker (its documented worker role, JobSets left out: only
#: batch/Job is federated here).
WORKER_RULES: tuple[dict[str, Any], ...] = (
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["create", "delete", "get", "list", "watch"]},
    {"apiGroups": ["batch"], "resources": ["jobs/status"], "verbs": ["get"]},
    {"apiGroups": ["kueue.x-k8s.io"], "resources": ["workloads"],
     "verbs": ["create", "delete", "get", "list", "watch"]},
    {"apiGroups": ["kueue.x-k8s.io"], "resources": ["workloads/status"], "verbs": ["get", "patch", "update"]},
)
KUBECONFIG_KEY = "kubeconfig"
#: The workers' Kubernetes API port (RKE2's), which the manager's Kueue controller reaches.
API_PORT = 6443


def kubeconfig_secret(worker: str) -> str:
    """The manager's Secret (in kueue-system) holding ``worker``'s kubeconfig."""
    return f"multikueue-{worker}"


def kubeconfig_ref(worker: str) -> str:
    """The name under which the federation stack passes ``worker``'s kubeconfig (read from the worker's
    stack) to the registrar, as if it were a config secret."""
    return f"multikueue-kubeconfig-{worker}"


# --------------------------------------------------------------------------- worker: access for the manager


def worker_objects() -> list[dict[str, Any]]:
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": WORKER_SA, "namespace": KUEUE_NAMESPACE}, "automountServiceAccountToken": False},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": WORKER_ROLE},
         "rules": [dict(r) for r in WORKER_RULES]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding", "metadata": {"name": WORKER_ROLE},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": WORKER_ROLE},
         "subjects": [{"kind": "ServiceAccount", "name": WORKER_SA, "namespace": KUEUE_NAMESPACE}]},
        # a long-lived token the API server fills in (the Secret carries no value of ours)
        {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
         "metadata": {"name": WORKER_TOKEN, "namespace": KUEUE_NAMESPACE,
                      "annotations": {"kubernetes.io/service-account.name": WORKER_SA}}},
    ]


def worker_access(plan: Plan) -> Bundle:
    """A worker site's objects for the manager: its ServiceAccount, role and token (see the docstring)."""
    del plan
    sa, role, binding, token = worker_objects()
    ns = f"ns-{KUEUE_NAMESPACE}"
    return Bundle("multikueue-worker", (
        *manifests(sa, after=(ns,)),
        *manifests(role, binding),
        *manifests(token, after=(ns, f"serviceaccount-{KUEUE_NAMESPACE}-{WORKER_SA}")),
    ))


TOKEN_KEY = f"secret-{KUEUE_NAMESPACE}-{WORKER_TOKEN}"


# --------------------------------------------------------------------------- manager


def _namespaces(fed: Federation, plan: Plan, queue: str) -> list[str]:
    ns = {q.project: q.namespace for q in plan.quotas}
    return [ns.get(p, p) for p in fed.queues[queue].projects]


def manager_quota(fed: Federation, plans: dict[str, Plan]) -> dict[str, int]:
    """What the manager's federated queues may admit at once: the workers' schedulable CPU (cores),
    memory (GiB) and accelerator units per Kubernetes resource, summed."""
    total: dict[str, int] = {"cpu": 0, "memory": 0}
    for w in fed.worker_sites():
        plan = plans[w]
        cpu, mem = plan.schedulable()
        total["cpu"] += cpu
        total["memory"] += mem
        for cap in plan.capacity.values():
            total[cap.kind.resource] = total.get(cap.kind.resource, 0) + cap.units
    return total


def manager_objects(fed: Federation, plans: dict[str, Plan]) -> list[dict[str, Any]]:
    plan = plans[fed.manager]
    quota = manager_quota(fed, plans)
    resources = ["cpu", "memory", *sorted(k for k in quota if k not in ("cpu", "memory"))]
    out: list[dict[str, Any]] = [
        {"apiVersion": KUEUE_API, "kind": "ResourceFlavor", "metadata": {"name": FLAVOR}, "spec": {}},
    ]
    for w in fed.worker_sites():
        out.append({"apiVersion": KUEUE_API, "kind": "MultiKueueCluster", "metadata": {"name": w},
                    "spec": {"clusterSource": {"kubeConfig": {"locationType": "Secret",
                                                              "location": kubeconfig_secret(w)}}}})
    for name in fed.queues:
        namespaces = _namespaces(fed, plan, name)
        out.append({"apiVersion": KUEUE_API, "kind": "MultiKueueConfig", "metadata": {"name": name},
                    "spec": {"clusters": fed.worker_sites()}})
        out.append({"apiVersion": KUEUE_API, "kind": "AdmissionCheck", "metadata": {"name": name},
                    "spec": {"controllerName": CONTROLLER,
                             "parameters": {"apiGroup": "kueue.x-k8s.io", "kind": "MultiKueueConfig",
                                            "name": name}}})
        out.append({
            "apiVersion": KUEUE_API, "kind": "ClusterQueue", "metadata": {"name": name},
            "spec": {
                "namespaceSelector": {"matchExpressions": [
                    {"key": PROJECT_LABEL, "operator": "In", "values": list(fed.queues[name].projects)}]},
                "queueingStrategy": "BestEffortFIFO",
                "resourceGroups": [{
                    "coveredResources": resources,
                    "flavors": [{"name": FLAVOR, "resources": [
                        {"name": r, "nominalQuota": f"{quota[r]}Gi" if r == "memory" else quota[r]}
                        for r in resources]}],
                }],
                "admissionChecksStrategy": {"admissionChecks": [{"name": name}]},
            },
        })
        out.extend(local_queues(name, namespaces, name))
    return out


def local_queues(name: str, namespaces: list[str], cluster_queue: str) -> list[dict[str, Any]]:
    return [{"apiVersion": KUEUE_API, "kind": "LocalQueue", "metadata": {"name": name, "namespace": ns},
             "spec": {"clusterQueue": cluster_queue}} for ns in namespaces]


def manager(fed: Federation, plans: dict[str, Plan]) -> Bundle | None:
    """The manager's objects (None without federated queues)."""
    if not fed.queues:
        return None
    objs = manager_objects(fed, plans)
    secrets = tuple(
        Secret(f"secret-{KUEUE_NAMESPACE}-{kubeconfig_secret(w)}", name=kubeconfig_secret(w),
               namespace=KUEUE_NAMESPACE, data={KUBECONFIG_KEY: ConfigSecret(kubeconfig_ref(w))})
        for w in fed.worker_sites())
    # Kueue's controller reaches each worker's API (the namespace's default deny otherwise stops it)
    egress = network.allow_public_egress(KUEUE_NAMESPACE, network.Ranges.of(plans[fed.manager]), [API_PORT],
                                         name="allow-multikueue-workers")
    items: list[Any] = [*secrets, *manifests(egress)]
    for o in objs:
        after = tuple(s.key for s in secrets if o["kind"] == "MultiKueueCluster"
                      and s.name == o["spec"]["clusterSource"]["kubeConfig"]["location"])
        items.extend(manifests(o, after=after))
    return Bundle("multikueue", tuple(items))


def worker_queues(fed: Federation, plan: Plan) -> Bundle | None:
    """At a worker: each federated queue's LocalQueue in each project's namespace, on the project's
    own ClusterQueue (its name is the project's)."""
    if not fed.queues:
        return None
    objs: list[dict[str, Any]] = []
    for name, queue in fed.queues.items():
        for project, ns in zip(queue.projects, _namespaces(fed, plan, name), strict=True):
            objs.extend(local_queues(name, [ns], project))
    return Bundle("multikueue-queues", manifests(*objs))


__all__ = ["CONTROLLER", "manager", "worker_access", "worker_queues"]
