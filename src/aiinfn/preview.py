"""The offline plan: environment -> planning -> Pulumi program under the mock runtime -> plan.json.

``build(ref)`` does steps 1-3 of the flow of data without a cloud, credentials or the Pulumi CLI, for
one stack of any scope (a site; an event at one of its sites; a federation), and ``write(report,
build_dir)`` puts plan.json and every rendered artifact under build/<stack>/. The same inputs give
byte-identical files.
"""

from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pulumi.runtime import rpc

from . import __version__, services, versions
from .config.loader import display, load, project_root, resolve
from .config.models import AnyEnvironment, Environment, Event, Federation
from .config.secrets import secret_refs
from .errors import ConfigError
from .offline import ProgramRun, redact, run_program
from .planning import Plan, make_plan
from .planning.events import EventPlan, make_event_plan
from .render.artifacts import bundle_artifacts, site_artifacts
from .serialize import json_dump
from .services import event as event_service
from .services import jupyterhub
from .services.bundle import Bundle
from .stacknames import event_stack_name, site_stack_name

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
    """One stack's offline plan."""

    env: AnyEnvironment
    env_file: Path
    stack: str
    #: site, event or federation
    scope: str
    #: the site's plan (site scope), or the plan of the site an event stack deploys to
    plan: Plan
    run: ProgramRun
    artifacts: dict[str, str]
    missing_secrets: list[str]
    bundles: list[Bundle] = field(default_factory=list)
    #: event scope: the event across its sites, and the site of this stack
    event_plan: EventPlan | None = None
    site: str | None = None

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
        roles = Counter(n.role.value for n in self.plan.nodes) if self.scope == "site" else Counter()
        return {
            "resources": len(regs),
            "custom_resources": len(custom),
            "components": len(regs) - len(custom),
            "by_type": dict(sorted(Counter(r.type for r in regs).items())),
            "nodes": sum(roles.values()),
            "nodes_by_role": dict(sorted(roles.items())),
            "accelerators": {k: c.units for k, c in self.plan.capacity.items()} if self.scope == "site" else {},
            "protected": sorted(r.urn for r in regs if r.protect),
            "missing_secrets": self.missing_secrets,
        }

    @property
    def build_key(self) -> str:
        """The folder under build/: the environment's name for a site or federation, the event stack's
        name (``<event>-<site>``) for an event."""
        return self.env.name if self.scope != "event" or self.site is None else event_stack_name(
            self.env.name, self.site)

    def nodes(self) -> list[dict[str, Any]]:
        """The site's nodes (a site stack's; an event stack owns none)."""
        if self.scope != "site":
            return []
        return [
            {
                "name": n.name, "pool": n.pool, "role": n.role.value, "flavor": n.flavor,
                "accelerator": n.accelerator, "accelerator_count": n.accelerator_count,
                "mig_config": n.mig_config, "labels": n.labels, "taints": [t.as_k8s() for t in n.taints],
            }
            for n in self.plan.nodes
        ]

    def profiles(self) -> list[dict[str, Any]]:
        """The JupyterHub profiles the stack gives, with the IAM groups that see each (None: everyone)."""
        if self.scope == "site" and self.plan.env.services.jupyterhub is not None:
            allowed = jupyterhub.allowed_groups(self.plan)
            return [{"slug": p["slug"], "display_name": p["display_name"], "description": p["description"],
                     "groups": allowed.get(p["slug"])} for p in jupyterhub.profiles(self.plan)]
        if self.scope == "event" and self.event_plan is not None and self.site is not None:
            ev = self.event_plan.event
            alloc = self.event_plan.allocations[self.site]
            groups = [ev.iam_group, *([ev.tutors_group] if ev.tutors_group else [])]
            return [{"slug": p["slug"], "display_name": p["display_name"], "description": p["description"],
                     "groups": groups} for p in event_service.profiles(ev, self.plan, alloc)]
        return []

    def environment(self) -> dict[str, Any]:
        env = self.env
        out: dict[str, Any] = {"name": env.name, "kind": env.kind, "file": display(self.env_file),
                               "description": env.description}
        if isinstance(env, Environment):
            out.update({"site": env.site.name, "cloud": env.site.cloud})
        else:
            out.update({"sites": list(env.site_environments()), "site": self.site})
        return out

    def event(self) -> dict[str, Any] | None:
        if self.event_plan is None or self.site is None:
            return None
        a = self.event_plan.allocations[self.site]
        return {
            "name": a.event, "site": a.site, "participants": a.participants, "namespace": a.namespace,
            "iam_group": a.iam_group, "units": a.units, "cpu": a.cpu, "memory_gb": a.memory_gb,
            "placeholders": a.placeholders, "remaining": a.remaining,
            "shortfall": self.event_plan.shortfall,
        }

    def document(self) -> dict[str, Any]:
        env = self.env
        return {
            "toolkit": {"name": "aiinfn", "version": __version__},
            "scope": self.scope,
            "environment": self.environment(),
            "stack": self.stack,
            "versions": {
                "kubernetes": versions.KUBERNETES,
                "rke2": versions.RKE2,
                "kueue_api": versions.KUEUE_API,
                "charts": {k: v[2] for k, v in versions.CHARTS.items()},
            },
            "resources": self.resources(),
            "outputs": redact(self.run.stack_outputs),
            "reads": sorted(self.run.mocks.read_stacks),
            "services": {b.service: sorted(i.key for i in b.items) for b in self.bundles},
            "nodes": self.nodes(),
            "capacity": self.capacity() if self.scope == "site" else [],
            "quotas": [
                {"project": q.project, "namespace": q.namespace, "iam_group": q.iam_group,
                 "priority": q.priority, "borrowing": q.borrowing, "nominal": q.nominal}
                for q in self.plan.quotas
            ] if self.scope == "site" else [],
            "profiles": self.profiles(),
            "event": self.event(),
            **({"federation": _federation_doc(env)} if isinstance(env, Federation) else {}),
            "host_placement": self.plan.host_fit.placements if self.scope == "site" else {},
            "secrets": sorted(set(secret_refs(env).values())),
            "artifacts": sorted(self.artifacts),
            "summary": self.summary(),
        }


