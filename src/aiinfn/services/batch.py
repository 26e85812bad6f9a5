"""The batch service: a JupyterHub service that turns a user's session into a Job queued by Kueue.

What the overlay runs (``aiinfn.batch`` holds the programs; this module only ships them):

* the namespace ``aiinfn-batch`` (Pod Security ``restricted``, default-deny, ``allow-dns``): the
  service's Deployment (one replica: the per-user job limit is counted under an in-process lock), its
  Service on ``PORT``, the programs and settings in a ConfigMap mounted as the package ``aiinfn_batch``
  (the pod template carries a digest of both, so a change rolls the pod), in ``versions.BATCH_IMAGE``;
* its hub API token: generated once (``RandomPassword``), a Secret in this namespace (a file of the
  pod) and one in the hub's namespace (hub.extraEnv; hub.extraConfig's ``aiinfn-batch`` snippet gives
  it to the service's hub registration), never a Helm value;
* its ServiceAccount may, in project namespaces only (a RoleBinding per namespace to the ClusterRole
  ``aiinfn-batch``): manage Jobs, read pods and their logs, read Kueue
  workloads, get and create claims (the user's home claim in the project, created at their first job);
  cluster-wide (``aiinfn-batch-homes``) read the platform areas' PersistentVolume (by name) and create
  PersistentVolumes: a user's home volume, whose nfs source is their notebook home. The
  ValidatingAdmissionPolicy ``aiinfn-batch-home-volumes`` (``home_volumes_policy``) holds every volume
  the service creates to exactly that shape (``aiinfn-home-<uid>-<project namespace>``, nfs at
  ``<areas>/home/<name>``, pre-bound to that namespace's claim ``aiinfn-home-<uid>``, owner UID
  recorded, Retain); policy.home_claims_policy holds who may mount such a claim, and as whom;
  in the hub's namespace list ConfigMaps (the event registrations, which say who may use an event's
  queue and when); in an event's namespace (``event_rbac``, a Role the event's stack applies) list,
  create and delete Jobs, list pods, read their logs, list workloads and get claims (never create);
* NetworkPolicies: notebooks (their namespace, services.notebooks) and the hub's proxy reach the
  service on ``PORT``; the service reaches
  the hub's API (8081) and the Kubernetes API, nothing else.

The hub side (``services.jupyterhub``): the hub.services entry, the roles (users' and servers' tokens
may call the service; the service's own token reads users' names and groups), the notebooks'
``AIINFN_BATCH_URL`` and their egress to the service, the ``aiinfn-batch`` client in every notebook.
"""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from typing import Any

from .. import versions
from ..config.validate_offload import offload_queue_name
from ..planning import Plan
from ..planning.labels import (
    BATCH_OWNER_ANNOTATION,
    BATCH_OWNER_LABEL,
    EVENT_LABEL,
    HOSTNAME_LABEL,
    HUB_REGISTRATION_LABEL,
    OFFLOAD_TARGET_LABEL,
    OWNER_GID_ANNOTATION,
    OWNER_UID_ANNOTATION,
    PLATFORM_LABEL,
    PRIORITY_CLASS_LABEL,
    QUEUE_NAME_LABEL,
    virtual_node_name,
)
from . import images as platform_images
from . import jupyterhub, network
from .bundle import Bundle, Generated, RandomPassword, Secret, manifests, namespace
from .kueue import LOCAL_QUEUE
from .policy import BATCH_SERVICE_ACCOUNT, HOME_CLAIM_PREFIX

