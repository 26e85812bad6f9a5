"""The live-cloud commands of `aiinfn`: ``preflight`` and ``inventory``.

``register(app)`` adds them to the main typer app (cli.py). Failures are AiinfnError subclasses, which
``cli.main`` prints as one line with their exit code: 1 for a cloud that cannot be used (missing
clouds.yaml entry, wrong password, unreachable endpoint), 2 for a broken environment. A preflight that
finds problems exits 1 after showing every check with its remedy.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

out = Console()
err = Console(stderr=True)

EnvArg = Annotated[str, typer.Argument(help="environment name under environments/ (e.g. cnaf) or a YAML path")]
CloudOpt = Annotated[
    str | None, typer.Option("--cloud", help="clouds.yaml entry (default: the environment's site.cloud)")
]
TimeoutOpt = Annotated[float, typer.Option("--timeout", min=0.5, help="seconds each API request may take")]


class TableOrJson(StrEnum):
    table = "table"
    json = "json"


class YamlOrJson(StrEnum):
    yaml = "yaml"
    json = "json"


STATUS_STYLE = {"ok": "[green]ok[/green]", "warn": "[yellow]warn[/yellow]", "fail": "[red]FAIL[/red]"}


def preflight(
    env: EnvArg,
    cloud: CloudOpt = None,
    output: Annotated[TableOrJson, typer.Option("--output", "-o", help="table (default) or json")] = TableOrJson.table,
    timeout: TimeoutOpt = 10.0,
) -> None:
    """Check against the live cloud what `pulumi up` will need; exit 1 if anything fails.

    Compute microversion, image, networks, availability zone, volume types, keypair, flavors (vCPUs, RAM,
    PCI alias) and quotas on top of current usage, each with its remedy.
    """
    from ..config.loader import load_site
    from ..openstack import preflight as pf
    from ..preview import build

    load_site(env, purpose="preflight")
    if output is TableOrJson.json:
        result = pf.preflight(env, cloud, timeout=timeout)
        sys.stdout.write(json.dumps(result.document(), indent=2) + "\n")
    else:
        with err.status(f"planning {env} offline ..."):
            report = build(env)
        with err.status(f"checking cloud {cloud or report.plan.env.site.cloud} ..."):
            result = pf.preflight(env, cloud, timeout=timeout, report=report)
        table = Table(title=f"preflight {result.environment} on cloud {result.cloud}", title_justify="left")
        for col in ("check", "status", "detail", "remedy"):
            table.add_column(col, overflow="fold")
        for c in result.checks:
            table.add_row(escape(c.name), STATUS_STYLE[c.status], escape(c.detail), escape(c.remedy))
        out.print(table)
        failed = [c for c in result.checks if not c.ok]
        warned = [c for c in result.checks if c.status == "warn"]
        if failed:
            out.print(f"[red]{len(failed)} of {len(result.checks)} checks failed[/red]: fix them before `pulumi up`")
        else:
            extra = f" ({len(warned)} warnings)" if warned else ""
            out.print(f"[green]all {len(result.checks)} checks passed[/green]{extra}: `pulumi up` may proceed")
    if not result.ok:
        raise typer.Exit(1)


def inventory(
    env: EnvArg,
    cloud: CloudOpt = None,
    output: Annotated[
        YamlOrJson, typer.Option("--output", "-o", help="yaml (default) or json (Ansible's --list document)")
    ] = YamlOrJson.yaml,
    timeout: TimeoutOpt = 10.0,
    strict: Annotated[
        bool, typer.Option("--strict", help="exit 1 if any server or node was reported instead of listed")
    ] = False,
) -> None:
    """The site's servers, found by their metadata tags, as an Ansible inventory.

    Groups and host variables are the plan's, addresses the servers' fixed IPs. Servers the plan does not
    know, tags that disagree with it, duplicate names and nodes without a server are reported on stderr.
    """
    from ..openstack.inventory import inventory as find

    result = find(env, cloud, timeout=timeout)
    if output is YamlOrJson.json:
        sys.stdout.write(json.dumps(result.ansible_list(), indent=2) + "\n")
    else:
        sys.stdout.write(result.yaml())
    notes = result.notes()
    for line in notes:
        err.print(f"[yellow]note[/yellow]: {escape(line)}", highlight=False, soft_wrap=True)
    if strict and notes:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add ``preflight`` and ``inventory`` to ``app``."""
    app.command("preflight")(preflight)
    app.command("inventory")(inventory)