def _federation_doc(env: Federation) -> dict[str, Any]:
    from .federation import describe

    return describe(env)


def build(
    ref: str | Path, *, stack: str | None = None, root: Path | None = None, site: str | None = None
) -> Preview:
    """The offline plan of one stack: ``ref``'s site stack, its event stack at ``site`` (an event's only
    site by default), or its federation stack."""
    root = root or project_root()
    env_file = resolve(ref, root)
    env = load(env_file, root=root)
    if isinstance(env, Environment):
        if site is not None:
            raise ConfigError(f"--site is for event files; {display(env_file)} is the site {env.name!r}")
        return _build_site(env, env_file, root, stack or env.name)
    if isinstance(env, Event):
        sites = env.site_environments()
        name = site or (next(iter(sites)) if len(sites) == 1 else None)
        if name is None or name not in sites:
            raise ConfigError(
                f"event {env.name!r} runs on {', '.join(sites)}: say which site's event stack to plan with --site"
                if name is None else f"event {env.name!r} does not run on {name!r} (sites: {', '.join(sites)})"
            )
        return _build_event(env, env_file, root, stack or event_stack_name(env.name, name), name)
    return _build_federation(env, env_file, root, stack or env.name)


def event_sites(ref: str | Path, root: Path | None = None) -> list[str]:
    """The sites an event file draws on (empty for a site or federation file)."""
    env = load(resolve(ref, root or project_root()), root=root)
    return list(env.site_environments()) if isinstance(env, Event) else []


def _run(root: Path, env: AnyEnvironment, env_file: Path, stack: str, scope: str, node_cidr: str,
         extra_secrets: list[str], references: dict[str, dict[str, Any]]) -> tuple[ProgramRun, list[str]]:
    refs = sorted(set(secret_refs(env).values()))
    # Offline, every referenced secret gets a placeholder (as a secret), so the program runs as it
    # would with `pulumi config set --secret`; the real values are never needed here.
    config: dict[str, Any] = {"aiinfn:environment": str(env_file.resolve()), "aiinfn:scope": scope}
    secrets = [*refs, *extra_secrets]
    config.update({f"aiinfn:{k}": OFFLINE_SECRET for k in secrets})
    run = run_program(
        root / "stacks" / "__main__.py",
        project=PROJECT,
        stack=stack,
        config=config,
        secret_keys=[f"aiinfn:{k}" for k in secrets],
        node_cidr=node_cidr,
        stack_references=references,
    )
    declared = stack_secrets(root, stack)
    # no stack file yet: every secret is still to be set (`aiinfn new-site` writes the file)
    missing = [k for k in refs if declared is None or k not in declared]
    return run, missing


def _build_site(env: Environment, env_file: Path, root: Path, stack: str) -> Preview:
    plan = make_plan(env)
    # ... and the cluster's kubeconfig, so the plan shows the overlay too (a real stack gets it after
    # bootstrap: `pulumi config set --secret aiinfn:kubeconfig`).
    run, missing = _run(root, env, env_file, stack, "site", str(env.network.cidr), ["kubeconfig"], {})
    addresses = {e["name"]: e["fixed_ip"] for e in run.stack_outputs.get("inventory", [])}
    bundles = services.site_bundles(plan)
    return Preview(env, env_file, stack, "site", plan, run, site_artifacts(plan, bundles, addresses), missing,
                   bundles)


def _site_outputs() -> dict[str, Any]:
    """What an event or federation stack reads of a site stack offline: its kubeconfig (a secret)."""
    return {"kubeconfig": {rpc._special_sig_key: rpc._special_secret_sig, "value": OFFLINE_SECRET}}


def _build_event(env: Event, env_file: Path, root: Path, stack: str, site: str) -> Preview:
    sites = env.site_environments()
    plans = {n: make_plan(e) for n, e in sites.items()}
    event_plan = make_event_plan(env, plans)
    references = {site_stack_name(site): _site_outputs()}
    run, missing = _run(root, env, env_file, stack, "event", "10.0.0.0/16", [], references)
    bundles = [event_service.bundle(env, plans[site], event_plan.allocations[site])]
    return Preview(env, env_file, stack, "event", plans[site], run, bundle_artifacts(bundles), missing, bundles,
                   event_plan, site)


def _build_federation(env: Federation, env_file: Path, root: Path, stack: str) -> Preview:
    sites = env.site_environments()
    plans = {n: make_plan(e) for n, e in sites.items()}
    from .federation import offline, site_bundles

    references = offline.references(env)
    run, missing = _run(root, env, env_file, stack, "federation", "10.0.0.0/16", [], references)
    per_site = site_bundles(env, plans)
    artifacts = {f"{n}/{k}": v for n, bs in per_site.items() for k, v in bundle_artifacts(bs).items()}
    return Preview(env, env_file, stack, "federation", plans[env.manager], run, artifacts, missing,
                   [b for bs in per_site.values() for b in bs])


def write(report: Preview, build_dir: Path) -> Path:
    """Write build/<build_key>/: plan.json and every artifact (the directory is replaced whole)."""
    out = build_dir / report.build_key
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for rel, text in report.artifacts.items():
        p = out / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    (out / "plan.json").write_text(json_dump(report.document()) + "\n")
    return out