NAMESPACE = jupyterhub.BATCH_NAMESPACE
SERVICE = jupyterhub.BATCH_SERVICE
PORT = jupyterhub.BATCH_PORT
PREFIX = f"/services/{SERVICE}/"
PODS = dict(jupyterhub.BATCH_PODS)
TOKEN_SECRET = jupyterhub.BATCH_TOKEN_SECRET
TOKEN_KEY = jupyterhub.BATCH_TOKEN_KEY
PROGRAM_DIR = "/srv/aiinfn-batch"
PACKAGE = "aiinfn_batch"
PROGRAMS = ("__init__", "jobs", "service")
#: Shipped beside them from the hub's package: its reader of event registrations (one parser of the
#: window for the hub and the service).
HUB_PROGRAMS = ("cluster",)
#: The service's Role in an event's namespace and in the hub's (bound there by RoleBindings).
EVENT_ROLE = f"{SERVICE}-event"
REGISTRATIONS_ROLE = f"{SERVICE}-registrations"
#: z2jh's singleuser.storage.homeMountPath (the chart's default, which the platform keeps).
HOME_MOUNT = "/home/jovyan"
RBAC_API = "rbac.authorization.k8s.io/v1"
#: The hub's API port and pods (z2jh: the hub Service's port 8081).
HUB_API_PORT = 8081
HUB_PODS = {"app": "jupyterhub", "component": "hub"}
PROXY_PODS = {"app": "jupyterhub", "component": "proxy"}
#: The service's identity at the API server; a user's home claim in a project's namespace is
#: ``aiinfn-home-<uid>``, its volume ``aiinfn-home-<uid>-<namespace>`` (policy.home_claims_policy,
#: home_volumes_policy).
SERVICE_ACCOUNT = BATCH_SERVICE_ACCOUNT
#: The platform areas' PersistentVolume of the notebooks' namespace (services.notebooks' bundle): its
#: nfs server, export path and mount options are a home volume's.
AREAS_VOLUME = "aiinfn-areas-users"
HOMES_ROLE = f"{SERVICE}-homes"
HOME_VOLUMES_POLICY = f"{SERVICE}-home-volumes"
ADMISSION_API = "admissionregistration.k8s.io/v1"


def program(name: str) -> str:
    """The text of ``aiinfn/batch/<name>.py`` (``aiinfn/hub/<name>.py`` for HUB_PROGRAMS), as shipped."""
    package = "aiinfn.hub" if name in HUB_PROGRAMS else "aiinfn.batch"
    return resources.files(package).joinpath(f"{name}.py").read_text()


def images(plan: Plan) -> dict[str, str]:
    hub = plan.env.services.jupyterhub
    assert hub is not None
    out = dict(hub.images)
    if hub.default_image not in out.values():
        out.setdefault("default", hub.default_image)
    return out


def settings(plan: Plan) -> dict[str, Any]:
    """What the service reads (``aiinfn_batch.jobs.Settings``): data only, one JSON document."""
    env = plan.env
    batch = env.services.batch
    hub = env.services.jupyterhub
    assert batch is not None and hub is not None
    kinds = {key: {"resource": cap.kind.resource, "node_labels": dict(cap.kind.node_labels),
                   "slug": jupyterhub.profile_slug(key)} for key, cap in plan.capacity.items()}
    projects = {q.project: {"namespace": q.namespace, "group": q.iam_group, "queue": LOCAL_QUEUE,
                            "kinds": list(plan.visible_kinds(q.iam_group)), "offload": q.borrowing}
                for q in plan.quotas}
    offload = {
        name: {
            "node": virtual_node_name(name),
            "queue": offload_queue_name(name),
            "max_time_hours": t.limits.max_wall_time_hours,
            "max_cpu": t.limits.max_cpu,
            "max_memory_gb": t.limits.max_memory_gb,
            "accelerators": {m: "nvidia.com/gpu" for m in t.accelerators},
        }
        for name, t in env.offload.targets.items()
    }
    return {
        "projects": projects,
        "kinds": kinds,
        "images": images(plan),
        "team_images": {n: {"groups": list(hub.team_images[n].groups), "image": ref}
                        for n, ref in platform_images.team_image_refs(plan).items()},
        "apptainer": platform_images.apptainer(plan),
        "default_image": hub.default_image,
        "limits": {
            "max_jobs_per_user": batch.max_jobs_per_user,
            "max_cpu": batch.max_cpu,
            "max_memory_gb": batch.max_memory_gb,
            "max_accelerators": batch.max_accelerators,
            "max_time_hours": batch.max_time_hours,
            "finished_ttl_hours": batch.finished_ttl_hours,
        },
        "labels": {
            "queue": QUEUE_NAME_LABEL,
            "priority": PRIORITY_CLASS_LABEL,
            "owner": BATCH_OWNER_LABEL,
            "owner_annotation": BATCH_OWNER_ANNOTATION,
            "offload": OFFLOAD_TARGET_LABEL,
            "hostname": HOSTNAME_LABEL,
            "event": EVENT_LABEL,
            "hub_registration": HUB_REGISTRATION_LABEL,
            "owner_uid": OWNER_UID_ANNOTATION,
            "owner_gid": OWNER_GID_ANNOTATION,
            "managed_by": "app.kubernetes.io/managed-by",
            "job_name": "batch.kubernetes.io/job-name",
        },
        "priority_class": "batch",
        "hub_namespace": jupyterhub.NAMESPACE,
        "event_queue": LOCAL_QUEUE,
        "kueue_version": versions.KUEUE_API.rpartition("/")[2],
        "home": {
            "mount_path": HOME_MOUNT,
            "size_gb": hub.home_size_gb,
            "claim_prefix": HOME_CLAIM_PREFIX,
            "areas_volume": AREAS_VOLUME,
        },
        "uid": jupyterhub.NOTEBOOK_UID,
        "gid": jupyterhub.NOTEBOOK_GID,
        "tmp_size_gb": hub.tmp_size_gb,
        "offload": offload,
        "virtual_nodes": sorted(virtual_node_name(n) for n in env.offload.targets),
    }


