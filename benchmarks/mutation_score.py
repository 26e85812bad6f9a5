"""The mutation score of docs/benchmarks.md ("Mutation score"): mutmut 3 over every mutant of the core modules.

mutmut's configuration is ``[tool.mutmut]`` in pyproject.toml (the modules it mutates, ``only_mutate``, and the
fast-suite test files it runs, ``pytest_add_cli_args_test_selection``). This script runs it where it can work
without touching the checkout: it copies the checkout to a temporary directory, once per module (as
tests/mutation/test_critical_mutants.py does), with ``shared`` linked inside the copy, since the tests that
mutmut runs from ``mutants/`` read ``../shared`` from there, and that copy's ``[tool.mutmut]`` narrowed to the
module and its own fast test files (``MODULES``). It runs ``mutmut run`` once per module (in the order given,
so an interrupted run has whole modules), then reads mutmut's results from the copies'
``mutants/`` and prints, per module and in total, the mutants, killed, timeout, survived and "no tests"
(no test of the selection calls the function), the score (killed and timed out over the mutants checked), and the
diff of every surviving mutant; with ``--recheck``, whether it also survives the whole test selection (with
``--report-only --refresh-tests --workdir DIR``: whether the survivors of a kept run survive the tests written
since, which is how docs/benchmarks.md's "after" figures were measured).

Run it (about 1 h on 2 busy cores): ``nice -n 10 .venv/bin/python benchmarks/mutation_score.py``;
``--modules 'aiinfn.planning.quotas*'`` for one module; ``--workdir DIR`` keeps the copies (and mutmut's
cache, so a second run only reruns what changed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MUTMUT = Path(sys.executable).with_name("mutmut")
IGNORED = shutil.ignore_patterns(".git", ".venv", "build", "mutants", ".mypy_cache", ".ruff_cache",
                                 ".pytest_cache", "__pycache__", "*.pyc", "*.egg-info", ".hypothesis")
#: One ``mutmut run`` per module, in this order (the modules of ``only_mutate``), each in its own copy of the
#: checkout whose ``[tool.mutmut]`` mutates that module only and runs only the fast test files that exercise it
#: by calling its functions directly (no stack planned through Pulumi's mock runtime, no artifact rendered per
#: mutant): a mutant then costs seconds. pyproject's ``pytest_add_cli_args_test_selection`` is their union.
MODULES: dict[str, tuple[str, tuple[str, ...]]] = {
    "aiinfn.planning.quotas*": ("src/aiinfn/planning/quotas.py", ("tests/unit/test_planning.py",)),
    "aiinfn.planning.capacity*": ("src/aiinfn/planning/capacity.py", ("tests/unit/test_planning.py",)),
    "aiinfn.catalogue.mig*": ("src/aiinfn/catalogue/mig.py", (
        "tests/unit/test_mig_catalogue.py", "tests/unit/test_mig_properties.py", "tests/unit/test_planning.py")),
    "aiinfn.services.kueue*": ("src/aiinfn/services/kueue.py", (
        "tests/unit/test_kueue_objects.py",)),
}
#: mutmut's exit codes (mutmut.stats.status_by_exit_code), folded into the columns of the report.
STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped",
          36: "timeout", -24: "timeout", 24: "timeout", 152: "timeout", 255: "timeout", None: "not checked"}
COLUMNS = ("killed", "timeout", "survived", "no tests", "not checked", "other")


def copy_checkout(workdir: Path, glob: str) -> Path:
    """The copy of the checkout for one module, its ``[tool.mutmut]`` narrowed to that module and its tests."""
    main = workdir / glob.rstrip("*")
    if not main.exists():
        shutil.copytree(ROOT, main, ignore=IGNORED, symlinks=True)
        (main / "shared").symlink_to(SHARED, target_is_directory=True)
        source, tests = MODULES[glob]
        text = (main / "pyproject.toml").read_text()
        mutmut = tomllib.loads(text)["tool"]["mutmut"]
        start = text.index("[tool.mutmut]")
        end = text.index("\n[", start + 1)
        settings = {**mutmut, "only_mutate": [source], "pytest_add_cli_args_test_selection": list(tests)}
        body = "".join(f"{key} = {json.dumps(value)}\n" for key, value in settings.items())
        (main / "pyproject.toml").write_text(text[:start] + "[tool.mutmut]\n" + body + text[end:])
    return main


def run_mutmut(main: Path, glob: str, children: int) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    started = time.monotonic()
    res = subprocess.run([str(MUTMUT), "run", "--max-children", str(children), glob], cwd=main, env=env,
                         capture_output=True, text=True)
    tail = res.stdout.replace("\r", "\n").strip().splitlines()[-1:] if res.stdout else []
    print(f"{glob}: mutmut exited {res.returncode} in {time.monotonic() - started:.0f} s {' '.join(tail)}",
          file=sys.stderr, flush=True)
    if res.returncode != 0:
        print(res.stderr[-3000:], file=sys.stderr)


def results(main: Path) -> dict[str, dict[str, str]]:
    """``{module: {mutant: status}}`` from mutmut's ``.meta`` files in the copy."""
    out: dict[str, dict[str, str]] = {}
    for meta in sorted((main / "mutants" / "src").rglob("*.py.meta")):
        codes = json.loads(meta.read_text())["exit_code_by_key"]
        module = meta.relative_to(main / "mutants" / "src").with_suffix("").with_suffix("").as_posix()
        out[module.replace("/", ".")] = {k: STATUS.get(v, "other") for k, v in codes.items()}
    return out


