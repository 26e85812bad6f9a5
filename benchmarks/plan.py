"""Benchmark: whole-process time and peak memory of `aiinfn plan`, against a bare Pulumi program.

For generated environments of 10, 100 and 500 nodes, it runs `aiinfn plan <file>` as a fresh
process (what an operator waits for) and a *bare* program that registers the same resources under
the same stock Pulumi mock runtime with no toolkit code: it creates every resource of the
toolkit's plan.json with the provider SDKs' typed classes and literal inputs (same types, names,
parents, inputs, options; a string equal to another resource's mocked ID becomes a reference to
it) and exports the same stack outputs. The ratio toolkit/bare is the toolkit's overhead (loading,
validation, planning, rendering, recording, writing plan.json and artifacts). Also times
`aiinfn plan cnaf`.

Usage: python benchmarks/plan.py [--runs 3] [--sizes 10,100,500]
Peak memory is the child's own maximum RSS (os.wait4), not the benchmark's.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

BARE_PROGRAM = r'''
# A bare Pulumi program: the provider SDKs' typed resource classes, literal inputs, no toolkit code.
import importlib, json, re, sys
import pulumi
from pulumi.runtime import mocks

class Mocks(mocks.Mocks):
    def new_resource(self, args):
        return args.name + "-0000beef", dict(args.inputs)
    def call(self, args):
        return {"id": "x"}, []

SNAKE = re.compile(r"(?<!^)(?=[A-Z])")
PLAIN_KEY = re.compile(r"^[a-z][A-Za-z0-9]*$")

def snake(value):
    # typed nested args take snake_case keys; free-form maps (metadata, extra specs) keep theirs
    if isinstance(value, dict):
        if all(PLAIN_KEY.match(k) for k in value):
            return {SNAKE.sub("_", k).lower(): snake(v) for k, v in value.items()}
        return dict(value)
    if isinstance(value, list):
        return [snake(v) for v in value]
    return value

K8S_GROUPS = {"helm.sh": "helm", "rbac.authorization.k8s.io": "rbac", "networking.k8s.io": "networking",
              "storage.k8s.io": "storage", "apiextensions.k8s.io": "apiextensions"}

def cls_for(token):
    # the SDK class of a type token; None for custom resources no SDK class describes
    pkg, mod, name = token.split(":")
    if pkg == "pulumi" and mod == "providers":
        return importlib.import_module("pulumi_" + name).Provider
    if pkg == "kubernetes":
        group, _, version = mod.rpartition("/")
        group = K8S_GROUPS.get(group, group or "core")
        try:
            return getattr(importlib.import_module(f"pulumi_kubernetes.{group}.{version}"), name)
        except (ImportError, AttributeError):
            return None
    sub = mod.split("/")[0]
    module = importlib.import_module("pulumi_" + pkg + ("" if sub == "index" else "." + sub))
    return getattr(module, name)

REF = re.compile(r"^(.+)-[0-9a-f]{8}$")

def refs(value):
    # a string that is another resource's (mocked) ID is a reference to it, as in a real program
    if isinstance(value, str):
        m = REF.match(value)
        if m and m.group(1) in by_name:
            return make(by_name[m.group(1)]).id
        return value
    if isinstance(value, dict):
        return {k: refs(v) for k, v in value.items()}
    if isinstance(value, list):
        return [refs(v) for v in value]
    return value

doc = json.load(open(sys.argv[1]))
pulumi.runtime.set_mocks(Mocks(), project="aiinfn", stack=doc["stack"], preview=False)
resources = {r["urn"]: r for r in doc["resources"]}
by_name = {r["name"]: r["urn"] for r in doc["resources"] if r["custom"]}
made = {}

def make(urn):
    if urn in made:
        return made[urn]
    r = resources[urn]
    parent = make(r["parent"]) if r["parent"] in resources else None
    opts = pulumi.ResourceOptions(parent=parent, protect=r["protect"], retain_on_delete=r["retain_on_delete"],
                                  ignore_changes=r["ignore_changes"] or None)
    cls = cls_for(r["type"]) if r["custom"] else None
    if cls is not None:
        inputs = snake(refs(r["inputs"]))
        inputs.pop("api_version", None), inputs.pop("kind", None)
        res = cls(r["name"], opts=opts, **inputs)
    elif r["custom"]:
        res = pulumi.CustomResource(r["type"], r["name"], dict(refs(r["inputs"])), opts)
    else:
        res = pulumi.ComponentResource(r["type"], r["name"], None, opts)
    made[urn] = res
    return res

@pulumi.runtime.test
def run():
    for urn in resources:
        make(urn)
    for key, value in doc["outputs"].items():  # the same stack outputs, as literal values
        pulumi.export(key, value)
    return pulumi.Output.all(*[m.urn for m in made.values()], pulumi.Output.from_input(doc["outputs"]))

run()
print(len(made))
'''


def throwaway_ssh_key() -> str:
    """An OpenSSH ed25519 public key line (random key bytes, no private half): what site.ssh_public_key needs
    to validate; the benchmark plans only, so no one ever logs in with it."""
    def string(b: bytes) -> bytes:
        return struct.pack(">I", len(b)) + b

    blob = string(b"ssh-ed25519") + string(os.urandom(32))
    return f"ssh-ed25519 {base64.b64encode(blob).decode()} aiinfn-benchmark"


def generated_environment(directory: Path, nodes: int) -> Path:
    """A site of `nodes` VMs: 3 servers, nfs, backup, bastion, then agents and T4 nodes half and half."""
    rest = nodes - 6
    agents = rest // 2
    gpus = rest - agents
    text = f"""extends: {ROOT / "environments" / "base.yaml"}