def config_map(plan: Plan) -> dict[str, Any]:
    data = {f"{name}.py": program(name) for name in (*PROGRAMS, *HUB_PROGRAMS)}
    data["settings.json"] = json.dumps(settings(plan), sort_keys=True, indent=1)
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": SERVICE, "namespace": NAMESPACE},
            "data": data}


def cluster_role() -> dict[str, Any]:
    """What the service may do where it is bound (project namespaces, by RoleBindings)."""
    rules = [
        ("batch", ["jobs"], ["get", "list", "watch", "create", "delete"]),
        ("", ["pods"], ["get", "list"]),
        ("", ["pods/log"], ["get"]),
        ("", ["persistentvolumeclaims"], ["get", "create"]),
        ("kueue.x-k8s.io", ["workloads"], ["get", "list"]),
    ]
    return {"apiVersion": RBAC_API, "kind": "ClusterRole", "metadata": {"name": SERVICE},
            "rules": [{"apiGroups": [g], "resources": r, "verbs": v} for g, r, v in rules]}


def homes_rbac() -> list[dict[str, Any]]:
    """Cluster-wide, for users' home volumes: read the platform areas' volume (where the homes are),
    create PersistentVolumes (held by ``home_volumes_policy`` to home volumes; RBAC cannot narrow a
    create by name)."""
    role = {"apiVersion": RBAC_API, "kind": "ClusterRole", "metadata": {"name": HOMES_ROLE},
            "rules": [{"apiGroups": [""], "resources": ["persistentvolumes"], "verbs": ["get"],
                       "resourceNames": [AREAS_VOLUME]},
                      {"apiGroups": [""], "resources": ["persistentvolumes"], "verbs": ["create"]}]}
    binding = {"apiVersion": RBAC_API, "kind": "ClusterRoleBinding", "metadata": {"name": HOMES_ROLE},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": HOMES_ROLE},
               "subjects": [{"kind": "ServiceAccount", "name": SERVICE, "namespace": NAMESPACE}]}
    return [role, binding]


def _regex_literal(text: str) -> str:
    """``text`` as an RE2 pattern matching exactly it, safe inside a CEL single-quoted string: every
    character but letters and digits in a class of its own (a path's ``.`` is no wildcard)."""
    if any(c in text for c in "]\\^'\n"):
        raise ValueError(f"storage.nfs.export_path: {text!r} holds a character a policy cannot match literally")
    return "".join(c if c.isalnum() else f"[{c}]" for c in text)


