"""``aiinfn diff ENV``: what a change to an environment does, offline (like ``terraform plan -detailed-exitcode``).

``register(app)`` adds the command to the main typer app. The baseline is the last plan
(build/<env>/plan.json, written by ``aiinfn plan``) or, with ``--against REF``, the environment files at a
git ref planned with today's code. Nothing is written: not build/, not the checkout.

Exit codes: 0 on success; with ``--exit-code``, 0 when nothing changes and 2 when something does. Errors
are AiinfnError subclasses, which ``cli.main`` prints as one line: 1 for a missing baseline or a bad ref,
2 for a broken environment (1 instead under ``--exit-code``, so that 2 always means "changes"), 3 for a
plan that cannot be built, 4 for a missing git.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..errors import AiinfnError

out = Console()
err = Console(stderr=True)

EnvArg = Annotated[str, typer.Argument(help="environment name under environments/ (e.g. cnaf) or a YAML path")]

ACTION_STYLE = {
    "create": "[green]+ create[/green]",
    "delete": "[red]- delete[/red]",
    "replace": "[magenta]+- replace[/magenta]",
    "update": "[yellow]~ update[/yellow]",
}
SECTIONS = (("create", "to add"), ("delete", "to delete"), ("replace", "to replace"), ("update", "to change"))
KIND_TEXT = {
    "force-new": "cannot change in place",
    "decrease": "cannot decrease in place",
    "replace-on-changes": "replace_on_changes",
}
#: Longest value shown in a table cell (JSON output carries every value whole).
MAX_VALUE = 60


class TableOrJson(StrEnum):
    table = "table"
    json = "json"


def diff(
    env: EnvArg,
    against: Annotated[
        str | None,
        typer.Option("--against", metavar="REF",
                     help="compare with the environment files at this git ref (planned with today's code)"),
    ] = None,
    output: Annotated[TableOrJson, typer.Option("--output", "-o", help="table (default) or json")] = TableOrJson.table,
    exit_code: Annotated[
        bool, typer.Option("--exit-code", help="exit 0 when nothing changes, 2 when something does")
    ] = False,
    build_dir: Annotated[
        Path | None, typer.Option(help="where the last plan is read (<dir>/<env>/plan.json; default: the "
                                  "project's build/, where `aiinfn plan` writes it)")
    ] = None,
    stack: Annotated[str | None, typer.Option(help="stack name (default: the environment's name)")] = None,
) -> None:
    """Show what the environment's change does, offline: resources to add, change, replace or delete,
    and the capacity, Kueue quotas, JupyterHub profiles and nodes it moves."""
    from .. import diff as plandiff
    from ..config.loader import default_build_dir

    build_dir = build_dir or default_build_dir()
    try:
        with err.status(f"planning {env} offline ..."):
            if against is not None:
                comparison = plandiff.compare_with_git_ref(env, against, stack=stack)
            else:
                comparison = plandiff.compare_with_last_plan(env, build_dir, stack=stack)
    except AiinfnError as e:
        if exit_code and e.exit_code == plandiff.CHANGES_EXIT:
            raise plandiff.DiffError(str(e)) from e
        raise
    if output is TableOrJson.json:
        sys.stdout.write(json.dumps(comparison.document(), indent=2, sort_keys=True) + "\n")
    else:
        print_comparison(comparison)
    if exit_code and comparison.result.changed:
        raise typer.Exit(plandiff.CHANGES_EXIT)


# --------------------------------------------------------------------------- the table


def show(value: Any) -> str:
    """A value as a table cell: ``(none)`` when absent, long values cut, texts by their line count."""
    from ..diff import ABSENT

    if value is ABSENT:
        return "(none)"
    if isinstance(value, str):
        if "\n" in value:
            return f"<text, {len(value.splitlines())} lines>"
        text = json.dumps(value)
    else:
        text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"


def show_change(change: Any) -> str:
    from ..diff import text_change

    if isinstance(change.old, str) and isinstance(change.new, str) and "\n" in change.old + change.new:
        return f"{change.path}: {text_change(change.old, change.new)}"
    return f"{change.path}: {show(change.old)} -> {show(change.new)}"


def _lines(items: Sequence[str]) -> str:
    return "\n".join(escape(i) for i in items)


def print_comparison(comparison: Any) -> None:
    result = comparison.result
    scope = f" ({result.scope})" if result.scope else ""
    out.print(f"[bold]diff {escape(result.environment)}{scope}[/bold] against {escape(comparison.baseline)}")
    for action, title in SECTIONS:
        rows = sorted((r for r in result.resources if r.action == action), key=lambda r: (r.name, r.type))
        if not rows:
            continue
        table = Table(title=f"{len(rows)} {title}", title_justify="left")
        table.add_column("", no_wrap=True)
        table.add_column("resource", overflow="fold")
        cells: list[list[str]] = []
        for r in rows:
            changed = [show_change(c) for c in r.changes] + [f"option {show_change(c)}" for c in r.options]
            if r.renamed_from:
                changed.insert(0, f"renamed from {r.renamed_from}")
            why = [f"{x.path}: {x.why or KIND_TEXT.get(x.kind, x.kind)} ({x.source.rsplit(': ', 1)[-1]})"
                   for x in r.reasons]
            cells.append([ACTION_STYLE[action], escape(r.short), _lines(changed), _lines(why + r.notes)])
        keep = [0, 1] + [i for i in (2, 3) if any(c[i] for c in cells)]  # no empty columns
        for i in keep[2:]:
            table.add_column("changes" if i == 2 else "why / notes", overflow="fold")
        for c in cells:
            table.add_row(*(c[i] for i in keep))
        out.print(table)
    _print_capacity(result.capacity)
    _print_queues(result.queues)
    _print_deltas("JupyterHub profiles", "profile", result.profiles)
    _print_deltas("Nodes", "node", result.nodes)
    line = result.summary_line()
    out.print(f"\n[bold]{line}[/bold]" if result.changed else f"\nNo changes. {line}")


_UNIT_RE = re.compile(r"^(-?[0-9.]+)([A-Za-z]*)$")


def _moved(old: Any, new: Any) -> str:
    """``old -> new``, with the difference when both are numbers or quantities of one unit (``+201Gi``)."""
    text = f"{show(old)} -> {show(new)}"
    a, b = _UNIT_RE.match(str(old)), _UNIT_RE.match(str(new))
    if isinstance(old, bool) or isinstance(new, bool) or not (a and b) or a.group(2) != b.group(2):
        return text
    try:
        d = float(b.group(1)) - float(a.group(1))
    except ValueError:
        return text
    return f"{text} ({'+' if d > 0 else ''}{d:g}{a.group(2)})" if d else text


def _print_capacity(deltas: Sequence[Any]) -> None:
    if not deltas:
        return
    table = Table(title="Accelerator capacity", title_justify="left")
    for col in ("kind", "change", "units", "details"):
        table.add_column(col, overflow="fold")
    for d in deltas:
        units = next((c for c in d.fields if c.path == "units"), None)
        rest = [f"{c.path}: {_moved(c.old, c.new)}" for c in d.fields if c.path != "units"]
        table.add_row(escape(d.key), d.change, escape(_moved(units.old, units.new)) if units else "-", _lines(rest))
    out.print(table)


def _print_queues(deltas: Sequence[Any]) -> None:
    from ..diff import parse_path

    if not deltas:
        return
    table = Table(title="Kueue quotas", title_justify="left")
    for col in ("queue", "flavor", "resource", "limit", "change"):
        table.add_column(col, overflow="fold")
    for d in deltas:
        for c in d.fields:
            flavor, resource, limit, *_ = [*parse_path(c.path), "", "", ""]
            moved = _moved(c.old, c.new) if d.change == "changed" else f"{d.change}: {_moved(c.old, c.new)}"
            table.add_row(*(escape(str(x)) for x in (d.key, flavor, resource, limit, moved)))
    out.print(table)


def _print_deltas(title: str, what: str, deltas: Sequence[Any]) -> None:
    if not deltas:
        return
    table = Table(title=title, title_justify="left")
    for col in (what, "change", "details"):
        table.add_column(col, overflow="fold")
    for d in deltas:
        shown = [c for c in d.fields if not c.path.startswith("settings")]
        settings = [c for c in d.fields if c.path.startswith("settings")]
        if d.change == "added":
            details = [f"{c.path}: {show(c.new)}" for c in shown]
        elif d.change == "removed":
            details = [f"{c.path}: {show(c.old)}" for c in shown]
        else:
            details = [show_change(c) for c in shown]
        if settings and d.change == "changed":
            details.append(f"{len(settings)} other settings: " + ", ".join(c.path for c in settings[:3])
                           + (" ..." if len(settings) > 3 else ""))
        table.add_row(escape(d.key), d.change, _lines(details))
    out.print(table)


def register(app: typer.Typer) -> None:
    """Add ``diff`` to ``app``."""
    app.command("diff")(diff)
