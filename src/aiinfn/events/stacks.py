"""Driving an event's stacks: ``up``, ``status`` and ``down``, each site's stack ``<event>-<site>``.

Every command checks everything first (the file, the window, the shortfall, that each target is an
event stack of this event and never a site's), then changes stacks one site at a time. The only stacks
ever changed are the event's own; a site's stack is only read (its kubeconfig output, for kubectl).

The stacks are reached through a ``Backend``: ``AutomationBackend`` is the Pulumi Automation API (it
needs the pulumi CLI: ``ToolMissingError`` without it); the tests give an in-memory one with the same
methods, planned under Pulumi's mock runtime.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..config.loader import display, list_environments, project_root
from ..errors import AiinfnError, ConfigError, ToolMissingError
from ..services import event as event_service
from ..stacknames import site_stack_name
from .cluster import Cluster
from .report import EventReport, short_rows

Output = Callable[[str], None]


class Stack(Protocol):
    name: str

    def get_config(self, key: str) -> str | None: ...

    def set_config(self, key: str, value: str) -> None: ...

    def up(self, on_output: Output) -> dict[str, Any]: ...

    def destroy(self, on_output: Output) -> None: ...

    def outputs(self) -> dict[str, Any]: ...


class Backend(Protocol):
    def select(self, name: str) -> Stack | None: ...

    def create(self, name: str) -> Stack: ...

    def remove(self, name: str) -> None: ...


# --------------------------------------------------------------------------- the Automation API


class _AutoStack:
    def __init__(self, stack: Any) -> None:
        self._stack = stack
        self.name = str(stack.name)

    def get_config(self, key: str) -> str | None:
        try:
            return str(self._stack.get_config(key).value)
        except Exception:  # the Automation API raises CommandError for a key that is not set
            return None

    def set_config(self, key: str, value: str) -> None:
        from pulumi import automation as auto

        self._stack.set_config(key, auto.ConfigValue(value))

    def up(self, on_output: Output) -> dict[str, Any]:
        result = self._stack.up(on_output=on_output)
        return {k: v.value for k, v in result.outputs.items()}

    def destroy(self, on_output: Output) -> None:
        self._stack.destroy(on_output=on_output)

    def outputs(self) -> dict[str, Any]:
        return {k: v.value for k, v in self._stack.outputs().items()}


class AutomationBackend:
    """Stacks of the project's one Pulumi program, through the Automation API (needs the pulumi CLI)."""

    def __init__(self, work_dir: Path | None = None) -> None:
        if shutil.which("pulumi") is None:
            raise ToolMissingError(
                "the pulumi CLI is not installed: install it (https://www.pulumi.com/docs/install/) to run "
                "`aiinfn event up|status|down`; `aiinfn event plan` works without it"
            )
        self.work_dir = str(work_dir or project_root())

    def select(self, name: str) -> Stack | None:
        from pulumi import automation as auto

        try:
            return _AutoStack(auto.select_stack(stack_name=name, work_dir=self.work_dir))
        except auto.StackNotFoundError:
            return None

    def create(self, name: str) -> Stack:
        from pulumi import automation as auto

        return _AutoStack(auto.create_stack(stack_name=name, work_dir=self.work_dir))

    def remove(self, name: str) -> None:
        from pulumi import automation as auto

        auto.LocalWorkspace(work_dir=self.work_dir).remove_stack(name)


# --------------------------------------------------------------------------- checks before anything changes


def check_window(report: EventReport, today: dt.date, now: bool) -> None:
    """Before ``starts`` or after ``ends`` an event is started only with --now."""
    ev, name = report.event, display(report.file)
    if now:
        return
    if today < ev.starts:
        raise ConfigError(f"the event starts on {ev.starts.isoformat()} (today is {today.isoformat()}): pass --now "
                          "to start it early", file=name, path="starts")
    if today > ev.ends:
        raise ConfigError(f"the event ended on {ev.ends.isoformat()} (today is {today.isoformat()}): an event is "
                          "not started after its end; pass --now to start it anyway", file=name, path="ends")


def check_shortfall(report: EventReport, allow: bool) -> None:
    short = short_rows(report)
    if not short or allow:
        return
    ev = report.event
    who = ", ".join(f"{r['person']} ({r['site']})" if r["site"] != "any" else r["person"] for r in short[:6])
    more = f" and {len(short) - 6} more" if len(short) > 6 else ""
    hint = "" if ev.may_take_guarantees else ", set may_take_guarantees"
    raise ConfigError(
        f"{len(short)} of {len(report.plan.seats)} people would get no seat ({' or '.join(report.plan.preferences)}):"
        f" {who}{more}; add kinds or sites{hint}, or pass --allow-shortfall",
        file=display(report.file), path="roster" if ev.roster else "participants")


