"""`aiinfn adopt SITE --cloud NAME [--mapping FILE]`: bring existing VMs under aiinfn without rebuilding.

It plans the site offline, lists the live project (read only: nothing in the cloud changes), matches
servers, ports, volumes, networks and security groups to the plan's resources, prints every
difference with its effect on the next `pulumi up` (replacements first), then writes
build/<site>/adopt/import.json (`pulumi import --file`), build/<site>/adopt/report.json and the
stack's ``aiinfn:imports`` (what makes the next `aiinfn up` / `pulumi up` adopt). Exit 0 when
nothing would be replaced, 2 with ``--exit-code`` when something would, 1 when the cloud cannot be
read or the mapping is wrong.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

out = Console()
err = Console(stderr=True)


class TableOrJson(StrEnum):
    table = "table"
    json = "json"


def _short(t: str) -> str:
    return t.rsplit(":", 1)[-1]


def _value(v: object) -> str:
    if v is None:
        return "(none)"
    if isinstance(v, list):
        return ", ".join(str(x) for x in v) or "(none)"
    return str(v)


def adopt(
    env: Annotated[str, typer.Argument(help="site environment under environments/ (e.g. cnaf) or a YAML path")],
    cloud: Annotated[
        str | None, typer.Option("--cloud", help="clouds.yaml entry (default: the environment's site.cloud)")
    ] = None,
    mapping: Annotated[
        Path | None,
        typer.Option("--mapping", help="YAML naming live resources for hand-picked names (servers, volumes, "
                     "security_groups, network, router)"),
    ] = None,
    output: Annotated[TableOrJson, typer.Option("--output", "-o", help="table or json")] = TableOrJson.table,
    build_dir: Annotated[Path | None, typer.Option(help="where <site>/adopt/ is written (default: the project's "
                                                   "build/)")] = None,
    stack: Annotated[str | None, typer.Option(help="stack name (default: the environment's name)")] = None,
    write_stack: Annotated[
        bool, typer.Option("--write-stack/--no-write-stack", help="set aiinfn:imports in Pulumi.<stack>.yaml")
    ] = True,
    exit_code: Annotated[bool, typer.Option("--exit-code", help="exit 2 if anything would be replaced")] = False,
    timeout: Annotated[float, typer.Option("--timeout", min=0.5, help="seconds each API request may take")] = 10.0,
) -> None:
    """Adopt a site's existing servers, volumes, ports, networks and security groups (read only)."""
    from ..adopt import adopt as run
    from ..config.loader import default_build_dir
    from ..serialize import json_dump

    with err.status(f"adopting {env}: planning offline, then listing the cloud ..."):
        result = run(env, cloud, mapping=mapping, build_dir=build_dir or default_build_dir(), stack=stack,
                     write_stack=write_stack, timeout=timeout)
    a = result.adoption
    if output is TableOrJson.json:
        sys.stdout.write(json_dump(a.document()) + "\n")
    else:
        adopted = Table(title=f"adopted ({len(a.adopted)})", title_justify="left")
        for col in ("resource", "live", "id", "matched by"):
            adopted.add_column(col, overflow="fold")
        for r in a.adopted:
            adopted.add_row(escape(f"{_short(r.type)} {r.name}"), escape(r.live_name), escape(r.id), r.how)
        out.print(adopted)
        if a.differences:
            diffs = Table(title=f"differences ({len(a.differences)}, {len(a.replacements())} force a replacement)",
                          title_justify="left")
            for col in ("resource", "attribute", "live", "plan", "effect", "why"):
                diffs.add_column(col, overflow="fold")
            for d in sorted(a.differences, key=lambda d: (not d.forces_replacement, d.resource, d.attribute)):
                effect = f"[red]{d.effect}[/red]" if d.forces_replacement else d.effect
                diffs.add_row(escape(f"{_short(d.type)} {d.resource}"), escape(d.attribute), escape(_value(d.live)),
                              escape(_value(d.plan)), effect, escape(d.why))
            out.print(diffs)
        if a.missing:
            out.print(f"not found in the cloud, `pulumi up` creates them ({len(a.missing)}): "
                      + escape(", ".join(f"{_short(t)} {n}" for t, n in a.missing)), soft_wrap=True)
        for s in a.unmatched_servers:
            err.print(f"[yellow]note[/yellow]: server {escape(s)} is tagged for site {a.site} but matches no node: "
                      "left alone (name it in --mapping to adopt it)", soft_wrap=True)
        where = f"; stack file {result.stack_file.name} sets aiinfn:imports" if result.stack_file else ""
        out.print(f"[bold]{len(a.adopted)}[/bold] to adopt, {len(a.missing)} to create, {len(a.differences)} "
                  f"differences, [bold]{len(a.replacements())}[/bold] forcing a replacement; import file "
                  f"[cyan]{result.import_path}[/cyan]{where}. Nothing in the cloud was changed.", soft_wrap=True)
    if exit_code and a.replacements():
        raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    app.command("adopt")(adopt)