def recheck(main: Path, mutant: str) -> str:
    """Run one mutant against the whole test selection, not only the tests mutmut attributed to its function.

    mutmut runs a mutant against the tests that called its function while it collected stats; a function
    that only a session-scoped fixture calls (the stack tests plan each shipped environment once) is
    attributed to the first test that asked for the fixture alone. This reruns the mutant (mutmut's
    trampoline reads ``MUTANT_UNDER_TEST``) over every file of the selection.
    """
    selection = tomllib.loads((main / "pyproject.toml").read_text())["tool"]["mutmut"][
        "pytest_add_cli_args_test_selection"]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTEST_ADDOPTS")}
    env.update(PYTHONPATH=str(main / "mutants" / "src"), MUTANT_UNDER_TEST=mutant, PYTHONDONTWRITEBYTECODE="1")
    res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *selection],
                         cwd=main / "mutants", env=env, capture_output=True, text=True)
    return {0: "survived", 1: "killed"}.get(res.returncode, f"error {res.returncode}")


def diff(main: Path, mutant: str) -> str:
    res = subprocess.run([str(MUTMUT), "show", mutant], cwd=main, capture_output=True, text=True)
    lines = res.stdout.splitlines()
    return "\n".join(line for line in lines if line[:1] in "+-" and line[:3] not in ("+++", "---"))


def report(copies: list[Path], rechecking: bool) -> None:
    by_module = {module: (main, statuses) for main in copies for module, statuses in results(main).items()}
    total: Counter[str] = Counter()
    print("| module | mutants | " + " | ".join(COLUMNS) + " | score |")
    print("|---|---:|" + "---:|" * len(COLUMNS) + "---:|")
    for module, (_, statuses) in by_module.items():
        counts = Counter(statuses.values())
        total.update(counts)
        print(row(module, counts))
    print(row("total", total))
    rechecked: Counter[str] = Counter()
    for main, statuses in by_module.values():
        for mutant, status in sorted(statuses.items()):
            if status in ("survived", "no tests", "not checked"):
                again = recheck(main, mutant) if rechecking else ""
                rechecked[again] += 1
                print(f"\n{status}{f' (rerun over the selection: {again})' if again else ''}: {mutant}\n"
                      f"{diff(main, mutant)}", flush=True)
    if rechecking:
        print(f"\nsurvivors rerun: {dict(rechecked)}")


def row(name: str, counts: Counter[str]) -> str:
    n = sum(counts.values())
    checked = n - counts["not checked"]
    score = (counts["killed"] + counts["timeout"]) / checked if checked else 0.0
    return f"| {name} | {n} | " + " | ".join(str(counts[c]) for c in COLUMNS) + f" | {score:.1%} |"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", nargs="*", default=list(MODULES), choices=list(MODULES),
                        help="mutmut name globs, one run each")
    parser.add_argument("--workdir", type=Path, help="keep the copy here (default: a temporary directory)")
    parser.add_argument("--children", type=int, default=2, help="mutants tested at once")
    parser.add_argument("--recheck", action="store_true", help="rerun each survivor over the whole selection")
    parser.add_argument("--report-only", action="store_true", help="report the results already in --workdir")
    parser.add_argument("--refresh-tests", action="store_true",
                        help="copy the checkout's tests into the kept copies first (with --recheck: the survivors "
                             "of a run against the tests written since)")
    args = parser.parse_args()
    if not SHARED.is_dir():
        parser.error(f"../shared is missing next to the checkout ({SHARED})")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="aiinfn-mutmut-") as tmp:
        workdir = args.workdir or Path(tmp)
        copies = [copy_checkout(workdir, glob) for glob in args.modules]
        if args.refresh_tests:
            for main in copies:
                for dest in (main / "tests", main / "mutants" / "tests"):
                    shutil.copytree(ROOT / "tests", dest, ignore=IGNORED, symlinks=True, dirs_exist_ok=True)
        if not args.report_only:
            for glob, main in zip(args.modules, copies, strict=True):
                run_mutmut(main, glob, args.children)
        report(copies, args.recheck)
    print(f"\nwall time {time.monotonic() - started:.0f} s, load average {os.getloadavg()[0]:.1f}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
