"""The users' notebooks: a namespace of their own, the hub's access to it, and the platform areas.

Kueue manages every workload of a namespace labelled ``kueue.x-k8s.io/managed=true``
(services.kueue); the hub's own namespace cannot carry that label (Kueue would hold back the hub,
proxy, user scheduler, image pullers and placeholders), so notebooks are spawned into
``jupyterhub-users``:

* Pod Security ``restricted``, labelled managed (every notebook is a Kueue workload of the
  ``interactive`` LocalQueue, services.kueue) and ``aiinfn.infn.it/interactive`` (the interactive
  ClusterQueue's namespace selector). Only the hub creates pods there: no tenant has RBAC in it.
* The hub's ServiceAccount gets a Role there with what KubeSpawner needs (pods, claims, secrets and
  services: get, list, watch, create, delete; events: read) and read access to Kueue Workloads (a
  queued notebook's state); in its own namespace a Role to read ConfigMaps (event registrations);
  cluster-wide only reads of Nodes and Kueue ClusterQueues (availability in the spawn form).
* NetworkPolicies: default deny; DNS; the hub's proxy and the hub reach the notebooks on 8888; the
  notebooks reach the hub's API (8081) and the aiinfn-tokens service (8181) on the hub's pods, the
  internet but the cluster's ranges and the metadata service, and the ingress on 80/443 (Harbor, the
  hub by their public names); notebooks never reach each other (different users) nor a tenant.
* The platform areas (``<export>/areas``: homes, group areas, public, managed environments; their
  owners and modes: ``aiinfn.hub.provisioner``): a static PersistentVolume pre-bound (``claimRef``)
  to the claim ``aiinfn-areas`` of this namespace (``Retain``: removing either object never touches the
  data, which lives on the export, so they are not protected). Each notebook mounts
  only its user's subdirectories of it (``aiinfn.hub.spawner``). The claim lives only here and in the
  provisioner's namespace: a namespace where a tenant may create pods (a project's, an event's) never
  holds it.
* The notebook programs (``aiinfn-token``, ``aiinfn-env``, the AWS config, the managed environments'
  definitions) in a ConfigMap of this namespace (the chart's ``singleuser`` Secret exists only in the
  hub's namespace).

KubeSpawner 7.0.0 and z2jh 4.4.0: ``KubeSpawner.namespace`` (hub.config) is the one namespace of the
users; KubeSpawner keeps one pod and event reflector per namespace it spawns into (a profile's
``namespace`` override: an event's), so a Role in each is enough. ``enable_user_namespaces`` (one
namespace per user, created by the hub) is not used: it needs ClusterRoles to create namespaces and
to watch pods everywhere. z2jh connects notebooks to the hub by the short name ``hub``
(``hub_connect_url``), which resolves only in the hub's namespace: hub.config gives the full name;
its ``singleuser`` NetworkPolicy would select nothing in the hub's namespace (disabled: this module's
policies isolate the notebooks) and its hub policy admits only local pods (extended in the hub's
values). The user placeholders and the image pullers stay where z2jh puts them (the hub's
namespace, not Kueue-managed).
"""

from __future__ import annotations

import json
from typing import Any

from ..config.loader import project_root
from ..config.models import Role
from ..errors import ConfigError
from ..planning import Plan
from ..planning.labels import INTERACTIVE_LABEL, KUEUE_MANAGED_LABEL
from . import jupyterhub, network
from .bundle import Bundle, Manifest, NodeAddress, manifests, namespace

NAMESPACE = jupyterhub.USERS_NAMESPACE
AREAS_CLAIM = jupyterhub.AREAS_CLAIM
FILES = jupyterhub.FILES_CONFIGMAP
RBAC_API = "rbac.authorization.k8s.io/v1"
HUB_SA = {"kind": "ServiceAccount", "name": "hub", "namespace": jupyterhub.NAMESPACE}
HUB_PODS = {"app": "jupyterhub", "component": "hub"}
PROXY_PODS = {"app": "jupyterhub", "component": "proxy"}
NOTEBOOK_PORT = 8888
HUB_API_PORT = 8081
_KUBESPAWNER = ["get", "list", "watch", "create", "delete"]
_READ = ["get", "list", "watch"]


def hub_role(ns: str) -> list[dict[str, Any]]:
    """What the hub may do in a namespace it spawns notebooks into (the users', an event's)."""
    rules = [
        ("", ["pods", "persistentvolumeclaims", "secrets", "services"], _KUBESPAWNER),
        ("", ["events"], _READ),
        ("kueue.x-k8s.io", ["workloads"], _READ),
    ]
    return [
        {"apiVersion": RBAC_API, "kind": "Role", "metadata": {"name": "aiinfn-hub-spawner", "namespace": ns},
         "rules": [{"apiGroups": [g], "resources": r, "verbs": v} for g, r, v in rules]},
        {"apiVersion": RBAC_API, "kind": "RoleBinding", "metadata": {"name": "aiinfn-hub-spawner", "namespace": ns},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "aiinfn-hub-spawner"},
         "subjects": [dict(HUB_SA)]},
    ]


