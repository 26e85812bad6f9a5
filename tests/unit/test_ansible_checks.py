"""`aiinfn bootstrap` refuses, before any host is touched, what would go wrong: a missing secret, an add-node
or remove-node run without a limit or aimed at the first server or a stateful node, a readable secrets file,
an unknown playbook. Run as real processes where the exit code and the single line matter."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aiinfn.ansible import checks as bs
from aiinfn.config.loader import load
from aiinfn.planning import Plan, make_plan


@pytest.fixture(scope="module")
def cnaf_plan() -> Plan:
    return make_plan(load("cnaf"))


def test_site_needs_the_join_token_and_the_borg_passphrase(cnaf_plan: Plan) -> None:
    needs = {n.variable: n.name for n in bs.secrets_needed(cnaf_plan.env, "site")}
    assert needs["rke2_token"] == "rke2-token"
    assert needs["rke2_agent_token"] == "rke2-agent-token"  # agents get only this one (issue 10)
    assert needs["borgbackup_passphrase"] == cnaf_plan.env.storage.backup.passphrase_secret
    assert "borgbackup_passphrase" not in {n.variable for n in bs.secrets_needed(cnaf_plan.env, "add-node")}
    assert bs.secrets_needed(cnaf_plan.env, "mig") == []


def test_secrets_come_from_the_environment_then_the_file_then_the_stack(tmp_path: Path, cnaf_plan: Plan) -> None:
    needs = bs.secrets_needed(cnaf_plan.env, "site")
    f = tmp_path / "secrets.yaml"
    f.write_text("rke2-token: from-file-token-0123456789\nborg-passphrase: from-file-passphrase\n")
    f.chmod(0o600)
    got = bs.resolve_secrets(needs, secrets_file=f, environ={"AIINFN_SECRET_RKE2_TOKEN": "from-env-token"},
                             stack_lookup=lambda name: "from-stack")
    assert got == {"rke2_token": "from-env-token", "borgbackup_passphrase": "from-file-passphrase",
                   "rke2_agent_token": "from-stack"}
    only_stack = bs.resolve_secrets(needs, environ={}, stack_lookup=lambda name: f"stack-{name}")
    assert only_stack["rke2_token"] == "stack-rke2-token"


def test_a_missing_secret_is_named_with_where_to_put_it(cnaf_plan: Plan) -> None:
    needs = bs.secrets_needed(cnaf_plan.env, "site")
    with pytest.raises(bs.BootstrapError) as e:
        bs.resolve_secrets(needs, environ={"AIINFN_SECRET_RKE2_TOKEN": "x" * 20}, stack_lookup=lambda n: None)
    msg = str(e.value)
    assert "borg-passphrase" in msg and "rke2-token" not in msg and "--secrets-file" in msg


def test_a_secrets_file_others_can_read_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "secrets.yaml"
    f.write_text("rke2-token: abc\n")
    f.chmod(0o644)
    with pytest.raises(bs.BootstrapError, match="chmod 600"):
        bs.read_secrets_file(f)


@pytest.mark.parametrize(
    ("playbook", "limit", "fragment"),
    [
        ("add-node", None, "needs --limit"),
        ("remove-node", "", "needs --limit"),
        ("add-node", "k8s-server-01", "first server"),
        ("remove-node", "nfs-01", "nfs node"),
        ("remove-node", "backup-01", "backup node"),
        ("add-node", "gpu-h100-09", "not a node of environment cnaf"),
        ("add-node", "gpu-*", "no patterns"),
    ],
)
def test_add_and_remove_node_are_limited_to_cluster_nodes(cnaf_plan: Plan, playbook: str, limit: str | None,
                                                          fragment: str) -> None:
    with pytest.raises(bs.BootstrapError, match=fragment):
        bs.check_limit(cnaf_plan, playbook, limit)


def test_a_gpu_node_may_be_added_or_removed(cnaf_plan: Plan) -> None:
    bs.check_limit(cnaf_plan, "add-node", "gpu-a100-01")
    bs.check_limit(cnaf_plan, "remove-node", "gpu-t4-02,gpu-t4-01")
    bs.check_limit(cnaf_plan, "site", None)


def _aiinfn(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AIINFN_SECRET_")}
    return subprocess.run([sys.executable, "-m", "aiinfn.cli", *args], capture_output=True, text=True,
                          env={**clean, **(env or {}), "PATH": "/usr/bin:/bin"}, check=False, timeout=120)


def test_cli_refuses_a_run_without_secrets_before_touching_anything(tmp_path: Path) -> None:
    inv = tmp_path / "inventory.yaml"
    inv.write_text("all:\n  hosts: {}\n")
    res = _aiinfn("bootstrap", "cnaf", "-i", str(inv))
    assert res.returncode == 2, res
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "rke2-token" in lines[0] and "Traceback" not in res.stderr


def test_cli_refuses_add_node_without_limit_and_an_unknown_playbook(tmp_path: Path) -> None:
    res = _aiinfn("bootstrap", "cnaf", "--playbook", "add-node")
    assert res.returncode == 2 and "--limit" in res.stderr
    res = _aiinfn("bootstrap", "cnaf", "--playbook", "upgrade")
    assert res.returncode == 2 and "not one of" in res.stderr
