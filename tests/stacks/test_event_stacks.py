"""`aiinfn event up|status|down|materials` over an in-memory backend whose stacks run the real program.

Gap, named once: the Pulumi CLI and engine cannot run here. The backend below stands for them: a
stack's state is the set of URNs (and outputs) the real program (stacks/__main__.py) registers under
Pulumi's mock runtime with the stack's config, ``up`` replaces that state, ``destroy`` empties it,
``remove`` forgets the stack. What Pulumi itself adds (diffs, the order of deletes, provider
behaviour) is not shown; what the driver asks of each stack, and of no other, is.

Properties: ``up`` touches only the event's stacks and refuses site stacks and the wrong window or
a shortfall before changing anything; ``down`` removes exactly the event's URNs, archiving first,
and is idempotent; a site's stack is never changed (its URN set and config are the same after);
status reads outputs and the cluster, and warns past the end.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from aiinfn import preview
from aiinfn.config.loader import load
from aiinfn.errors import AiinfnError, ConfigError
from aiinfn.events import report as rep
from aiinfn.events import stacks
from aiinfn.events.cluster import Cluster
from aiinfn.offline import redact, run_program
from aiinfn.services import event as event_service
from aiinfn.stacknames import site_stack_name

ROOT = Path(__file__).resolve().parents[2]
IN_WINDOW = dt.date(2026, 12, 2)


class MemoryStack:
    def __init__(self, name: str, backend: MemoryBackend) -> None:
        self.name = name
        self.backend = backend
        self.config: dict[str, str] = {}
        self.urns: set[str] = set()
        self.state_outputs: dict[str, Any] = {}
        self.inputs: dict[str, Any] = {}

    def get_config(self, key: str) -> str | None:
        return self.config.get(key)

    def set_config(self, key: str, value: str) -> None:
        self.backend.calls.append(("set_config", self.name, key))
        self.config[key] = value

    def up(self, on_output: Any) -> dict[str, Any]:
        self.backend.calls.append(("up", self.name, self.config.get("aiinfn:phase", "")))
        secrets = ["aiinfn:event-archive-access-key", "aiinfn:event-archive-secret-key"]
        config = {**self.config, **{k: "from-the-stack-secrets" for k in secrets}}
        config["aiinfn:environment"] = str((ROOT / self.config["aiinfn:environment"]).resolve()) \
            if not Path(self.config["aiinfn:environment"]).is_absolute() else self.config["aiinfn:environment"]
        site = self.config["aiinfn:site"]
        run = run_program(ROOT / "stacks" / "__main__.py", project="aiinfn", stack=self.name, config=config,
                          secret_keys=secrets, stack_references={site_stack_name(site): preview._site_outputs()})
        self.urns = {r.urn for r in run.registrations}
        self.inputs = {r.urn: redact(r.inputs) for r in run.registrations}
        self.state_outputs = redact(run.stack_outputs)
        return dict(self.state_outputs)

    def destroy(self, on_output: Any) -> None:
        self.backend.calls.append(("destroy", self.name, ""))
        self.urns = set()
        self.state_outputs = {}

    def outputs(self) -> dict[str, Any]:
        return dict(self.state_outputs)


class MemoryBackend:
    def __init__(self) -> None:
        self.stacks: dict[str, MemoryStack] = {}
        self.calls: list[tuple[str, str, str]] = []

    def _key(self, name: str) -> str:
        return name.rsplit("/", 1)[-1]

    def select(self, name: str) -> MemoryStack | None:
        return self.stacks.get(self._key(name))

    def create(self, name: str) -> MemoryStack:
        self.calls.append(("create", name, ""))
        st = self.stacks[name] = MemoryStack(name, self)
        return st

    def remove(self, name: str) -> None:
        self.calls.append(("remove", name, ""))
        del self.stacks[self._key(name)]


@pytest.fixture
def backend(shipped_reports: dict[str, preview.Preview]) -> MemoryBackend:
    """A backend that already holds the site stacks, as `aiinfn up <site>` left them."""
    b = MemoryBackend()
    for name in ("cnaf", "recas"):
        site = shipped_reports[name]
        st = MemoryStack(name, b)
        st.config = {"aiinfn:environment": f"environments/{name}.yaml"}
        st.urns = {r.urn for r in site.run.registrations}
        st.state_outputs = {"kubeconfig": "apiVersion: v1\nkind: Config\n", "scope": "site"}
        b.stacks[name] = st
    return b


@pytest.fixture(scope="module")
def report() -> rep.EventReport:
    return rep.build("hackathon-example")


def _site_state(b: MemoryBackend) -> dict[str, tuple[frozenset[str], dict[str, str]]]:
    return {n: (frozenset(b.stacks[n].urns), dict(b.stacks[n].config)) for n in ("cnaf", "recas")}


def test_up_registers_each_sites_event_stack_and_touches_no_site_stack(
        report: rep.EventReport, backend: MemoryBackend, shipped_reports: dict[str, preview.Preview]) -> None:
    sites_before = _site_state(backend)
    out = stacks.up(report, backend, today=IN_WINDOW, on_output=lambda _: None)
    assert set(out) == {"cnaf", "recas"}
    assert sorted(n for n in backend.stacks if n not in ("cnaf", "recas")) == [
        "hackathon-2026-cnaf", "hackathon-2026-recas"]
    assert _site_state(backend) == sites_before
    assert {c[1] for c in backend.calls} == {"hackathon-2026-cnaf", "hackathon-2026-recas"}
    for site in ("cnaf", "recas"):
        event_urns = backend.stacks[f"hackathon-2026-{site}"].urns
        assert event_urns and not event_urns & {r.urn for r in shipped_reports[site].run.registrations}
        assert not any(":openstack:" in u or "::openstack" in u.split("::")[2] for u in event_urns)
        # the stack planned offline by `aiinfn event plan` is the one `up` registers
        planned = preview.build("hackathon-example", site=site)
        assert {r.urn for r in planned.run.registrations} == event_urns
    assert out["cnaf"]["allocation"]["participants"] == 26 and out["recas"]["allocation"]["participants"] == 4


def test_up_refuses_before_changing_anything(report: rep.EventReport, backend: MemoryBackend) -> None:
    """Outside the window without --now, with a shortfall without --allow-shortfall, against a stack
    that is a site's: one error, and no stack has been created or changed."""
    with pytest.raises(ConfigError) as e:
        stacks.up(report, backend, today=dt.date(2026, 11, 20))
    assert e.value.path == "starts" and "--now" in str(e.value)
    with pytest.raises(ConfigError) as e:
        stacks.up(report, backend, today=dt.date(2027, 1, 5))
    assert e.value.path == "ends" and "--now" in str(e.value)
    strict = rep.build("hackathon-example")
    ev = strict.event.model_copy(update={"may_take_guarantees": False})
    ev._sites, ev._roster, ev._file = strict.event._sites, strict.event._roster, strict.event._file
    from aiinfn.planning import make_plan
    from aiinfn.planning.events import make_event_plan

    plans = {n: make_plan(x) for n, x in ev.site_environments().items()}
    shortish = rep.EventReport(ev, strict.file, make_event_plan(ev, plans), [])
    with pytest.raises(ConfigError) as e:
        stacks.up(shortish, backend, today=IN_WINDOW)
    assert e.value.path == "roster" and "23 of 30 people would get no seat" in str(e.value)
    assert "--allow-shortfall" in str(e.value)
    # a stack of the event's name that is a site's (scope site): refused
    impostor = backend.create("hackathon-2026-recas")
    impostor.config = {"aiinfn:scope": "site", "aiinfn:environment": "environments/recas.yaml"}
    backend.calls.clear()
    with pytest.raises(AiinfnError) as e2:
        stacks.up(report, backend, today=IN_WINDOW)
    assert "is a site stack" in str(e2.value)
    assert backend.calls == []  # not even cnaf's stack was created: everything is checked first


