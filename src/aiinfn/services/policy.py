"""Admission policies of tenant namespaces: ValidatingAdmissionPolicies (CEL) and their bindings.

Pod Security ``restricted`` (the namespaces' labels) already refuses host access and privilege; these
policies hold what Pod Security cannot know, in every project and event namespace (bindings select
namespaces by the project and event labels, so an event's namespace is covered the moment it exists):

* ``aiinfn-tenant-pods``, for everyone: no host namespaces, host ports, privileged containers,
  privilege escalation or added capabilities (belt and braces with Pod Security); volumes only of the
  kinds a researcher needs (claims, config, secrets, projected, emptyDir, ephemeral, image): never
  hostPath, nfs (the export root holds every home) or inline CSI; claims never name a volume; no
  ``NVIDIA_VISIBLE_DEVICES`` in a container's environment (with the container toolkit's defaults it
  hands every GPU of the node to the container, past the device plugin).
* ``aiinfn-tenant-services``, for everyone: Services are ClusterIP only and carry no ``externalIPs``
  (a Service claiming an address, the metadata service's or another tenant's, captures the cluster's
  traffic to it: CVE-2020-8554); node ports would open the nodes to whatever reaches them.
* ``aiinfn-tenant-scheduling``, for users (Kueue's controller and the kube-system controllers that
  copy already-admitted templates are exempt): no toleration of the platform's taints (``reserved``,
  the accelerator taint, the servers'; nor a toleration of every taint): Kueue adds the tolerations
  and node labels of the flavor it admits a workload on, with its own identity; no ``nodeName``; no
  node selector or affinity naming a node reserved for another group (by name, by the reserved-for
  label, or by an accelerator model only such nodes carry); accelerator requests (``nvidia.com/*``,
  ``amd.com/*``) only with a Kueue queue label; and no starting a workload Kueue has not admitted:
  a user may not remove Kueue's scheduling gates from a pod nor unsuspend a suspended Job or JobSet
  (Kueue does both when it admits the workload).
* ``aiinfn-home-claims``, for everyone: a user's home claim in a project (``aiinfn-home-<uid>``, their
  notebook home, made by the batch service: services.batch) is mounted only by the batch service's
  Jobs and the Pods the job controller makes from them, and only as its owner: ``runAsUser``,
  ``runAsGroup`` and ``fsGroup`` of the pod all ``<uid>``, no container running as anyone else; on
  UPDATE a workload keeps the home claims it had (Kueue, the owner relabelling) and gains none. Only
  the batch service creates a claim of that name, and it creates no other claim. So another project
  member cannot mount someone's home with kubectl, and the service cannot run a job as someone else
  on it.
* ``aiinfn-tenant-priority``, for users (the hub, which labels the notebooks it spawns, is exempt
  too): no Kueue WorkloadPriorityClass other than ``batch`` and no pod ``priorityClassName``.

On UPDATE only what the request adds is judged for tolerations and ``nodeName``: a scheduled pod keeps
its node, and a workload Kueue admitted keeps the tolerations Kueue gave it when its owner relabels it.
Every expression guards optional fields with ``has()``, so a well-formed object never makes one fail
with an error (``failurePolicy: Fail`` would refuse it).
"""

from __future__ import annotations

import json
from typing import Any

from ..planning import Plan
from ..planning.labels import (
    ACCELERATOR_LABEL,
    ACCELERATOR_RESOURCE_PREFIXES,
    EVENT_LABEL,
    HOSTNAME_LABEL,
    LABEL_PREFIX,
    NAMESPACE_GROUP_LABEL,
    PRIORITY_CLASS_LABEL,
    PROJECT_LABEL,
    QUEUE_NAME_LABEL,
    RESERVED_FOR_LABEL,
    RESERVED_TAINT,
    SERVER_TAINT,
    group_label_value,
)
from .bundle import Bundle, manifests
from .jupyterhub import BATCH_NAMESPACE, BATCH_SERVICE

