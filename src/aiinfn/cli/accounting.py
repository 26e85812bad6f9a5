"""``aiinfn accounting SITE --from --to``: accelerator unit-hours per project, user or kind, from the site's
Prometheus (its Ingress: TLS, basic auth), as a table, CSV or JSON, and a plot per project over the period.

The reader's password comes from ``AIINFN_PROMETHEUS_PASSWORD`` or ``--password-file`` (mode 0600), never
from the command line. Every failure is one line: 2 for a bad argument or environment, 1 when Prometheus
cannot be asked, 4 when matplotlib is missing for ``--plot``.
"""

from __future__ import annotations

import os
import stat
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

PASSWORD_ENV = "AIINFN_PROMETHEUS_PASSWORD"


class Output(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def _password(path: Path | None) -> str | None:
    from ..accounting.prometheus import ArgumentError as AccountingError

    if path is None:
        return os.environ.get(PASSWORD_ENV) or None
    try:
        mode = path.stat().st_mode
        text = path.read_text().strip()
    except OSError as e:
        raise AccountingError(f"--password-file {path}: cannot read it ({e.strerror})") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise AccountingError(f"--password-file {path}: others may read it: `chmod 600 {path}`")
    return text or None


def accounting(
    site: Annotated[str, typer.Argument(help="site environment (e.g. cnaf) or a YAML path")],
    start: Annotated[str, typer.Option("--from", help="first day (2026-01-01, midnight UTC) or ISO time")],
    end: Annotated[str, typer.Option("--to", help="end of the period, excluded (2026-04-01)")],
    by: Annotated[str, typer.Option("--by", help="rows per project, user or kind")] = "project",
    output: Annotated[Output, typer.Option("--output", "-o", help="table (default), csv or json")] = Output.table,
    plot: Annotated[Path | None, typer.Option("--plot", help="write a plot per project over the period "
                                              "(FILE.png or FILE.svg)")] = None,
    prometheus: Annotated[str | None, typer.Option(
        "--prometheus", help="Prometheus' URL (default: the site's, https://prometheus.<domain>)")] = None,
    user: Annotated[str | None, typer.Option("--user", help="basic-auth user (default: the site's reader)")] = None,
    password_file: Annotated[Path | None, typer.Option(
        "--password-file", help=f"file holding the reader's password, mode 0600 (default: ${PASSWORD_ENV})")] = None,
    ca_file: Annotated[Path | None, typer.Option("--ca-file", help="CA certificate of a self-signed site")] = None,
) -> None:
    """GPU-hours and MIG-slice-hours of a site's projects over a period, from its Prometheus."""
    from ..accounting import Period, Prometheus, build, parse_time
    from ..accounting.prometheus import ArgumentError
    from ..accounting.report import GroupBy
    from ..config.loader import load_site
    from ..planning import make_plan
    from ..serialize import json_dump
    from ..services import monitoring

    try:
        group = GroupBy(by)
    except ValueError:
        raise ArgumentError(f"--by {by!r}: choose project, user or kind") from None
    environment = load_site(site, purpose="accounting")
    plan = make_plan(environment)
    period = Period(parse_time(start, "--from"), parse_time(end, "--to"))
    prom = Prometheus(prometheus or monitoring.prometheus_url(plan), user or monitoring.READER_USER,
                      _password(password_file), ca_file)
    with err.status(f"asking {prom.url} ..."):
        report = build(prom, environment.site.name, period, group)
    if plot is not None:
        report.plot(plot)
    if output is Output.json:
        sys.stdout.write(json_dump(report.document()) + "\n")
    elif output is Output.csv:
        sys.stdout.write(report.csv())
    else:
        table = Table(title=f"{environment.site.name}: accelerator hours, {period.start:%Y-%m-%d %H:%M} to "
                            f"{period.end:%Y-%m-%d %H:%M} UTC", title_justify="left")
        for col in (group.value, "GPU/FPGA hours", "MIG slice-hours"):
            table.add_column(col, justify="left" if col == group.value else "right")
        for r in report.rows():
            table.add_row(escape(r.key), f"{r.device_hours:.2f}", f"{r.slice_hours:.2f}")
        total = report.total()
        table.add_row("[bold]total[/bold]", f"[bold]{total.device_hours:.2f}[/bold]",
                      f"[bold]{total.slice_hours:.2f}[/bold]")
        out.print(table)
    if plot is not None:
        err.print(f"plot written to {escape(str(plot))}")


def register(app: typer.Typer) -> None:
    app.command("accounting")(accounting)