def home_volumes_policy(plan: Plan) -> list[dict[str, Any]]:
    """What the service may create as a PersistentVolume: a user's home volume, nothing else. Its
    CREATE (and any UPDATE it would try) of a PersistentVolume must be ``aiinfn-home-<uid>-<ns>``
    pre-bound to the claim ``aiinfn-home-<uid>`` of a project's namespace ``ns``, recording owner UID
    ``<uid>``, an nfs volume (no other source) at ``<areas>/home/<name>`` (a portable name: no ``..``,
    no ``/``), read-write, Retain, no storage class. The service's identity alone is judged (a match
    condition): operators and provisioners are not its concern."""
    nfs = plan.env.storage.nfs
    assert nfs is not None
    areas = f"{nfs.export_path.rstrip('/')}/{jupyterhub.AREAS_DIR}/home/"
    namespaces = sorted(q.namespace for q in plan.quotas)
    sources = ("awsElasticBlockStore", "azureDisk", "azureFile", "cephfs", "cinder", "csi", "fc", "flexVolume",
               "flocker", "gcePersistentDisk", "glusterfs", "hostPath", "iscsi", "local", "photonPersistentDisk",
               "portworxVolume", "quobyte", "rbd", "scaleIO", "storageos", "vsphereVolume")
    uid_key = OWNER_UID_ANNOTATION
    checks = [
        ("request.operation == 'CREATE'", "the batch service creates home volumes, never changes or deletes one"),
        ("has(object.spec.claimRef) && has(object.spec.claimRef.namespace) && has(object.spec.claimRef.name)"
         f" && object.spec.claimRef.namespace in {json.dumps(namespaces)}"
         f" && object.spec.claimRef.name.matches('^{HOME_CLAIM_PREFIX}[0-9]{{6,9}}$')"
         " && object.metadata.name == object.spec.claimRef.name + '-' + object.spec.claimRef.namespace",
         f"a home volume is {HOME_CLAIM_PREFIX}<uid>-<project namespace>, pre-bound to that namespace's claim "
         f"{HOME_CLAIM_PREFIX}<uid>"),
        (f"has(object.metadata.annotations) && {json.dumps(uid_key)} in object.metadata.annotations"
         f" && has(object.spec.claimRef) && has(object.spec.claimRef.name) && object.spec.claimRef.name == "
         f"{json.dumps(HOME_CLAIM_PREFIX)} + object.metadata.annotations[{json.dumps(uid_key)}]",
         f"a home volume records its owner's UID ({uid_key}), the UID its claim is named after"),
        ("has(object.spec.nfs) && has(object.spec.nfs.path) && !(has(object.spec.nfs.readOnly) && "
         f"object.spec.nfs.readOnly) && object.spec.nfs.path.matches('^{_regex_literal(areas)}"
         "[a-z0-9][a-z0-9._-]{0,79}$') && "
         + " && ".join(f"!has(object.spec.{k})" for k in sources),
         f"a home volume is an nfs volume of one user's home ({areas}<name>), nothing else"),
        ("has(object.spec.persistentVolumeReclaimPolicy) && object.spec.persistentVolumeReclaimPolicy == 'Retain'"
         " && (!has(object.spec.storageClassName) || object.spec.storageClassName == '')",
         "a home volume is Retain (deleting its claim never touches the home) and has no storage class"),
    ]
    policy = {
        "apiVersion": ADMISSION_API, "kind": "ValidatingAdmissionPolicy", "metadata": {"name": HOME_VOLUMES_POLICY},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                                                    "resources": ["persistentvolumes"],
                                                    "operations": ["CREATE", "UPDATE"]}]},
            "matchConditions": [{"name": "the-batch-service",
                                 "expression": f"request.userInfo.username == {json.dumps(SERVICE_ACCOUNT)}"}],
            "validations": [{"expression": e, "message": m, "reason": "Forbidden"} for e, m in checks],
        },
    }
    binding = {"apiVersion": ADMISSION_API, "kind": "ValidatingAdmissionPolicyBinding",
               "metadata": {"name": HOME_VOLUMES_POLICY},
               "spec": {"policyName": HOME_VOLUMES_POLICY, "validationActions": ["Deny"]}}
    return [policy, binding]


