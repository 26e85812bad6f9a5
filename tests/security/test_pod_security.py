"""Pod Security: what each namespace enforces, and the attack corpus judged by the 1.33 rules.

No API server runs here, so Pod Security admission cannot be asked; tests/support/security/pss.py
implements the published baseline and restricted checks of Kubernetes 1.33 (one function per check
of k8s.io/pod-security-admission's policy/ directory). It is held to examples first, so a check that
silently passes everything fails here.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pss
import pytest
from security_corpus import BENIGN, CORPUS, expectations, load_manifest

from aiinfn import versions
from aiinfn.config.loader import list_environments, load
from aiinfn.planning import make_plan
from aiinfn.planning.labels import POD_SECURITY_ENFORCE, POD_SECURITY_ENFORCE_VERSION
from aiinfn.services import Bundle, harbor, site_bundles
from aiinfn.services.bundle import Manifest

SITES = list_environments(kind="site")

#: The lowest level each platform namespace's pods need (why: docs/security.md, the services' docstrings).
PLATFORM_LEVELS = {
    "gpu-operator": "privileged",
    "kueue-system": "restricted",
    "nfs-provisioner": "baseline",
    "cert-manager": "restricted",
    "monitoring": "restricted",
    "monitoring-node-exporter": "privileged",
    "juicefs": "privileged",
    "cinder-csi": "privileged",
    "harbor": "restricted",
    "aiinfn-provisioner": "baseline",
    "aiinfn-batch": "restricted",
    "aiinfn-image-builds": "baseline",
}
#: Namespaces whose level another section of docs/security.md states (the hub's).
OTHERS = {"jupyterhub", "jupyterhub-users"}


def compliant() -> dict[str, Any]:
    """The smallest pod restricted admits."""
    return {
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "ok"},
        "spec": {
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{"name": "c", "image": "x",
                            "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}}],
        },
    }


def _with(path: str, value: Any) -> dict[str, Any]:
    pod = compliant()
    node: Any = pod
    *parents, last = path.split(".")
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node.setdefault(p, {})
    node[last] = value
    return pod


# (what is changed, the value, the lowest level that refuses it: baseline or restricted)
MUTATIONS = [
    ("spec.hostNetwork", True, "baseline"),
    ("spec.hostPID", True, "baseline"),
    ("spec.hostIPC", True, "baseline"),
    ("spec.containers.0.securityContext.privileged", True, "baseline"),
    ("spec.containers.0.securityContext.capabilities.add", ["SYS_ADMIN"], "baseline"),
    ("spec.containers.0.securityContext.capabilities.add", ["CHOWN"], "restricted"),
    ("spec.volumes", [{"name": "h", "hostPath": {"path": "/"}}], "baseline"),
    ("spec.volumes", [{"name": "n", "nfs": {"server": "10.0.0.1", "path": "/"}}], "restricted"),
    ("spec.containers.0.ports", [{"containerPort": 80, "hostPort": 80}], "baseline"),
    ("spec.containers.0.securityContext.procMount", "Unmasked", "baseline"),
    ("spec.containers.0.securityContext.seLinuxOptions", {"type": "spc_t"}, "baseline"),
    ("spec.containers.0.securityContext.appArmorProfile", {"type": "Unconfined"}, "baseline"),
    ("spec.securityContext.seccompProfile", {"type": "Unconfined"}, "baseline"),
    ("spec.securityContext.sysctls", [{"name": "kernel.msgmax", "value": "1"}], "baseline"),
    ("spec.securityContext.windowsOptions", {"hostProcess": True}, "baseline"),
    ("spec.containers.0.securityContext.allowPrivilegeEscalation", True, "restricted"),
    ("spec.securityContext.runAsNonRoot", False, "restricted"),
    ("spec.containers.0.securityContext.runAsUser", 0, "restricted"),
    ("spec.containers.0.securityContext.capabilities.drop", ["NET_RAW"], "restricted"),
    ("spec.securityContext.seccompProfile", None, "restricted"),
]


def test_the_compliant_pod_and_the_allowed_values_pass() -> None:
    assert pss.violations(compliant(), "restricted") == []
    for path, value in [
        ("spec.securityContext.sysctls", [{"name": "net.ipv4.tcp_keepalive_time", "value": "60"}]),
        ("spec.containers.0.securityContext.capabilities.add", ["NET_BIND_SERVICE"]),
        ("spec.containers.0.securityContext.seLinuxOptions", {"type": "container_engine_t"}),
        ("spec.volumes", [{"name": "i", "image": {"reference": "x"}}, {"name": "e", "emptyDir": {}}]),
        ("spec.containers.0.securityContext.runAsUser", 1000),
    ]:
        assert pss.violations(_with(path, value), "restricted") == [], (path, value)


@pytest.mark.parametrize(("path", "value", "lowest"), MUTATIONS,
                         ids=[f"{m[0].split('.')[-1]}-{m[2]}" for m in MUTATIONS])
def test_each_rule_refuses_at_its_level(path: str, value: Any, lowest: str) -> None:
    pod = _with(path, value)
    if value is None:
        pod["spec"]["securityContext"].pop("seccompProfile")
    assert pss.violations(pod, "restricted"), "restricted admitted it"
    assert bool(pss.violations(pod, "baseline")) == (lowest == "baseline")
    assert pss.violations(pod, "privileged") == []


def test_init_and_ephemeral_containers_are_judged_too() -> None:
    for field in ("initContainers", "ephemeralContainers"):
        pod = compliant()
        pod["spec"][field] = [{"name": "x", "image": "x", "securityContext": {"privileged": True}}]
        assert pss.violations(pod, "baseline"), field


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_the_corpus_against_restricted(path: Path) -> None:
    """Host access and privilege fail restricted (admission refuses them twice); what restricted cannot
    see (tolerations, node choice, accelerators outside Kueue, priority) is written restricted-compliant,
    as an attacker would, and only the admission policies refuse it (test_admission.py)."""
    obj = load_manifest(path)
    expected = expectations(path)["pod-security"][0]
    if expected == "not-a-pod":
        assert obj["kind"] in ("PersistentVolumeClaim", "Service")
        return
    found = pss.violations(obj, "restricted")
    assert bool(found) == (expected == "fails"), found


@pytest.mark.parametrize("path", BENIGN, ids=lambda p: p.stem)
def test_what_a_researcher_submits_fits_restricted(path: Path) -> None:
    obj = load_manifest(path)
    if obj["kind"] not in ("PersistentVolumeClaim", "Service"):
        assert pss.violations(obj, "restricted") == []


def _namespaces(bundles: list[Bundle]) -> dict[str, dict[str, Any]]:
    return {i.manifest["metadata"]["name"]: i.manifest for b in bundles for i in b.items
            if isinstance(i, Manifest) and i.kind == "Namespace"}


@pytest.mark.parametrize("site", SITES)
def test_every_namespace_enforces_the_lowest_level_its_pods_need(site: str) -> None:
    plan = make_plan(load(site))
    namespaces = _namespaces(site_bundles(plan))
    assert namespaces
    for name, ns in namespaces.items():
        labels = ns["metadata"]["labels"]
        assert labels[POD_SECURITY_ENFORCE_VERSION] == f"v{versions.KUBERNETES}", name
        level = labels[POD_SECURITY_ENFORCE]
        if name in OTHERS:
            continue
        if name in {q.namespace for q in plan.quotas}:
            assert level == "restricted", name
        else:
            assert level == PLATFORM_LEVELS[name], name


def test_the_image_builds_namespace_enforces_its_documented_level(tmp_path: Path, root: Path) -> None:
    """Only a site that declares team images has the image builds' namespace (services/images.py), so
    the shipped sites above never show it: plan one that does (Apptainer's digest a stand-in, none is
    pinned yet) and hold its namespace to the level the table states."""
    from ruamel.yaml import YAML

    from aiinfn.config.loader import load_site
    from aiinfn.services import images

    path = tmp_path / "cnaf-teams.yaml"
    team = {"groups": ["ai-infn/lhc"], "pip": ["dash==2.18.2"]}
    with path.open("w") as f:
        YAML(typ="safe", pure=True).dump({"extends": str(root / "environments" / "cnaf.yaml"),
                                          "services": {"jupyterhub": {"team_images": {"lhc": team}}}}, f)
    built = images.bundle(make_plan(load_site(path)), apptainer_sha256="0" * 64)
    assert built is not None
    namespaces = _namespaces([built])
    assert list(namespaces) == [images.NAMESPACE]
    level = namespaces[images.NAMESPACE]["metadata"]["labels"][POD_SECURITY_ENFORCE]
    # its Jobs fit that level: tests/services/test_team_images.py
    assert level == PLATFORM_LEVELS[images.NAMESPACE] == "baseline"


def test_the_documented_table_is_the_enforced_one(root: Path) -> None:
    text = (root / "docs" / "security.md").read_text()
    rows = dict(re.findall(r"^\| `([a-z0-9-]+)` \| `(privileged|baseline|restricted)` \|", text, re.M))
    assert {k: v for k, v in rows.items() if k in PLATFORM_LEVELS} == PLATFORM_LEVELS
    assert rows.get("<project>") is None  # tenants are written as a sentence, not guessed names
    assert "restricted" in text and "node-exporter" in text


def test_our_own_pods_fit_their_namespace() -> None:
    """The Harbor setup Job is ours: it must fit the namespace's level, or the namespace could not
    be that strict."""
    job = next(o for o in harbor.setup_objects() if o["kind"] == "Job")
    assert pss.violations(job, PLATFORM_LEVELS[harbor.NAMESPACE]) == []
    broken = copy.deepcopy(job)
    broken["spec"]["template"]["spec"]["securityContext"].pop("seccompProfile")
    assert pss.violations(broken, "restricted")
