"""Every Kubernetes object the plans produce, checked as strictly as the API server would take it.

No Kubernetes API server can run on these machines. Instead, for every stack the shipped environments
give (each site, and each event at each of its sites), every object is read twice: from the bundles the
services return (``aiinfn.services.site_bundles``, the event's bundle) and from what the stack
registers under the mock runtime (its recorded inputs), so a new service or object is covered without
editing this file. Then:

* a custom resource is validated against the CRD of the pinned release (../shared/schemas, read in
  place) by tests/support/schemas.py, which refuses what the API server's structural-schema pruning
  would drop (an unknown field anywhere), defaults, evaluates the CRDs' CEL rules, and checks
  ObjectMeta; the CRD that covers a group comes from the table ``CRDS`` below, not from the product;
* a built-in object is validated with kubernetes-validate against the pinned Kubernetes minor's
  OpenAPI schema, strictly (unknown fields refused);
* every ClusterQueue is in the cohort the queueing design needs (``kueue.COHORT``): a queue outside
  it can neither lend nor borrow nor reclaim;
* every custom resource a stack registers waits (``depends_on``) for the Helm release that installs
  its CRD, the chart found from the object's API group by the table ``CRDS``.

Not covered here: admission webhooks (Kueue's and cert-manager's own checks), cross-object references
(tests/stacks/test_overlay.py), and, for event stacks, the order across stacks: an event's Kueue
objects need the Kueue release of its site's stack, which a StackReference read cannot express as a
dependency; the test checks that the site stack installs it and the event stack does not.
PrometheusRule's CRD is that of prometheus-operator v0.82.2 (the version ../shared holds); the
kube-prometheus-stack chart pinned may ship a later operator, whose PrometheusRule schema only adds
fields.
"""

from __future__ import annotations

import copy
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest

from aiinfn import preview, versions
from aiinfn.config.loader import list_environments
from aiinfn.offline import redact
from aiinfn.services import kueue
from aiinfn.services.bundle import resolve

SUPPORT = Path(__file__).resolve().parents[1] / "support"
if str(SUPPORT) not in sys.path:
    sys.path.insert(0, str(SUPPORT))

import schemas  # noqa: E402 - found through SUPPORT

#: API group -> (folder of its CRDs under ../shared/schemas, chart that installs them). Facts of the
#: upstream projects: Kueue's chart installs kueue.x-k8s.io, kube-prometheus-stack monitoring.coreos.com,
#: cert-manager's chart (installCRDs) cert-manager.io and acme.cert-manager.io.
CRDS = {
    "kueue.x-k8s.io": (f"kueue-v{versions.KUEUE}", "kueue"),
    "monitoring.coreos.com": ("prometheus-operator-v0.82.2", "kube-prometheus-stack"),
    "cert-manager.io": (f"cert-manager-{versions.chart_version('cert-manager')}", "cert-manager"),
    "acme.cert-manager.io": (f"cert-manager-{versions.chart_version('cert-manager')}", "cert-manager"),
}
#: The API groups Kubernetes itself serves (kube-apiserver 1.33): everything else is a custom resource.
BUILTIN_GROUPS = {
    "", "apps", "batch", "autoscaling", "policy", "rbac.authorization.k8s.io", "networking.k8s.io",
    "storage.k8s.io", "admissionregistration.k8s.io", "scheduling.k8s.io", "coordination.k8s.io",
    "node.k8s.io", "discovery.k8s.io", "certificates.k8s.io", "apiextensions.k8s.io",
    "flowcontrol.apiserver.k8s.io", "resource.k8s.io", "events.k8s.io", "apiregistration.k8s.io",
}
RELEASE = "kubernetes:helm.sh/v3:Release"
SITES = list_environments(kind="site")
EVENTS = list_environments(kind="event")


def group_of(api_version: str) -> str:
    return api_version.rpartition("/")[0]


def token_group(type_token: str) -> str:
    """The API group of a provider type token (``kubernetes:core/v1:Namespace`` is the core group)."""
    api = type_token.split(":")[1]
    return "" if api.startswith("core/") else group_of(api)


