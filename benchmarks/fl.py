"""Federated training through StreamFlow on 1, 2 and 3 SLURM facilities: overhead per round, bytes per round.

    .venv/bin/python benchmarks/fl.py [--rounds 5] [--prefix flb --net 10.254.8]

Starts three SLURM facilities on local test hosts (tests/support/slurm; root), runs the example training
(examples/fl) on the first 1, 2 and 3 of them with ``aiinfn fl run``, and prints per round:

- the bare training time: the slowest facility's entry point inside its batch job (``train_s``);
- the round's wall time, from its first step to the end of its aggregation, and the overhead of the
  workflow engine and the batch systems over the bare training (``wall - bare``), as a median over rounds
  and as a ratio;
- per hand-over to StreamFlow (rounds_per_run rounds each), its start-up: from starting the engine to its
  first step (imports, CWL validation, translation);
- the bytes the engine copied per round (the model to every facility, updates and results back; the
  engine's own record) and the bytes on the wire (the hosts' network interfaces, SSH and the engine's
  polling of SLURM included), against the model's size.

Rounds after the first are reported (the first also stages the programs). Numbers, never asserted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent / "tests" / "support" / "slurm"), str(HERE.parent / "tests" / "support" / "hosts")]

import fl_setup  # noqa: E402 - tests/support/slurm

FACILITIES = ["bologna", "bari", "leonardo"]


def wire_bytes(setup: fl_setup.Setup) -> int:
    """Bytes through every host's interface on the hub's bridge (both directions)."""
    res = setup.facilities.hub_run(["ip", "-s", "-j", "link", "show"], timeout=30)
    total = 0
    for link in json.loads(res.stdout):
        if link.get("ifname", "").startswith(f"{setup.facilities.hosts.prefix}v"):
            stats = link.get("stats64") or link.get("stats") or {}
            total += int(stats.get("rx", {}).get("bytes", 0)) + int(stats.get("tx", {}).get("bytes", 0))
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--prefix", default="flb")
    parser.add_argument("--net", default="10.254.8")
    ns = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="aiinfn-fl-bench-"))
    setup = fl_setup.start(FACILITIES, work, prefix=ns.prefix, net=ns.net)
    rows = []
    try:
        for k in (1, 2, 3):
            names = FACILITIES[:k]
            desc = fl_setup.write_description(work / f"bench-{k}.yaml", setup.facilities, names, rounds=ns.rounds)
            state = work / f"state-{k}"
            before = wire_bytes(setup)
            res = setup.aiinfn("run", str(desc), state=state)
            after = wire_bytes(setup)
            if res.returncode != 0:
                sys.stderr.write(res.stderr)
                return res.returncode
            report = json.loads((state / "report.json").read_text())
            later = [r for r in report["rounds"] if r["round"] > 1]
            bare = [max(f["train_s"] for f in r["facilities"].values()) for r in later]
            wall = [r["wall_s"] for r in later]
            over = [w - b for w, b in zip(wall, bare, strict=True)]
            startup = []
            for run_dir in sorted((state / "runs").iterdir()):
                eng = json.loads((run_dir / "engine.json").read_text())
                starts = [s["started"] for s in eng["steps"].values() if s.get("started")]
                startup.append(min(starts) - eng["engine_started"])
            rows.append({
                "facilities": k,
                "bare_s": statistics.median(bare),
                "wall_s": statistics.median(wall),
                "overhead_s": statistics.median(over),
                "engine_bytes": statistics.median(r["bytes_moved"] for r in later),
                "wire_bytes": (after - before) / ns.rounds,
                "model_bytes": later[0]["model_bytes"],
                "handovers": len(startup),
                "startup_s": statistics.median(startup),
            })
    finally:
        setup.stop()
        subprocess.run(["rm", "-rf", str(work)], check=False)
    print(f"{'facilities':>10} {'bare s':>8} {'round s':>8} {'overhead s':>11} {'x bare':>7} "
          f"{'engine B/round':>15} {'wire B/round':>13} {'model B':>8} {'wire/model':>11} {'hand-overs':>10} "
          f"{'start s':>8}")
    for r in rows:
        print(f"{r['facilities']:>10} {r['bare_s']:>8.2f} {r['wall_s']:>8.2f} {r['overhead_s']:>11.2f} "
              f"{r['wall_s'] / r['bare_s']:>7.1f} {r['engine_bytes']:>15.0f} {r['wire_bytes']:>13.0f} "
              f"{r['model_bytes']:>8} {r['wire_bytes'] / r['model_bytes']:>11.0f} {r['handovers']:>10} "
              f"{r['startup_s']:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
