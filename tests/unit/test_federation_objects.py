"""The federation's objects: MultiKueue at the manager, queues at the workers, the workers' access for
the manager, the shared volume and the replication Job, checked as the API server and Kueue would take
them.

Custom resources are validated against Kueue v0.19.2's CRDs (../shared/schemas, read in place) by the
strict structural helpers of tests/support/schemas.py; built-in objects with kubernetes-validate at the
pinned Kubernetes minor. Gaps, named: no API server and no Kueue controller run here, so dispatching
itself (a Workload copied to a worker, admitted there, its status mirrored back) is not exercised; what
is proven is that every object Kueue needs exists, is valid, and names the others consistently.
"""

from __future__ import annotations

import base64
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from aiinfn import federation, versions
from aiinfn.config.loader import load
from aiinfn.config.models import Federation
from aiinfn.federation import kubeconfig, offline
from aiinfn.federation import registry as fed_registry
from aiinfn.federation import volume as fed_volume
from aiinfn.planning.labels import PROJECT_LABEL
from aiinfn.services import kueue, multikueue, notebooks, projects, site_bundles
from aiinfn.services.bundle import ConfigSecret

SUPPORT = Path(__file__).resolve().parents[1] / "support"
if str(SUPPORT) not in sys.path:
    sys.path.insert(0, str(SUPPORT))

import schemas  # noqa: E402 - found through SUPPORT

CA = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").decode()


@pytest.fixture(scope="module")
def fed() -> Federation:
    f = load("federation")
    assert isinstance(f, Federation)
    return f


@pytest.fixture(scope="module")
def plans(fed: Federation) -> dict[str, Any]:
    return federation.plans_of(fed)


@pytest.fixture(scope="module")
def per_site(fed: Federation, plans: dict[str, Any]) -> dict[str, list[Any]]:
    return federation.site_bundles(fed, plans)


def _python_patterns(schema: Any) -> Any:
    """Go's regexp takes inline flags mid-expression (AdmissionCheck's ``^(?i)[a-z]...``), Python's only at
    the start: the same language, written so Python's ``re`` reads it."""
    if isinstance(schema, dict):
        return {k: (v.replace("^(?i)", "(?i)^", 1) if k == "pattern" and isinstance(v, str) and v.startswith("^(?i)")
                    else _python_patterns(v)) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_python_patterns(v) for v in schema]
    return schema


@pytest.fixture(scope="module")
def crds(shared: Path) -> dict[tuple[str, str], dict[str, Any]]:
    folder = shared / "schemas" / f"kueue-v{versions.KUEUE}"
    return {k: _python_patterns(v) for k, v in schemas.crd_schemas(folder).items()}


def _objects(bundles: list[Any]) -> list[dict[str, Any]]:
    return [dict(m.manifest) for b in bundles for m in b.manifests]


def _by_kind(objs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objs if o["kind"] == kind]


# --------------------------------------------------------------------------- validity


def test_every_object_is_valid_against_the_crds_and_kubernetes(
    per_site: dict[str, list[Any]], plans: dict[str, Any], crds: dict[tuple[str, str], dict[str, Any]]
) -> None:
    """MultiKueueCluster, MultiKueueConfig, AdmissionCheck, ClusterQueue, ResourceFlavor, LocalQueue against
    Kueue v0.19.2 (v1beta2); PersistentVolumes, claims, the Job, the worker's RBAC against Kubernetes."""
    objs = [o for bs in per_site.values() for o in _objects(bs)]
    objs += _objects([multikueue.worker_access(plans["recas"])])
    kinds = set()
    for o in objs:
        if o["apiVersion"].startswith("kueue.x-k8s.io/"):
            assert o["apiVersion"] == versions.KUEUE_API
            schemas.assert_valid(o, crds[(o["apiVersion"], o["kind"])], f"{o['kind']} {o['metadata']['name']}")
        else:
            kubernetes_validate.validate(o, versions.KUBERNETES, strict=True)
        kinds.add(o["kind"])
    assert {"MultiKueueCluster", "MultiKueueConfig", "AdmissionCheck", "ClusterQueue", "LocalQueue",
            "ResourceFlavor", "PersistentVolume", "PersistentVolumeClaim", "Job", "ServiceAccount",
            "ClusterRole", "ClusterRoleBinding"} <= kinds