def test_a_site_named_like_the_event_stack_is_never_touched(report: rep.EventReport, backend: MemoryBackend) -> None:
    with pytest.raises(AiinfnError) as e:
        stacks.guard(report, backend, "cnaf")
    assert "is a site's stack" in str(e.value)


def test_down_archives_then_removes_exactly_the_event_urns_and_is_idempotent(
        report: rep.EventReport, backend: MemoryBackend) -> None:
    sites_before = _site_state(backend)
    stacks.up(report, backend, today=IN_WINDOW, on_output=lambda _: None)
    event_urns = {n: set(backend.stacks[f"hackathon-2026-{n}"].urns) for n in ("cnaf", "recas")}
    claims = {"cnaf": [("claim-arossi", 201001), ("claim-gbianchi", 201002)], "recas": []}
    archived: dict[str, set[str]] = {}
    fake_cluster = _claims_cluster(claims)

    original_destroy = MemoryStack.destroy

    backend_inputs: list[dict[str, Any]] = []

    def destroy_and_note(self: MemoryStack, on_output: Any) -> None:
        archived[self.name] = {u for u in self.urns if u not in event_urns[self.name.rsplit("-", 1)[1]]}
        if self.name.endswith("-cnaf"):
            backend_inputs.append(dict(self.inputs))
        original_destroy(self, on_output)

    MemoryStack.destroy = destroy_and_note  # type: ignore[method-assign]
    try:
        done = stacks.down(report, backend, clusters=fake_cluster, on_output=lambda _: None)
    finally:
        MemoryStack.destroy = original_destroy  # type: ignore[method-assign]
    assert done == ["cnaf: down (2 homes archived)", "recas: down"]
    # cnaf ran its archive phase first: exactly one archive Job per home and the archive claim were added
    assert sorted(u.rsplit("::", 1)[1] for u in archived["hackathon-2026-cnaf"]) == sorted([
        *(f"hackathon-2026-cnaf-job-event-hackathon-2026-{event_service.archive_job_name(c)}"
          for c in ("claim-arossi", "claim-gbianchi")),
        "hackathon-2026-cnaf-persistentvolumeclaim-event-hackathon-2026-aiinfn-archive"])
    jobs = [v for v in backend_inputs[0].values() if v.get("kind") == "Job"]
    pods = [j["spec"]["template"]["spec"] for j in jobs]
    assert sorted((p["securityContext"]["runAsUser"], p["volumes"][0]["persistentVolumeClaim"]["claimName"])
                  for p in pods) == [(201001, "claim-arossi"), (201002, "claim-gbianchi")], "read by its owner"
    assert archived["hackathon-2026-recas"] == set()
    assert ("up", "hackathon-2026-recas", "archive") not in backend.calls
    assert set(backend.stacks) == {"cnaf", "recas"}
    assert _site_state(backend) == sites_before
    # again: nothing left to do, nothing touched
    backend.calls.clear()
    assert stacks.down(report, backend, clusters=fake_cluster) == [
        "cnaf: already down (no stack hackathon-2026-cnaf)", "recas: already down (no stack hackathon-2026-recas)"]
    assert backend.calls == []


