"""The overlay's Kubernetes objects, checked as strictly as the API server's admission would.

No Kubernetes API server can run on these machines. Instead: every core object is validated with
kubernetes-validate against the OpenAPI schema of the pinned Kubernetes version (strict: unknown
fields refused), and every Kueue object against the CRD schema of the pinned Kueue release
(../shared/schemas/kueue-v0.19.2, read in place), for the API version we write. Not covered by
either: defaulting, admission webhooks and cross-object references, which the invariant tests in
tests/stacks/test_overlay.py check instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
from ruamel.yaml import YAML

from aiinfn import versions
from aiinfn.config.loader import list_environments, load
from aiinfn.planning import make_plan
from aiinfn.services import gpu_operator, jupyterhub, kueue, projects

SHIPPED = list_environments(kind="site")


def kueue_objects(plan: Any) -> list[dict[str, Any]]:
    return kueue.objects(plan, jupyterhub.NAMESPACE)


def project_objects(plan: Any) -> list[dict[str, Any]]:
    return projects.objects(plan)


def mig_configmap(plan: Any) -> dict[str, Any]:
    return gpu_operator.mig_configmap(plan)


@pytest.fixture(scope="module")
def crd_schemas(shared: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> openAPIV3Schema of every Kueue CRD version we may write."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    folder = shared / "schemas" / f"kueue-v{versions.KUEUE}"
    for f in folder.glob("*.yaml"):
        crd = YAML(typ="safe", pure=True).load(f.read_text())
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for v in crd["spec"]["versions"]:
            if v.get("served"):
                out[(f"{group}/{v['name']}", kind)] = v["schema"]["openAPIV3Schema"]
    return out


@pytest.fixture(params=SHIPPED)
def plan(request: pytest.FixtureRequest) -> Any:
    return make_plan(load(request.param))


def test_every_kueue_object_is_valid_against_the_pinned_crd(plan: Any, crd_schemas: Any) -> None:
    objs = kueue_objects(plan)
    kinds = {o["kind"] for o in objs}
    assert {"ResourceFlavor", "Cohort", "WorkloadPriorityClass"} <= kinds
    for obj in objs:
        key = (obj["apiVersion"], obj["kind"])
        assert obj["apiVersion"] == versions.KUEUE_API
        assert key in crd_schemas, f"{key} is not served by Kueue {versions.KUEUE}"
        jsonschema.validate(obj, crd_schemas[key])


def test_a_broken_kueue_object_is_refused_by_the_schema(crd_schemas: Any) -> None:
    """The CRD check has teeth: a quota with an invalid quantity and a bad flavor name fail."""
    plan = make_plan(load("cnaf"))
    cq = next(o for o in kueue_objects(plan) if o["kind"] == "ClusterQueue")
    cq["spec"]["resourceGroups"][0]["flavors"][0]["resources"][0]["nominalQuota"] = "lots"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(cq, crd_schemas[(cq["apiVersion"], "ClusterQueue")])
    cq = next(o for o in kueue_objects(plan) if o["kind"] == "ClusterQueue")
    cq["spec"]["resourceGroups"][1]["flavors"][0]["name"] = "A100/1g"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(cq, crd_schemas[(cq["apiVersion"], "ClusterQueue")])


def test_every_core_object_is_valid_for_the_pinned_kubernetes(plan: Any) -> None:
    objs = [*project_objects(plan), mig_configmap(plan)]
    assert objs
    for obj in objs:
        kubernetes_validate.validate(obj, versions.KUBERNETES, strict=True)


def test_strict_kubernetes_validation_has_teeth() -> None:
    bad = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": {"name": "x"},
           "spec": {"podSelector": {}, "policyTypes": ["Sideways"], "ingres": []}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, versions.KUBERNETES, strict=True)
