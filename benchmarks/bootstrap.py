"""Benchmark: `site.yml` and `add-node.yml` on real local test hosts (tests/support/hosts/).

For clusters of 1, 3 and 10 hosts (one RKE2 server, the rest agents; sizes with --sizes) it times, through
aiinfn's ansible-runner wrapper (what `aiinfn bootstrap` runs):

  site.yml            first converge of every host
  site.yml rerun      the same again: nothing to change
  add-node.yml        one more agent joins the cluster (an extra host, left out of the first runs)

and prints the ratio add-node(largest) / add-node(smallest cluster above 1 host): adding a node should cost the
same whatever the cluster size (target: at most 1.2). Stand-ins as in the tests: RKE2 and sts-wire releases,
NVIDIA packages and GPUs; the hosts are systemd-nspawn containers on this machine, so absolute times are this
machine's (2 cores), not a cloud's.

Usage (root; about 10 minutes): python benchmarks/bootstrap.py [--sizes 1,3,10]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support" / "hosts"))

import hostlib  # noqa: E402
import site_bench  # noqa: E402

ENV = """name: bench-{n}
site: {{name: bench, cloud: unused, image: debian-12, external_network: public, domain: bench.test}}
bootstrap: {{keep_bootstrap_account: true}}  # the benchmark logs in as the shared account
network: {{cidr: 10.254.0.0/24, pod_cidr: 10.72.0.0/16, service_cidr: 10.73.0.0/16}}
flavors:
  cpu: {{vcpus: 2, ram_gb: 4, disk_gb: 20}}
node_pools:
  server: {{role: server, flavor: cpu, count: 1, name_prefix: k8s-server}}
  agent: {{role: agent, flavor: cpu, count: {agents}, name_prefix: k8s-agent}}
iam:
  issuer: https://iam.bench.test/
  client_id: platform
  client_secret: iam-client-secret
  user_groups: [bench/users]
  admin_groups: [bench/admins]
"""


def timed(label: str, playbook: str, inv: dict, limit: str) -> float:
    t = time.monotonic()
    run = hostlib.run_playbook(playbook, inv, extravars=site_bench.SECRETS, limit=limit)
    took = time.monotonic() - t
    if run.rc != 0:
        raise SystemExit(f"{label}: {playbook} failed: {run.failed}")
    return took


def measure(n: int, work: Path) -> dict[str, float]:
    env = work / f"bench-{n}.yaml"
    env.write_text(ENV.format(n=n, agents=n))  # n-1 agents in the cluster, one more to add
    plan = site_bench.plan(env)
    names = [node.name for node in plan.nodes]
    new = names[-1]
    hosts = hostlib.start_hosts(names, prefix="bb", net="10.254.77")
    try:
        site_bench.prepare_hosts(plan, hosts, work)
        inv = site_bench.inventory(plan, hosts, site_bench.artifacts(work / f"artifacts-{n}"))
        return {
            "site": timed(f"{n} hosts", "site.yml", inv, f"!{new}"),
            "rerun": timed(f"{n} hosts", "site.yml", inv, f"!{new}"),
            "add": timed(f"{n} hosts", "add-node.yml", inv, new),
        }
    finally:
        hosts.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1,3,10")
    a = ap.parse_args()
    sizes = [int(x) for x in a.sizes.split(",")]
    results = {}
    with tempfile.TemporaryDirectory(prefix="aiinfn-bench-") as tmp:
        for n in sizes:
            results[n] = measure(n, Path(tmp))
            print(f"{n} hosts measured", file=sys.stderr)
    print("\nbootstrap on local test hosts (seconds, one run each)")
    print(f"{'hosts':>6} {'site.yml':>10} {'rerun':>10} {'add-node':>10}")
    for n, r in results.items():
        print(f"{n:>6} {r['site']:>10.1f} {r['rerun']:>10.1f} {r['add']:>10.1f}")
    many = [n for n in sizes if n > 1]
    if len(many) >= 2:
        small, large = min(many), max(many)
        print(f"add-node on {large} hosts / on {small} hosts = {results[large]['add'] / results[small]['add']:.2f}"
              " (target <= 1.2)")
    for n, r in results.items():
        print(f"{n} hosts: rerun / first run = {r['rerun'] / r['site']:.2f}")


if __name__ == "__main__":
    main()
