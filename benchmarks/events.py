"""Benchmark: the exact allocation of events, and `aiinfn event plan` as an operator waits for it.

1. Allocation time (``planning.events.assign``, the min-cost flow) for 30, 300 and 3,000 people over 3
   sites and 6 kinds: people in order of preference over the 6 kinds, a tenth tutors, a third bound to
   a site (roster sites), units per (site, kind) about 80 % of the demand in all, seat limits per site.
   Targets: 300 people under 1 s, 3,000 under 5 s.
2. ``aiinfn event plan hackathon-example`` (over cnaf and recas: the allocation, the handout and each
   site's event stack under the mock runtime) as a fresh process, wall time. Target: under 3 s.

Usage: python benchmarks/events.py [--runs 3] [--sizes 30,300,3000]
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SITES = ["cnaf", "recas", "third"]
KINDS = ["A100-80GB/1g.10gb", "A100-80GB/2g.20gb", "A30/2g.12gb", "RTX5000", "T4", "V70"]


def problem(n: int, seed: int = 11) -> tuple[list, list[str], list[str], dict, dict]:
    from aiinfn.planning.events import Person

    rng = random.Random(seed)
    people = [Person(f"p{i}", tutor=i % 10 == 0, site=rng.choice(SITES) if i % 3 == 0 else None) for i in range(n)]
    weights = [rng.random() for _ in SITES for _ in KINDS]
    scale = 0.8 * n / sum(weights)
    units = {(s, k): int(w * scale) for (s, k), w in zip(((s, k) for s in SITES for k in KINDS), weights,
                                                          strict=True)}
    seats = {s: int(0.4 * n) for s in SITES}
    return people, KINDS, SITES, units, seats


def bench_allocation(sizes: list[int], runs: int) -> list[tuple[int, float, int]]:
    from aiinfn.planning.events import assign

    out = []
    for n in sizes:
        args = problem(n)
        assign(*args)  # warm: imports, first graph
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            result = assign(*args)
            times.append(time.perf_counter() - t)
        out.append((n, statistics.median(times), sum(r is not None for r in result)))
    return out


def bench_plan(runs: int) -> tuple[float, float]:
    """Median wall time and CPU time (user + system) of the child process."""
    import resource

    times, cpu = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(runs):
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "aiinfn.cli", "event", "plan", "hackathon-example", "--build-dir",
                            tmp], check=True, cwd=ROOT, capture_output=True)
            times.append(time.perf_counter() - t)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return statistics.median(times), statistics.median(cpu)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sizes", default="30,300,3000")
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    print(f"allocation over {len(SITES)} sites and {len(KINDS)} kinds (median of {a.runs}):")
    for n, secs, served in bench_allocation(sizes, a.runs):
        target = "target < 1 s" if n == 300 else "target < 5 s" if n == 3000 else ""
        print(f"  {n:>5} people: {secs * 1000:8.1f} ms  ({served} seated)  {target}")
    secs, cpu = bench_plan(a.runs)
    import os

    print(f"`aiinfn event plan hackathon-example` (cnaf + recas), whole process: {secs:.2f} s wall, {cpu:.2f} s CPU "
          f"(target < 3 s; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")


if __name__ == "__main__":
    main()