API = "admissionregistration.k8s.io/v1"
#: The only Kueue WorkloadPriorityClass a tenant may ask for (kueue.PRIORITIES).
TENANT_PRIORITY = "batch"
#: Kueue's controller (chart ``kueue`` in kueue-system): it writes the admitted flavor into workloads.
KUEUE_CONTROLLER = "system:serviceaccount:kueue-system:kueue-controller-manager"
#: kube-controller-manager, with or without per-controller service accounts (job, replicaset ...).
CONTROLLER_MANAGER = "system:kube-controller-manager"
KUBE_SYSTEM_SERVICE_ACCOUNTS = "system:serviceaccounts:kube-system"
#: Scheduling gates Kueue puts on the pods it holds (pod integration; topology-aware scheduling).
KUEUE_GATES = ("kueue.x-k8s.io/admission", "kueue.x-k8s.io/topology")
#: The hub's service account (zero-to-jupyterhub's ``hub`` in the hub's namespace).
HUB = "system:serviceaccount:jupyterhub:hub"
#: Volume kinds a tenant pod may use.
TENANT_VOLUMES = ("configMap", "downwardAPI", "emptyDir", "ephemeral", "image", "persistentVolumeClaim",
                  "projected", "secret")
#: Workload kinds whose pod templates are judged (pods themselves, and what creates them).
WORKLOADS = [
    ("", "v1", ["pods", "replicationcontrollers", "podtemplates"]),
    ("apps", "v1", ["deployments", "replicasets", "statefulsets", "daemonsets"]),
    ("batch", "v1", ["jobs", "cronjobs"]),
    ("jobset.x-k8s.io", "v1alpha2", ["jobsets"]),
]


def lit(value: Any) -> str:
    """A CEL literal of ``value`` (strings, lists and maps of strings: JSON's syntax is CEL's)."""
    return json.dumps(value, sort_keys=True)


# --------------------------------------------------------------------------- shared CEL


def _specs(obj: str) -> str:
    """The pod specs inside ``obj`` (a Pod, a template holder, a CronJob, a JobSet)."""
    return (
        f"{obj}.kind == 'Pod' ? [{obj}.spec] : "
        f"{obj}.kind == 'PodTemplate' ? [{obj}.template.spec] : "
        f"{obj}.kind == 'CronJob' ? [{obj}.spec.jobTemplate.spec.template.spec] : "
        f"{obj}.kind == 'JobSet' ? {obj}.spec.replicatedJobs.map(r, r.template.spec.template.spec) : "
        f"[{obj}.spec.template.spec]"
    )


def _template_labels(obj: str) -> str:
    """Labels of the object and of the pod templates inside it (a list of maps)."""
    def of(meta: str) -> str:
        return f"(has({meta}.metadata) && has({meta}.metadata.labels) ? {meta}.metadata.labels : {{}})"

    return (
        f"[{of(obj)}] + ("
        f"{obj}.kind == 'Pod' ? [] : "
        f"{obj}.kind == 'PodTemplate' ? [{of(obj + '.template')}] : "
        f"{obj}.kind == 'CronJob' ? [{of(obj + '.spec.jobTemplate')}, {of(obj + '.spec.jobTemplate.spec.template')}] : "
        f"{obj}.kind == 'JobSet' ? {obj}.spec.replicatedJobs.map(r, {of('r.template.spec.template')}) : "
        f"[{of(obj + '.spec.template')}])"
    )


SPEC_VARIABLES = [
    {"name": "specs", "expression": _specs("object")},
    {"name": "oldSpecs", "expression": f"oldObject != null ? ({_specs('oldObject')}) : []"},
    {"name": "labelSets", "expression": _template_labels("object")},
]

#: Every container of pod spec ``s`` (init, regular and ephemeral).
CONTAINERS = ("((has(s.initContainers) ? s.initContainers : []) + s.containers"
              " + (has(s.ephemeralContainers) ? s.ephemeralContainers : []))")


def _each_container(check: str) -> str:
    """True when ``check`` (over container ``c``) holds for every container of every pod spec."""
    return f"variables.specs.all(s, {CONTAINERS}.all(c, {check}))"


def _sc(field: str) -> str:
    """Container ``c``'s security context field ``field`` is set."""
    return f"has(c.securityContext) && has(c.securityContext.{field})"


# --------------------------------------------------------------------------- policies


def _policy(name: str, variables: list[dict[str, str]], validations: list[dict[str, str]],
            match_conditions: list[dict[str, str]], resources: list[tuple[str, str, list[str]]],
            operations: list[str]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "failurePolicy": "Fail",
        "matchConstraints": {
            "resourceRules": [
                {"apiGroups": [group], "apiVersions": [version], "resources": res, "operations": operations}
                for group, version, res in resources
            ]
        },
        "variables": variables,
        "validations": [{**v, "reason": "Forbidden"} for v in validations],
    }
    if match_conditions:
        spec["matchConditions"] = match_conditions
    return {"apiVersion": API, "kind": "ValidatingAdmissionPolicy", "metadata": {"name": name}, "spec": spec}


