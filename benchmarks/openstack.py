"""Benchmark: `aiinfn preflight` and `aiinfn inventory` against the local OpenStack control plane.

For sites of 10 and 50 nodes (the integration tests' environment, tests/support/openstack/
fixture-env.yaml, with a larger agent pool), it boots the plan's servers in a project of its own (as the
integration tests do: from the plan's registrations, ACTIVE on the fake compute hosts), sets every quota
to exactly usage plus what the plan adds, and times as fresh processes, what an operator waits for:

  offline plan          python -c "aiinfn.preview.build(ENV)"   (preflight's offline part)
  preflight             aiinfn preflight ENV -o json          (plan + every check against the cloud)
  inventory             aiinfn inventory ENV -o json
  inventory script      inventory/openstack.py --list         (what Ansible runs)
  ansible-inventory     ansible-inventory -i inventory/openstack.py --list

and prints the median of ``--runs`` runs, with the ratios preflight / offline plan (what the cloud checks
add) and 50 nodes / 10 nodes (how each command scales with the site).

Usage (root; starts the control plane and stops it again, about 2 minutes):
    python benchmarks/openstack.py [--runs 3] [--sizes 10,50]
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
# This file is named openstack.py and Python puts its directory first on sys.path, where it would
# shadow openstacksdk's `openstack` package: take it off, and add the control plane's helpers.
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

BIN = Path(sys.executable).parent
PREFIX = "aiinfn-bench-"
#: Nodes of the fixture environment outside the agent pool (server, two GPU nodes, NFS, bastion).
FIXED_NODES = 5


def sized_env(directory: Path, nodes: int) -> Path:
    path = directory / f"bench-{nodes}.yaml"
    path.write_text(json.dumps({
        "extends": str(ENV_FILE),
        # a /20: the plan's mocked addresses of 50 nodes would repeat in a /24
        "network": {"cidr": "10.230.0.0/20"},
        "node_pools": {"agent": {"count": nodes - FIXED_NODES}},
    }))
    return path


def timed(argv: list[str], env: dict[str, str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.monotonic()
        res = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
        took = time.monotonic() - start
        if res.returncode != 0:
            raise SystemExit(f"benchmark: {' '.join(argv)} failed ({res.returncode}): {res.stderr.strip()}")
        times.append(took)
    return statistics.median(times)


def measure(env_file: Path, env: dict[str, str], runs: int) -> dict[str, float]:
    py = sys.executable
    cli = [py, "-m", "aiinfn.cli"]
    script = str(ROOT / "inventory" / "openstack.py")
    inv_env = {**env, "AIINFN_ENV": str(env_file), "OS_CLOUD": MEMBER_CLOUD,
               "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true", "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}"}
    return {
        "offline plan": timed([py, "-c", f"from aiinfn import preview; preview.build({str(env_file)!r})"], env, runs),
        "preflight": timed([*cli, "preflight", str(env_file), "-o", "json"], env, runs),
        "inventory": timed([*cli, "inventory", str(env_file), "-o", "json"], env, runs),
        "inventory script": timed([script, "--list"], inv_env, runs),
        "ansible-inventory": timed([str(BIN / "ansible-inventory"), "-i", script, "--list"], inv_env, runs),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--sizes", default="10,50")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if min(sizes) <= FIXED_NODES:
        raise SystemExit(f"benchmark: sizes must exceed the {FIXED_NODES} fixed nodes of the environment")
    figures: dict[int, dict[str, float]] = {}
    boots: dict[int, float] = {}
    with exclusive(), tempfile.TemporaryDirectory() as tmp:
        cp = ControlPlane()
        try:
            cp.up()
            print(f"control plane up in {cp.timings['total']:.1f} s ({'first' if cp.timings['fresh'] else 'warm'} "
                  "start)", flush=True)
            admin = connect(cp.clouds_yaml, ADMIN_CLOUD)
            project, user, name, password = member_project(admin, PREFIX)
            clouds = Path(tmp) / "clouds.yaml"
            write_clouds(clouds, cp.clouds_yaml, name, name, password, 9, 9)
            env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(clouds)}
            os.environ["OS_CLIENT_CONFIG_FILE"] = str(clouds)
            try:
                for size in sizes:
                    env_file = sized_env(Path(tmp), size)
                    report = preview.build(env_file)
                    world = World(admin, project, user, clouds, report, pf.needs(report), 0, 0)
                    world.prepare()
                    world.set_quotas({"instances": 500, "cores": 5000, "ram": 10_000_000, "ports": 1000})
                    member = world.member()
                    start = time.monotonic()
                    with boot_plan(member, report):
                        boots[size] = time.monotonic() - start
                        world.set_quotas(world.exact_quotas())
                        figures[size] = measure(env_file, env, args.runs)
                    member.close()
                    print(f"{size} nodes measured", flush=True)
            finally:
                purge_project(admin, project)
                admin.close()
        finally:
            cp.down()

    print(f"\naiinfn live-cloud commands, median of {args.runs} runs (seconds), local OpenStack Zed control plane")
    header = f"{'':20s}" + "".join(f"{f'{s} nodes':>12s}" for s in sizes)
    if len(sizes) > 1:
        header += f"{f'{sizes[-1]}/{sizes[0]}':>10s}"
    print(header)
    rows = ["offline plan", "preflight", "inventory", "inventory script", "ansible-inventory"]
    for row in rows:
        line = f"{row:20s}" + "".join(f"{figures[s][row]:12.2f}" for s in sizes)
        if len(sizes) > 1:
            line += f"{figures[sizes[-1]][row] / figures[sizes[0]][row]:10.2f}"
        print(line)
    print(f"{'boot, all ACTIVE':20s}" + "".join(f"{boots[s]:12.2f}" for s in sizes))
    for s in sizes:
        cloud = figures[s]["preflight"] - figures[s]["offline plan"]
        print(f"{s} nodes: preflight / offline plan = {figures[s]['preflight'] / figures[s]['offline plan']:.2f} "
              f"(the cloud checks add {cloud:.2f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