def _claims_cluster(claims: dict[str, list[tuple[str, int | None]]]) -> Any:
    """A site's cluster whose event namespace holds these home claims, each with the owner the spawner
    recorded on it (None: no owner recorded)."""
    def fake_cluster(site: str) -> Cluster:
        def runner(args: list[str]) -> tuple[int, str, str]:
            assert args[:4] == ["kubectl", "--kubeconfig", "/dev/null", "get"] and args[4] == "pvc"
            items = [{"metadata": {"name": c, "annotations": {} if uid is None else {
                event_service.OWNER_UID_ANNOTATION: str(uid), event_service.OWNER_GID_ANNOTATION: str(uid)}}}
                for c, uid in claims[site]]
            return 0, json.dumps({"items": items}), ""
        return Cluster(Path("/dev/null"), site, runner)
    return fake_cluster


def test_down_stops_before_anything_when_a_homes_owner_is_unknown(report: rep.EventReport,
                                                                  backend: MemoryBackend) -> None:
    """A home claim without a recorded owner cannot be read as its owner: down says which and changes
    nothing (no archive phase, no destroy)."""
    stacks.up(report, backend, today=IN_WINDOW, on_output=lambda _: None)
    backend.calls.clear()
    fake = _claims_cluster({"cnaf": [("claim-arossi", 201001), ("claim-old", None)], "recas": []})
    with pytest.raises(AiinfnError) as e:
        stacks.down(report, backend, clusters=fake, on_output=lambda _: None)
    assert "claim 'claim-old': its owner's UID/GID is not recorded" in str(e.value)
    assert [c for c in backend.calls if c[0] in ("up", "destroy")] == []
    assert {"hackathon-2026-cnaf", "hackathon-2026-recas"} <= set(backend.stacks)


def test_down_without_a_way_to_list_the_homes_destroys_nothing(report: rep.EventReport,
                                                                backend: MemoryBackend) -> None:
    stacks.up(report, backend, today=IN_WINDOW, on_output=lambda _: None)
    before = {n: set(s.urns) for n, s in backend.stacks.items()}
    with pytest.raises(AiinfnError) as e:
        stacks.down(report, backend, clusters=lambda site: None)
    assert "--no-archive" in str(e.value)
    assert {n: set(s.urns) for n, s in backend.stacks.items()} == before
    assert stacks.down(report, backend, archive=False, on_output=lambda _: None) == ["cnaf: down", "recas: down"]


