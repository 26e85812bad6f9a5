"""The batch Job's own parts, run for real: the runner the container executes, the parsers of a submission.

The runner (``jobs.RUNNER``) is executed here by /bin/sh exactly as the Job's container runs it
(``/bin/sh -c RUNNER aiinfn-batch ARGS...`` with the script in the environment): the script's text and
its arguments are data that reach python3 or bash unchanged, never shell code. What the images add
(nbconvert for notebooks) is not installed here: the notebook branch is judged by the command it runs.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from aiinfn.batch import jobs


def _run(tmp_path: Path, name: str, script: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "AIINFN_BATCH_JOB": "batch-x-1",
           "AIINFN_BATCH_SCRIPT_NAME": name, "AIINFN_BATCH_SCRIPT": script, "TMPDIR": str(tmp_path)}
    runner = jobs.RUNNER.replace("/tmp/aiinfn-batch", str(tmp_path / "aiinfn-batch"))
    return subprocess.run(["/bin/sh", "-c", runner, "aiinfn-batch", *args], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=60, check=False)


HOSTILE = "$(touch PWNED) `touch PWNED2`; touch PWNED3 ' \" \\\\ %s %% \n"


def test_the_runner_runs_the_script_with_its_arguments_and_nothing_else(tmp_path: Path) -> None:
    script = (f"import sys, os\nprint(repr(sys.argv[1:]))\nprint({HOSTILE!r})\n"
              "print('AIINFN_BATCH_SCRIPT' in os.environ)\n")
    out = _run(tmp_path, "train.py", script, "--lr", "$(id)", "a b")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == repr(["--lr", "$(id)", "a b"])
    assert HOSTILE.rstrip("\n") in out.stdout
    assert lines[-1] == "False", "the script's text is not left in its own environment"
    assert not list(tmp_path.glob("PWNED*")), "no part of the script was run as shell code"
    assert (tmp_path / "aiinfn-batch" / "train.py").read_text() == script


def test_a_shell_script_runs_under_bash_and_its_exit_code_is_the_jobs(tmp_path: Path) -> None:
    out = _run(tmp_path, "job.sh", 'echo "args: $*"\nexit 3\n', "x", "y")
    assert out.returncode == 3 and out.stdout == "args: x y\n"


def test_a_notebook_is_run_headless_by_nbconvert(tmp_path: Path) -> None:
    out = _run(tmp_path, "scan.ipynb", "{}")
    # nbconvert comes with the managed images; here the runner's command is what is judged
    assert "jupyter" in out.stderr or out.returncode != 0
    assert "nbconvert --to notebook --execute" in jobs.RUNNER and '--output-dir "$PWD"' in jobs.RUNNER


@pytest.mark.parametrize(("text", "seconds"), [
    ("4h", 14400), ("90m", 5400), ("1d12h", 129600), ("2h30m", 9000), ("02:30:00", 9000), ("45:00", 162000),
    ("600", 600), (3600, 3600),
])
def test_time_limits(text: str | int, seconds: int) -> None:
    assert jobs.parse_time(text) == seconds


@pytest.mark.parametrize("text", ["", "4x", "-1h", "h", True, 0, 1.5, "4 hours"])
def test_bad_time_limits_name_the_field(text: object) -> None:
    with pytest.raises(jobs.Refused) as e:
        jobs.parse_time(text)
    assert e.value.status == 400 and e.value.message.startswith("time:")


@pytest.mark.parametrize(("text", "gib"), [("16G", 16), ("16Gi", 16), ("512M", 0.5), ("1T", 1024), (8, 8)])
def test_memory(text: str | int, gib: float) -> None:
    assert jobs.parse_memory(text) == gib
    assert jobs.memory_quantity(gib) == (f"{int(gib)}Gi" if gib >= 1 else "512Mi")


def test_cpu_quantities() -> None:
    assert [jobs.cpu_quantity(c) for c in (4, 0.5, 1.25)] == ["4", "500m", "1250m"]


def test_owner_labels_and_job_names_are_valid_label_values() -> None:
    for user in ("alba", "mario.rossi", "ünïcode", "x" * 100, "-a-"):
        label = jobs.owner_label(user)
        assert 0 < len(label) <= 63 and label[0].isalnum() and label[-1].isalnum()
        name = jobs.job_name(user)
        assert len(name) <= 63 and name.startswith("batch-") and name[-1].isalnum() and name == name.lower()
    assert jobs.job_name("alba") != jobs.job_name("alba")
