"""Benchmark: `aiinfn adopt` against the local OpenStack control plane, for sites of 10 and 50 servers.

For each size (the integration tests' environment, tests/support/openstack/fixture-env.yaml, with a
larger agent pool, as benchmarks/openstack.py), it boots the plan's network, ports, keypair, server
group and servers in a project of its own (openstack_world.boot_plan: ACTIVE on the fake compute
hosts), then times, as fresh processes, the median of ``--runs`` runs of:

  offline plan    python -c "aiinfn.preview.build(ENV)"   (adopt's first step)
  adopt           aiinfn adopt ENV --cloud aiinfn-it -o json --no-write-stack

and prints both, the ratio adopt / offline plan (what listing and matching add) and 50 / 10 (how adopt
scales with the site). Every run checks that each server was adopted.

Usage (root; starts the control plane and stops it again, about 3 minutes):
    python benchmarks/adopt.py [--runs 3] [--sizes 10,50]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "support" / "openstack"
sys.path[:] = [str(FIXTURE)] + [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from openstack_fixture import ADMIN_CLOUD, ControlPlane, exclusive  # noqa: E402
from openstack_world import (  # noqa: E402
    ENV_FILE,
    MEMBER_CLOUD,
    World,
    boot_plan,
    connect,
    member_project,
    purge_project,
    write_clouds,
)

from aiinfn import preview  # noqa: E402
from aiinfn.openstack import preflight as pf  # noqa: E402

PREFIX = "aiinfn-bench-"
FIXED_NODES = 5  # server, two GPU nodes, NFS, bastion: the nodes outside the agent pool


def sized_env(directory: Path, nodes: int) -> Path:
    path = directory / f"bench-{nodes}.yaml"
    path.write_text(json.dumps({"extends": str(ENV_FILE), "network": {"cidr": "10.230.0.0/20"},
                                "node_pools": {"agent": {"count": nodes - FIXED_NODES}}}))
    return path


def timed(argv: list[str], env: dict[str, str], runs: int, servers: int | None = None) -> float:
    times = []
    for _ in range(runs):
        start = time.monotonic()
        res = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
        times.append(time.monotonic() - start)
        if res.returncode != 0:
            raise SystemExit(f"benchmark: {' '.join(argv)} failed ({res.returncode}): {res.stderr.strip()}")
        if servers is not None:
            doc = json.loads(res.stdout)
            got = sum(1 for a in doc["adopted"] if a["type"] == "openstack:compute/instance:Instance")
            if got != servers:
                raise SystemExit(f"benchmark: adopt found {got} of {servers} servers")
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", default="10,50")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if min(sizes) <= FIXED_NODES:
        raise SystemExit(f"benchmark: sizes must exceed the {FIXED_NODES} fixed nodes of the environment")
    figures: dict[int, dict[str, float]] = {}
    with exclusive(), tempfile.TemporaryDirectory() as tmp:
        cp = ControlPlane()
        try:
            cp.up()
            admin = connect(cp.clouds_yaml, ADMIN_CLOUD)
            project, user, name, password = member_project(admin, PREFIX)
            clouds = Path(tmp) / "clouds.yaml"
            write_clouds(clouds, cp.clouds_yaml, name, name, password, 9, 9)
            env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(clouds)}
            os.environ["OS_CLIENT_CONFIG_FILE"] = str(clouds)
            py = sys.executable
            try:
                for size in sizes:
                    env_file = sized_env(Path(tmp), size)
                    report = preview.build(env_file)
                    world = World(admin, project, user, clouds, report, pf.needs(report), 0, 0)
                    world.prepare()
                    world.set_quotas({"instances": 500, "cores": 5000, "ram": 10_000_000, "ports": 1000})
                    member = world.member()
                    with boot_plan(member, report):
                        figures[size] = {
                            "offline plan": timed([py, "-c", f"from aiinfn import preview; "
                                                   f"preview.build({str(env_file)!r})"], env, args.runs),
                            "adopt": timed([py, "-m", "aiinfn.cli", "adopt", str(env_file), "--cloud", MEMBER_CLOUD,
                                            "-o", "json", "--no-write-stack", "--build-dir", str(Path(tmp) / "b")],
                                           env, args.runs, servers=size),
                        }
                    member.close()
                    print(f"{size} servers measured", flush=True)
            finally:
                purge_project(admin, project)
                admin.close()
        finally:
            cp.down()
    print(f"\naiinfn adopt, median of {args.runs} runs (seconds), local OpenStack Zed control plane")
    print(f"{'':14s}" + "".join(f"{f'{s} servers':>12s}" for s in sizes)
          + (f"{f'{sizes[-1]}/{sizes[0]}':>10s}" if len(sizes) > 1 else ""))
    for row in ("offline plan", "adopt"):
        line = f"{row:14s}" + "".join(f"{figures[s][row]:12.2f}" for s in sizes)
        if len(sizes) > 1:
            line += f"{figures[sizes[-1]][row] / figures[sizes[0]][row]:10.2f}"
        print(line)
    for s in sizes:
        f = figures[s]
        print(f"{s} servers: adopt / offline plan = {f['adopt'] / f['offline plan']:.2f} "
              f"(listing and matching add {f['adopt'] - f['offline plan']:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
