"""What a new operator trips on (issue 13, item 5), each found by using the tool as a newcomer would.

Every test here failed before its fix, except those marked "already right" in their docstring, which
hold a behaviour a newcomer relies on so it cannot regress unseen. A site without an SSH key is
refused by validation (tests/corpus/broken/ssh-key-missing.yaml, run by tests/unit/test_corpus.py).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from aiinfn import __version__, preview
from aiinfn.cli import app
from aiinfn.cli.site import ScaffoldError, scaffold
from aiinfn.config.loader import load, project_root
from aiinfn.errors import ConfigError
from aiinfn.planning import make_plan
from aiinfn.services import kueue

ROOT = project_root()
CNAF = ROOT / "environments" / "cnaf.yaml"
FIXTURE = ROOT / "tests" / "support" / "openstack" / "fixture-env.yaml"


def overlay(tmp_path: Path, base: Path, data: dict[str, Any], name: str = "x.yaml") -> Path:
    f = tmp_path / name
    f.write_text(json.dumps({"extends": str(base), **data}))
    return f


def cli(*args: str, cwd: Path | None = None, columns: int = 200) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": str(columns), "TERM": "dumb"}
    return subprocess.run([sys.executable, "-m", "aiinfn.cli", *args], capture_output=True, text=True, env=env,
                          cwd=cwd or ROOT, timeout=300)


# ------------------------------------------------------------------ quotas and events


def test_a_project_that_may_not_borrow_can_still_run_cpu_jobs(tmp_path: Path) -> None:
    """`borrowing: false` caps accelerators at the guarantee; CPU and memory (nobody's guarantee) stay
    borrowable, else Kueue admits none of the project's jobs (every job asks for CPU)."""
    env = load(overlay(tmp_path, CNAF, {"projects": {"astro": {"borrowing": False}}}))
    queues = {q["metadata"]["name"]: q for q in kueue.project_queues(make_plan(env))}
    groups = queues["astro"]["spec"]["resourceGroups"]
    cpu = next(g for g in groups if g["coveredResources"] == ["cpu", "memory"])
    local = next(f for f in cpu["flavors"] if f["name"] == kueue.CPU_FLAVOR)
    assert all("borrowingLimit" not in r for r in local["resources"]), local
    accel = [r for g in groups if g is not cpu for f in g["flavors"] for r in f["resources"]]
    assert accel and all(r.get("borrowingLimit") == 0 for r in accel)


def test_an_event_without_placeholders_prints_the_count_it_deploys() -> None:
    """Already right: the count `aiinfn plan` prints for an event without `placeholders` is the number of
    placeholder pods its Deployments hold, and what the stack exports."""
    src = ROOT / "environments" / "events" / "hackathon-example.yaml"
    from ruamel.yaml import YAML

    data = YAML(typ="safe").load(src.read_text())
    data.pop("placeholders", None)
    f = src.parent / "zz-newcomer-no-placeholders.yaml"
    f.write_text(json.dumps(data, default=str))
    try:
        for site in preview.event_sites(f):
            report = preview.build(f, site=site)
            printed = report.event()["placeholders"]
            held = sum(m.manifest["spec"]["replicas"] for b in report.bundles for m in b.manifests
                       if m.kind == "Deployment" and "placeholder" in m.manifest["metadata"]["name"])
            assert printed == held == report.run.stack_outputs["allocation"]["placeholders"]
            assert printed == report.event()["participants"], "default: every seat held"
    finally:
        f.unlink()


# ------------------------------------------------------------------ accepted but wrong


def test_an_ingress_pool_of_no_node_is_refused_while_the_hub_is_published(tmp_path: Path) -> None:
    f = overlay(tmp_path, CNAF, {"node_pools": {"agent": {"count": 0}}})
    with pytest.raises(ConfigError) as e:
        load(f)
    assert "node_pools.agent.count: the ingress pool has no node" in str(e.value)
    assert "hub.ai-infn" in str(e.value) or "network.ingress.hostname" in str(e.value)


def test_a_share_that_rounds_to_no_unit_is_refused(tmp_path: Path) -> None:
    f = overlay(tmp_path, CNAF, {"projects": {"small": {"iam_group": "ai-infn/small", "shares": {"T4": 0.1}}}})
    with pytest.raises(ConfigError, match=r"projects\.small\.shares\.T4: share 0\.1 of 8 T4 units guarantees "
                                          r"floor\(0\.1 x 8\) = 0 units: raise it to at least 0\.125"):
        load(f)


def test_a_mig_layout_mapping_replaces_the_base_layout(tmp_path: Path) -> None:
    """The base's {1g.10gb: 7} merged with an overlay's {3g.40gb: 2} gave a mixed layout (refused under the
    single strategy, or a wrong partition): the overlay's layout is the GPU's whole partition."""
    f = overlay(tmp_path, FIXTURE, {"node_pools": {"a100": {"mig": {"3g.40gb": 2}}}})
    env = load(f)
    assert env.node_pools["a100"].mig == ["3g.40gb", "3g.40gb"]
    # other pool fields still merge
    assert env.node_pools["a100"].count == 2 and env.node_pools["a100"].flavor == "it.gpu-a100x2"


# ------------------------------------------------------------------ the plan's output


def test_plan_on_80_columns_keeps_mig_profiles_whole_and_counts_protected(tmp_path: Path) -> None:
    res = cli("plan", "cnaf", "--build-dir", str(tmp_path), columns=80)
    assert res.returncode == 0, res.stderr
    table = res.stdout.split("Accelerator capacity", 1)[1].split("Kueue queues", 1)[0]
    assert "A100-80GB/1g.10gb" in table and "A30/2g.12gb" in table and "…" not in table
    report = preview.build("cnaf")
    overlay_urn = next(r.urn for r in report.run.registrations if r.type == "aiinfn:overlay:Overlay")
    n = sum(1 for r in report.run.children(overlay_urn) if r.custom and r.protect)
    line = next(ln for ln in res.stdout.splitlines() if "Overlay cnaf-overlay" in ln)
    assert line.rstrip().endswith(f"{n} protected"), line


def test_plan_outside_the_checkout_writes_the_projects_build(tmp_path: Path) -> None:
    res = cli("plan", str(FIXTURE), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert not (tmp_path / "build").exists()
    assert (ROOT / "build" / "openstack-fixture" / "plan.json").is_file()


def test_missing_secrets_are_named_even_without_a_stack_file(tmp_path: Path) -> None:
    assert not (ROOT / "Pulumi.openstack-fixture.yaml").exists()
    report = preview.build(FIXTURE)
    assert report.missing_secrets == ["iam-client-secret"]
    res = cli("plan", str(FIXTURE), "--build-dir", str(tmp_path))
    assert "has no stack file yet (Pulumi.openstack-fixture.yaml" in res.stderr
    assert "iam-client-secret" in res.stderr


# ------------------------------------------------------------------ the command line


def test_version_and_short_help() -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["--version"])
    assert res.exit_code == 0 and res.stdout.strip() == f"aiinfn {__version__}"
    res = runner.invoke(app, ["-h"])
    assert res.exit_code == 0 and "Commands" in res.stdout
    res = runner.invoke(app, ["plan", "-h"])
    assert res.exit_code == 0 and "--output" in res.stdout


def test_option_choices_are_shown_in_help() -> None:
    """Already right: an option with fixed choices lists them."""
    res = CliRunner().invoke(app, ["plan", "--help"], env={"COLUMNS": "200"})
    assert "table|json" in res.stdout


def test_list_is_sorted_and_says_what_each_is() -> None:
    res = CliRunner().invoke(app, ["list"])
    rows = [ln.split(None, 1) for ln in res.stdout.splitlines() if ln.strip()]
    names = [r[0] for r in rows]
    assert names == sorted(names)
    kinds = dict((r[0], r[1].strip()) for r in rows)
    assert kinds["cnaf"] == "site" and kinds["example"] == "example site"
    assert kinds["hackathon-example"] == "event" and kinds["federation"] == "federation"


def test_exit_codes_are_documented_in_one_table() -> None:
    from aiinfn.errors import ConfigError as C
    from aiinfn.errors import PlanError, ToolMissingError

    text = (ROOT / "README.md").read_text()
    section = text.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    rows = dict(re.findall(r"^\| `?(\d+)`? \| (.+?) \|$", section, re.M))
    assert set(rows) >= {"0", "1", "2", "3", "4", "70", "130"}
    for code in (C.exit_code, PlanError.exit_code, ToolMissingError.exit_code):
        assert str(code) in rows


def test_make_demo_says_what_to_do_next() -> None:
    make = (ROOT / "Makefile").read_text()
    demo = make.split("\ndemo:", 1)[1].split("\n\n", 1)[0]
    assert "next" in demo.lower() and "aiinfn new-site" in demo and "docs/operations.md" in demo


# ------------------------------------------------------------------ a new site


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the project's environments, with its program and templates linked."""
    root = tmp_path / "project"
    root.mkdir()
    shutil.copytree(ROOT / "environments", root / "environments")
    for name in ("stacks", "templates", "Pulumi.yaml"):
        (root / name).symlink_to(ROOT / name)
    return root


def test_new_site_scaffolds_a_site_that_validates_and_plans(project: Path) -> None:
    s = scaffold("pisa", project)
    assert s.environment == project / "environments" / "pisa.yaml"
    env = load(s.environment, root=project)
    assert env.name == "pisa" and env.site.name == "pisa" and env.site.cloud == "pisa"
    assert s.environment.read_text().count("extends: base.yaml") == 1
    stack = s.stack_file.read_text()
    assert "aiinfn:environment: environments/pisa.yaml" in stack and str(project) not in stack
    assert "secure:" not in stack.split("config:", 1)[1], "no secret in the committed stack file"
    assert s.secrets == sorted(set(s.secrets)) and "iam-client-secret" in s.secrets
    report = preview.build("pisa", root=project)
    assert report.stack == "pisa" and report.plan.nodes
    assert report.missing_secrets == s.secrets, "the checklist names exactly what the plan needs"


def test_new_site_refuses_an_existing_site_and_a_bad_name(project: Path) -> None:
    with pytest.raises(ScaffoldError, match=r"environments/cnaf\.yaml already exists"):
        scaffold("cnaf", project)
    with pytest.raises(ScaffoldError, match=r"site name 'Pisa!': use a DNS label"):
        scaffold("Pisa!", project)


def test_new_site_with_a_key_uses_it(project: Path) -> None:
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIANEmMLyCLQtiQzGe9u78g+nojuNGF2s73GBY793OW70 ops@pisa"
    s = scaffold("pisa", project, key)
    assert load(s.environment, root=project).site.ssh_public_key == key
    assert not s.placeholder_key


@pytest.mark.parametrize(("flavor", "message"), [
    ({"vcpus": 2}, r"flavors\.gpu-t4x4\.vcpus: 2 vCPUs for 4 accelerators: give the flavor at least one vCPU per "
                   r"device \(4\)"),
    ({"ram_gb": 4}, r"flavors\.gpu-t4x4\.ram_gb: 4 GB of RAM for 4 accelerators: give the flavor at least 2 GB per "
                    r"device \(8 GB\)"),
])
def test_a_flavor_too_small_for_its_accelerators_is_refused(tmp_path: Path, flavor: dict[str, int],
                                                            message: str) -> None:
    f = overlay(tmp_path, CNAF, {"flavors": {"gpu-t4x4": flavor}})
    with pytest.raises(ConfigError, match=message):
        load(f)