def test_the_strict_helpers_refuse_a_misspelt_multikueue_field(crds: dict[tuple[str, str], dict[str, Any]]) -> None:
    """The validation above has teeth: a field Kueue would prune (v1beta1's `kubeconfig`) is refused."""
    bad = {"apiVersion": versions.KUEUE_API, "kind": "MultiKueueCluster", "metadata": {"name": "recas"},
           "spec": {"kubeConfig": {"locationType": "Secret", "location": "x"}}}
    assert schemas.problems(bad, crds[(versions.KUEUE_API, "MultiKueueCluster")])


# --------------------------------------------------------------------------- consistency


def test_the_manager_queue_runs_through_the_multikueue_check_to_every_worker(
    fed: Federation, per_site: dict[str, list[Any]]
) -> None:
    objs = _objects(per_site[fed.manager])
    checks = {o["metadata"]["name"]: o for o in _by_kind(objs, "AdmissionCheck")}
    configs = {o["metadata"]["name"]: o for o in _by_kind(objs, "MultiKueueConfig")}
    clusters = {o["metadata"]["name"]: o for o in _by_kind(objs, "MultiKueueCluster")}
    secrets = {(s.namespace, s.name): s for b in per_site[fed.manager] for s in b.secrets}
    queues = {o["metadata"]["name"]: o for o in _by_kind(objs, "ClusterQueue")}
    assert set(queues) == set(fed.queues) == {"federated"}
    for name, cq in queues.items():
        (ref,) = cq["spec"]["admissionChecksStrategy"]["admissionChecks"]
        check = checks[ref["name"]]
        assert ref["name"] == name
        assert check["spec"]["controllerName"] == "kueue.x-k8s.io/multikueue"
        params = check["spec"]["parameters"]
        assert (params["apiGroup"], params["kind"]) == ("kueue.x-k8s.io", "MultiKueueConfig")
        workers = configs[params["name"]]["spec"]["clusters"]
        assert workers == ["recas"] and fed.manager not in workers
        for w in workers:
            source = clusters[w]["spec"]["clusterSource"]["kubeConfig"]
            assert source["locationType"] == "Secret"
            secret = secrets[(kueue.NAMESPACE, source["location"])]
            # filled from the worker's stack output, never a value in the bundle
            assert secret.data == {"kubeconfig": ConfigSecret(multikueue.kubeconfig_ref(w))}
        # the manager only gates: its flavor puts no pod anywhere
        flavors = [f["name"] for g in cq["spec"]["resourceGroups"] for f in g["flavors"]]
        assert flavors == [multikueue.FLAVOR]
        (flavor,) = [o for o in _by_kind(objs, "ResourceFlavor") if o["metadata"]["name"] == multikueue.FLAVOR]
        assert flavor["spec"] == {}


def test_manager_and_worker_queue_names_and_namespaces_match(
    fed: Federation, plans: dict[str, Any], per_site: dict[str, list[Any]]
) -> None:
    """MultiKueue copies a workload into the same namespace and LocalQueue at the worker: both exist
    there, the namespace made by the worker's own site (projects), the LocalQueue on that project's own
    ClusterQueue, which the worker's Kueue bundle defines."""
    manager_lqs = {(o["metadata"]["namespace"], o["metadata"]["name"]): o["spec"]["clusterQueue"]
                   for o in _by_kind(_objects(per_site[fed.manager]), "LocalQueue")}
    assert manager_lqs == {("lhc-ml", "federated"): "federated", ("theory", "federated"): "federated"}
    for w in ["recas"]:
        worker_lqs = {(o["metadata"]["namespace"], o["metadata"]["name"]): o["spec"]["clusterQueue"]
                      for o in _by_kind(_objects(per_site[w]), "LocalQueue")}
        assert set(worker_lqs) == set(manager_lqs)
        site_objs = _objects(site_bundles(plans[w]))
        site_namespaces = {o["metadata"]["name"] for o in _by_kind(site_objs, "Namespace")}
        site_cqs = {o["metadata"]["name"] for o in _by_kind(site_objs, "ClusterQueue")}
        for (ns, _), cq in worker_lqs.items():
            assert ns in site_namespaces and cq in site_cqs and cq == ns
        # and the names do not collide with the worker's own LocalQueues
        own = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in _by_kind(site_objs, "LocalQueue")}
        assert not own & set(worker_lqs)