def _stacks() -> Iterator[tuple[str, str | None]]:
    for site in SITES:
        yield site, None
    for event in EVENTS:
        for site in preview.event_sites(event):
            yield event, site


STACKS = list(_stacks())


@pytest.fixture(scope="module")
def previews() -> dict[tuple[str, str | None], preview.Preview]:
    return {(ref, site): preview.build(ref, site=site) for ref, site in STACKS}


@pytest.fixture(scope="module")
def crd_schemas(shared: Path) -> dict[tuple[str, str], dict[str, Any]]:
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for folder, _ in set(CRDS.values()):
        path = shared / "schemas" / folder
        assert path.is_dir(), f"no CRDs for {folder} under {path.parent}"
        out.update(schemas.crd_schemas(path))
    return out


@pytest.fixture(params=STACKS, ids=[f"{r}@{s}" if s else r for r, s in STACKS])
def report(request: pytest.FixtureRequest, previews: dict[Any, preview.Preview]) -> preview.Preview:
    return previews[request.param]


def bundle_objects(report: preview.Preview) -> list[dict[str, Any]]:
    # a node's address (a static PersistentVolume's NFS server) as the artifact writer fills it in
    return [dict(resolve(m.manifest, {})) for b in report.bundles for m in b.manifests]


def registered_objects(report: preview.Preview) -> list[dict[str, Any]]:
    """The recorded inputs of every Kubernetes object the stack registers (Helm releases aside; a
    Secret's values are secret and replaced by an empty map)."""
    out = []
    for r in report.run.registrations:
        if not r.type.startswith("kubernetes:") or r.type == RELEASE:
            continue
        inputs = redact(r.inputs)
        if inputs.get("kind") == "Secret":
            inputs["stringData"] = {}
        out.append(inputs)
    return out


def every_object(report: preview.Preview) -> list[tuple[str, dict[str, Any]]]:
    return [*(("bundle", o) for o in bundle_objects(report)), *(("registered", o) for o in registered_objects(report))]


