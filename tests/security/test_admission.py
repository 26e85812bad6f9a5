"""What a project member can submit: the generated ValidatingAdmissionPolicies, evaluated offline.

No API server runs here: tests/support/security/admission.py applies policies and bindings as
kube-apiserver 1.33 does (namespace selection, resource rules, match conditions, variables,
validations, failurePolicy Fail) with a CEL interpreter from PyPI, over the exact objects the stack
registers. Every attack of tests/security/corpus must be refused for the reason its header names
(never by an evaluation error), in a project's and in an event's namespace; what a researcher
really submits (tests/security/benign) must pass, and so must what Kueue, the controllers and the
hub do on the tenants' behalf.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
from admission import Decision, Request, compile_all, evaluate
from security_corpus import BENIGN, CORPUS, expectations, load_manifest

from aiinfn import versions
from aiinfn.config.loader import list_environments, load
from aiinfn.planning import make_plan
from aiinfn.planning.events import make_event_plan
from aiinfn.planning.labels import PRIORITY_CLASS_LABEL, QUEUE_NAME_LABEL
from aiinfn.services import event, gpu_operator, policy, projects
from aiinfn.services.bundle import namespace_object

SITES = list_environments(kind="site")
LHC = ("alice", ("oidc:ai-infn/lhc", "system:authenticated"))
FPGA = ("bob", ("oidc:ai-infn/fpga", "system:authenticated"))
KUEUE = ("system:serviceaccount:kueue-system:kueue-controller-manager",
         ("system:serviceaccounts", "system:serviceaccounts:kueue-system", "system:authenticated"))
JOB_CONTROLLER = ("system:serviceaccount:kube-system:job-controller",
                  ("system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"))
HUB = ("system:serviceaccount:jupyterhub:hub",
       ("system:serviceaccounts", "system:serviceaccounts:jupyterhub", "system:authenticated"))


@pytest.fixture(scope="module")
def cnaf() -> Any:
    return make_plan(load("cnaf"))


@pytest.fixture(scope="module")
def admission(cnaf: Any) -> list[dict[str, Any]]:
    return policy.objects(cnaf)


@pytest.fixture(scope="module")
def namespaces(cnaf: Any) -> dict[str, dict[str, Any]]:
    """The namespaces exactly as the stack creates them: the projects' and an event's at cnaf."""
    out = {o["metadata"]["name"]: o for o in projects.objects(cnaf) if o["kind"] == "Namespace"}
    ev = load("hackathon-example")
    out[ev.namespace] = event.namespace(ev)
    return out


def submit(admission: list[dict[str, Any]], namespaces: dict[str, dict[str, Any]], obj: dict[str, Any],
           who: tuple[str, tuple[str, ...]] = LHC, operation: str = "CREATE",
           old: dict[str, Any] | None = None) -> Decision:
    ns = namespaces[obj["metadata"]["namespace"]]
    return evaluate(admission, Request(obj, ns, who[0], who[1], operation, old))


@pytest.mark.parametrize("site", SITES)
def test_every_policy_compiles_is_valid_and_is_bound_to_every_tenant_namespace(site: str) -> None:
    objs = policy.objects(make_plan(load(site)))
    policies = [o for o in objs if o["kind"] == "ValidatingAdmissionPolicy"]
    assert compile_all(policies) >= 25
    for obj in objs:
        kubernetes_validate.validate(obj, versions.KUBERNETES, strict=True)
    bound = {(b["spec"]["policyName"], b["spec"]["matchResources"]["namespaceSelector"]["matchExpressions"][0]["key"])
             for b in objs if b["kind"] == "ValidatingAdmissionPolicyBinding"}
    for p in policies:
        assert p["spec"]["failurePolicy"] == "Fail"
        assert {label for name, label in bound if name == p["metadata"]["name"]} == set(policy.TENANT_LABELS.values())
    for b in objs:
        if b["kind"] == "ValidatingAdmissionPolicyBinding":
            assert b["spec"]["validationActions"] == ["Deny"]


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_every_attack_is_refused_for_its_reason(path: Path, admission: Any, namespaces: Any) -> None:
    obj = load_manifest(path)
    reasons = expectations(path)["refused-by"]
    decision = submit(admission, namespaces, obj)
    assert not decision.allowed, f"{path.name} was admitted"
    assert not [m for _, m in decision.denials if m.startswith("error:")], decision.denials
    for reason in reasons:
        name, _, text = reason.partition(": ")
        assert any(p == name and text in m for p, m in decision.denials), (reason, decision.denials)


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_every_attack_is_refused_in_an_event_namespace_too(path: Path, admission: Any, namespaces: Any) -> None:
    """An event's namespace (created by the event's own stack) is bound by its label: a tutor there
    gets no more than a project member."""
    obj = copy.deepcopy(load_manifest(path))
    obj["metadata"]["namespace"] = load("hackathon-example").namespace
    decision = submit(admission, namespaces, obj, who=("tutor", ("oidc:ai-infn/hackathon-tutors",)))
    assert not decision.allowed and not [m for _, m in decision.denials if m.startswith("error:")], decision.denials


@pytest.mark.parametrize("path", BENIGN, ids=lambda p: p.stem)
def test_what_a_researcher_submits_is_admitted(path: Path, admission: Any, namespaces: Any) -> None:
    obj = load_manifest(path)
    who = FPGA if obj["metadata"]["namespace"] == "fpga-lab" else LHC
    decision = submit(admission, namespaces, obj, who)
    assert decision.allowed, decision.denials
    assert decision.applied, "no policy applied: the test would prove nothing"


def _gpu_job() -> dict[str, Any]:
    return load_manifest(next(p for p in BENIGN if p.stem == "gpu-job"))


def test_kueue_admitting_a_job_on_a_reserved_flavor_is_allowed_and_its_owner_keeps_it(
        admission: Any, namespaces: Any, cnaf: Any) -> None:
    """Kueue writes the admitted flavor's node labels and tolerations into the suspended Job, with its
    own identity; the job controller then creates the pods. The owner may still relabel the Job,
    but may not add a platform toleration of their own to it."""
    flavor = next(o for o in __import__("aiinfn.services.kueue", fromlist=["x"]).resource_flavors(cnaf)
                  if o["metadata"]["name"] == "v70")
    submitted = _gpu_job()
    submitted["metadata"]["namespace"] = "fpga-lab"
    tmpl = submitted["spec"]["template"]["spec"]
    tmpl.pop("nodeSelector")
    tmpl["containers"][0]["resources"] = {"limits": {"amd.com/xilinx-v70": 1}}
    assert submit(admission, namespaces, submitted, FPGA).allowed
    admitted = copy.deepcopy(submitted)
    admitted["spec"]["template"]["spec"]["nodeSelector"] = dict(flavor["spec"]["nodeLabels"])
    admitted["spec"]["template"]["spec"]["tolerations"] = list(flavor["spec"]["tolerations"])
    assert any(t["key"] == "reserved" for t in admitted["spec"]["template"]["spec"]["tolerations"])
    assert submit(admission, namespaces, admitted, KUEUE, "UPDATE", submitted).allowed
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "synth-x", "namespace": "fpga-lab",
                                                           "labels": {"job-name": "train"}},
           "spec": copy.deepcopy(admitted["spec"]["template"]["spec"])}
    assert submit(admission, namespaces, pod, JOB_CONTROLLER).allowed
    relabelled = copy.deepcopy(admitted)
    relabelled["metadata"]["labels"]["team"] = "fpga"
    assert submit(admission, namespaces, relabelled, FPGA, "UPDATE", admitted).allowed
    widened = copy.deepcopy(admitted)
    widened["spec"]["template"]["spec"]["tolerations"].append({"operator": "Exists"})
    assert not submit(admission, namespaces, widened, FPGA, "UPDATE", admitted).allowed
    # the same reserved toleration written by the owner at creation is refused
    assert not submit(admission, namespaces, admitted, FPGA).allowed


def test_a_scheduled_pod_keeps_its_node_but_a_user_cannot_move_it(admission: Any, namespaces: Any) -> None:
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "p", "namespace": "lhc-ml", "labels": {QUEUE_NAME_LABEL: "default"}},
           "spec": copy.deepcopy(_gpu_job()["spec"]["template"]["spec"])}
    scheduled = copy.deepcopy(pod)
    scheduled["spec"]["nodeName"] = "gpu-t4-01"
    relabel = copy.deepcopy(scheduled)
    relabel["metadata"]["labels"]["note"] = "x"
    assert submit(admission, namespaces, relabel, LHC, "UPDATE", scheduled).allowed
    moved = copy.deepcopy(scheduled)
    moved["spec"]["nodeName"] = "fpga-v70-01"
    assert not submit(admission, namespaces, moved, LHC, "UPDATE", scheduled).allowed


def test_a_user_cannot_start_what_kueue_holds(admission: Any, namespaces: Any) -> None:
    """Kueue holds a queued pod with a scheduling gate and a queued Job suspended, and lifts them when
    it admits the workload; the owner lifting them would run outside every quota."""
    pod = {"apiVersion": "v1", "kind": "Pod",
           "metadata": {"name": "p", "namespace": "lhc-ml", "labels": {QUEUE_NAME_LABEL: "default"}},
           "spec": copy.deepcopy(_gpu_job()["spec"]["template"]["spec"])}
    gated = copy.deepcopy(pod)
    gated["spec"]["schedulingGates"] = [{"name": "kueue.x-k8s.io/admission"}]
    assert submit(admission, namespaces, gated).allowed
    ungated = copy.deepcopy(pod)
    decision = submit(admission, namespaces, ungated, LHC, "UPDATE", gated)
    assert not decision.allowed and any("scheduling gates" in m for _, m in decision.denials)
    assert submit(admission, namespaces, ungated, KUEUE, "UPDATE", gated).allowed
    job = _gpu_job()
    suspended = copy.deepcopy(job)
    suspended["spec"]["suspend"] = True
    started = copy.deepcopy(job)
    started["spec"]["suspend"] = False
    decision = submit(admission, namespaces, started, LHC, "UPDATE", suspended)
    assert not decision.allowed and any("unsuspend" in m for _, m in decision.denials)
    assert submit(admission, namespaces, started, KUEUE, "UPDATE", suspended).allowed
    # suspending one's own running Job stays possible
    assert submit(admission, namespaces, suspended, LHC, "UPDATE", started).allowed


def test_the_hub_may_spawn_event_notebooks_at_interactive_priority_a_tutor_may_not(
        admission: Any, namespaces: Any, cnaf: Any) -> None:
    """A participant's notebook, built from the event's profile as KubeSpawner would (node selector,
    one unit of the resource, queue label; no toleration: Kueue adds the flavor's)."""
    ev = load("hackathon-example")
    alloc = make_event_plan(ev, {n: make_plan(e) for n, e in ev.site_environments().items()}).allocations["cnaf"]
    (profile, *_) = event.profiles(ev, cnaf, alloc)
    override = profile["kubespawner_override"]
    assert "tolerations" not in override
    pod = {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "jupyter-carol", "namespace": override["namespace"],
                     "labels": {**override["extra_labels"], PRIORITY_CLASS_LABEL: "interactive"}},
        "spec": {
            "nodeSelector": override.get("node_selector", {}),
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "notebook", "image": override["image"],
                            "resources": {"limits": dict(override.get("extra_resource_limits", {}))},
                            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}],
        },
    }
    assert submit(admission, namespaces, pod, HUB).allowed
    assert not submit(admission, namespaces, pod, ("tutor", ("oidc:ai-infn/hackathon-tutors",))).allowed


def test_policies_leave_the_platform_namespaces_alone(admission: Any, namespaces: Any, cnaf: Any) -> None:
    """The GPU Operator's privileged pods are admitted by their namespace's Pod Security level; no
    tenant policy is bound there (a binding without a selector would stop the platform)."""
    privileged = load_manifest(next(p for p in CORPUS if p.stem == "privileged"))
    privileged["metadata"]["namespace"] = gpu_operator.NAMESPACE
    ns = namespace_object(gpu_operator.NAMESPACE, "privileged")
    decision = evaluate(admission, Request(privileged, ns))
    assert decision.allowed and decision.applied == []
