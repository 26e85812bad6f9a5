"""`aiinfn validate|plan|up` of a federation file (dispatched from the main commands).

``validate`` prints every mismatch among the sites, one line each (the loader stops at the first);
``plan`` prints each site's summary, the federated queues and where they run, the replication and the
shared volume; ``up`` applies the federation stack after checking that every member's site stack has
what it must export (needs the pulumi CLI).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape


def validate(path: Path, err: Console) -> bool:
    """Print every mismatch of the federation at ``path`` and exit 2; False when ``path`` is no
    federation or has none (the caller's own validation then runs)."""
    from ..config.loader import display, load
    from ..config.models import Federation
    from ..config.validate_federation import mismatches

    env = load(path, semantic=False)
    if not isinstance(env, Federation):
        return False
    found = mismatches(env, env.site_environments())
    for e in found:
        err.print(f"[red]error[/red]: {escape(str(e.with_file(display(path))))}", highlight=False, soft_wrap=True)
    if found:
        raise typer.Exit(2)
    return False


def print_plan(report: Any, out: Console) -> None:
    """What `aiinfn plan federation` shows besides the resource tree."""
    from ..federation import describe

    doc = describe(report.env)
    for name, s in doc["sites"].items():
        kinds = ", ".join(f"{n}x {k}" for k, n in s["accelerators"].items()) or "no accelerators"
        out.print(f"site [bold]{name}[/bold] ({s['role']}): {s['nodes']} nodes, {kinds}; projects "
                  f"{', '.join(s['projects']) or '-'}; stack {s['stack']}", highlight=False)
    for q in doc["queues"]:
        out.print(f"queue [bold]{q['name']}[/bold]: submit at {q['manager']} in {', '.join(q['namespaces'])}; "
                  f"runs at {', '.join(q['runs_at'])}", highlight=False)
    reg = doc["registry"]
    if reg:
        out.print(f"registry: Harbor {reg['primary']} ({reg['primary_url']}) replicates "
                  f"{', '.join(reg['projects'])} to {', '.join(reg['replicas']) or 'no replica'}"
                  + (f"; pulling from the primary: {', '.join(reg['pull_from_primary'])}"
                     if reg["pull_from_primary"] else ""), highlight=False)
    vol = doc["volume"]
    if vol:
        out.print(f"shared volume: JuiceFS {vol['name']} at {', '.join(vol['sites'])}, claim {vol['claim']} in "
                  f"{', '.join(vol['namespaces'])}", highlight=False)


def is_federation(path: Path) -> bool:
    """Whether ``path`` is a federation file (by its own ``kind`` or its extends chain's)."""
    from ..config.loader import display, kind_of, layer

    return kind_of(layer(path).data, display(path)) == "federation"


def up(path: Path, stack: str | None, yes: bool, out: Console, err: Console) -> None:
    """`aiinfn up <federation>`: the federation stack, after checking its sites' stacks."""
    from ..config.loader import load, project_root
    from ..config.models import Federation
    from ..federation import up as fedup
    from ..stages.stack import stack_environment

    fed = load(path)
    assert isinstance(fed, Federation)
    backend = fedup.AutomationBackend(project_root())
    result = fedup.up(fed, stack_environment(path, project_root()), backend, stack=stack,
                      confirm=lambda q: yes or typer.confirm(q, err=True),
                      on_output=lambda line: out.print(escape(line), highlight=False, soft_wrap=True))
    if result is None:
        raise typer.Exit(1)
    out.print(f"[green]done[/green]: federation {fed.name}: "
              f"{', '.join(f'{n} {op}' for op, n in sorted(result.items()) if n) or 'no changes'}")
