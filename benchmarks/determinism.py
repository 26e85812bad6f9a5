"""Determinism of the fast suites (docs/benchmarks.md, "Determinism"): run them N times, reordered, and list flickers.

Each run is one pytest process over tests/unit, tests/stacks, tests/artifacts and tests/security with its own
seed: the test files are given in an order shuffled by the seed, pytest-random-order (the ``test`` extra; it
does nothing unless asked) shuffles the modules and the tests inside each module with the same seed
(``--random-order-bucket=module``: module- and session-scoped fixtures are still set up once per module), and
``PYTHONHASHSEED`` is the seed too, so set and dict-of-set iteration orders change between runs. Every run
writes a JUnit report; the script prints, per run, the seed, the counts, the wall time and the load average,
then every test that failed in some run, with the runs it failed in. A test that fails in one run and passes in
another is a flicker; one that fails in every run is simply broken. Exit status 1 if any test failed.

Run it: ``nice -n 10 .venv/bin/python benchmarks/determinism.py --runs 3`` (about 7 minutes a run on 2 idle
cores, far longer on busy ones); ``--seed S`` repeats the runs from seed S on (S, S+1, ...); ``--suites
tests/unit`` (folders or files) runs a subset; ``--in-order`` keeps one run in pytest's own order as the first;
``--keep DIR`` keeps each run's JUnit report and pytest's output (``DIR/run<N>.log`` shows a run's progress).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SUITES = ("tests/unit", "tests/stacks", "tests/artifacts", "tests/security")


def test_files(suites: list[str]) -> list[str]:
    paths = [p for s in suites for p in ([ROOT / s] if (ROOT / s).is_file() else (ROOT / s).rglob("test_*.py"))]
    return sorted(str(p.relative_to(ROOT)) for p in paths)


def run(files: list[str], seed: int | None, report: Path) -> tuple[dict[str, int], dict[str, str], float]:
    """One pytest run; ``seed`` None is pytest's own order. Returns the counts, {test: message}, wall time."""
    args = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}"]
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"))
    if seed is not None:
        files = list(files)
        random.Random(seed).shuffle(files)
        args += ["--random-order-bucket=module", f"--random-order-seed={seed}"]
        env["PYTHONHASHSEED"] = str(seed)
    else:
        env["PYTHONHASHSEED"] = "0"
    started = time.monotonic()
    with report.with_suffix(".log").open("w") as log:  # pytest's own output: progress while it runs
        subprocess.run([*args, *files], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    wall = time.monotonic() - started
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    failed: dict[str, str] = {}
    if not report.exists():
        return {"tests": 0, "failures": 0, "errors": 1, "skipped": 0}, {"<pytest>": "no report written"}, wall
    for case in ET.parse(report).getroot().iter("testcase"):
        counts["tests"] += 1
        name = f"{case.get('classname')}::{case.get('name')}"
        for tag in ("failure", "error", "skipped"):
            el = case.find(tag)
            if el is not None:
                counts[{"failure": "failures", "error": "errors", "skipped": "skipped"}[tag]] += 1
                if tag != "skipped":
                    failed[name] = (el.get("message") or tag).splitlines()[0][:200]
    return counts, failed, wall


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=int(time.time()) % 100000, help="first run's seed")
    parser.add_argument("--suites", nargs="*", default=list(SUITES))
    parser.add_argument("--in-order", action="store_true", help="make the first run in pytest's own order")
    parser.add_argument("--keep", type=Path, help="write the reports and pytest's output here (kept)")
    args = parser.parse_args()
    files = test_files(args.suites)
    seeds: list[int | None] = [args.seed + i for i in range(args.runs)]
    if args.in_order:
        seeds[0] = None
    failures: dict[str, dict[str, str]] = defaultdict(dict)
    with tempfile.TemporaryDirectory(prefix="aiinfn-determinism-") as tmp:
        out = args.keep or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        print(f"reports and pytest's output: {out}/run<N>.xml, .log", flush=True)
        for i, seed in enumerate(seeds):
            label = "in order" if seed is None else f"seed {seed}"
            counts, failed, wall = run(files, seed, out / f"run{i + 1}.xml")
            print(f"run {i + 1} ({label}): {counts['tests']} tests, {counts['failures']} failed, "
                  f"{counts['errors']} errors, {counts['skipped']} skipped, {wall:.0f} s, "
                  f"load average {os.getloadavg()[0]:.1f}", flush=True)
            for name, message in failed.items():
                failures[name][label] = message
    for name, by_run in sorted(failures.items()):
        kind = "broken" if len(by_run) == len(seeds) else "flicker"
        print(f"\n{kind}: {name}")
        for label, message in by_run.items():
            print(f"  {label}: {message}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