def _not_from(*identities: str, groups: tuple[str, ...] = ()) -> dict[str, str]:
    names = lit(list(identities))
    expr = f"!(request.userInfo.username in {names}"
    for g in groups:
        expr += f" || (has(request.userInfo.groups) && {lit(g)} in request.userInfo.groups)"
    expr += ")"
    return {"name": "not-a-platform-controller", "expression": expr}


def pods_policy() -> dict[str, Any]:
    volumes = " || ".join(f"has(v.{k})" for k in TENANT_VOLUMES)
    flag = "(has(s.{0}) && s.{0})"
    return _policy(
        "aiinfn-tenant-pods",
        SPEC_VARIABLES,
        [
            {"expression": "variables.specs.all(s, !" + " && !".join(flag.format(f) for f in
                                                                  ("hostNetwork", "hostPID", "hostIPC")) + ")",
             "message": "tenant pods may not use the host's network, PID or IPC namespace"},
            {"expression": f"variables.specs.all(s, !has(s.volumes) || s.volumes.all(v, {volumes}))",
             "message": "tenant pods may mount only claims, config maps, secrets, projected, emptyDir, ephemeral "
                        "and image volumes (no hostPath, nfs or inline CSI volume)"},
            {"expression": _each_container(f"!({_sc('privileged')} && c.securityContext.privileged)"),
             "message": "tenant containers may not be privileged"},
            {"expression": _each_container(f"!({_sc('allowPrivilegeEscalation')}"
                                           " && c.securityContext.allowPrivilegeEscalation)"),
             "message": "tenant containers may not allow privilege escalation"},
            {"expression": _each_container(f"!({_sc('capabilities')} && has(c.securityContext.capabilities.add))"
                                           " || c.securityContext.capabilities.add.all(a, a == 'NET_BIND_SERVICE')"),
             "message": "tenant containers may add no capability but NET_BIND_SERVICE"},
            {"expression": _each_container("!has(c.ports) || c.ports.all(p, !has(p.hostPort) || p.hostPort == 0)"),
             "message": "tenant containers may not use host ports"},
            {"expression": _each_container("!has(c.env) || !c.env.exists(e, e.name == 'NVIDIA_VISIBLE_DEVICES')"),
             "message": "tenant containers may not set NVIDIA_VISIBLE_DEVICES: GPUs are given by the device plugin"},
        ],
        [],
        WORKLOADS,
        ["CREATE", "UPDATE"],
    )


def claims_policy() -> dict[str, Any]:
    return _policy(
        "aiinfn-tenant-claims",
        [],
        [{"expression": "!has(object.spec.volumeName) || object.spec.volumeName == ''",
          "message": "tenant claims may not name a PersistentVolume (spec.volumeName): volumes are provisioned"}],
        [],
        [("", "v1", ["persistentvolumeclaims"])],
        ["CREATE"],
    )


#: A user's home claim in a project's namespace (services.batch.HOME_CLAIM_PREFIX) and who makes it.
HOME_CLAIM_PREFIX = "aiinfn-home-"
BATCH_SERVICE_ACCOUNT = f"system:serviceaccount:{BATCH_NAMESPACE}:{BATCH_SERVICE}"