def targets(report: EventReport, sites: list[str] | None) -> list[tuple[str, str]]:
    """(site, stack) of the event's stacks to act on: every site's, or those of ``sites``."""
    known = list(report.plan.allocations)
    for s in sites or []:
        if s not in known:
            raise ConfigError(f"the event does not run on {s!r} (sites: {', '.join(known)})",
                              file=display(report.file), path="sites")
    return [(s, report.stack(s)) for s in known if not sites or s in sites]


def _env_ref(report: EventReport) -> str:
    """The event file as the stack's aiinfn:environment: relative to the project when it is inside."""
    try:
        return str(report.file.resolve().relative_to(project_root()))
    except ValueError:
        return str(report.file.resolve())


def guard(report: EventReport, backend: Backend, stack_name: str) -> Stack | None:
    """The event's stack, if it exists; refuses a name that is a site's stack, or a stack of another
    scope or another environment (a site stack pointed at an event file would plan to destroy the site)."""
    sites = set(list_environments(kind="site")) | set(report.event.site_environments())
    if stack_name in sites or stack_name.rsplit("/", 1)[-1] in sites:
        raise AiinfnError(f"stack {stack_name!r} is a site's stack: `aiinfn event` never touches one")
    st = backend.select(stack_name)
    if st is None:
        return None
    scope = st.get_config("aiinfn:scope") or "site"
    if scope != "event":
        raise AiinfnError(f"stack {stack_name!r} is a {scope} stack (aiinfn:scope), not an event's: refusing to "
                          "touch it; rename the event or remove that stack")
    env = st.get_config("aiinfn:environment")
    if env is not None and Path(env).name != report.file.name:
        raise AiinfnError(f"stack {stack_name!r} belongs to {env}, not {display(report.file)}: refusing to touch it")
    return st


# --------------------------------------------------------------------------- up


def up(report: EventReport, backend: Backend, *, today: dt.date, now: bool = False, allow_shortfall: bool = False,
       sites: list[str] | None = None, on_output: Output = print) -> dict[str, dict[str, Any]]:
    """Create or update the event's stack at each of its sites; the stacks' outputs by site."""
    check_window(report, today, now)
    check_shortfall(report, allow_shortfall)
    chosen = targets(report, sites)
    existing = {stack: guard(report, backend, stack) for _, stack in chosen}
    out: dict[str, dict[str, Any]] = {}
    for site, stack in chosen:
        st = existing[stack] or backend.create(stack)
        for key, value in (("aiinfn:environment", _env_ref(report)), ("aiinfn:scope", "event"),
                           ("aiinfn:site", site), ("aiinfn:phase", "run"), ("aiinfn:archive_claims", "[]")):
            st.set_config(key, value)
        on_output(f"{stack}: pulumi up (the event's objects at {site})")
        out[site] = st.up(on_output)
    return out


# --------------------------------------------------------------------------- status


@dataclass
class SiteStatus:
    site: str
    stack: str
    deployed: bool
    phase: str | None = None
    outputs: dict[str, Any] = field(default_factory=dict)
    servers: list[str] | None = None
    placeholders: tuple[int, int] | None = None
    usage: dict[str, str] | None = None


def status(report: EventReport, backend: Backend, *, today: dt.date,
           clusters: Callable[[str], Cluster | None] | None = None) -> tuple[list[SiteStatus], list[str]]:
    """What is deployed at each site (stack outputs; with a cluster: running servers, placeholders,
    the queue's usage), and warnings (an event past its end that is still up)."""
    ev = report.event
    rows: list[SiteStatus] = []
    warnings: list[str] = []
    for site, stack in targets(report, None):
        st = guard(report, backend, stack)
        if st is None:
            rows.append(SiteStatus(site, stack, False))
            continue
        outputs = {k: v for k, v in st.outputs().items() if k != "kubeconfig"}
        row = SiteStatus(site, stack, True, st.get_config("aiinfn:phase") or "run", outputs)
        cluster = clusters(site) if clusters else None
        if cluster is not None:
            row.servers = cluster.running_servers(ev.namespace)
            row.placeholders = cluster.placeholders(event_service.hold_namespace(ev))
            row.usage = cluster.queue_usage(ev.namespace)
        rows.append(row)
    up_sites = [r.site for r in rows if r.deployed]
    if up_sites and today > ev.ends:
        warnings.append(f"the event ended on {ev.ends.isoformat()} and is still up at {', '.join(up_sites)}: "
                        f"run `aiinfn event down {ev.name}`")
    return rows, warnings


# --------------------------------------------------------------------------- down