def name_of(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{obj.get('apiVersion')} {obj.get('kind')} {meta.get('namespace', '')}/{meta.get('name')}"


# --------------------------------------------------------------------------- schemas


def test_every_custom_resource_is_valid_as_the_api_server_would_take_it(
    report: preview.Preview, crd_schemas: dict[tuple[str, str], dict[str, Any]]
) -> None:
    checked = 0
    for source, obj in every_object(report):
        group = group_of(str(obj["apiVersion"]))
        if group in BUILTIN_GROUPS:
            continue
        assert group in CRDS, f"{name_of(obj)} ({source}): API group {group!r} is in no CRD table: add its CRDs"
        key = (obj["apiVersion"], obj["kind"])
        assert key in crd_schemas, f"{name_of(obj)} ({source}): not served by the CRDs of {CRDS[group][0]}"
        schemas.assert_valid(obj, crd_schemas[key], f"{name_of(obj)} ({source})")
        checked += 1
    kinds = {o["kind"] for _, o in every_object(report)}
    # what a site and an event stack must at least hold, so an empty plan cannot pass
    expected = {"ClusterQueue", "LocalQueue"} | (
        {"ResourceFlavor", "Cohort", "WorkloadPriorityClass", "PrometheusRule", "ClusterIssuer"}
        if report.scope == "site" else set())
    assert expected <= kinds, expected - kinds
    assert checked >= 2 * len([o for o in bundle_objects(report) if group_of(o["apiVersion"]) not in BUILTIN_GROUPS])


def test_every_builtin_object_is_valid_for_the_pinned_kubernetes(report: preview.Preview) -> None:
    checked = 0
    for source, obj in every_object(report):
        if group_of(str(obj["apiVersion"])) in BUILTIN_GROUPS:
            try:
                kubernetes_validate.validate(obj, versions.KUBERNETES, strict=True)
            except kubernetes_validate.ValidationError as e:
                pytest.fail(f"{name_of(obj)} ({source}): {e}")
            checked += 1
    assert checked >= (40 if report.scope == "site" else 6)


def test_objects_registered_are_the_bundles_objects(report: preview.Preview) -> None:
    """Both readings are the same objects, so validating them covers what `pulumi up` would apply."""
    def keyed(objs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        return {name_of(o): o for o in objs}

    bundles = keyed(bundle_objects(report))
    registered = keyed([o for o in registered_objects(report) if o["kind"] != "Secret"])
    assert set(registered) == set(bundles)


# --------------------------------------------------------------------------- the cohort


def test_every_cluster_queue_is_in_the_platform_cohort(
    report: preview.Preview, previews: dict[Any, preview.Preview]
) -> None:
    queues = [(s, o) for s, o in every_object(report) if o["kind"] == "ClusterQueue"]
    assert queues
    # an event's queue joins the site's events cohort, a child of the platform cohort (its event reserve)
    expected = kueue.EVENTS_COHORT if report.scope == "event" else kueue.COHORT
    for source, cq in queues:
        assert cq["spec"].get("cohortName") == expected, f"{name_of(cq)} ({source}): {cq['spec']}"
    site = previews[(report.site, None)] if report.scope == "event" else report
    cohorts = {c["metadata"]["name"]: c for _, c in every_object(site) if c["kind"] == "Cohort"}
    assert set(cohorts) == {kueue.COHORT, kueue.EVENTS_COHORT}
    assert cohorts[kueue.EVENTS_COHORT]["spec"]["parentName"] == kueue.COHORT


# --------------------------------------------------------------------------- CRDs before their objects


def _chart(release_inputs: dict[str, Any]) -> str:
    """The chart a registered helm Release installs (its name, from an OCI reference too)."""
    return str(release_inputs["chart"]).rstrip("/").rpartition("/")[2]


def test_every_custom_resource_waits_for_the_release_that_installs_its_crd(
    report: preview.Preview, previews: dict[Any, preview.Preview]
) -> None:
    releases = {_chart(r.inputs): r.urn for r in report.run.by_type(RELEASE)}
    custom = [r for r in report.run.registrations if r.type.startswith("kubernetes:") and r.type != RELEASE
              and token_group(r.type) not in BUILTIN_GROUPS]
    assert custom
    if report.scope == "event":
        # an event stack installs no chart; its site's stack holds every release its objects need
        assert releases == {}
        site = previews[(report.site, None)]
        site_charts = {_chart(r.inputs) for r in site.run.by_type(RELEASE)}
        for r in custom:
            assert CRDS[token_group(r.type)][1] in site_charts, r.urn
        return
    for r in custom:
        group = token_group(r.type)
        assert group in CRDS, f"{r.urn}: API group {group!r} is in no CRD table"
        chart = CRDS[group][1]
        assert chart in releases, f"{r.urn}: the stack registers no {chart} release"
        assert releases[chart] in r.depends_on, f"{r.name} does not wait for the {chart} release: {r.depends_on}"


# --------------------------------------------------------------------------- the checks have teeth


@pytest.fixture(scope="module")
def cnaf_objects(previews: dict[Any, preview.Preview]) -> dict[str, dict[str, Any]]:
    objs = bundle_objects(previews[("cnaf", None)])
    return {
        "project-queue": next(o for o in objs if o["kind"] == "ClusterQueue" and o["metadata"]["name"] == "lhc-ml"),
        "flavor": next(o for o in objs if o["kind"] == "ResourceFlavor" and o["spec"].get("tolerations")),
        "rule": next(o for o in objs if o["kind"] == "PrometheusRule"),
        "issuer": next(o for o in objs if o["kind"] == "ClusterIssuer"),
    }


def _spoil(obj: dict[str, Any], how: Any) -> dict[str, Any]:
    out = copy.deepcopy(obj)
    how(out)
    return out


def _rename(d: dict[str, Any], old: str, new: str) -> None:
    d[new] = d.pop(old)


SPOILED = {
    # Kueue's v1beta1 name of the field: pruned by the v1beta2 API, the queue silently leaves the cohort
    "cohort-renamed": ("project-queue", lambda o: _rename(o["spec"], "cohortName", "cohort"), "unknown field 'cohort'"),
    "typo-deep-down": ("project-queue", lambda o: _rename(o["spec"]["resourceGroups"][0]["flavors"][0]["resources"][0],
                                                          "nominalQuota", "nominalQouta"), "unknown field"),
    "quota-not-a-quantity": ("project-queue", lambda o: o["spec"]["resourceGroups"][0]["flavors"][0]["resources"][0]
                             .update(nominalQuota="lots"), "does not match"),
    "quota-a-float": ("project-queue", lambda o: o["spec"]["resourceGroups"][0]["flavors"][0]["resources"][0]
                      .update(nominalQuota=1.5), "whole number or a string"),
    "flavor-name-not-dns": ("project-queue", lambda o: o["spec"]["resourceGroups"][1]["flavors"][0]
                            .update(name="A100/1g"), "does not match"),
    # a CEL rule of the CRD: a borrowing limit means nothing outside a cohort
    "borrowing-limit-without-cohort": ("project-queue", lambda o: (o["spec"].pop("cohortName"),
                                       o["spec"]["resourceGroups"][0]["flavors"][0]["resources"][0]
                                       .update(borrowingLimit=0)), "borrowingLimit must be nil"),
    "queueing-strategy-unknown": ("project-queue", lambda o: o["spec"].update(queueingStrategy="Fastest"),
                                  "is not one of"),
    "metadata-typo": ("project-queue", lambda o: o["metadata"].update(label={"a": "b"}), "unknown field 'label'"),
    "label-value-invalid": ("project-queue", lambda o: o["metadata"].update(labels={"a": "not valid!"}),
                            "not a valid label value"),
    "name-not-dns": ("project-queue", lambda o: o["metadata"].update(name="LHC_ML"), "not a DNS-1123 subdomain"),
    "null-not-nullable": ("project-queue", lambda o: o["spec"].update(queueingStrategy=None), "null is not allowed"),
    "toleration-typo": ("flavor", lambda o: _rename(o["spec"]["tolerations"][0], "effect", "efect"), "unknown field"),
    "toleration-effect": ("flavor", lambda o: o["spec"]["tolerations"][0].update(effect="Sometimes"),
                          "supported taint effect values"),
    "node-labels-not-strings": ("flavor", lambda o: o["spec"]["nodeLabels"].update(extra=3), "int where string"),
    "rule-typo": ("rule", lambda o: _rename(o["spec"]["groups"][0]["rules"][0], "expr", "expression"),
                  "unknown field 'expression'"),
    "issuer-typo": ("issuer", lambda o: _rename(o["spec"]["acme"], "server", "url"), "unknown field 'url'"),
}


@pytest.mark.parametrize("case", sorted(SPOILED))
def test_a_spoiled_custom_resource_is_refused(
    case: str, cnaf_objects: dict[str, dict[str, Any]], crd_schemas: dict[tuple[str, str], dict[str, Any]]
) -> None:
    which, how, expected = SPOILED[case]
    good = cnaf_objects[which]
    schema = crd_schemas[(good["apiVersion"], good["kind"])]
    assert schemas.problems(good, schema) == []
    found = schemas.problems(_spoil(good, how), schema)
    assert found and any(expected in p for p in found), found


def test_what_the_api_server_keeps_is_accepted(
    cnaf_objects: dict[str, dict[str, Any]], crd_schemas: dict[tuple[str, str], dict[str, Any]]
) -> None:
    """x-kubernetes-preserve-unknown-fields keeps anything below it, additionalProperties maps take any
    key, int-or-string takes both forms, and defaults make CEL rules evaluable on a sparse object."""
    issuer = copy.deepcopy(cnaf_objects["issuer"])
    issuer["spec"]["acme"]["solvers"] = [{"dns01": {"webhook": {
        "groupName": "acme.example.org", "solverName": "x", "config": {"anything": {"nested": [1, "two"]}}}}}]
    schema = crd_schemas[(issuer["apiVersion"], "ClusterIssuer")]
    assert schemas.problems(issuer, schema) == []
    issuer["spec"]["acme"]["solvers"][0]["dns01"]["webhook"]["confg"] = {}
    assert any("unknown field 'confg'" in p for p in schemas.problems(issuer, schema))

    flavor = copy.deepcopy(cnaf_objects["flavor"])
    flavor["spec"]["nodeLabels"]["example.org/any-key"] = "any-value"
    assert schemas.problems(flavor, crd_schemas[(flavor["apiVersion"], "ResourceFlavor")]) == []

    cq = copy.deepcopy(cnaf_objects["project-queue"])
    schema = crd_schemas[(cq["apiVersion"], "ClusterQueue")]
    resources = cq["spec"]["resourceGroups"][0]["flavors"][0]["resources"]
    resources[0]["nominalQuota"], resources[1]["nominalQuota"] = "4", 8 * 2**30
    assert schemas.problems(cq, schema) == []
    del cq["spec"]["preemption"]  # defaulted (reclaimWithinCohort: Never) before the CEL rule reads it
    assert schemas.problems(cq, schema) == []


# --------------------------------------------------------------------------- the event archive


def _archive_jobs(to: str) -> tuple[list[dict[str, Any]], Any]:
    """The archive objects `aiinfn event down` applies at cnaf for two homes of the shipped hackathon
    (owners 201001 and 201002, as the spawner records them), teardown to the NFS or to S3."""
    from aiinfn.events import report as rep
    from aiinfn.services import event as event_service

    r = rep.build("hackathon-example")
    ev = r.event
    if to == "s3":
        ev = ev.model_copy(update={"teardown": ev.teardown.model_copy(update={
            "to": "s3", "bucket": "ai-infn-events", "access_key_secret": "event-archive-access-key",
            "secret_key_secret": "event-archive-secret-key"})})
    plan = r.plan.sites["cnaf"]
    objs, _ = event_service.archive_objects(ev, plan, ["claim-arossi:201001:201001", "claim-gbianchi:201002:201002"])
    return objs, plan


@pytest.mark.parametrize("to", ["nfs", "s3"])
def test_the_event_archive_jobs_are_valid_restricted_pods_each_as_its_homes_owner(to: str) -> None:
    """Every archive object is valid for the pinned Kubernetes (strict: unknown fields refused), each
    Job's pod fits Pod Security ``restricted`` (the event namespace is a tenant's), runs as the owner of
    the one home it mounts (read-only), never as root."""
    sys.path.insert(0, str(SUPPORT / "hub"))
    import pod_security

    objs, _ = _archive_jobs(to)
    for obj in objs:
        kubernetes_validate.validate(obj, versions.KUBERNETES, strict=True)
    jobs = [o for o in objs if o["kind"] == "Job"]
    assert len(jobs) == 2 and len({j["metadata"]["name"] for j in jobs}) == 2
    for job, (claim, uid) in zip(jobs, [("claim-arossi", 201001), ("claim-gbianchi", 201002)], strict=True):
        spec = job["spec"]["template"]["spec"]
        assert pod_security.violations(spec) == []
        sc = spec["securityContext"]
        assert (sc["runAsUser"], sc["runAsGroup"], sc["runAsNonRoot"]) == (uid, uid, True)
        homes = [v for v in spec["volumes"] if "persistentVolumeClaim" in v and v["name"] == "home"]
        assert homes == [{"name": "home", "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}]
        assert spec["containers"][0]["args"][2].endswith(f"/hackathon-2026/cnaf/{claim}")


@pytest.mark.integration
def test_the_archive_copies_private_files_of_other_owners_as_the_jobs_run_it(tmp_path: Path) -> None:
    """The NFS archive Jobs' own commands, run here as their pods would (each container's command and
    arguments as written, as the pod's UID/GID; the claims' mount paths mapped to directories of this
    machine): homes of two other UIDs holding 0600 files and 0700 folders are copied whole, the
    shared folder made by the init container (as nobody) lets each owner write its own subfolder, and
    the same copy as the old Job's user (1000:100) is refused by the filesystem. Gap: rclone is
    Debian's 1.60 (the image pins 1.68.2; the flags used are in both), the archive claim's root is
    made 0777 here as the NFS provisioner makes a volume's directory."""
    import os
    import shutil
    import subprocess
    import tempfile

    from aiinfn.planning.labels import ARCHIVE_CLAIM_ANNOTATION

    if os.geteuid() != 0:
        pytest.fail("needs root to own files as other UIDs (CI runs as root)")
    rclone = shutil.which("rclone")
    assert rclone, "rclone is missing: apt-get install -y --no-install-recommends rclone"
    objs, _ = _archive_jobs("nfs")
    top = Path(tempfile.mkdtemp(prefix="aiinfn-archive-"))
    try:
        top.chmod(0o755)
        archive = top / "archive"
        archive.mkdir(mode=0o777)
        archive.chmod(0o777)
        homes = {}
        for name, uid in (("claim-arossi", 201001), ("claim-gbianchi", 201002)):
            home = top / name
            (home / "work").mkdir(parents=True)
            (home / "work" / "model.pt").write_bytes(os.urandom(4096))
            (home / ".ssh-like-secret").write_text(f"{name} only\n")
            for p in (home / "work" / "model.pt", home / ".ssh-like-secret"):
                os.chown(p, uid, uid)
                p.chmod(0o600)
            for d in (home / "work", home):
                os.chown(d, uid, uid)
                d.chmod(0o700)
            homes[name] = home

        def run(container: dict[str, Any], uid: int, gid: int, claim: Path) -> subprocess.CompletedProcess[str]:
            words = [*(container.get("command") or [rclone]), *(container.get("args") or [])]
            mounts = {"/home-src": str(claim), "/archive": str(archive)}
            words = [next((real + w[len(m):] for m, real in mounts.items() if w == m or w.startswith(m + "/")), w)
                     for w in words]
            scratch = Path(tempfile.mkdtemp(dir=top))
            os.chown(scratch, uid, gid)
            return subprocess.run(words, user=uid, group=gid, extra_groups=[], capture_output=True, text=True,
                                  env={"HOME": str(scratch), "PATH": os.environ["PATH"]}, timeout=120, check=False)

        jobs = [o for o in objs if o["kind"] == "Job"]
        first = jobs[0]["spec"]["template"]["spec"]
        refused = run(first["containers"][0], 1000, 100, homes["claim-arossi"])
        assert refused.returncode != 0 and "permission denied" in (refused.stdout + refused.stderr).lower()
        for job in jobs:
            spec = job["spec"]["template"]["spec"]
            claim = homes[job["metadata"]["annotations"][ARCHIVE_CLAIM_ANNOTATION]]
            for init in spec["initContainers"]:
                sc = init["securityContext"]
                done = run(init, sc["runAsUser"], sc["runAsGroup"], claim)
                assert done.returncode == 0, done.stderr
            pod = spec["securityContext"]
            done = run(spec["containers"][0], pod["runAsUser"], pod["runAsGroup"], claim)
            assert done.returncode == 0, done.stderr
        folder = archive / "archive" / "hackathon-2026" / "cnaf"
        assert stat.S_IMODE(folder.stat().st_mode) == 0o1777
        for name, home in homes.items():
            copy_ = folder / name
            assert (copy_ / "work" / "model.pt").read_bytes() == (home / "work" / "model.pt").read_bytes()
            assert (copy_ / ".ssh-like-secret").read_text() == f"{name} only\n"
            assert copy_.stat().st_uid == os.stat(home).st_uid, "each copy belongs to the home's owner"
    finally:
        shutil.rmtree(top, ignore_errors=True)