def hub_reads() -> list[dict[str, Any]]:
    """The hub's reads beyond its spawner: registrations in its namespace, nodes and ClusterQueues."""
    hub_ns = jupyterhub.NAMESPACE
    return [
        {"apiVersion": RBAC_API, "kind": "Role", "metadata": {"name": "aiinfn-hub-registrations", "namespace": hub_ns},
         "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": _READ}]},
        {"apiVersion": RBAC_API, "kind": "RoleBinding",
         "metadata": {"name": "aiinfn-hub-registrations", "namespace": hub_ns},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "aiinfn-hub-registrations"},
         "subjects": [dict(HUB_SA)]},
        {"apiVersion": RBAC_API, "kind": "ClusterRole", "metadata": {"name": "aiinfn-hub-availability"},
         "rules": [{"apiGroups": [""], "resources": ["nodes"], "verbs": _READ},
                   {"apiGroups": ["kueue.x-k8s.io"], "resources": ["clusterqueues"], "verbs": _READ}]},
        {"apiVersion": RBAC_API, "kind": "ClusterRoleBinding", "metadata": {"name": "aiinfn-hub-availability"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "aiinfn-hub-availability"},
         "subjects": [dict(HUB_SA)]},
    ]


def network_policies(plan: Plan) -> list[dict[str, Any]]:
    ranges = network.Ranges.of(plan)
    hub = jupyterhub.NAMESPACE
    egress: list[dict[str, Any]] = [
        {"to": [network.in_namespace(hub, HUB_PODS)], "ports": network.tcp(HUB_API_PORT, jupyterhub.TOKENS_PORT)},
    ]
    if plan.env.services.batch is not None:
        egress.append({"to": [network.in_namespace(jupyterhub.BATCH_NAMESPACE, jupyterhub.BATCH_PODS)],
                       "ports": network.tcp(jupyterhub.BATCH_PORT)})
    return [
        *network.baseline(NAMESPACE, same_namespace=False),
        network.policy("allow-hub", NAMESPACE, ingress=[{
            "from": [network.in_namespace(hub, PROXY_PODS), network.in_namespace(hub, HUB_PODS)],
            "ports": network.tcp(NOTEBOOK_PORT),
        }], egress=egress),
        network.policy("allow-internet", NAMESPACE, egress=[
            {"to": [network.public(ranges)]},
            {"to": network.ingress_controller(ranges), "ports": network.tcp(80, 443)},
        ]),
    ]


def areas_volume(plan: Plan, name: str, ns: str) -> list[dict[str, Any]]:
    """A static PersistentVolume of the platform areas pre-bound to the claim ``aiinfn-areas`` of ``ns``."""
    nfs = plan.env.storage.nfs
    node = plan.first(Role.NFS)
    assert nfs is not None and node is not None
    size = f"{nfs.size_gb}Gi"
    pv = {
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": size},
            "accessModes": ["ReadWriteMany"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": "",
            "mountOptions": ["nfsvers=4.2", "hard", "noatime"],
            "nfs": {"server": NodeAddress(node.name), "path": f"{nfs.export_path}/{jupyterhub.AREAS_DIR}"},
            "claimRef": {"namespace": ns, "name": AREAS_CLAIM},
        },
    }
    pvc = {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": AREAS_CLAIM, "namespace": ns},
        "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "",
                 "resources": {"requests": {"storage": size}}},
    }
    return [pv, pvc]


def lock_text(name: str) -> str:
    path = project_root() / "environments" / "locks" / name
    try:
        return path.read_text()
    except OSError:
        raise ConfigError(f"environments/locks/{name}: the lock file of a managed environment is missing") from None


def environments(plan: Plan) -> dict[str, Any]:
    """The managed environments' definitions as notebooks read them (``aiinfn-env``)."""
    hub = plan.env.services.jupyterhub
    assert hub is not None
    out: dict[str, Any] = {}
    for name, e in hub.environments.items():
        d: dict[str, Any] = {"maintainers": e.maintainers, "description": e.description}
        if e.lock_file:
            d["lock"] = lock_text(e.lock_file)
        else:
            d["packages"] = list(e.packages)
        out[name] = d
    return out


def files(plan: Plan) -> dict[str, Any]:
    """The notebook files' ConfigMap of namespace ``ns``: every file of ``jupyterhub.notebook_files``."""
    data = {key: f["stringData"] for key, f in jupyterhub.notebook_files(plan).items()}
    data[jupyterhub.ENVS_KEY] = json.dumps(environments(plan), indent=1, sort_keys=True)
    return data


def files_config_map(plan: Plan, ns: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": FILES, "namespace": ns}, "data": files(plan)}


def bundle(plan: Plan, storage_class: str | None) -> Bundle | None:
    """The users' namespace, when the site runs the hub on the platform filesystem."""
    if plan.env.services.jupyterhub is None or storage_class is None:
        return None
    ns = f"ns-{NAMESPACE}"
    labels = {KUEUE_MANAGED_LABEL: "true", INTERACTIVE_LABEL: "true"}
    pv, pvc = areas_volume(plan, "aiinfn-areas-users", NAMESPACE)
    return Bundle("notebooks", (
        namespace(NAMESPACE, "restricted", labels),
        *manifests(*hub_role(NAMESPACE), *network_policies(plan), files_config_map(plan, NAMESPACE), after=(ns,)),
        *manifests(*hub_reads(), after=(f"ns-{jupyterhub.NAMESPACE}",)),
        Manifest("pv-aiinfn-areas-users", (), pv),
        Manifest("pvc-aiinfn-areas-users", (ns, "pv-aiinfn-areas-users"), pvc),
    ))