def archives(report: EventReport) -> bool:
    return report.event.teardown.to != "delete"


def down(report: EventReport, backend: Backend, *, clusters: Callable[[str], Cluster | None] | None = None,
         archive: bool = True, sites: list[str] | None = None, on_output: Output = print) -> list[str]:
    """Archive participants' work as the file says, then destroy exactly the event's stacks and remove
    them. Idempotent: a site whose stack is gone is reported as down. Nothing is destroyed when the
    archive cannot run (no cluster to find the homes in) unless ``archive`` is False."""
    chosen = targets(report, sites)
    found = {stack: guard(report, backend, stack) for _, stack in chosen}
    plan: dict[str, list[str]] = {}
    if archive and archives(report):
        for site, stack in chosen:
            if found[stack] is None:
                continue
            cluster = clusters(site) if clusters else None
            if cluster is None:
                raise AiinfnError(f"site {site!r}: the participants' homes cannot be listed (no kubeconfig for the "
                                  "site's cluster): give --kubeconfig, or pass --no-archive to destroy them unarchived")
            plan[site] = cluster.claims(report.event.namespace, skip=(event_service.ARCHIVE_CLAIM,))
    done: list[str] = []
    for site, stack in chosen:
        st = found[stack]
        if st is None:
            done.append(f"{site}: already down (no stack {stack})")
            continue
        claims = plan.get(site) or []
        if claims:
            st.set_config("aiinfn:phase", "archive")
            st.set_config("aiinfn:archive_claims", json.dumps(claims))
            on_output(f"{stack}: archiving {len(claims)} homes ({report.event.teardown.to})")
            st.up(on_output)
        on_output(f"{stack}: pulumi destroy")
        st.destroy(on_output)
        backend.remove(stack)
        done.append(f"{site}: down" + (f" ({len(claims)} homes archived)" if claims else ""))
    return done


def site_kubeconfig(backend: Backend, site: str) -> str | None:
    """The site's kubeconfig (a secret output of its stack), read, never changed."""
    st = backend.select(site_stack_name(site))
    if st is None:
        return None
    value = st.outputs().get("kubeconfig")
    return str(value) if value else None


# --------------------------------------------------------------------------- materials

MATERIALS_ACTIONS = ("status", "release", "reset")


def materials(report: EventReport, backend: Backend, action: str, *, now: dt.datetime, users: list[str] | None = None,
              sites: list[str] | None = None, on_output: Output = print) -> list[str]:
    """The hub's materials mechanism (``aiinfn.hub.materials``), driven through each site's registration:
    ``release`` the solutions now, ``reset`` participants' copies (``users``), or show the ``status``.
    What it did is kept in the event stack's config (``aiinfn:materials_released``,
    ``aiinfn:materials_resets``), so a later ``up`` keeps it; it takes effect at each participant's next
    start (the hub copies in the notebook's init container)."""
    ev, name = report.event, display(report.file)
    if ev.materials is None:
        raise ConfigError("the event has no materials: add a materials block (repository, branch)", file=name,
                          path="materials")
    if action not in MATERIALS_ACTIONS:
        raise AiinfnError(f"materials {action!r}: say one of {', '.join(MATERIALS_ACTIONS)}")
    people = {p.username for p in ev.people()}
    if action == "reset":
        if not users:
            raise AiinfnError("materials reset: name the participants with --user (IAM usernames)")
        unknown = [u for u in users if ev.named and u.lower() not in people]
        if unknown:
            raise ConfigError(f"{', '.join(unknown)} not in the roster", file=name, path="roster")
    chosen = targets(report, sites)
    found = {stack: guard(report, backend, stack) for _, stack in chosen}
    lines = []
    for site, stack in chosen:
        st = found[stack]
        if st is None:
            lines.append(f"{site}: not up (no stack {stack})")
            continue
        released = (st.get_config("aiinfn:materials_released") or "false") == "true"
        resets: dict[str, str] = json.loads(st.get_config("aiinfn:materials_resets") or "{}")
        if action == "status":
            lines.append(f"{site}: solutions {'released' if released else 'not released'}"
                         + (f", copies reset: {', '.join(sorted(resets))}" if resets else ""))
            continue
        if action == "release":
            st.set_config("aiinfn:materials_released", "true")
        else:
            stamp = now.astimezone(dt.UTC).replace(microsecond=0).isoformat()
            resets.update({u.lower(): stamp for u in users or []})
            st.set_config("aiinfn:materials_resets", json.dumps(dict(sorted(resets.items()))))
        on_output(f"{stack}: pulumi up (materials {action})")
        st.up(on_output)
        lines.append(f"{site}: materials {action} done" + (f" ({', '.join(users or [])})" if action == "reset" else ""))
    return lines