def role_binding(ns: str, kind: str = "ClusterRole", role: str = SERVICE) -> dict[str, Any]:
    return {
        "apiVersion": RBAC_API, "kind": "RoleBinding", "metadata": {"name": role, "namespace": ns},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": SERVICE, "namespace": NAMESPACE}],
    }


def _role(name: str, ns: str, rules: list[tuple[str, list[str], list[str]]]) -> dict[str, Any]:
    return {"apiVersion": RBAC_API, "kind": "Role", "metadata": {"name": name, "namespace": ns},
            "rules": [{"apiGroups": [g], "resources": r, "verbs": v} for g, r, v in rules]}


def registrations_rbac() -> list[dict[str, Any]]:
    """The hub's namespace: list the ConfigMaps there (the service selects the event registrations,
    what the hub itself reads; RBAC cannot narrow a list by label). Nothing else there."""
    ns = jupyterhub.NAMESPACE
    return [_role(REGISTRATIONS_ROLE, ns, [("", ["configmaps"], ["list"])]),
            role_binding(ns, "Role", REGISTRATIONS_ROLE)]


def event_rbac(ns: str) -> list[dict[str, Any]]:
    """The service's rights in an event's namespace ``ns`` (the event's stack applies them when the site
    runs the service): exactly the calls it makes there: list, create and cancel Jobs, find their pods
    and read the logs, list Kueue workloads, read (never create) a participant's home claim."""
    rules = [
        ("batch", ["jobs"], ["list", "create", "delete"]),
        ("", ["pods"], ["list"]),
        ("", ["pods/log"], ["get"]),
        ("", ["persistentvolumeclaims"], ["get"]),
        ("kueue.x-k8s.io", ["workloads"], ["list"]),
    ]
    return [_role(EVENT_ROLE, ns, rules), role_binding(ns, "Role", EVENT_ROLE)]


def deployment(plan: Plan, digest: str) -> dict[str, Any]:
    env = {
        "PYTHONPATH": PROGRAM_DIR,
        "AIINFN_BATCH_SETTINGS": f"{PROGRAM_DIR}/settings.json",
        "AIINFN_BATCH_API_TOKEN_FILE": f"/var/run/{SERVICE}/{TOKEN_KEY}",
        "JUPYTERHUB_SERVICE_NAME": SERVICE,
        "JUPYTERHUB_SERVICE_PREFIX": PREFIX,
        "JUPYTERHUB_SERVICE_URL": f"http://0.0.0.0:{PORT}",
        "JUPYTERHUB_API_URL": f"http://{jupyterhub.HUB_SERVICE}.{jupyterhub.NAMESPACE}.svc:{HUB_API_PORT}/hub/api",
        "JUPYTERHUB_CLIENT_ID": f"service-{SERVICE}",
        "JUPYTERHUB_BASE_URL": "/",
    }
    items = [{"key": f"{n}.py", "path": f"{PACKAGE}/{n}.py"} for n in (*PROGRAMS, *HUB_PROGRAMS)]
    items.append({"key": "settings.json", "path": "settings.json"})
    probe = {"httpGet": {"path": f"{PREFIX}health", "port": PORT}, "periodSeconds": 10}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": SERVICE, "namespace": NAMESPACE, "labels": dict(PODS)},
        "spec": {
            "replicas": 1,
            "strategy": {"type": "Recreate"},
            "selector": {"matchLabels": dict(PODS)},
            "template": {
                "metadata": {"labels": dict(PODS), "annotations": {"aiinfn.batch/digest": digest}},
                "spec": {
                    "serviceAccountName": SERVICE,
                    "enableServiceLinks": False,
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000,
                                        "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{
                        "name": "service",
                        "image": versions.BATCH_IMAGE,
                        "command": ["python3", "-m", f"{PACKAGE}.service"],
                        "workingDir": PROGRAM_DIR,
                        "env": [{"name": k, "value": v} for k, v in env.items()],
                        "ports": [{"name": "http", "containerPort": PORT}],
                        "readinessProbe": probe,
                        "livenessProbe": {**probe, "failureThreshold": 6},
                        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"},
                                      "limits": {"cpu": "1", "memory": "512Mi"}},
                        "volumeMounts": [
                            {"name": "program", "mountPath": PROGRAM_DIR, "readOnly": True},
                            {"name": "token", "mountPath": f"/var/run/{SERVICE}", "readOnly": True},
                        ],
                        "securityContext": {
                            "runAsNonRoot": True,
                            "allowPrivilegeEscalation": False,
                            "readOnlyRootFilesystem": True,
                            "capabilities": {"drop": ["ALL"]},
                            "seccompProfile": {"type": "RuntimeDefault"},
                        },
                    }],
                    "volumes": [
                        {"name": "program", "configMap": {"name": SERVICE, "items": items}},
                        {"name": "token", "secret": {"secretName": TOKEN_SECRET}},
                    ],
                },
            },
        },
    }