def test_only_batch_is_federated_notebooks_stay_local(fed: Federation, per_site: dict[str, list[Any]],
                                                      plans: dict[str, Any]) -> None:
    """No federated queue in the notebooks' namespace, and the manager's queue admits only the
    federated projects' namespaces (selected by the project label, which the notebooks' namespace lacks)."""
    objs = [o for bs in per_site.values() for o in _objects(bs)]
    assert not [o for o in _by_kind(objs, "LocalQueue") if o["metadata"]["namespace"] == notebooks.NAMESPACE]
    (cq,) = _by_kind(_objects(per_site[fed.manager]), "ClusterQueue")
    (expr,) = cq["spec"]["namespaceSelector"]["matchExpressions"]
    assert expr == {"key": PROJECT_LABEL, "operator": "In", "values": ["lhc-ml", "theory"]}
    ns_objs = {o["metadata"]["name"]: o for o in _by_kind(_objects(site_bundles(plans[fed.manager])), "Namespace")}
    assert PROJECT_LABEL not in ns_objs[notebooks.NAMESPACE]["metadata"].get("labels", {})
    for p in ("lhc-ml", "theory"):
        assert ns_objs[p]["metadata"]["labels"][PROJECT_LABEL] == p


def test_the_manager_admits_what_the_workers_have(fed: Federation, plans: dict[str, Any],
                                                  per_site: dict[str, list[Any]]) -> None:
    (cq,) = _by_kind(_objects(per_site[fed.manager]), "ClusterQueue")
    quota = {r["name"]: r["nominalQuota"] for r in cq["spec"]["resourceGroups"][0]["flavors"][0]["resources"]}
    cpu, mem = plans["recas"].schedulable()
    assert quota == {"cpu": cpu, "memory": f"{mem}Gi", "nvidia.com/gpu": 4}


def test_worker_access_is_kueues_documented_worker_role_and_nothing_more(plans: dict[str, Any]) -> None:
    objs = _objects([multikueue.worker_access(plans["recas"])])
    (role,) = _by_kind(objs, "ClusterRole")
    granted = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
               for v in rule["verbs"]}
    documented = {("batch", "jobs", v) for v in ("create", "delete", "get", "list", "watch")} | {
        ("batch", "jobs/status", "get")} | {("kueue.x-k8s.io", "workloads", v) for v in
                                            ("create", "delete", "get", "list", "watch")} | {
        ("kueue.x-k8s.io", "workloads/status", v) for v in ("get", "patch", "update")}
    assert granted == documented
    (binding,) = _by_kind(objs, "ClusterRoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": multikueue.WORKER_SA,
                                    "namespace": kueue.NAMESPACE}]
    (token,) = _by_kind(objs, "Secret")
    assert token["type"] == "kubernetes.io/service-account-token" and "data" not in token
    assert token["metadata"]["annotations"] == {"kubernetes.io/service-account.name": multikueue.WORKER_SA}
    assert projects  # the worker's namespaces come from its own projects bundle


# --------------------------------------------------------------------------- kubeconfig rules


def test_the_generated_worker_kubeconfig_passes_kueues_rules(fed: Federation) -> None:
    text = kubeconfig.build("recas", fed.api_servers["recas"], CA, "token-value")
    assert kubeconfig.problems(text) == []
    doc = yaml.safe_load(text)
    assert doc["clusters"][0]["cluster"]["server"] == "https://api.ai-infn.recas.ba.infn.it:6443"
    # and so does what the offline plan of the federation reads
    outs = offline.references(fed)["organization/aiinfn/recas"]["multikueue_kubeconfig"]
    assert kubeconfig.problems(outs["value"]) == []


@pytest.mark.parametrize(("change", "problem"), [
    (lambda d: d["clusters"][0]["cluster"].update({"insecure-skip-tls-verify": True}), "insecure-skip-tls-verify"),
    (lambda d: d["clusters"][0]["cluster"].pop("certificate-authority-data"), "no certificate-authority-data"),
    (lambda d: d["clusters"][0]["cluster"].update({"certificate-authority": "/etc/ca.crt"}), "file path"),
    (lambda d: d["clusters"][0]["cluster"].update({"certificate-authority-data": "bm90IGEgY2VydA=="}),
     "not a base64 PEM"),
    (lambda d: d["clusters"][0]["cluster"].update({"server": "https://127.0.0.1:6443"}), "loopback"),
    (lambda d: d["clusters"][0]["cluster"].update({"server": "http://api.example.org:6443"}), "not https"),
    (lambda d: d["users"][0]["user"].update({"tokenFile": "/var/run/token"}), "tokenFile is a file path"),
    (lambda d: d["users"][0]["user"].update({"client-key": "/k.pem"}), "client-key is a file path"),
    (lambda d: d["users"][0]["user"].update({"exec": {"command": "aws"}}), "exec plugins"),
    (lambda d: d["users"][0]["user"].update({"auth-provider": {"name": "oidc"}}), "auth-provider plugins"),
    (lambda d: d["users"][0]["user"].pop("token"), "no token"),
    (lambda d: d.update({"current-context": "elsewhere"}), "current-context"),
])
def test_each_kueue_rule_refuses_its_kubeconfig(change: Any, problem: str) -> None:
    doc = yaml.safe_load(kubeconfig.build("recas", "https://api.recas.example.org:6443", CA, "secret-token"))
    change(doc)
    found = kubeconfig.problems(yaml.safe_dump(doc))
    assert any(problem in p for p in found), found
    assert not any("secret-token" in p for p in found)  # never quotes the token


