"""Stack scopes: a site stack owns its infrastructure and overlay; an event stack owns only the event's
objects on each site's cluster; a federation stack only what ties the sites. One Pulumi project.

Mock runtime through the shared harness (see conftest.py): an event or federation stack reads its sites'
stacks through ``StackReference``, which the offline plan answers with a site's outputs (its kubeconfig,
as a secret); no other stack is touched, which is what the assertions below rely on.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aiinfn import preview
from aiinfn.config.loader import list_environments, load
from aiinfn.config.models import Event
from aiinfn.errors import AiinfnError
from aiinfn.offline import is_secret
from aiinfn.services import event as event_service

EVENTS = list_environments(kind="event")


@pytest.fixture(scope="module")
def event_stacks() -> dict[tuple[str, str], preview.Preview]:
    out = {}
    for name in EVENTS:
        ev = load(name)
        assert isinstance(ev, Event)
        for site in ev.site_environments():
            out[(name, site)] = preview.build(name, site=site)
    return out


def test_there_is_a_shipped_event(event_stacks: dict[tuple[str, str], preview.Preview]) -> None:
    assert event_stacks, "environments/events/ holds no event"


def test_an_event_stack_registers_no_cloud_resource_and_no_site_object(
    event_stacks: dict[tuple[str, str], preview.Preview], shipped_reports: dict[str, preview.Preview]
) -> None:
    for (_, site), report in event_stacks.items():
        ev = report.env
        assert isinstance(ev, Event)
        types = {r.type for r in report.run.registrations}
        assert not any(t.startswith(("openstack:", "random:", "tls:", "command:")) for t in types), types
        site_urns = {r.urn for r in shipped_reports[site].run.registrations}
        event_urns = {r.urn for r in report.run.registrations}
        assert not event_urns & site_urns
        objects = [r.inputs for r in report.run.registrations if r.custom and r.type.startswith("kubernetes:")
                   and not r.type.startswith("pulumi:providers")]
        assert objects
        for obj in objects:
            meta = obj["metadata"]
            owned = meta.get("namespace") in event_service.namespaces(ev) or ev.name in meta["name"]
            assert owned, f"{obj['kind']} {meta.get('namespace')}/{meta['name']} is not the event's"
        site_objects = {(r.inputs["kind"], r.inputs["metadata"].get("namespace"), r.inputs["metadata"]["name"])
                        for r in shipped_reports[site].run.registrations
                        if r.custom and r.type.startswith("kubernetes:") and "metadata" in r.inputs}
        mine = {(o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]) for o in objects}
        assert not mine & site_objects


def test_an_event_stack_reads_its_site_stack_and_keeps_the_kubeconfig_secret(
    event_stacks: dict[tuple[str, str], preview.Preview],
) -> None:
    for (_, site), report in event_stacks.items():
        assert report.run.mocks.read_stacks == [f"organization/aiinfn/{site}"]
        (provider,) = report.run.by_type("pulumi:providers:kubernetes")
        assert is_secret(provider.inputs["kubeconfig"])


def test_the_site_stack_exports_what_events_read(shipped_reports: dict[str, preview.Preview]) -> None:
    for report in shipped_reports.values():
        outputs = report.run.stack_outputs
        assert outputs["scope"] == "site"
        assert is_secret(outputs["kubeconfig"]), "an event stack reads the kubeconfig: it must stay secret"


def _run_program(env_file: Path, scope: str) -> None:
    from aiinfn.offline import run_program

    root = Path(__file__).resolve().parents[2]
    run_program(root / "stacks" / "__main__.py", project="aiinfn", stack="guard",
                config={"aiinfn:environment": str(env_file), "aiinfn:scope": scope,
                        "aiinfn:kubeconfig": "x", "aiinfn:iam-client-secret": "x"},
                secret_keys=["aiinfn:kubeconfig"],
                stack_references={"organization/aiinfn/cnaf": {"kubeconfig": "x"}})


def test_a_site_stack_refuses_an_event_file_and_an_event_stack_a_site_file(root: Path) -> None:
    with pytest.raises(AiinfnError) as e:
        _run_program(root / "environments" / "events" / "hackathon-example.yaml", "site")
    assert "stack 'guard' is a site stack" in str(e.value) and "event file" in str(e.value)
    with pytest.raises(AiinfnError) as e:
        _run_program(root / "environments" / "cnaf.yaml", "event")
    assert "stack 'guard' is an event stack" in str(e.value) and "is a site file" in str(e.value)


def test_site_only_commands_refuse_an_event_with_one_line(root: Path) -> None:
    for cmd in (["preflight", "hackathon-example"], ["inventory", "hackathon-example"],
                ["bootstrap", "hackathon-example"], ["up", "hackathon-example"]):
        res = subprocess.run([sys.executable, "-m", "aiinfn.cli", *cmd], capture_output=True, text=True,
                             cwd=root, timeout=120)
        assert res.returncode == 2, (cmd, res.stderr)
        lines = res.stderr.strip().splitlines()
        assert len(lines) == 1 and "is an event file" in lines[0] and "works on a site" in lines[0], res.stderr


def test_a_federation_stack_reads_every_member_and_owns_nothing_of_theirs() -> None:
    for name in list_environments(kind="federation"):
        report = preview.build(name)
        members = list(report.env.site_environments())
        assert sorted(report.run.mocks.read_stacks) == sorted(f"organization/aiinfn/{m}" for m in members)
        assert not any(r.type.startswith("openstack:") for r in report.run.registrations)


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_two_plans_of_the_same_inputs_are_byte_identical(tmp_path: Path, root: Path) -> None:
    """plan.json and every artifact, planned twice in separate processes with different hash seeds
    (so no set or dict order can leak into a file)."""
    for env in ("cnaf", "hackathon-example"):
        digests = []
        for seed in ("1", "2"):
            out = tmp_path / f"{env}-{seed}"
            res = subprocess.run([sys.executable, "-m", "aiinfn.cli", "plan", env, "--build-dir", str(out), "-o",
                                  "json"], capture_output=True, text=True, cwd=root, timeout=300,
                                 env={**os.environ, "PYTHONHASHSEED": seed})
            assert res.returncode == 0, res.stderr
            digests.append((_digest(out), hashlib.sha256(res.stdout.encode()).hexdigest()))
        assert digests[0] == digests[1], env
        assert any(name.endswith("plan.json") for name in digests[0][0])
