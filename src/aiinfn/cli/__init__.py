"""The `aiinfn` command: a thin typer layer over the library.

Every failure is one line on stderr naming the file, field or resource, with a non-zero exit code:
2 for a broken environment, 3 for a plan that cannot be built, 4 for a missing external tool,
1 for other operational errors. Set AIINFN_DEBUG=1 to see tracebacks of unexpected errors.
"""

from __future__ import annotations

import os
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from ..errors import AiinfnError
from ..serialize import json_dump

app = typer.Typer(
    name="aiinfn",
    help="Build and run the AI_INFN federated GPU platform: plan offline, then pulumi up per site.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
out = Console()
err = Console(stderr=True)

EnvArg = Annotated[str, typer.Argument(help="environment name under environments/ (e.g. cnaf) or a YAML path")]


def _version(value: bool) -> None:
    if value:
        from .. import __version__

        out.print(f"aiinfn {__version__}", highlight=False)
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """Build and run the AI_INFN federated GPU platform: plan offline, then pulumi up per site."""


class OutputFormat(StrEnum):
    table = "table"
    json = "json"


@app.command()
def validate(env: EnvArg) -> None:
    """Check an environment file (schema and cross-field rules) without planning."""
    from ..config.loader import display, load, resolve
    from ..config.models import Environment

    path = resolve(env)
    from . import federation

    federation.validate(path, err)  # a federation: every mismatch, one line each
    environment = load(path)
    if isinstance(environment, Environment):
        nodes = sum(1 for _ in _nodes(environment))
        what = f"site {environment.name!r}, {nodes} nodes"
    else:
        what = f"{environment.kind} {environment.name!r} over {', '.join(environment.site_environments())}"
    out.print(f"[green]ok[/green] {display(path)}: {what}", soft_wrap=True)


def _nodes(environment: Any) -> Any:
    from ..planning.nodes import inventory

    return inventory(environment)


@app.command()
def plan(
    env: EnvArg,
    output: Annotated[
        OutputFormat, typer.Option("--output", "-o", help="table (default) or json")
    ] = OutputFormat.table,
    build_dir: Annotated[
        Path | None, typer.Option(help="where build/<env>/ is written (default: the project's build/)")
    ] = None,
    stack: Annotated[str | None, typer.Option(help="stack name (default: the environment's name)")] = None,
    site: Annotated[
        str | None, typer.Option(help="for an event: plan only its stack at this site (default: every site)")
    ] = None,
) -> None:
    """Plan offline (Pulumi mock runtime): resource tree, capacity, and build/<env>/ artifacts.

    A site plans its own stack; an event plans its stack at each of its sites (build/<event>-<site>/);
    a federation plans the federation stack.
    """
    from .. import preview
    from ..config.loader import default_build_dir

    build_dir = build_dir or default_build_dir()
    sites: list[str | None] = [site] if site else [*preview.event_sites(env)] or [None]
    if stack is not None and len(sites) > 1:
        raise typer.BadParameter("--stack names one stack: add --site for an event over several sites")
    if output is OutputFormat.json:
        docs = []
        for s in sites:
            report = preview.build(env, stack=stack, site=s)
            preview.write(report, build_dir)
            docs.append(report.document())
        sys.stdout.write(json_dump(docs[0] if len(docs) == 1 else docs) + "\n")
        return
    for s in sites:
        with err.status(f"planning {env}{f' at {s}' if s else ''} offline ..."):
            report = preview.build(env, stack=stack, site=s)
            where = preview.write(report, build_dir)
        _print_tree(report)
        if report.scope == "site":
            _print_capacity(report)
        elif report.scope == "event":
            _print_event(report)
        else:
            from . import federation

            federation.print_plan(report, out)
        summary = report.summary()
        out.print(
            f"\n[bold]{summary['resources']}[/bold] resources ({summary['custom_resources']} cloud resources, "
            f"{summary['components']} components), {summary['nodes']} nodes, {len(summary['protected'])} protected; "
            f"artifacts in [cyan]{where}[/cyan]"
        )
        if report.missing_secrets:
            from ..config.loader import project_root

            keys = ", ".join(report.missing_secrets)
            absent = not (project_root() / f"Pulumi.{report.stack}.yaml").is_file()
            said = (f"stack {report.stack!r} has no stack file yet (Pulumi.{report.stack}.yaml: `aiinfn new-site` "
                    "writes one) and sets none of" if absent else f"stack {report.stack!r} does not set")
            err.print(
                f"[yellow]note[/yellow]: {said} {keys}; before `pulumi up` run "
                f"`pulumi config set --secret aiinfn:<name> ...` for each", soft_wrap=True
            )


def _print_tree(report: Any) -> None:
    regs = report.run.registrations
    children: dict[str, list[Any]] = {}
    for r in regs:
        children.setdefault(r.parent, []).append(r)
    roots = [r for r in regs if not r.parent or r.parent.split("::")[2] == "pulumi:pulumi:Stack"]

    def short(t: str) -> str:
        return t.split(":")[-1]

    def count(r: Any) -> int:
        return sum(1 + count(c) for c in children.get(r.urn, []))

    def add(branch: Tree, r: Any) -> None:
        kids = sorted(children.get(r.urn, []), key=lambda c: (c.custom, c.name))
        comps = [c for c in kids if not c.custom]
        custom = [c for c in kids if c.custom]
        flags = []
        protected = sum(1 for c in custom if c.protect)
        if protected:  # the protected resources themselves, not the whole component
            flags.append(f"[red]{protected} protected[/red]")
        label = f"[bold]{short(r.type)}[/bold] {r.name} [dim]({count(r)})[/dim] " + " ".join(flags)
        node = branch.add(label.rstrip())
        if custom:
            by_type: dict[str, int] = {}
            for c in custom:
                by_type[short(c.type)] = by_type.get(short(c.type), 0) + 1
            node.add(", ".join(f"{t} x{n}" if n > 1 else t for t, n in by_type.items()))
        for c in comps:
            add(node, c)

    where = (f"site {report.plan.env.site.name}" if report.scope != "federation"
             else f"sites {', '.join(report.env.site_environments())}")
    tree = Tree(f"[bold]stack {report.stack}[/bold] ({report.scope} {report.env.name}, {where})")
    for r in sorted(roots, key=lambda r: (r.custom, r.name)):
        add(tree, r)
    out.print(tree)


def _print_capacity(report: Any) -> None:
    table = Table(title="Accelerator capacity", title_justify="left")
    rows = report.capacity()
    widest = max((len(r["kind"]) for r in rows), default=4)
    for col in ("kind", "resource", "devices", "units", "nodes", "guaranteed", "shared"):
        # never cut: the kind (A100-80GB/1g.10gb, its MIG profile) keeps its width, the rest fold
        table.add_column(col, justify="right" if col in ("devices", "units", "shared") else "left",
                         overflow="fold", min_width=widest if col == "kind" else None, no_wrap=col == "kind")
    for row in rows:
        guaranteed = ", ".join(f"{p} {n}" for p, n in row["guaranteed"].items()) or "-"
        table.add_row(
            row["kind"],
            row["resource"],
            str(row["devices"]),
            str(row["units"]),
            str(len(row["nodes"])),
            guaranteed,
            str(row["shared"]),
        )
    out.print(table)
    _print_queues(report)


def _print_event(report: Any) -> None:
    ev = report.event()
    kinds = ", ".join(f"{n}x {k}" for k, n in ev["units"].items()) or "no accelerators"
    out.print(
        f"event [bold]{ev['name']}[/bold] at {ev['site']}: {ev['participants']} participants -> {kinds}; "
        f"{ev['cpu']:g} CPU, {ev['memory_gb']:g} GB; {ev['placeholders']} placeholders; namespace {ev['namespace']}"
    )
    if ev["shortfall"]:
        err.print(f"[yellow]note[/yellow]: {ev['shortfall']} participants get no accelerator at any site")


def _print_queues(report: Any) -> None:
    """Kueue queues with their guaranteed units, and the JupyterHub profiles with who sees them."""
    from ..services import jupyterhub
    from ..services.kueue import INTERACTIVE_QUEUE, PRIORITIES

    env = report.env
    if env.projects:
        queues = Table(title="Kueue queues (cohort aiinfn)", title_justify="left")
        for col in ("queue", "namespace", "guaranteed", "borrows"):
            queues.add_column(col, overflow="fold")
        shared = ", ".join(f"{n}x {k}" for k, n in report.plan.shared_pool.items() if n) or "-"
        queues.add_row(INTERACTIVE_QUEUE, jupyterhub.NAMESPACE, f"{shared} + all CPU/memory", "yes")
        for q in report.plan.quotas:
            units = ", ".join(f"{n}x {k}" for k, n in q.nominal.items() if n) or "-"
            queues.add_row(q.project, q.namespace, units, "yes" if q.borrowing else "no")
        out.print(queues)
        out.print(f"priorities: {', '.join(f'{k} {v}' for k, v in PRIORITIES.items())}")
    if env.services.jupyterhub is not None:
        allowed = jupyterhub.allowed_groups(report.plan)
        shown = [f"{slug}" + (f" ({', '.join(g)} only)" if g else "") for slug, g in allowed.items()]
        out.print(f"JupyterHub profiles: {'; '.join(shown)}")


@app.command("list")
def list_envs() -> None:
    """List the shipped environments, sorted, with what each is (site, event, federation)."""
    from ..config.loader import environment_kinds, resolve

    kinds = environment_kinds()
    width = max((len(n) for n in kinds), default=0)
    for name in sorted(kinds):
        # environments/example/ holds the example of every field: not a site to deploy
        what = f"example {kinds[name]}" if resolve(name).parent.name == "example" else kinds[name]
        out.print(f"{name:<{width}}  {what}", highlight=False)


def _register_live_commands() -> None:
    from . import accounting, adopt, bootstrap, diff, event, fl, openstack, site, status, up

    accounting.register(app)
    adopt.register(app)
    site.register(app)
    diff.register(app)
    openstack.register(app)
    bootstrap.register(app)
    fl.register(app)
    event.register(app)
    up.register(app)
    status.register(app)


_register_live_commands()


def main() -> None:
    try:
        app()
    except AiinfnError as e:
        err.print(f"[red]error[/red]: {escape(str(e))}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except Exception as e:  # pragma: no cover - last resort, must never print a traceback
        if os.environ.get("AIINFN_DEBUG"):
            raise
        err.print(f"[red]internal error[/red]: {type(e).__name__}: {escape(str(e))} (set AIINFN_DEBUG=1 for details)")
        sys.exit(70)

