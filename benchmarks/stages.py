"""Benchmark: the stage runner's own cost on a rerun of a converged site, on real local test hosts.

For sites of 3 and 10 hosts (the bastion, one RKE2 server, the rest agents; sizes with --sizes) it runs
`aiinfn up`'s stages once to converge (tests/support/stages.py: the Pulumi seam in memory, the test hosts as
the cloud's servers, the small real playbooks of the stage tests), then reruns every stage and reports:

  total        the rerun, wall clock, all six stages
  ansible      time inside ansible-playbook (the bootstrap stage's playbook)
  kubeconfig   the kubeconfig stage: one SSH through the bastion, the rewrite, the secret handed to the stack
  overhead     total - ansible: what the runner adds (live inventory match, ssh_config, inventory render,
               state file, kubeconfig fetch)

and the ratio overhead(largest) / overhead(smallest). The playbook is not site.yml (benchmarks/bootstrap.py
times that): what is measured is the runner around it. Hosts are systemd-nspawn containers on this machine.

Usage (root; about 3 minutes): python benchmarks/stages.py [--sizes 3,10]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support" / "hosts"))
sys.path.insert(0, str(ROOT / "tests" / "support"))
_BIN = str(Path(sys.executable).parent)
os.environ["PATH"] = _BIN + os.pathsep + os.environ.get("PATH", "")

import hostlib  # noqa: E402
import image  # noqa: E402
import stages as support  # noqa: E402

from aiinfn.config.loader import load_site  # noqa: E402
from aiinfn.planning import make_plan  # noqa: E402
from aiinfn.stages import runner  # noqa: E402
from aiinfn.stages.site import SiteRun  # noqa: E402


def measure(n: int, work: Path) -> dict[str, float]:
    agents = n - 2
    names = support.node_names(agents)
    hosts = hostlib.start_hosts(names)
    try:
        kube = hosts.path("k8s-server-01", "/etc/rancher/rke2/rke2.yaml")
        kube.parent.mkdir(parents=True, exist_ok=True)
        kube.write_text(support.RKE2_YAML)
        env = load_site(support.site_env(work, agents, name=f"bench{n}"))
        plan = make_plan(env)
        stack = support.RecordingStack(f"bench{n}")
        books = support.playbooks(work / "playbooks")

        def once() -> tuple[float, SiteRun]:
            site = SiteRun(
                env_ref=f"bench{n}", environment=env, plan=plan, stack_name=f"bench{n}", state_dir=work / f"state{n}",
                reporter=support.ListReporter(), make_stack=lambda: stack,
                list_servers=lambda: support.servers(plan, hosts.address, names), confirm=lambda q: True,
                yes=True, ssh_user="root", identity=image.ensure_key(),
                bastion_proxy_command=hosts.proxy_command("bastion-01"), playbooks=books,
            )
            t = time.monotonic()
            results = runner.run(list(runner.STAGES), site.steps(), site.reporter, site.state_dir,
                                 resume=lambda s: s)
            took = time.monotonic() - t
            site.timings["kubeconfig"] = next(r.seconds for r in results if r.stage == "kubeconfig")
            return took, site

        once()  # converge: first contact, keys pinned, the stack applied
        total, site = once()
        ansible = site.timings.get("bootstrap", 0.0) + site.timings.get("drain", 0.0)
        return {"total": total, "ansible": ansible, "kubeconfig": site.timings["kubeconfig"],
                "overhead": total - ansible}
    finally:
        hosts.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="3,10", help="hosts per site, bastion included (comma-separated)")
    args = ap.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    if min(sizes) < 3:
        raise SystemExit("--sizes: at least 3 hosts (bastion, server, one agent)")
    rows = {}
    with tempfile.TemporaryDirectory(prefix="aiinfn-bench-stages-") as tmp:
        for n in sizes:
            rows[n] = measure(n, Path(tmp))
    print(f"{'hosts':>5}  {'total s':>8}  {'ansible s':>9}  {'kubeconfig s':>12}  {'overhead s':>10}")
    for n, r in rows.items():
        print(f"{n:>5}  {r['total']:>8.2f}  {r['ansible']:>9.2f}  {r['kubeconfig']:>12.2f}  {r['overhead']:>10.2f}")
    lo, hi = rows[min(rows)], rows[max(rows)]
    print(f"overhead {max(rows)} / {min(rows)} hosts: {hi['overhead'] / lo['overhead']:.2f}; "
          f"overhead share of the rerun: {lo['overhead'] / lo['total']:.0%} ({min(rows)} hosts), "
          f"{hi['overhead'] / hi['total']:.0%} ({max(rows)} hosts)")


if __name__ == "__main__":
    main()