def test_status_shows_outputs_servers_placeholders_usage_and_warns_past_the_end(
        report: rep.EventReport, backend: MemoryBackend) -> None:
    stacks.up(report, backend, today=IN_WINDOW, sites=["cnaf"], on_output=lambda _: None)

    def runner(args: list[str]) -> tuple[int, str, str]:
        what = args[4:]
        if what[0] == "pods" and "-l" in what:
            return 0, json.dumps({"items": [
                {"metadata": {"name": "jupyter-arossi", "annotations": {"hub.jupyter.org/username": "arossi"}},
                 "status": {"phase": "Running"}},
                {"metadata": {"name": "jupyter-x"}, "status": {"phase": "Pending"}}]}), ""
        if what[0] == "pods":
            return 0, json.dumps({"items": [{"status": {"phase": "Running"}}] * 8 + [{"status": {}}]}), ""
        if what[0] == "clusterqueue":
            return 0, json.dumps({"status": {"flavorsUsage": [
                {"name": "a100-80gb-1g.10gb", "resources": [{"name": "nvidia.com/gpu", "total": "9"}]}]}}), ""
        return 1, "", "unexpected"

    rows, warnings = stacks.status(report, backend, today=IN_WINDOW,
                                   clusters=lambda s: Cluster(Path("/dev/null"), s, runner) if s == "cnaf" else None)
    cnaf, recas = rows
    assert (cnaf.deployed, recas.deployed) == (True, False)
    assert cnaf.outputs["allocation"]["participants"] == 26 and "kubeconfig" not in cnaf.outputs
    assert cnaf.servers == ["arossi"] and cnaf.placeholders == (8, 1)
    assert cnaf.usage == {"a100-80gb-1g.10gb/nvidia.com/gpu": "9"}
    assert warnings == []
    _, late = stacks.status(report, backend, today=dt.date(2026, 12, 9))
    assert late == ["the event ended on 2026-12-03 and is still up at cnaf: run `aiinfn event down hackathon-2026`"]


def test_materials_release_and_reset_reach_the_registration(report: rep.EventReport, backend: MemoryBackend) -> None:
    stacks.up(report, backend, today=IN_WINDOW, on_output=lambda _: None)
    now = dt.datetime(2026, 12, 2, 15, 30, tzinfo=dt.UTC)
    stacks.materials(report, backend, "release", now=now, on_output=lambda _: None)
    stacks.materials(report, backend, "reset", now=now, users=["arossi"], sites=["cnaf"], on_output=lambda _: None)

    def block(site: str) -> dict[str, Any]:
        st = backend.stacks[f"hackathon-2026-{site}"]
        (cm,) = [v for v in st.inputs.values() if v.get("kind") == "ConfigMap"]
        return json.loads(cm["data"]["event.json"])["materials"]

    assert block("cnaf")["released"] is True and block("cnaf")["resets"] == {"arossi": "2026-12-02T15:30:00+00:00"}
    assert block("recas")["released"] is True and block("recas")["resets"] == {}
    assert stacks.materials(report, backend, "status", now=now) == [
        "cnaf: solutions released, copies reset: arossi", "recas: solutions released"]
    with pytest.raises(ConfigError):
        stacks.materials(report, backend, "reset", now=now, users=["nobody-here"])


def test_the_site_plan_is_the_same_with_and_without_events(tmp_path: Path, root: Path) -> None:
    """A checkout without any event file plans each site exactly as this one does."""
    import shutil

    bare = tmp_path / "bare"
    for part in ("stacks", "templates", "environments"):
        shutil.copytree(root / part, bare / part)
    for f in root.glob("Pulumi*.yaml"):
        shutil.copy(f, bare / f.name)
    shutil.rmtree(bare / "environments" / "events")
    for site in ("cnaf", "recas"):
        with_events = preview.build(site, root=root).document()
        without = preview.build(site, root=bare).document()
        for doc in (with_events, without):
            doc["environment"].pop("file")
            doc["artifacts"] = sorted(doc["artifacts"])
        assert json.dumps(with_events, sort_keys=True, default=str) == json.dumps(without, sort_keys=True, default=str)