def home_claims_policy() -> dict[str, Any]:
    home = f"(has(v.persistentVolumeClaim) && v.persistentVolumeClaim.claimName.startsWith({lit(HOME_CLAIM_PREFIX)}))"
    mounts = f"(has(s.volumes) && s.volumes.exists(v, {home}))"
    controller = (f"(request.userInfo.username == {lit(CONTROLLER_MANAGER)} || (has(request.userInfo.groups) && "
                  f"{lit(KUBE_SYSTEM_SERVICE_ACCOUNTS)} in request.userInfo.groups))")
    job_pod = ("object.kind == 'Pod' && has(object.metadata.ownerReferences) && object.metadata.ownerReferences"
               ".exists(r, r.kind == 'Job' && r.apiVersion == 'batch/v1' && has(r.controller) && r.controller)")
    kept = (f"variables.specs.all(s, !has(s.volumes) || s.volumes.all(v, !{home} || "
            "variables.oldSpecs.exists(o, has(o.volumes) && o.volumes.exists(w, has(w.persistentVolumeClaim) && "
            "w.persistentVolumeClaim.claimName == v.persistentVolumeClaim.claimName))))")
    uid = "s.securityContext.runAsUser"
    as_owner = (
        f"variables.specs.all(s, !{mounts} || (has(s.securityContext) && has({uid}) && "
        "has(s.securityContext.runAsGroup) && s.securityContext.runAsGroup == " + uid + " && "
        "has(s.securityContext.fsGroup) && s.securityContext.fsGroup == " + uid + " && "
        f"s.volumes.all(v, !{home} || v.persistentVolumeClaim.claimName == {lit(HOME_CLAIM_PREFIX)} + string({uid}))"
        f" && {CONTAINERS}.all(c, !has(c.securityContext) || ("
        f"(!has(c.securityContext.runAsUser) || c.securityContext.runAsUser == {uid}) && "
        f"(!has(c.securityContext.runAsGroup) || c.securityContext.runAsGroup == {uid})))))"
    )
    batch = f"request.userInfo.username == {lit(BATCH_SERVICE_ACCOUNT)}"
    is_workload = "object.kind != 'PersistentVolumeClaim'"
    return _policy(
        "aiinfn-home-claims",
        [
            {"name": "specs", "expression": f"{is_workload} ? ({_specs('object')}) : []"},
            {"name": "oldSpecs", "expression": f"{is_workload} && oldObject != null ? ({_specs('oldObject')}) : []"},
        ],
        [
            {"expression": (f"!variables.specs.exists(s, {mounts}) || ({batch} && object.kind == 'Job') || "
                            f"({controller} && {job_pod}) || (oldObject != null && {kept})"),
             "message": "a user's home claim (aiinfn-home-<uid>) may be mounted only by the batch service's Jobs "
                        "and their pods: submit with aiinfn-batch"},
            {"expression": f"oldObject == null || {kept}",
             "message": "a workload may not gain a user's home claim (aiinfn-home-<uid>) after it was created"},
            {"expression": as_owner,
             "message": "a pod mounting the home claim aiinfn-home-<uid> runs as that UID only (runAsUser, "
                        "runAsGroup and fsGroup <uid>, no container as anyone else)"},
            {"expression": (f"{is_workload} || request.operation != 'CREATE' || "
                            f"(object.metadata.name.startsWith({lit(HOME_CLAIM_PREFIX)}) == ({batch}))"),
             "message": "claims named aiinfn-home-<uid> (users' homes) are made by the batch service only, and it "
                        "makes no other claim"},
            {"expression": (f"{is_workload} || request.operation != 'CREATE' || "
                            f"!object.metadata.name.startsWith({lit(HOME_CLAIM_PREFIX)}) || "
                            f"(object.metadata.name.matches('^{HOME_CLAIM_PREFIX}[0-9]{{6,9}}$') && "
                            "has(object.spec.storageClassName) && object.spec.storageClassName == '')"),
             "message": "a home claim is aiinfn-home-<uid> with no storage class: it binds only to its pre-bound "
                        "home volume"},
        ],
        [],
        [*WORKLOADS, ("", "v1", ["persistentvolumeclaims"])],
        ["CREATE", "UPDATE"],
    )


def services_policy() -> dict[str, Any]:
    return _policy(
        "aiinfn-tenant-services",
        [],
        [{"expression": "!has(object.spec.externalIPs) || size(object.spec.externalIPs) == 0",
          "message": "tenant Services may not claim external IPs (spec.externalIPs)"},
         {"expression": "!has(object.spec.type) || object.spec.type == 'ClusterIP'",
          "message": "tenant Services are ClusterIP only (no NodePort, LoadBalancer or ExternalName)"}],
        [],
        [("", "v1", ["services"])],
        ["CREATE", "UPDATE"],
    )


def reserved_nodes(plan: Plan) -> dict[str, str]:
    """Node name -> the group (as a label value) it is reserved for."""
    return {n.name: group_label_value(n.reserved_for) for n in plan.nodes if n.reserved_for}


def reserved_models(plan: Plan) -> dict[str, str]:
    """Accelerator model -> group, for models whose every node is reserved for that one group."""
    groups: dict[str, set[str | None]] = {}
    for n in plan.nodes:
        if n.accelerator is not None:
            groups.setdefault(n.labels.get(ACCELERATOR_LABEL, n.accelerator), set()).add(n.reserved_for)
    out: dict[str, str] = {}
    for model, owners in sorted(groups.items()):
        only = next(iter(owners))
        if len(owners) == 1 and only is not None:
            out[model] = group_label_value(only)
    return out


