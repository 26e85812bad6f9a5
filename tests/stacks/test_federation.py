"""The federation stack and what the federation adds to a worker's site stack, under the mock runtime.

The federation stack reads every member's stack (``StackReference``; the offline plan answers with each
site's kubeconfig and pinned versions and each worker's MultiKueue kubeconfig, built as the worker's
stack builds it with placeholder CA and token) and registers its objects at each site through that
site's kubeconfig. A worker's site stack that names its federation (``aiinfn:federation``) adds only the
manager's access. Gaps, named: no Pulumi CLI and no API server run here, so the token Secret read back
by the worker's stack returns nothing under the mocks (a real API server fills in token and CA); the
kubeconfig's rules are therefore proven on the federation side, which refuses what Kueue would.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest

from aiinfn import diff, preview
from aiinfn.config.loader import load, project_root
from aiinfn.config.models import Environment, Federation
from aiinfn.errors import AiinfnError
from aiinfn.federation import kubeconfig, offline
from aiinfn.offline import is_secret, run_program
from aiinfn.planning import make_plan
from aiinfn.services import multikueue, site_bundles


@pytest.fixture(scope="module")
def fed_report() -> preview.Preview:
    return preview.build("federation")


def _run_federation(references: dict[str, Any]) -> Any:
    root = project_root()
    fed = load("federation")
    secrets = ["harbor-replication-robot", "shared-juicefs-access-key", "shared-juicefs-metadata-url",
               "shared-juicefs-secret-key"]
    assert isinstance(fed, Federation)
    return run_program(
        root / "stacks" / "__main__.py", project="aiinfn", stack="ai-infn",
        config={"aiinfn:environment": str(root / "environments" / "federation.yaml"), "aiinfn:scope": "federation",
                **{f"aiinfn:{s}": "x" for s in secrets}},
        secret_keys=[f"aiinfn:{s}" for s in secrets], stack_references=references)


def test_the_federation_stack_reads_every_site_and_registers_no_cloud_resource(
    fed_report: preview.Preview, shipped_reports: dict[str, preview.Preview]
) -> None:
    run = fed_report.run
    assert sorted(run.mocks.read_stacks) == ["organization/aiinfn/cnaf", "organization/aiinfn/recas"]
    types = {r.type for r in run.registrations}
    assert not any(t.startswith(("openstack:", "random:", "tls:")) for t in types)
    providers = run.by_type("pulumi:providers:kubernetes")
    assert sorted(p.name for p in providers) == ["ai-infn-cnaf-k8s", "ai-infn-recas-k8s"]
    assert all(is_secret(p.inputs["kubeconfig"]) for p in providers)
    for site in ("cnaf", "recas"):
        assert not {r.urn for r in run.registrations} & {r.urn for r in shipped_reports[site].run.registrations}
    outputs = run.stack_outputs
    assert outputs["manager"] == "cnaf" and outputs["workers"] == ["recas"]
    assert outputs["queues"] == {"federated": {"projects": ["lhc-ml", "theory"], "runs_at": ["recas"]}}


def test_multikueue_objects_go_to_the_manager_and_queues_to_the_worker(fed_report: preview.Preview) -> None:
    by_overlay: dict[str, set[str]] = {}
    for r in fed_report.run.registrations:
        if r.custom and r.type.startswith("kubernetes:") and "Overlay$" in r.urn:
            overlay = r.parent.rsplit("::", 1)[-1]
            by_overlay.setdefault(overlay, set()).add(str(r.inputs["kind"]))
    assert {"MultiKueueCluster", "MultiKueueConfig", "AdmissionCheck", "ClusterQueue", "LocalQueue",
            "Job"} <= by_overlay["ai-infn-cnaf"]
    assert by_overlay["ai-infn-recas"] == {"LocalQueue", "PersistentVolume", "PersistentVolumeClaim", "Secret"}


def test_the_worker_kubeconfig_reaches_the_manager_as_a_secret_only(fed_report: preview.Preview) -> None:
    (secret,) = [r for r in fed_report.run.registrations if r.custom and r.inputs.get("kind") == "Secret"
                 and r.inputs["metadata"]["name"] == multikueue.kubeconfig_secret("recas")]
    assert secret.inputs["metadata"]["namespace"] == "kueue-system"
    assert is_secret(secret.inputs["stringData"])
    assert "stringData" in secret.additional_secret_outputs
    text = fed_report.document()
    assert offline.PLACEHOLDER_CA not in str(text)  # nothing of it in plan.json
    assert all(offline.PLACEHOLDER_CA not in v for v in fed_report.artifacts.values())


@pytest.mark.parametrize(("mutate", "problem"), [
    (lambda t: t.replace("certificate-authority-data:", "insecure-skip-tls-verify: true\n    x:"), "insecure"),
    (lambda t: t.replace("https://api.ai-infn.recas.ba.infn.it:6443", "https://127.0.0.1:6443"), "loopback"),
    (lambda t: t.replace("token: offline-plan-placeholder", "exec: {command: kubectl}"), "exec"),
])
def test_a_worker_kubeconfig_kueue_would_refuse_stops_the_plan(mutate: Any, problem: str) -> None:
    fed = load("federation")
    assert isinstance(fed, Federation)
    refs = copy.deepcopy(offline.references(fed))
    kc = refs["organization/aiinfn/recas"]["multikueue_kubeconfig"]
    kc["value"] = mutate(kc["value"])
    assert kubeconfig.problems(kc["value"])
    with pytest.raises(AiinfnError) as caught:
        _run_federation(refs)
    text = str(caught.value)
    assert "recas" in text and problem in text and len(text.splitlines()) == 1


def test_a_site_deployed_with_other_versions_stops_the_plan() -> None:
    fed = load("federation")
    assert isinstance(fed, Federation)
    refs = copy.deepcopy(offline.references(fed))
    refs["organization/aiinfn/recas"]["versions"]["kueue"] = "0.18.0"
    with pytest.raises(AiinfnError) as caught:
        _run_federation(refs)
    assert "recas" in str(caught.value) and "kueue" in str(caught.value)


# --------------------------------------------------------------------------- the worker's site stack


def _site_document(name: str, extra: dict[str, str]) -> dict[str, Any]:
    root = project_root()
    env = load(name)
    assert isinstance(env, Environment)
    secrets = sorted({*preview.secret_refs(env).values(), "kubeconfig"})
    config = {"aiinfn:environment": str(root / "environments" / f"{name}.yaml"), "aiinfn:scope": "site",
              **{f"aiinfn:{s}": preview.OFFLINE_SECRET for s in secrets}, **extra}
    run = run_program(root / "stacks" / "__main__.py", project="aiinfn", stack=name, config=config,
                      secret_keys=[f"aiinfn:{s}" for s in secrets], node_cidr=str(env.network.cidr))
    plan = make_plan(env)
    report = preview.Preview(env, root / "environments" / f"{name}.yaml", name, "site", plan, run, {}, [],
                             site_bundles(plan))
    return {"doc": report.document(), "run": run}


def test_the_federation_adds_only_the_managers_access_to_a_worker_site() -> None:
    """The recas site stack with and without `aiinfn:federation`: `aiinfn diff` lists only additions,
    exactly the worker's ServiceAccount, role, binding, token Secret, the provider that reads the token
    back, and one rule per network of the manager's (`manager_egress`) opening the API port to it;
    every other resource is unchanged."""
    alone = _site_document("recas", {})
    member = _site_document("recas", {"aiinfn:federation": "federation"})
    changes = diff.resource_changes(alone["doc"], member["doc"])
    assert {c.action for c in changes} == {"create"}, [(c.action, c.urn) for c in changes]
    added = sorted(c.name for c in changes)
    assert added == sorted([
        "recas-overlay-serviceaccount-kueue-system-aiinfn-multikueue",
        "recas-overlay-clusterrole-aiinfn-multikueue-worker",
        "recas-overlay-clusterrolebinding-aiinfn-multikueue-worker",
        "recas-overlay-secret-kueue-system-aiinfn-multikueue-token",
        "recas-multikueue-k8s",  # the provider of the token's read-back (a read: no resource of the stack)
        "recas-secgroups-servers-apiserver-federation-131.154.0.0_16",  # the manager reaches the API
    ]), added
    (rule,) = [c for c in changes if c.name.startswith("recas-secgroups-servers-apiserver-federation")]
    rule_inputs = next(r["inputs"] for r in member["doc"]["resources"] if r["urn"] == rule.urn)
    assert (rule_inputs["remoteIpPrefix"], rule_inputs["portRangeMin"], rule_inputs["portRangeMax"]) == (
        "131.154.0.0/16", 6443, 6443)
    outputs = member["run"].stack_outputs
    assert is_secret(outputs["multikueue_kubeconfig"])
    text = outputs["multikueue_kubeconfig"]["value"]
    assert "https://api.ai-infn.recas.ba.infn.it:6443" in text and "127.0.0.1" not in text
    assert "insecure-skip-tls-verify" not in text
    assert "multikueue_kubeconfig" not in alone["run"].stack_outputs


def test_the_manager_site_and_a_site_outside_the_federation_get_nothing() -> None:
    alone = _site_document("cnaf", {})
    member = _site_document("cnaf", {"aiinfn:federation": "federation"})
    assert diff.resource_changes(alone["doc"], member["doc"]) == []
    assert "multikueue_kubeconfig" not in member["run"].stack_outputs
