"""``aiinfn bootstrap``: run the Ansible playbooks on a site's nodes, with progress per host and a summary.

Everything that can be checked before a host is touched is checked first (aiinfn.ansible.checks):
the environment, the playbook, the limit of add-node / remove-node, the inventory and every secret. A
failed run exits 1 and names, per failure, the host, the task and the message.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from ..ansible.runner import PLAYBOOKS, PlaybookResult

out = Console()
err = Console(stderr=True)


class _Progress:
    """A live table: per host, the task it is on and its counters so far."""

    def __init__(self) -> None:
        self.hosts: dict[str, dict[str, Any]] = {}
        self.play = ""

    def row(self, host: str) -> dict[str, Any]:
        return self.hosts.setdefault(host, {"task": "", "ok": 0, "changed": 0, "failed": 0, "state": "running"})

    def __call__(self, event: dict[str, Any]) -> None:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        host = data.get("host")
        if kind == "playbook_on_play_start":
            self.play = str(data.get("play", ""))
        elif kind == "runner_on_start" and host:
            self.row(host)["task"] = str(data.get("task", ""))
        elif kind == "runner_on_ok" and host:
            r = self.row(host)
            r["ok"] += 1
            if (data.get("res") or {}).get("changed"):
                r["changed"] += 1
        elif kind == "runner_on_failed" and host and not data.get("ignore_errors"):
            r = self.row(host)
            r["failed"] += 1
            r["state"] = "failed"
        elif kind == "runner_on_unreachable" and host:
            self.row(host)["state"] = "unreachable"

    def table(self) -> Table:
        t = Table(title=escape(self.play) or "starting ...", title_justify="left")
        for col in ("host", "task", "ok", "changed", "failed"):
            t.add_column(col)
        for host, r in sorted(self.hosts.items()):
            style = {"failed": "red", "unreachable": "red"}.get(r["state"], "")
            t.add_row(escape(host), escape(r["task"]), str(r["ok"]), str(r["changed"]), str(r["failed"]), style=style)
        return t


def _summary(result: PlaybookResult) -> Table:
    t = Table(title=f"{result.playbook}: {result.status}", title_justify="left")
    for col in ("host", "ok", "changed", "failed", "unreachable", "skipped"):
        t.add_column(col)
    for host, s in sorted(result.stats.items()):
        t.add_row(escape(host), str(s.ok), str(s.changed), str(s.failed), str(s.unreachable), str(s.skipped),
                  style="" if s.good else "red")
    return t


def bootstrap(
    env: Annotated[str, typer.Argument(help="environment name under environments/ (e.g. cnaf) or a YAML path")],
    playbook: Annotated[str, typer.Option("--playbook", "-p", help=f"one of: {', '.join(PLAYBOOKS)}")] = "site",
    limit: Annotated[str | None, typer.Option("--limit", "-l", help="nodes to run on (add-node/remove-node: "
                                              "required, the nodes concerned)")] = None,
    inventory: Annotated[Path | None, typer.Option("--inventory", "-i", help="inventory file or script (default: "
                                                   "the dynamic inventory of the site's cloud)")] = None,
    secrets_file: Annotated[Path | None, typer.Option("--secrets-file", help="YAML mapping secret name -> value, "
                                                      "mode 0600")] = None,
    extra: Annotated[list[str] | None, typer.Option("--extra", "-e", help="KEY=VALUE extra variable (repeatable)")]
    = None,
    stack: Annotated[str | None, typer.Option(help="Pulumi stack holding the secrets (default: environment name)")]
    = None,
) -> None:
    """Bootstrap a site's nodes with the Ansible playbooks (site, add-node, remove-node, mig, backup-restore,
    backup-prune, monitoring)."""
    from ..ansible import checks as bs
    from ..ansible.runner import run_playbook
    from ..config.loader import load_site
    from ..planning import make_plan

    environment = load_site(env, purpose="bootstrap")
    plan = make_plan(environment)
    book = bs.check_playbook(playbook)
    bs.check_limit(plan, playbook, limit)
    inv = inventory or bs.default_inventory(environment.name)
    if not inv.exists():
        raise bs.BootstrapError(f"--inventory {inv}: no such file")
    extravars: dict[str, Any] = {}
    for item in extra or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise bs.BootstrapError(f"--extra {item!r}: write KEY=VALUE")
        extravars[key.strip()] = value
    needs = bs.secrets_needed(environment, playbook)
    secrets = bs.resolve_secrets(needs, secrets_file=secrets_file,
                                 stack_lookup=bs.pulumi_secrets(stack or environment.name))
    envvars = {"AIINFN_ENV": env, "OS_CLOUD": environment.site.cloud}
    progress = _Progress()
    with Live(progress.table(), console=err, refresh_per_second=4, transient=True) as live:

        def on_event(event: dict[str, Any]) -> None:
            progress(event)
            live.update(progress.table())

        result = run_playbook(book, inv, extravars={**extravars, **secrets}, limit=limit, envvars=envvars,
                              on_event=on_event, keep_stdout=True)
    out.print(_summary(result))
    if not result.ok:
        for f in result.failures:
            err.print(f"[red]failed[/red]: {escape(f.line())}", highlight=False, soft_wrap=True)
        raise typer.Exit(1)
    changed = sum(1 for s in result.stats.values() if s.changed)
    out.print(f"[green]done[/green]: {len(result.stats)} hosts, {changed} changed")


def register(app: typer.Typer) -> None:
    app.command("bootstrap")(bootstrap)