def _foreign(key: str, value: str) -> str:
    """CEL: the node selector term ``key``=``value`` selects a node reserved for another group."""
    return (
        f"(({key} == {lit(HOSTNAME_LABEL)} || {key} == 'metadata.name') && {value} in variables.reservedNodes"
        f" && variables.reservedNodes[{value}] != variables.group)"
        f" || ({key} == {lit(RESERVED_FOR_LABEL)} && {value} != variables.group)"
        f" || ({key} == {lit(ACCELERATOR_LABEL)} && {value} in variables.reservedModels"
        f" && variables.reservedModels[{value}] != variables.group)"
    )


def _requirement_ok(e: str) -> str:
    """CEL: node selector requirement ``e`` selects no node reserved for another group."""
    keys = lit([HOSTNAME_LABEL, "metadata.name", RESERVED_FOR_LABEL, ACCELERATOR_LABEL])
    return (
        f"!({e}.key in {keys}) || {e}.operator in ['NotIn', 'DoesNotExist']"
        f" || ({e}.operator == 'In' && has({e}.values) && {e}.values.all(v, !({_foreign(e + '.key', 'v')})))"
        f" || ({e}.operator == 'Exists' && {e}.key in {lit([HOSTNAME_LABEL, 'metadata.name'])})"
    )


def _terms_ok(terms: str) -> str:
    req = _requirement_ok("e")
    return (f"{terms}.all(t, (!has(t.matchExpressions) || t.matchExpressions.all(e, {req}))"
            f" && (!has(t.matchFields) || t.matchFields.all(e, {req})))")


def scheduling_policy(plan: Plan) -> dict[str, Any]:
    taints = lit(sorted({RESERVED_TAINT, ACCELERATOR_LABEL, SERVER_TAINT[0]}))
    platform = (
        f"(has(t.key) && t.key != '' ? (t.key in {taints} || t.key.startsWith({lit(LABEL_PREFIX + '/')}))"
        " : (has(t.operator) && t.operator == 'Exists'))"
    )
    added = "!variables.oldSpecs.exists(o, has(o.tolerations) && t in o.tolerations)"
    node_affinity = "s.affinity.nodeAffinity"
    required = f"{node_affinity}.requiredDuringSchedulingIgnoredDuringExecution.nodeSelectorTerms"
    preferred = f"{node_affinity}.preferredDuringSchedulingIgnoredDuringExecution.map(p, p.preference)"
    affinity = (
        f"variables.specs.all(s, !has(s.affinity) || !has(s.affinity.nodeAffinity) || ("
        f"(!has({node_affinity}.requiredDuringSchedulingIgnoredDuringExecution) || {_terms_ok(required)})"
        f" && (!has({node_affinity}.preferredDuringSchedulingIgnoredDuringExecution) || {_terms_ok(preferred)})))"
    )
    prefixes = " || ".join(f"r.startsWith({lit(p)})" for p in ACCELERATOR_RESOURCE_PREFIXES)
    no_accelerator = ("!has(c.resources) || ((!has(c.resources.limits) || !c.resources.limits.exists(r, "
                      f"{prefixes})) && (!has(c.resources.requests) || !c.resources.requests.exists(r, {prefixes})))")
    queued = f"variables.labelSets.exists(l, {lit(QUEUE_NAME_LABEL)} in l && l[{lit(QUEUE_NAME_LABEL)}] != '')"
    return _policy(
        "aiinfn-tenant-scheduling",
        [
            *SPEC_VARIABLES,
            {"name": "group", "expression": (
                f"has(namespaceObject.metadata.labels) && {lit(NAMESPACE_GROUP_LABEL)} in namespaceObject.metadata."
                f"labels ? namespaceObject.metadata.labels[{lit(NAMESPACE_GROUP_LABEL)}] : ''")},
            {"name": "reservedNodes", "expression": lit(reserved_nodes(plan))},
            {"name": "reservedModels", "expression": lit(reserved_models(plan))},
        ],
        [
            {"expression": f"variables.specs.all(s, !has(s.tolerations) || s.tolerations.all(t, !({platform}) "
                           f"|| !({added})))",
             "message": "tenant workloads may not tolerate the platform's taints (reserved, accelerator, servers) "
                        "nor every taint: Kueue adds the tolerations of the flavor it admits the workload on"},
            {"expression": "variables.specs.all(s, !has(s.nodeName) || s.nodeName == '' "
                           "|| variables.oldSpecs.exists(o, has(o.nodeName) && o.nodeName == s.nodeName))",
             "message": "tenant workloads may not name their node (spec.nodeName): the scheduler places them"},
            {"expression": "variables.specs.all(s, !has(s.nodeSelector) || s.nodeSelector.all(k, "
                           f"!({_foreign('k', 's.nodeSelector[k]')})))",
             "message": "tenant workloads may not select nodes reserved for another group"},
            {"expression": affinity,
             "message": "tenant workloads may not ask (node affinity) for nodes reserved for another group"},
            {"expression": (
                "object.kind != 'Pod' || oldObject == null || !has(oldObject.spec.schedulingGates) || "
                f"oldObject.spec.schedulingGates.filter(g, g.name in {lit(list(KUEUE_GATES))}).all(g, "
                "has(object.spec.schedulingGates) && object.spec.schedulingGates.exists(n, n.name == g.name))"),
             "message": "tenant pods may not remove Kueue's scheduling gates: Kueue lifts them when it admits the pod"},
            {"expression": ("!(object.kind in ['Job', 'JobSet']) || oldObject == null || !has(oldObject.spec.suspend) "
                            "|| !oldObject.spec.suspend || (has(object.spec.suspend) && object.spec.suspend)"),
             "message": "tenant workloads may not unsuspend a suspended Job: Kueue starts it when it admits it"},
            {"expression": f"{queued} || {_each_container(no_accelerator)}",
             "message": f"accelerators (nvidia.com/*, amd.com/*) are given only through Kueue: label the workload "
                        f"{QUEUE_NAME_LABEL}=<local queue> (default)"},
        ],
        [_not_from(KUEUE_CONTROLLER, CONTROLLER_MANAGER, groups=(KUBE_SYSTEM_SERVICE_ACCOUNTS,))],
        WORKLOADS,
        ["CREATE", "UPDATE"],
    )