def service() -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": SERVICE, "namespace": NAMESPACE},
            "spec": {"selector": dict(PODS), "ports": [{"name": "http", "port": PORT, "targetPort": PORT}]}}


def network_policies(plan: Plan) -> list[dict[str, Any]]:
    """Notebooks and the hub's proxy in; the hub's API and the Kubernetes API out."""
    hub = jupyterhub.NAMESPACE
    ranges = network.Ranges.of(plan)
    return [
        *network.baseline(NAMESPACE, same_namespace=False),
        network.allow_apiserver(NAMESPACE, ranges, PODS),
        network.policy("allow-hub", NAMESPACE, pods=PODS, ingress=[{
            "from": [network.in_namespace(jupyterhub.USERS_NAMESPACE), network.in_namespace(hub, PROXY_PODS)],
            "ports": network.tcp(PORT),
        }], egress=[{"to": [network.in_namespace(hub, HUB_PODS)], "ports": network.tcp(HUB_API_PORT)}]),
    ]


def objects(plan: Plan) -> list[dict[str, Any]]:
    cm = config_map(plan)
    digest = hashlib.sha256((json.dumps(cm["data"], sort_keys=True) + versions.BATCH_IMAGE).encode()).hexdigest()[:16]
    return [
        *network_policies(plan),
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": SERVICE, "namespace": NAMESPACE}},
        cluster_role(),
        *(role_binding(q.namespace) for q in plan.quotas),
        *homes_rbac(),
        *home_volumes_policy(plan),
        *registrations_rbac(),
        cm,
        deployment(plan, digest),
        service(),
    ]


def hub_token_secrets(after_hub_namespace: tuple[str, ...]) -> list[Any]:
    """The generated token and its two Secrets (the service's, the hub's)."""
    token = Generated("batch-api-token")
    return [
        RandomPassword("batch-api-token", length=48, special=False),
        Secret("batch-token-service", (f"ns-{NAMESPACE}",), name=TOKEN_SECRET, namespace=NAMESPACE,
               data={TOKEN_KEY: token}),
        Secret("batch-token-hub", after_hub_namespace, name=TOKEN_SECRET, namespace=jupyterhub.NAMESPACE,
               data={TOKEN_KEY: token}),
    ]


def bundle(plan: Plan) -> Bundle | None:
    """The batch service, when the site asks for it (``services.batch``) and runs the hub."""
    env = plan.env
    if env.services.batch is None or env.services.jupyterhub is None:
        return None
    ns = f"ns-{NAMESPACE}"
    secrets = hub_token_secrets((f"ns-{jupyterhub.NAMESPACE}",))
    return Bundle(
        "batch",
        (
            namespace(NAMESPACE, "restricted", {PLATFORM_LABEL: "true"}),
            *secrets,
            *manifests(*objects(plan), after=(ns, "batch-token-service", jupyterhub.RELEASE)),
        ),
    )
