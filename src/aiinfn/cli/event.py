"""``aiinfn event plan|up|status|down|materials EVENT``: one command spins an event up across its sites.

``register(app)`` adds the ``event`` group to the main typer app.

* ``plan``: offline. The allocation per site and kind (where each seat comes from: the site's event
  reserve or, with ``may_take_guarantees``, projects' guarantees), what projects lose during the window,
  who is short, other events sharing a site and a day, the handout (build/<event>/handout.csv and .md)
  and each site's event stack planned under the mock runtime (build/<event>-<site>/).
* ``up``: needs the pulumi CLI. Refuses before ``starts`` or after ``ends`` without --now, a shortfall
  without --allow-shortfall, and any target that is a site's stack; then ``pulumi up`` per site.
* ``status``: each site's event stack (its outputs) and, with a kubeconfig (the site stack's output, or
  --kubeconfig SITE=FILE), the participants with a running server, placeholders and the queue's usage;
  warns about an event past its end.
* ``down``: archives the participants' homes as ``teardown`` says, then destroys exactly the event's
  stacks; idempotent.
* ``materials``: the hub's copy / release / reset of the event's materials (the hub's side).

Every failure is one line: exit 2 for a broken file (or a refusal naming its field), 4 for a missing
tool, 1 otherwise.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

out = Console()
err = Console(stderr=True)

EventArg = Annotated[str, typer.Argument(help="event name under environments/events/ (e.g. hackathon-example) or a "
                                             "YAML path")]
SiteOpt = Annotated[list[str] | None, typer.Option("--site", help="only this site's event stack (repeatable)")]
KubeOpt = Annotated[list[str] | None, typer.Option(
    "--kubeconfig", help="SITE=FILE: the site's kubeconfig (default: its stack's kubeconfig output)")]


def _today() -> dt.date:
    return dt.date.today()


def _print_allocation(report: Any) -> None:
    from ..events import report as rep

    t = Table(title=f"Allocation of {report.event.name} ({report.event.starts} to {report.event.ends})",
              title_justify="left")
    for col in ("site", "kind", "seats", "tutors", "from reserve", "from guarantees", "site can give",
                "placeholders"):
        t.add_column(col, justify="left" if col in ("site", "kind") else "right")
    for r in rep.allocation_rows(report):
        if not (r["seats"] or r["can_give"]):
            continue
        t.add_row(r["site"], escape(r["kind"]), str(r["seats"]), str(r["tutors"]), str(r["from_reserve"]),
                  str(r["from_guarantees"]), str(r["can_give"]), str(r["placeholders"]))
    out.print(t)
    losses = rep.losses(report)
    if losses:
        lt = Table(title="What others lose during the window", title_justify="left")
        for col in ("site", "kind", "who", "guaranteed", "may lose"):
            lt.add_column(col, justify="right" if col in ("guaranteed", "may lose") else "left")
        for r in losses:
            lt.add_row(r["site"], escape(r["kind"]), escape(r["who"]), str(r["guaranteed"]), str(r["may_lose"]))
        out.print(lt)
        out.print("the event reserve is not lent while the event runs (borrowers of it are preempted at `up`); "
                  "units taken from projects' guarantees are taken only while idle at `up`, then held until `down`",
                  soft_wrap=True)
    else:
        out.print("projects lose nothing: every seat comes from the sites' event reserves")
    short = rep.short_rows(report)
    if short:
        st = Table(title=f"Short: {len(short)} people get no seat", title_justify="left")
        for col in ("person", "role", "site", "wanted"):
            st.add_column(col)
        for r in short:
            st.add_row(escape(r["person"]), r["role"], escape(r["site"]), escape(r["wanted"]))
        out.print(st)
        err.print(f"[yellow]note[/yellow]: {len(short)} people get no seat; `aiinfn event up` refuses unless "
                  "--allow-shortfall")
    for name, site, seats in report.overlapping:
        err.print(f"[yellow]note[/yellow]: event {escape(name)} overlaps at {site} ({seats} seats): both draw on "
                  f"{site}'s event reserve")


def _clusters(backend: Any, kubeconfigs: list[str] | None, stack: ExitStack) -> Callable[[str], Any]:
    from ..errors import ConfigError
    from ..events import stacks
    from ..events.cluster import Cluster, kubeconfig_file

    given: dict[str, Path] = {}
    for item in kubeconfigs or []:
        site, sep, path = item.partition("=")
        if not sep or not site or not path:
            raise ConfigError(f"--kubeconfig {item!r}: write SITE=FILE")
        if not Path(path).is_file():
            raise ConfigError(f"--kubeconfig {site}={path}: no such file")
        given[site] = Path(path)

    def cluster(site: str) -> Any:
        if site in given:
            Cluster.require_kubectl()
            return Cluster(given[site], site)
        text = stacks.site_kubeconfig(backend, site)
        if text is None:
            return None
        Cluster.require_kubectl()
        return Cluster(stack.enter_context(kubeconfig_file(text)), site)

    return cluster


def _backend() -> Any:
    from ..events.stacks import AutomationBackend

    return AutomationBackend()


def register(app: typer.Typer) -> None:
    ev = typer.Typer(name="event", help="Hackathons and schools: plan, spin up, watch and tear down an event.",
                     no_args_is_help=True)
    app.add_typer(ev, name="event")

    @ev.command("plan")
    def plan_cmd(
        event: EventArg,
        build_dir: Annotated[Path | None, typer.Option(help="where <event>/ and <event>-<site>/ go (default: the "
                                                       "project's build/)")] = None,
        json_output: Annotated[bool, typer.Option("--json", help="the plan as JSON on stdout")] = False,
        stacks_too: Annotated[bool, typer.Option("--stacks/--no-stacks",
                                                 help="also plan each site's event stack offline")] = True,
    ) -> None:
        """Offline: allocation per site and kind, what projects lose, the handout, each site's stack."""
        from .. import preview
        from ..config.loader import default_build_dir
        from ..events import report as rep
        from ..serialize import json_dump

        build_dir = build_dir or default_build_dir()
        report = rep.build(event)
        where = rep.write(report, build_dir)
        previews = []
        if stacks_too:
            for site in report.plan.allocations:
                p = preview.build(report.file, site=site)
                previews.append((site, p, preview.write(p, build_dir)))
        if json_output:
            doc = rep.document(report)
            doc["stack_plans"] = {s: p.summary() for s, p, _ in previews}
            sys.stdout.write(json_dump(doc) + "\n")
            return
        _print_allocation(report)
        for site, p, folder in previews:
            s = p.summary()
            out.print(f"stack [bold]{p.stack}[/bold] ({site}): {s['resources']} resources, "
                      f"namespaces {', '.join(p.run.stack_outputs.get('namespaces', []))}; in [cyan]{folder}[/cyan]")
        out.print(f"handout: [cyan]{where / 'handout.csv'}[/cyan], [cyan]{where / 'handout.md'}[/cyan]")

    @ev.command("up")
    def up_cmd(
        event: EventArg,
        site: SiteOpt = None,
        now: Annotated[bool, typer.Option("--now", help="start it outside its window (before starts, after ends)")]
        = False,
        allow_shortfall: Annotated[bool, typer.Option("--allow-shortfall",
                                                      help="go ahead although some people get no seat")] = False,
        yes: Annotated[bool, typer.Option("--yes", help="do not ask before changing the stacks")] = False,
    ) -> None:
        """Spin the event up: its stack at each site (needs the pulumi CLI)."""
        from ..events import report as rep
        from ..events import stacks

        report = rep.build(event)
        # every check that needs no tool first: nothing changes before all pass
        stacks.check_window(report, _today(), now)
        stacks.check_shortfall(report, allow_shortfall)
        chosen = stacks.targets(report, site)
        backend = _backend()
        if not yes and not typer.confirm(f"bring up {', '.join(s for _, s in chosen)}?"):
            raise typer.Exit(1)
        results = stacks.up(report, backend, today=_today(), now=now, allow_shortfall=allow_shortfall, sites=site,
                            on_output=lambda line: out.print(escape(line), highlight=False))
        for s, outputs in results.items():
            out.print(f"[green]up[/green] {s}: {escape(str(outputs.get('hub_url', '')))} "
                      f"{outputs.get('allocation', {})}")

    @ev.command("status")
    def status_cmd(event: EventArg, kubeconfig: KubeOpt = None) -> None:
        """What is deployed at each site, who has a server running, placeholders left, queue usage."""
        from ..events import report as rep
        from ..events import stacks

        report = rep.build(event)
        backend = _backend()
        with ExitStack() as ctx:
            rows, warnings = stacks.status(report, backend, today=_today(),
                                           clusters=_clusters(backend, kubeconfig, ctx))
        _print_status(rows)
        for w in warnings:
            err.print(f"[yellow]warning[/yellow]: {escape(w)}")

    @ev.command("down")
    def down_cmd(
        event: EventArg,
        site: SiteOpt = None,
        kubeconfig: KubeOpt = None,
        no_archive: Annotated[bool, typer.Option("--no-archive", help="destroy without archiving the homes")] = False,
        yes: Annotated[bool, typer.Option("--yes", help="do not ask before destroying")] = False,
    ) -> None:
        """Archive participants' work as the file says, then destroy exactly the event's stacks."""
        from ..events import report as rep
        from ..events import stacks

        report = rep.build(event)
        chosen = stacks.targets(report, site)
        backend = _backend()
        if not yes and not typer.confirm(f"archive ({report.event.teardown.to}) and destroy "
                                         f"{', '.join(s for _, s in chosen)}?"):
            raise typer.Exit(1)
        with ExitStack() as ctx:
            done = stacks.down(report, backend, clusters=_clusters(backend, kubeconfig, ctx), archive=not no_archive,
                               sites=site, on_output=lambda line: out.print(escape(line), highlight=False))
        for line in done:
            out.print(escape(line))

    @ev.command("materials")
    def materials_cmd(
        event: EventArg,
        action: Annotated[str, typer.Argument(help="status, release (the solutions, now) or reset (--user's copy)")],
        site: SiteOpt = None,
        user: Annotated[list[str] | None, typer.Option("--user", help="participants whose copy is reset")] = None,
    ) -> None:
        """The hub's copy of the event's materials: release the solutions, reset a participant's copy."""
        from ..events import report as rep
        from ..events import stacks

        report = rep.build(event)
        backend = _backend()
        for line in stacks.materials(report, backend, action, now=dt.datetime.now(dt.UTC), users=user, sites=site,
                                     on_output=lambda line: out.print(escape(line), highlight=False)):
            out.print(escape(line))


def _print_status(rows: list[Any]) -> None:
    t = Table(title="Event stacks", title_justify="left")
    for col in ("site", "stack", "state", "hub", "seats", "servers running", "placeholders", "queue usage"):
        t.add_column(col)
    for r in rows:
        if not r.deployed:
            t.add_row(r.site, r.stack, "not deployed", "", "", "", "", "")
            continue
        alloc = r.outputs.get("allocation") or {}
        servers = "?" if r.servers is None else f"{len(r.servers)}" + (f" ({', '.join(r.servers[:5])})"
                                                                        if r.servers else "")
        holds = "?" if r.placeholders is None else f"{r.placeholders[0]} held, {r.placeholders[1]} waiting"
        usage = "?" if r.usage is None else ", ".join(f"{k} {v}" for k, v in r.usage.items()) or "none"
        t.add_row(r.site, r.stack, r.phase or "run", escape(str(r.outputs.get("hub_url", ""))),
                  str(alloc.get("participants", "?")), escape(servers), holds, escape(usage))
    out.print(t)