def priority_policy() -> dict[str, Any]:
    label = lit(PRIORITY_CLASS_LABEL)
    return _policy(
        "aiinfn-tenant-priority",
        SPEC_VARIABLES,
        [
            {"expression": f"variables.labelSets.all(l, !({label} in l) || l[{label}] == {lit(TENANT_PRIORITY)})",
             "message": f"tenant workloads run at Kueue priority {TENANT_PRIORITY!r} only ({PRIORITY_CLASS_LABEL})"},
            {"expression": "variables.specs.all(s, !has(s.priorityClassName) || s.priorityClassName == '')",
             "message": "tenant pods may not set a priorityClassName"},
        ],
        [_not_from(KUEUE_CONTROLLER, CONTROLLER_MANAGER, HUB, groups=(KUBE_SYSTEM_SERVICE_ACCOUNTS,))],
        WORKLOADS,
        ["CREATE", "UPDATE"],
    )


def policies(plan: Plan) -> list[dict[str, Any]]:
    return [pods_policy(), claims_policy(), services_policy(), scheduling_policy(plan), priority_policy(),
            home_claims_policy()]


#: Bindings select tenant namespaces by these labels (one binding per label and policy).
TENANT_LABELS = {"projects": PROJECT_LABEL, "events": EVENT_LABEL}


def bindings(plan: Plan) -> list[dict[str, Any]]:
    out = []
    for p in policies(plan):
        for what, label in TENANT_LABELS.items():
            out.append({
                "apiVersion": API,
                "kind": "ValidatingAdmissionPolicyBinding",
                "metadata": {"name": f"{p['metadata']['name']}-{what}"},
                "spec": {
                    "policyName": p["metadata"]["name"],
                    "validationActions": ["Deny"],
                    "matchResources": {
                        "namespaceSelector": {"matchExpressions": [{"key": label, "operator": "Exists"}]}
                    },
                },
            })
    return out


def objects(plan: Plan) -> list[dict[str, Any]]:
    return [*policies(plan), *bindings(plan)]


def bundle(plan: Plan) -> Bundle:
    """The tenant admission policies of a site (cluster-wide objects, bound to tenant namespaces)."""
    return Bundle("policy", manifests(*objects(plan)))
