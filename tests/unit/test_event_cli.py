"""`aiinfn event` as an operator runs it (subprocesses of the real CLI).

No Pulumi CLI here: `up`, `status`, `down` and `materials` must say so in one line (exit 4) after every
check that needs no tool, and a refusal (window, shortfall) must come first as a one-line file error
(exit 2). `plan` is entirely offline: its tables, its JSON and the handout it writes are checked against
the allocation worked out in tests/unit/test_event_allocation.py.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ENV = {**os.environ, "COLUMNS": "200", "PATH": os.pathsep.join(
    p for p in os.environ.get("PATH", "").split(os.pathsep) if not (Path(p) / "pulumi").exists())}


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aiinfn.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=ENV, timeout=300)


def test_plan_shows_the_allocation_losses_and_writes_the_handout(tmp_path: Path, root: Path) -> None:
    res = run("event", "plan", "hackathon-example", "--build-dir", str(tmp_path), cwd=root)
    assert res.returncode == 0, res.stderr
    assert "│ cnaf  │ A100-80GB/1g.10gb │    26 │      2 │            7 │              19 │            28 │" \
           in res.stdout
    assert "│ recas │ T4                │     4 │      0 │            0 │               4 │             4 │" \
           in res.stdout
    assert "│ cnaf  │ A100-80GB/1g.10gb │ project lhc-ml               │          7 │        7 │" in res.stdout
    assert "stack hackathon-2026-cnaf (cnaf)" in res.stdout and "stack hackathon-2026-recas (recas)" in res.stdout
    rows = list(csv.DictReader((tmp_path / "hackathon-2026" / "handout.csv").open()))
    assert len(rows) == 30 and rows[0]["person"] == "tutor.ferri" and rows[0]["role"] == "tutor"
    bari = {r["person"]: r for r in rows if r["site"] == "recas"}
    assert set(bari) == {"pgalli", "lmartini", "bleone", "nlongo"}
    assert all(r["hub_url"] == "https://hub.ai-infn.recas.ba.infn.it/" and r["accelerator"] == "T4"
               for r in bari.values())
    assert all(r["materials_url"].startswith("https://hub.ai-infn.cloud.cnaf.infn.it/hub/user-redirect/git-pull?")
               for r in rows if r["site"] == "cnaf")
    md = (tmp_path / "hackathon-2026" / "handout.md").read_text()
    assert "## cnaf: https://hub.ai-infn.cloud.cnaf.infn.it/" in md and "| nlongo | participant | T4 |" in md
    # each site's event stack was planned offline beside it
    for site in ("cnaf", "recas"):
        doc = json.loads((tmp_path / f"hackathon-2026-{site}" / "plan.json").read_text())
        assert doc["scope"] == "event" and doc["environment"]["site"] == site


def test_plan_json_is_the_whole_plan(tmp_path: Path, root: Path) -> None:
    res = run("event", "plan", "hackathon-example", "--build-dir", str(tmp_path), "--json", "--no-stacks", cwd=root)
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["shortfall"] == {"people": 0, "who": []}
    assert doc["stacks"] == {"cnaf": "hackathon-2026-cnaf", "recas": "hackathon-2026-recas"}
    assert sum(r["seats"] for r in doc["allocation"]) == 30
    assert doc == json.loads((tmp_path / "hackathon-2026" / "plan.json").read_text()) | {"stack_plans": {}}


def test_up_says_the_pulumi_cli_is_missing_in_one_line_after_the_checks(root: Path) -> None:
    for args in (["up", "hackathon-example", "--now", "--yes"], ["status", "hackathon-example"],
                 ["down", "hackathon-example", "--yes"], ["materials", "hackathon-example", "status"]):
        res = run("event", *args, cwd=root)
        assert res.returncode == 4, (args, res.stderr)
        (line,) = res.stderr.strip().splitlines()
        assert "the pulumi CLI is not installed" in line and "`aiinfn event plan` works without it" in line


def test_up_refuses_an_event_out_of_its_window_before_anything_else(tmp_path: Path, root: Path) -> None:
    events = root / "environments" / "events"
    text = (events / "hackathon-example.yaml").read_text()
    text = text.replace("starts: 2026-12-01", "starts: 2020-01-01").replace("ends: 2026-12-03", "ends: 2020-01-03")
    (tmp_path / "past.yaml").write_text(text)
    shutil.copy(events / "hackathon-example-roster.csv", tmp_path)
    res = run("event", "up", str(tmp_path / "past.yaml"), "--yes", cwd=root)
    assert res.returncode == 2, res.stderr
    (line,) = res.stderr.strip().splitlines()
    assert "past.yaml: ends: the event ended on 2020-01-03" in line and "--now" in line


def test_up_refuses_a_shortfall_unless_allowed(tmp_path: Path, root: Path) -> None:
    events = root / "environments" / "events"
    text = (events / "hackathon-example.yaml").read_text().replace("may_take_guarantees: true",
                                                                      "may_take_guarantees: false")
    (tmp_path / "strict.yaml").write_text(text)
    shutil.copy(events / "hackathon-example-roster.csv", tmp_path)
    res = run("event", "up", str(tmp_path / "strict.yaml"), "--now", "--yes", cwd=root)
    assert res.returncode == 2, res.stderr
    (line,) = res.stderr.strip().splitlines()
    assert "strict.yaml: roster: 23 of 30 people would get no seat" in line and "--allow-shortfall" in line
    res = run("event", "up", str(tmp_path / "strict.yaml"), "--now", "--yes", "--allow-shortfall", cwd=root)
    assert res.returncode == 4, res.stderr  # past the checks: only the missing tool stops it
