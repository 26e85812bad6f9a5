"""The offline plan: environment -> planning -> Pulumi program under the mock runtime -> plan.json.

``build(ref)`` does steps 1-3 of the flow of data without a cloud, credentials or the Pulumi CLI,
and ``write(report, build_dir)`` puts plan.json and every rendered artifact under build/<env>/.
"""

from __future__ import annotations

import json
import shutil
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import __version__, versions
from .config import load, project_root, resolve
from .config.loader import display
from .config.models import Environment
from .config.secrets import secret_refs
from .offline import ProgramRun, redact, run_program
from .planning import Plan, make_plan
from .render import artifacts

PROJECT = "aiinfn"
OFFLINE_SECRET = "offline-plan-placeholder"


def stack_secrets(root: Path, stack: str) -> set[str] | None:
    """Config keys set in Pulumi.<stack>.yaml (None when the stack file does not exist)."""
    from ruamel.yaml import YAML

    f = root / f"Pulumi.{stack}.yaml"
    if not f.is_file():
        return None
    data = YAML(typ="safe", pure=True).load(f.read_text()) or {}
    cfg = data.get("config") or {}
    return {str(k).split(":", 1)[-1] for k in cfg}


@dataclass
class Preview:
    env: Environment
    env_file: Path
    stack: str
    plan: Plan
    run: ProgramRun
    artifacts: dict[str, str]
    missing_secrets: list[str]

    def resources(self) -> list[dict[str, Any]]:
        out = []
        for r in sorted(self.run.registrations, key=lambda r: r.urn):
            out.append(
                {
                    "urn": r.urn,
                    "type": r.type,
                    "name": r.name,
                    "parent": r.parent or None,
                    "custom": r.custom,
                    "inputs": redact(r.inputs),
                    "protect": r.protect,
                    "retain_on_delete": r.retain_on_delete,
                    "ignore_changes": r.ignore_changes,
                    "replace_on_changes": r.replace_on_changes,
                    "delete_before_replace": r.delete_before_replace,
                    "depends_on": sorted(r.depends_on),
                    "aliases": r.aliases,
                }
            )
        return out

    def capacity(self) -> list[dict[str, Any]]:
        rows = []
        for key, cap in self.plan.capacity.items():
            rows.append(
                {
                    "kind": key,
                    "model": cap.kind.model,
                    "mig_profile": cap.kind.profile,
                    "resource": cap.kind.resource,
                    "memory_gb": cap.kind.memory_gb,
                    "devices": cap.devices,
                    "units": cap.units,
                    "nodes": cap.nodes,
                    "guaranteed": {q.project: q.nominal[key] for q in self.plan.quotas if key in q.nominal},
                    "shared": self.plan.shared_pool.get(key, cap.units),
                }
            )
        return rows

    def summary(self) -> dict[str, Any]:
        regs = self.run.registrations
        custom = [r for r in regs if r.custom]
        roles = Counter(n.role.value for n in self.plan.nodes)
        return {
            "resources": len(regs),
            "custom_resources": len(custom),
            "components": len(regs) - len(custom),
            "by_type": dict(sorted(Counter(r.type for r in regs).items())),
            "nodes": len(self.plan.nodes),
            "nodes_by_role": dict(sorted(roles.items())),
            "accelerators": {k: c.units for k, c in self.plan.capacity.items()},
            "protected": sorted(r.urn for r in regs if r.protect),
            "missing_secrets": self.missing_secrets,
        }

    def document(self) -> dict[str, Any]:
        env = self.env
        ev = self.plan.event
        return {
            "toolkit": {"name": "aiinfn", "version": __version__},
            "environment": {
                "name": env.name,
                "file": display(self.env_file),
                "description": env.description,
                "site": env.site.name,
                "cloud": env.site.cloud,
                "event": env.event.name if env.event else None,
            },
            "stack": self.stack,
            "versions": {
                "kubernetes": versions.KUBERNETES,
                "rke2": versions.RKE2,
                "kueue_api": versions.KUEUE_API,
                "charts": {k: v[2] for k, v in versions.CHARTS.items()},
            },
            "resources": self.resources(),
            "outputs": redact(self.run.stack_outputs),
            "capacity": self.capacity(),
            "quotas": [
                {"project": q.project, "namespace": q.namespace, "iam_group": q.iam_group,
                 "priority": q.priority, "borrowing": q.borrowing, "nominal": q.nominal}
                for q in self.plan.quotas
            ],
            "event": None if ev is None else {
                "name": ev.event, "participants": ev.participants, "namespace": ev.namespace,
                "iam_group": ev.iam_group, "units": ev.units, "cpu": ev.cpu, "memory_gb": ev.memory_gb,
                "placeholders": ev.placeholders, "remaining": ev.remaining,
            },
            "host_placement": self.plan.host_fit.placements,
            "secrets": sorted(set(secret_refs(env).values())),
            "artifacts": sorted(self.artifacts),
            "summary": self.summary(),
        }


def build(ref: str | Path, *, stack: str | None = None, root: Path | None = None) -> Preview:
    root = root or project_root()
    env_file = resolve(ref, root)
    env = load(env_file, root=root)
    plan = make_plan(env)
    stack = stack or env.name
    refs = sorted(set(secret_refs(env).values()))
    # Offline, every referenced secret gets a placeholder (as a secret), so the program runs as it
    # would with `pulumi config set --secret`; the real values are never needed here.
    config: dict[str, Any] = {"aiinfn:environment": str(env_file.resolve())}
    # ... and the cluster's kubeconfig, so the plan shows the overlay too (a real stack gets it after
    # bootstrap: `pulumi config set --secret aiinfn:kubeconfig`).
    config.update({f"aiinfn:{k}": OFFLINE_SECRET for k in [*refs, "kubeconfig"]})
    run = run_program(
        root / "stacks" / "__main__.py",
        project=PROJECT,
        stack=stack,
        config=config,
        secret_keys=[f"aiinfn:{k}" for k in [*refs, "kubeconfig"]],
        node_cidr=str(env.network.cidr),
    )
    addresses = {e["name"]: e["fixed_ip"] for e in run.stack_outputs.get("inventory", [])}
    declared = stack_secrets(root, stack)
    missing = [k for k in refs if declared is not None and k not in declared]
    return Preview(env, env_file, stack, plan, run, artifacts(plan, addresses), missing)


def write(report: Preview, build_dir: Path) -> Path:
    """Write build/<env>/: plan.json and every artifact (the directory is replaced whole)."""
    out = build_dir / report.env.name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for rel, text in report.artifacts.items():
        p = out / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    (out / "plan.json").write_text(json.dumps(report.document(), indent=2, sort_keys=False) + "\n")
    return out
