"""The `aiinfn` command as an operator runs it: real processes, real exit codes, real output."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

AIINFN = str(Path(sys.executable).parent / "aiinfn")


def run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [AIINFN, *args], capture_output=True, text=True, cwd=cwd, env=env or dict(os.environ), timeout=120
    )


def test_plan_json_prints_the_plan_and_writes_build_dir(tmp_path: Path, root: Path) -> None:
    res = run("plan", "cnaf", "--output", "json", "--build-dir", str(tmp_path), cwd=root)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["environment"]["name"] == "cnaf"
    assert doc["summary"]["nodes"] == len(doc["outputs"]["inventory"])
    written = json.loads((tmp_path / "cnaf" / "plan.json").read_text())
    assert written == doc


def _table(stdout: str, title: str) -> dict[str, list[str]]:
    """The rows of the rich table under ``title``: first cell -> every cell."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(title))
    rows: dict[str, list[str]] = {}
    for line in lines[start + 1:]:
        if line.startswith("└"):
            break
        if line.startswith("│"):
            cells = [c.strip() for c in line.strip("│").split("│")]
            rows[cells[0]] = cells
    return rows


def test_plan_table_shows_tree_and_capacity(tmp_path: Path, root: Path) -> None:
    """The A100 row is worked out here from cnaf.yaml itself: GPUs x 7 slices of 1g.10gb, each project
    guaranteed floor(share x units), the interactive queue the rest."""
    res = run("plan", "cnaf", "--build-dir", str(tmp_path), cwd=root, env={**os.environ, "COLUMNS": "200"})
    assert res.returncode == 0, res.stderr
    raw: dict[str, Any] = YAML(typ="safe", pure=True).load((root / "environments" / "cnaf.yaml").read_text())
    pool = raw["node_pools"]["a100"]
    gpus = len(pool["nodes"]) * pool["accelerators"]["per_node"]
    assert pool["mig"] == {"1g.10gb": 7}, "the expectation below is written for seven 1g.10gb slices per GPU"
    kind, units = "A100-80GB/1g.10gb", gpus * 7
    guaranteed = {p: math.floor(spec["shares"][kind] * units + 1e-9) for p, spec in raw["projects"].items()
                  if kind in spec.get("shares", {})}
    assert _table(res.stdout, "Accelerator capacity")[kind] == [
        kind, "nvidia.com/gpu", str(gpus), str(units), str(len(pool["nodes"])),
        ", ".join(f"{p} {q}" for p, q in guaranteed.items()), str(units - sum(guaranteed.values()))]
    queues = _table(res.stdout, "Kueue queues (cohort aiinfn)")
    for project, quota in guaranteed.items():
        assert f"{quota}x {kind}" in queues[project][2], queues[project]
    assert f"{units - sum(guaranteed.values())}x {kind}" in queues["interactive"][2]
    # the summary line says what plan.json (written beside it) holds
    summary = json.loads((tmp_path / "cnaf" / "plan.json").read_text())["summary"]
    assert (f"{summary['resources']} resources ({summary['custom_resources']} cloud resources, "
            f"{summary['components']} components), {summary['nodes']} nodes, "
            f"{len(summary['protected'])} protected") in res.stdout
    # the NFS data, the Borg repository, the hub's and Harbor's databases
    assert sorted(u.rpartition("::")[2] for u in summary["protected"]) == [
        "cnaf-overlay-harbor-database", "cnaf-overlay-hub-db", "cnaf-stateful-borg-repo", "cnaf-stateful-nfs-data"]
    assert "Infra cnaf" in res.stdout and "StatefulVolumes" in res.stdout and "Overlay cnaf-overlay" in res.stdout
    assert "v70 (ai-infn/fpga only)" in res.stdout  # reserved nodes' profile, for their group only


def test_plan_accepts_a_path_from_anywhere(tmp_path: Path, root: Path) -> None:
    res = run("plan", str(root / "environments" / "recas.yaml"), "--build-dir", str(tmp_path), cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "recas" / "plan.json").is_file()


@pytest.mark.parametrize("command", ["validate", "plan"])
def test_broken_environment_is_one_line_exit_2_and_nothing_written(
    command: str, tmp_path: Path, root: Path
) -> None:
    env = tmp_path / "broken.yaml"
    env.write_text(
        f"extends: {root / 'environments' / 'cnaf.yaml'}\n"
        "node_pools:\n  a100:\n    mig: [3g.30gb]\n"
    )
    res = run(command, str(env), "--build-dir", str(tmp_path / "build")) if command == "plan" else run(
        command, str(env)
    )
    assert res.returncode == 2
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    assert "node_pools.a100.mig[0]" in lines[0] and "'3g.30gb' is not a MIG profile of A100-80GB" in lines[0]
    assert "Traceback" not in res.stderr + res.stdout
    assert not (tmp_path / "build").exists()


def test_unknown_environment_suggests_the_close_name(root: Path) -> None:
    res = run("validate", "cnfa", cwd=root)
    assert res.returncode == 2
    assert "did you mean 'cnaf'" in res.stderr


def test_up_without_pulumi_cli_fails_clearly(root: Path) -> None:
    """No Pulumi CLI exists on these machines: `up` must say so, after validating, with exit 4."""
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + "/usr/bin:/bin"}
    res = run("up", "cnaf", "--yes", cwd=root, env=env)
    assert res.returncode == 4, res.stdout + res.stderr
    assert "pulumi CLI is not installed" in res.stderr
    assert "Traceback" not in res.stderr


def test_validate_ok_names_the_environment(root: Path) -> None:
    path = root / "environments" / "events" / "hackathon-example.yaml"
    raw = YAML(typ="safe", pure=True).load(path.read_text())
    res = run("validate", "hackathon-example", cwd=root)
    assert res.returncode == 0, res.stderr
    expected = f"ok environments/events/hackathon-example.yaml: event {raw['name']!r} over {', '.join(raw['sites'])}"
    assert res.stdout.strip() == expected


@pytest.mark.parametrize("command", ["preflight", "inventory"])
def test_live_commands_fail_in_one_line_when_the_cloud_is_unreachable(command: str, tmp_path: Path, root: Path) -> None:
    """Real openstacksdk against 127.0.0.1:9 (nothing listens): exit 1, one line, no traceback."""
    clouds = tmp_path / "clouds.yaml"
    clouds.write_text(
        "clouds:\n  closed:\n    auth:\n      auth_url: http://127.0.0.1:9/v3\n      username: u\n"
        "      password: p\n      project_name: p\n      user_domain_name: Default\n"
        "      project_domain_name: Default\n    identity_api_version: 3\n"
    )
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(clouds)}
    res = run(command, "cnaf", "--cloud", "closed", cwd=root, env=env)
    assert res.returncode == 1, res.stdout + res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "cannot reach the identity endpoint http://127.0.0.1:9/v3" in lines[0], res.stderr
