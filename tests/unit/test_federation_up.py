"""`aiinfn up federation`: the federation stack is applied after its sites', never before.

Gap: no Pulumi CLI runs here. The logic around it runs against an in-memory backend with the same calls
(read a stack's outputs, preview, up); the command itself is run without the CLI on the PATH, where it
must stop with one line and exit code 4 (as every `up` path) before touching anything.
"""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from aiinfn.config.loader import load
from aiinfn.config.models import Federation
from aiinfn.config.validate_federation import pinned_versions
from aiinfn.errors import ToolMissingError
from aiinfn.federation import kubeconfig
from aiinfn.federation import up as fedup

CA = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n").decode()


class Backend:
    def __init__(self, outputs: dict[str, dict[str, Any]]) -> None:
        self.stacks = outputs
        self.calls: list[tuple[str, str]] = []

    def outputs(self, stack: str) -> dict[str, Any]:
        self.calls.append(("outputs", stack))
        return dict(self.stacks.get(stack, {}))

    def preview(self, stack: str, config: dict[str, str], on_output: Any) -> dict[str, int]:
        self.calls.append(("preview", stack))
        assert config["aiinfn:scope"] == "federation"
        return {"create": 25}

    def up(self, stack: str, config: dict[str, str], on_output: Any) -> dict[str, int]:
        self.calls.append(("up", stack))
        return {"create": 25}


@pytest.fixture
def fed() -> Federation:
    f = load("federation")
    assert isinstance(f, Federation)
    return f


def _ready(fed: Federation) -> dict[str, dict[str, Any]]:
    sites = fed.site_environments()
    return {
        "organization/aiinfn/cnaf": {"kubeconfig": "k", "versions": pinned_versions(sites["cnaf"])},
        "organization/aiinfn/recas": {
            "kubeconfig": "k", "versions": pinned_versions(sites["recas"]),
            "multikueue_kubeconfig": kubeconfig.build("recas", fed.api_servers["recas"], CA, "t")},
    }


def test_sites_ready_then_the_federation_stack_is_previewed_and_applied(fed: Federation) -> None:
    backend = Backend(_ready(fed))
    lines: list[str] = []
    assert fedup.up(fed, "environments/federation.yaml", backend, confirm=lambda q: True,
                    on_output=lines.append) == {"create": 25}
    assert backend.calls == [("outputs", "organization/aiinfn/cnaf"), ("outputs", "organization/aiinfn/recas"),
                             ("preview", "ai-infn"), ("up", "ai-infn")]


def test_not_confirmed_nothing_is_applied(fed: Federation) -> None:
    backend = Backend(_ready(fed))
    assert fedup.up(fed, "f", backend, confirm=lambda q: False, on_output=lambda s: None) is None
    assert ("up", "ai-infn") not in backend.calls


@pytest.mark.parametrize(("site", "break_it", "says"), [
    ("cnaf", lambda o: o.pop("kubeconfig"), "exports no kubeconfig"),
    ("recas", lambda o: o.pop("multikueue_kubeconfig"), "aiinfn:federation ai-infn -s organization/aiinfn/recas"),
    ("recas", lambda o: o.update(versions={**o["versions"], "kueue": "0.18.0"}), "other pinned versions"),
    ("recas", lambda o: o.update(multikueue_kubeconfig=o["multikueue_kubeconfig"].replace("token: t", "exec: {}")),
     "exec plugins"),
])
def test_a_site_not_ready_stops_before_the_federation_stack(fed: Federation, site: str, break_it: Any,
                                                            says: str) -> None:
    outs = _ready(fed)
    break_it(outs[f"organization/aiinfn/{site}"])
    backend = Backend(outs)
    with pytest.raises(fedup.FederationError) as caught:
        fedup.up(fed, "f", backend, confirm=lambda q: True, on_output=lambda s: None)
    assert says in str(caught.value) and f"site {site!r}" in str(caught.value)
    assert len(str(caught.value).splitlines()) == 1
    assert not [c for c in backend.calls if c[0] != "outputs"]


def test_without_the_pulumi_cli_one_line_and_exit_code_4(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    from rich.console import Console

    from aiinfn.cli import federation as cli_federation

    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ToolMissingError) as caught:
        cli_federation.up(root / "environments" / "federation.yaml", None, True, Console(), Console(stderr=True))
    assert caught.value.exit_code == 4 and "pulumi CLI" in str(caught.value)
    assert cli_federation.is_federation(root / "environments" / "federation.yaml")
    assert not cli_federation.is_federation(root / "environments" / "recas.yaml")


def test_the_command_without_the_cli_exits_4_with_one_line(root: Path, tmp_path: Path) -> None:
    """`aiinfn up federation` itself, with no pulumi on the PATH: one line, exit code 4, no traceback."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PATH": str(tmp_path)}
    res = subprocess.run([sys.executable, "-m", "aiinfn.cli", "up", "federation", "--yes"], capture_output=True,
                         text=True, cwd=root, env=env, timeout=120)
    assert res.returncode == 4, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "pulumi CLI" in lines[0] and "Traceback" not in res.stderr


def test_plan_federation_shows_sites_queues_replication_and_volume(root: Path, tmp_path: Path) -> None:
    """`aiinfn plan federation`: each site's summary, the federated queue and where it runs, the
    replication and the shared volume; plan.json carries the same as data."""
    import json
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "aiinfn.cli", "plan", "federation", "--build-dir", str(tmp_path)],
                         capture_output=True, text=True, cwd=root, timeout=300, env={"COLUMNS": "200", "PATH": ""})
    assert res.returncode == 0, res.stderr
    text = res.stdout
    assert "site cnaf (manager)" in text and "site recas (worker)" in text
    assert "queue federated: submit at cnaf in lhc-ml, theory; runs at recas" in text
    assert "registry: Harbor cnaf" in text and "to recas" in text
    assert "shared volume: JuiceFS ai-infn-shared at cnaf, recas" in text
    doc = json.loads((tmp_path / "ai-infn" / "plan.json").read_text())
    assert doc["federation"]["queues"][0]["runs_at"] == ["recas"]
    assert doc["federation"]["registry"]["mode"] == "replication"
    assert (tmp_path / "ai-infn" / "cnaf" / "k8s" / "multikueue.yaml").is_file()
    assert (tmp_path / "ai-infn" / "recas" / "k8s" / "multikueue-queues.yaml").is_file()