name: bench-{nodes}
site:
  name: bench
  cloud: bench
  image: ubuntu-24.04-server
  external_network: public
  domain: bench.example.org
  manage_flavors: true
  ssh_public_key: "{throwaway_ssh_key()}"
bootstrap: {{keep_bootstrap_account: true}}  # nothing is bootstrapped: a planning benchmark
network:
  cidr: 10.100.0.0/16
flavors:
  gpu-t4x1: {{vcpus: 8, ram_gb: 32, disk_gb: 80, accelerators: {{T4: 1}}}}
node_pools:
  server: {{role: server, flavor: cpu-8c-32g, count: 3}}
  agent: {{role: agent, flavor: cpu-16c-64g, count: {agents}, ingress: true}}
  t4: {{role: gpu, flavor: gpu-t4x1, count: {gpus}, accelerators: {{model: T4, per_node: 1}}}}
  nfs: {{role: nfs, flavor: cpu-8c-32g, nodes: [nfs-01]}}
  backup: {{role: backup, flavor: cpu-4c-8g, nodes: [backup-01]}}
  bastion: {{role: bastion, flavor: cpu-4c-8g, nodes: [bastion-01]}}
storage:
  nfs: {{size_gb: 1000}}
projects:
  a: {{iam_group: bench/a, shares: {{T4: 0.5}}}}
  b: {{iam_group: bench/b, shares: {{T4: 0.5}}}}
"""
    path = directory / f"bench-{nodes}.yaml"
    path.write_text(text)
    return path


def measure(cmd: list[str], cwd: Path) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one fresh process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        err = proc.stderr.read().decode() if proc.stderr else ""
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {err.strip()}")
    return elapsed, usage.ru_maxrss / 1024


def series(cmd: list[str], cwd: Path, runs: int) -> tuple[float, float]:
    samples = [measure(cmd, cwd) for _ in range(runs)]
    return statistics.median(s[0] for s in samples), max(s[1] for s in samples)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--sizes", default="10,100,500")
    args = ap.parse_args()
    aiinfn = str(BIN / "aiinfn")
    print(f"{'environment':<14}{'resources':>10}{'toolkit s':>11}{'bare s':>9}{'ratio':>7}"
          f"{'toolkit MB':>12}{'bare MB':>9}{'ratio':>7}")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        bare = work / "bare.py"
        bare.write_text(BARE_PROGRAM)
        cases: list[tuple[str, Path]] = [("cnaf", ROOT / "environments" / "cnaf.yaml")]
        cases += [(f"{n} nodes", generated_environment(work, int(n))) for n in args.sizes.split(",")]
        for label, env in cases:
            build = work / "build"
            plan_cmd = [aiinfn, "plan", str(env), "--build-dir", str(build), "--output", "json"]
            t_tool, m_tool = series(plan_cmd, work, args.runs)
            doc_path = next(build.glob("*/plan.json"))
            resources = len(json.loads(doc_path.read_text())["resources"])
            t_bare, m_bare = series([sys.executable, str(bare), str(doc_path)], work, args.runs)
            print(f"{label:<14}{resources:>10}{t_tool:>11.2f}{t_bare:>9.2f}{t_tool / t_bare:>7.2f}"
                  f"{m_tool:>12.0f}{m_bare:>9.0f}{m_tool / m_bare:>7.2f}")
            for f in build.glob("*/plan.json"):
                f.unlink()


if __name__ == "__main__":
    main()