def test_a_refused_kubeconfig_is_one_plan_error_without_the_token() -> None:
    from aiinfn.errors import PlanError

    with pytest.raises(PlanError) as caught:
        kubeconfig.check("users: [{name: u, user: {token: hunter2, exec: {}}}]", "recas")
    assert "recas" in str(caught.value) and "hunter2" not in str(caught.value)
    assert len(str(caught.value).splitlines()) == 1


# --------------------------------------------------------------------------- volume and replication


def test_one_shared_volume_everywhere_with_the_same_directories(
    fed: Federation, per_site: dict[str, list[Any]]
) -> None:
    layouts = {}
    for site, bundles in per_site.items():
        objs = _objects(bundles)
        pvs = _by_kind(objs, "PersistentVolume")
        claims = {(o["metadata"]["namespace"], o["metadata"]["name"])
                  for o in _by_kind(objs, "PersistentVolumeClaim")}
        for pv in pvs:
            ref = pv["spec"]["claimRef"]
            assert (ref["namespace"], ref["name"]) in claims
            assert pv["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
            assert pv["spec"]["csi"]["nodePublishSecretRef"] == {"name": fed_volume.SECRET, "namespace": "juicefs"}
        for claim in _by_kind(objs, "PersistentVolumeClaim"):
            assert "volumeName" not in claim["spec"]  # the tenant policies refuse claims by volume name
        layouts[site] = sorted((pv["spec"]["csi"]["volumeHandle"], tuple(pv["spec"]["mountOptions"])) for pv in pvs)
        (secret,) = [s for b in bundles for s in b.secrets if s.name == fed_volume.SECRET]
        assert secret.data["name"] == "ai-infn-shared" and not isinstance(secret.data["metaurl"], str)
        assert all(m.protect for b in bundles if b.service == "shared-volume" for m in b.manifests)
    assert layouts["cnaf"] == layouts["recas"] == [("ai-infn-shared-lhc-ml", ("subdir=/projects/lhc-ml",)),
                                                   ("ai-infn-shared-theory", ("subdir=/projects/theory",))]


def test_the_replication_job_runs_at_the_primary_with_no_kubernetes_access(
    fed: Federation, plans: dict[str, Any], per_site: dict[str, list[Any]]
) -> None:
    assert [b.service for b in per_site["cnaf"]].count("harbor-replication") == 1
    assert "harbor-replication" not in [b.service for b in per_site["recas"]]
    cm, job = fed_registry.objects(fed, plans)
    pod = job["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert env["REPLICAS"] == '[{"name": "recas", "url": "https://harbor.ai-infn.recas.ba.infn.it"}]'
    assert env["PROJECTS"] == "environments,apptainer"
    assert set(cm["data"]) == {"harbor_replication.py", "harbor_setup.py"}
    # a change of the program or settings is a new Job name: it runs again
    assert fed.registry is not None
    other = fed.model_copy(update={"registry": fed.registry.model_copy(update={"projects": ["environments"]})})
    assert fed_registry.objects(other, plans)[1]["metadata"]["name"] != job["metadata"]["name"]


def test_the_managers_kueue_may_reach_the_workers_api(fed: Federation, per_site: dict[str, list[Any]]) -> None:
    """kueue-system starts from default deny: without this egress MultiKueue could not connect."""
    (pol,) = [o for o in _by_kind(_objects(per_site[fed.manager]), "NetworkPolicy")
              if o["metadata"]["name"] == "allow-multikueue-workers"]
    assert pol["metadata"]["namespace"] == kueue.NAMESPACE
    (rule,) = pol["spec"]["egress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": multikueue.API_PORT}]
    assert "NetworkPolicy" not in {o["kind"] for o in _objects(per_site["recas"])}
