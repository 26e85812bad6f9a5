"""A user's home in batch jobs, held by admission: who may mount a home claim, as whom, and what the batch
service may create as a home volume.

The objects are the ones the service builds (``jobs.job``, ``jobs.home_objects``) from the settings the
cnaf bundle writes; the policies are the ones the site registers (services.policy for tenant
namespaces, services.batch for the service's PersistentVolumes). Gap: no API server runs here; the
ValidatingAdmissionPolicies are applied by tests/support/security/admission.py (bindings, match rules
and conditions, variables, validations, failurePolicy Fail) with a CEL interpreter from PyPI, and the
job controller's and Kueue's requests are written as those controllers make them (their identities,
the Job's template, the owner reference; Kueue's unsuspend and node selector).
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from aiinfn import versions
from aiinfn.batch import jobs
from aiinfn.config.loader import load
from aiinfn.planning import make_plan
from aiinfn.planning.labels import OWNER_UID_ANNOTATION
from aiinfn.services import batch, policy, projects

SUPPORT = Path(__file__).resolve().parents[1] / "support" / "security"
if str(SUPPORT) not in sys.path:
    sys.path.insert(0, str(SUPPORT))

import admission  # noqa: E402 - found through SUPPORT

BATCH = (batch.SERVICE_ACCOUNT, ("system:serviceaccounts", f"system:serviceaccounts:{batch.NAMESPACE}",
                                 "system:authenticated"))
ALICE = ("alice", ("oidc:ai-infn/lhc", "system:authenticated"))
JOB_CONTROLLER = ("system:serviceaccount:kube-system:job-controller",
                  ("system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"))
KUEUE = ("system:serviceaccount:kueue-system:kueue-controller-manager",
         ("system:serviceaccounts", "system:serviceaccounts:kueue-system", "system:authenticated"))
OPERATOR = ("kubernetes-admin", ("system:masters", "system:authenticated"))
ILSE = jobs.Posix(4123456, 4123456, "ilse")
AREAS_SERVER = "10.200.0.20"


@pytest.fixture(scope="module")
def plan() -> Any:
    return make_plan(load("cnaf"))


@pytest.fixture(scope="module")
def settings(plan: Any) -> jobs.Settings:
    return jobs.Settings(batch.settings(plan))


@pytest.fixture(scope="module")
def rules(plan: Any) -> list[dict[str, Any]]:
    return [*policy.objects(plan), *batch.home_volumes_policy(plan)]


@pytest.fixture(scope="module")
def lhc(plan: Any) -> dict[str, Any]:
    (ns,) = [o for o in projects.objects(plan) if o["kind"] == "Namespace" and o["metadata"]["name"] == "lhc-ml"]
    return dict(ns)


def areas(plan: Any) -> dict[str, Any]:
    nfs = plan.env.storage.nfs
    return {"metadata": {"name": batch.AREAS_VOLUME},
            "spec": {"nfs": {"server": AREAS_SERVER, "path": f"{nfs.export_path}/areas"},
                     "mountOptions": ["nfsvers=4.2", "hard", "noatime"]}}


def home_job(settings: jobs.Settings, ident: jobs.Posix = ILSE) -> dict[str, Any]:
    body = {"project": "lhc-ml", "script": {"name": "train.py", "content": "print(1)\n"}, "cpu": 2}
    sub = jobs.parse(body, settings, {"ai-infn/lhc"})
    sub = type(sub)(**{**sub.__dict__, "uid": ident.uid, "gid": ident.gid})
    return jobs.job(sub, "ilse", jobs.home_claim(settings, ident.uid), "batch-ilse-0a1b2c3d", settings)


def pod_of(job: dict[str, Any]) -> dict[str, Any]:
    """The Pod the job controller makes from ``job`` (its template, an owner reference to the Job)."""
    meta = job["metadata"]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": f"{meta['name']}-x7k2p", "namespace": meta["namespace"],
                         "labels": dict(job["spec"]["template"]["metadata"]["labels"]),
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": meta["name"],
                                              "uid": "0b6d3e1c-3b1a-4f7e-9d55-3d1f0f0f0f0f", "controller": True,
                                              "blockOwnerDeletion": True}]},
            "spec": copy.deepcopy(job["spec"]["template"]["spec"])}


def decide(rules: list[dict[str, Any]], ns: dict[str, Any], obj: dict[str, Any], who: tuple[str, tuple[str, ...]],
           operation: str = "CREATE", old: dict[str, Any] | None = None) -> admission.Decision:
    d = admission.evaluate(rules, admission.Request(obj, ns, who[0], who[1], operation, old))
    assert not [m for _, m in d.denials if m.startswith("error:")], d.denials
    return d


def refused_by(d: admission.Decision, words: str) -> bool:
    return not d.allowed and any(p == "aiinfn-home-claims" and words in m for p, m in d.denials)


def test_the_services_job_and_its_pods_mount_the_home_as_its_owner(rules: Any, lhc: Any, settings: Any) -> None:
    job = home_job(settings)
    spec = job["spec"]["template"]["spec"]
    (home,) = [v for v in spec["volumes"] if v["name"] == "home"]
    assert home["persistentVolumeClaim"]["claimName"] == f"aiinfn-home-{ILSE.uid}"
    assert (spec["securityContext"]["runAsUser"], spec["securityContext"]["runAsGroup"],
            spec["securityContext"]["fsGroup"]) == (ILSE.uid, ILSE.gid, ILSE.gid)
    d = decide(rules, lhc, job, BATCH)
    assert d.allowed and "aiinfn-home-claims" in d.applied, d.denials
    assert decide(rules, lhc, pod_of(job), JOB_CONTROLLER).allowed
    # Kueue admits it: unsuspends it and writes the flavor's node selector; the claim stays
    admitted = copy.deepcopy(job)
    admitted["spec"]["suspend"] = False
    admitted["spec"]["template"]["spec"]["nodeSelector"] = {"aiinfn.infn.it/pool": "cpu"}
    assert decide(rules, lhc, admitted, KUEUE, "UPDATE", job).allowed


def test_a_project_member_cannot_mount_a_home_claim_with_kubectl(rules: Any, lhc: Any, settings: Any) -> None:
    job = home_job(settings)
    assert refused_by(decide(rules, lhc, job, ALICE), "only by the batch service's Jobs")
    bare = pod_of(job)
    del bare["metadata"]["ownerReferences"]
    assert refused_by(decide(rules, lhc, bare, ALICE), "only by the batch service's Jobs")
    # a pod no Job owns is not the job controller's either, whoever sends it
    assert refused_by(decide(rules, lhc, bare, JOB_CONTROLLER), "only by the batch service's Jobs")
    # a workload of hers gains no home claim later
    plain = home_job(settings)
    plain["spec"]["template"]["spec"]["volumes"] = [v for v in plain["spec"]["template"]["spec"]["volumes"]
                                                    if v["name"] != "home"]
    assert refused_by(decide(rules, lhc, job, ALICE, "UPDATE", plain), "may not gain")


def test_even_the_service_runs_a_home_only_as_its_owner(rules: Any, lhc: Any, settings: Any) -> None:
    other = home_job(settings, jobs.Posix(4000001, 4000001, "mallory"))
    theirs = copy.deepcopy(other)
    theirs["spec"]["template"]["spec"]["volumes"][-1]["persistentVolumeClaim"]["claimName"] = f"aiinfn-home-{ILSE.uid}"
    assert refused_by(decide(rules, lhc, theirs, BATCH), "runs as that UID only")
    switched = home_job(settings)
    switched["spec"]["template"]["spec"]["containers"][0]["securityContext"]["runAsUser"] = 4000001
    assert refused_by(decide(rules, lhc, switched, BATCH), "runs as that UID only")
    group = home_job(settings)
    group["spec"]["template"]["spec"]["securityContext"]["fsGroup"] = 100
    assert refused_by(decide(rules, lhc, group, BATCH), "runs as that UID only")


def test_home_claims_are_the_services_and_it_makes_no_other(rules: Any, lhc: Any, settings: Any, plan: Any) -> None:
    _, pvc = jobs.home_objects(settings, "ilse", "lhc-ml", ILSE, areas(plan))
    kubernetes_validate.validate(pvc, versions.KUBERNETES, strict=True)
    assert decide(rules, lhc, pvc, BATCH).allowed
    assert refused_by(decide(rules, lhc, pvc, ALICE), "made by the batch service only")
    other = {**pvc, "metadata": {**pvc["metadata"], "name": "scratch"}}
    assert refused_by(decide(rules, lhc, other, BATCH), "makes no other claim")
    classy = copy.deepcopy(pvc)
    classy["spec"]["storageClassName"] = "platform-nfs"
    assert refused_by(decide(rules, lhc, classy, BATCH), "no storage class")


@pytest.fixture
def cluster_scoped(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """PersistentVolumes are cluster-scoped: no namespace (the evaluator still wants an object for one)."""
    monkeypatch.setitem(admission.RESOURCES, "PersistentVolume", ("", "v1", "persistentvolumes"))
    return {"metadata": {"name": ""}}


def test_the_service_creates_only_users_home_volumes(rules: Any, settings: Any, plan: Any,
                                                     cluster_scoped: Any) -> None:
    pv, _ = jobs.home_objects(settings, "ilse", "lhc-ml", ILSE, areas(plan))
    kubernetes_validate.validate(pv, versions.KUBERNETES, strict=True)
    assert pv["spec"]["nfs"]["path"] == f"{plan.env.storage.nfs.export_path}/areas/home/ilse"
    d = decide(rules, cluster_scoped, pv, BATCH)
    assert d.allowed and batch.HOME_VOLUMES_POLICY in d.applied, d.denials

    def variant(change: Any) -> dict[str, Any]:
        out = copy.deepcopy(pv)
        change(out)
        return out

    def refused(obj: dict[str, Any], words: str) -> None:
        d = decide(rules, cluster_scoped, obj, BATCH)
        assert not d.allowed and any(p == batch.HOME_VOLUMES_POLICY and words in m for p, m in d.denials), d.denials

    export = plan.env.storage.nfs.export_path
    for path in (export, f"{export}/areas", f"{export}/areas/home", f"{export}/areas/home/..",
                 f"{export}/areas/home/ilse/../bob", f"{export}/areas/shared/ai-infn.lhc", f"{export}Xareas/home/x",
                 "/etc"):
        refused(variant(lambda o, p=path: o["spec"]["nfs"].update(path=p)), "one user's home")
    refused(variant(lambda o: o["spec"]["nfs"].update(readOnly=True) or o["spec"].update(hostPath={"path": "/"})),
            "one user's home")
    refused(variant(lambda o: o["spec"]["claimRef"].update(namespace="jupyterhub-users")), "pre-bound")
    refused(variant(lambda o: o["spec"]["claimRef"].update(name="aiinfn-areas")), "pre-bound")
    refused(variant(lambda o: o["metadata"].update(name="aiinfn-home-4123456-theory")), "pre-bound")
    refused(variant(lambda o: o["metadata"]["annotations"].update({OWNER_UID_ANNOTATION: "4000001"})),
            "records its owner's UID")
    refused(variant(lambda o: o["spec"].update(persistentVolumeReclaimPolicy="Delete")), "Retain")
    d = decide(rules, cluster_scoped, pv, BATCH, "UPDATE", pv)
    assert not d.allowed and any("never changes" in m for _, m in d.denials)
    # an operator's (or a provisioner's) volumes are not this policy's concern
    assert decide(rules, cluster_scoped, variant(lambda o: o["spec"]["nfs"].update(path="/srv")), OPERATOR).allowed