def test_the_event_file_says_the_hub_assignment_site_by_site(report: rep.EventReport) -> None:
    """Each person is assigned at exactly one site, to a profile that site's registration offers
    (the hub's side enforces it: tests/services; here, what the registration says)."""

    seen: dict[str, str] = {}
    for site, alloc in report.plan.allocations.items():
        reg = json.loads(event_service.registration(report.event, report.plan.sites[site], alloc)["data"]["event.json"])
        slugs = {p["slug"] for p in reg["profiles"]}
        for user, slug in reg["assignments"].items():
            assert slug in slugs and user not in seen
            seen[user] = site
    assert set(seen) == {p.username for p in load("hackathon-example").people()}  # type: ignore[union-attr]


def test_the_event_gives_the_batch_service_only_what_it_calls_in_the_events_namespace(
        report: rep.EventReport) -> None:
    """Each site running the batch service: a Role and its RoleBinding in ``event-<name>`` for the
    service's account, with the rights the service uses there (tests/services/test_batch.py checks them
    against its calls), valid objects, and nothing cluster-wide or in another namespace."""
    import kubernetes_validate

    from aiinfn import versions
    from aiinfn.services import batch

    ns = report.event.namespace
    for site, alloc in report.plan.allocations.items():
        plan = report.plan.sites[site]
        assert plan.env.services.batch is not None, site
        objs = [dict(m.manifest) for m in event_service.bundle(report.event, plan, alloc).manifests]
        mine = [o for o in objs if o["kind"] in ("Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding")
                and batch.SERVICE in o["metadata"]["name"]]
        assert {(o["kind"], o["metadata"].get("namespace")) for o in mine} == {("Role", ns), ("RoleBinding", ns)}
        for o in mine:
            kubernetes_validate.validate(o, versions.KUBERNETES, strict=True)
        (role,) = [o for o in mine if o["kind"] == "Role"]
        (binding,) = [o for o in mine if o["kind"] == "RoleBinding"]
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": batch.SERVICE, "namespace": batch.NAMESPACE}]
        assert binding["roleRef"]["kind"] == "Role" and binding["roleRef"]["name"] == role["metadata"]["name"]
        rights = {(g, r, v) for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"]
                  for v in rule["verbs"]}
        assert rights == {("batch", "jobs", "list"), ("batch", "jobs", "create"), ("batch", "jobs", "delete"),
                          ("", "pods", "list"), ("", "pods/log", "get"), ("", "persistentvolumeclaims", "get"),
                          ("kueue.x-k8s.io", "workloads", "list")}


def test_each_registered_profile_gives_a_memory_sized_shm(report: rep.EventReport, backend: MemoryBackend) -> None:
    """The registration each event stack registers (the real program) gives every profile the
    /dev/shm the hub mounts (tests/services/test_hub_platform.py spawns it): the site's sizing default
    (8 GiB at cnaf and recas) at most half the participant's 8 GiB, so 4 GiB, never the runtime's 64 MB."""
    stacks.up(report, backend, today=IN_WINDOW, on_output=lambda _: None)
    for site in ("cnaf", "recas"):
        (cm,) = [v for v in backend.stacks[f"hackathon-2026-{site}"].inputs.values() if v.get("kind") == "ConfigMap"]
        profiles = json.loads(cm["data"]["event.json"])["profiles"]
        assert profiles and [p["shm_gb"] for p in profiles] == [4] * len(profiles), site


def test_an_event_shm_larger_than_its_memory_is_refused_naming_the_field(tmp_path: Path, root: Path) -> None:
    """per_participant.shm_gb is memory: more than memory_gb is refused in one line naming the field."""
    import shutil

    events = tmp_path / "environments" / "events"
    shutil.copytree(root / "environments", tmp_path / "environments")
    text = (events / "hackathon-example.yaml").read_text()
    (events / "hackathon-example.yaml").write_text(text.replace("  memory_gb: 8\n", "  memory_gb: 8\n  shm_gb: 16\n"))
    with pytest.raises(ConfigError) as e:
        load(events / "hackathon-example.yaml", root=tmp_path)
    message = str(e.value)
    assert "per_participant" in message and "shm_gb: 16 GiB of /dev/shm cannot exceed memory_gb (8)" in message
    assert "\n" not in message
    (events / "hackathon-example.yaml").write_text(text.replace("  memory_gb: 8\n", "  memory_gb: 8\n  shm_gb: 6\n"))
    ev = load(events / "hackathon-example.yaml", root=tmp_path)
    assert ev.per_participant.shm_gb == 6  # type: ignore[union-attr]
