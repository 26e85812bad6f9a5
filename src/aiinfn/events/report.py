"""The event's plan as documents: allocation, what projects lose, shortfall, handout.

Everything here is offline and deterministic (sorted keys, the roster's order). Handout values are data:
usernames and site names are plain names (validated), URLs are built by this module; a CSV cell never
starts with a character a spreadsheet would read as a formula (``= + - @``, tab, carriage return), and
Markdown cells escape its table syntax.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config.loader import display, list_environments, load, resolve
from ..config.models import Event
from ..errors import ConfigError, an
from ..planning import make_plan
from ..planning.events import CPU_ONLY, EventPlan, make_event_plan, overlaps
from ..serialize import json_dump
from ..services import event as event_service
from ..stacknames import event_stack_name

HANDOUT_COLUMNS = ("person", "role", "site", "accelerator", "hub_url", "profile", "materials_url")


@dataclass(frozen=True)
class EventReport:
    event: Event
    file: Path
    plan: EventPlan
    #: other shipped events sharing a site and a day with this one: (name, site, their seats there)
    overlapping: list[tuple[str, str, int]]

    def stack(self, site: str) -> str:
        return event_stack_name(self.event.name, site)


def build(ref: str | Path, root: Path | None = None) -> EventReport:
    """Load the event (a ConfigError for anything wrong) and plan it over its sites."""
    path = resolve(ref, root)
    ev = load(path, root=root)
    if not isinstance(ev, Event):
        raise ConfigError(f"is {an(ev.kind)} file, and `aiinfn event` works on an "
                          f"event: give one of {', '.join(list_environments(root, 'event')) or 'the events'}",
                          file=display(path))
    plans = {n: make_plan(e) for n, e in ev.site_environments().items()}
    event_plan = make_event_plan(ev, plans)
    return EventReport(ev, path, event_plan, _overlapping(ev, event_plan, path, root))


def _overlapping(ev: Event, event_plan: EventPlan, path: Path, root: Path | None) -> list[tuple[str, str, int]]:
    """Shipped events whose window shares a day with this one at one of its sites: they share the
    sites' event reserves (the plan warns; Kueue never admits more than exists either way)."""
    out: list[tuple[str, str, int]] = []
    for name in list_environments(root, "event"):
        try:
            other_path = resolve(name, root)
            if other_path.resolve() == path.resolve():
                continue
            other = load(other_path, root=root)
        except ConfigError:  # a broken neighbour is its own problem, reported when it is used
            continue
        if not isinstance(other, Event) or other.name == ev.name or not overlaps(ev, other):
            continue
        shared = [s for s in other.site_environments() if s in event_plan.allocations]
        if not shared:
            continue
        theirs = make_event_plan(other, {n: make_plan(e) for n, e in other.site_environments().items()})
        out.extend((other.name, s, theirs.allocations[s].participants) for s in shared)
    return sorted(out)


# --------------------------------------------------------------------------- the allocation


def allocation_rows(report: EventReport) -> list[dict[str, Any]]:
    """Per site and kind: seats, where they come from, placeholders, what the site keeps."""
    rows = []
    plan = report.plan
    for site, a in plan.allocations.items():
        sup = plan.supply[site]
        kinds = list(a.units) if a.units else [CPU_ONLY]
        for k in kinds:
            seats = a.units.get(k, a.participants if k == CPU_ONLY else 0)
            rows.append({
                "site": site, "kind": k, "seats": seats,
                "tutors": sum(1 for s in plan.seats if s.site == site and s.kind == k and s.tutor),
                "from_reserve": a.from_reserve.get(k, seats if k == CPU_ONLY else 0),
                "from_guarantees": a.from_guarantees.get(k, 0),
                "can_give": sup.units(k, report.event.may_take_guarantees) if k != CPU_ONLY else sup.seats,
                "placeholders": a.placeholder_units.get(k, a.placeholders if k == CPU_ONLY else 0),
            })
    return rows


def losses(report: EventReport) -> list[dict[str, Any]]:
    """What projects (and the site's other users) lose during the window, per site and kind."""
    out = []
    for site, a in report.plan.allocations.items():
        sup = report.plan.supply[site]
        for k, units in sup.reserve.items():
            if units:
                out.append({"site": site, "kind": k, "who": "everyone (the event reserve)",
                            "guaranteed": units, "may_lose": units,
                            "how": "not lent while the event runs; borrowers of it are preempted at `up`"})
        for k, by_project in a.projects_may_lose.items():
            for project, most in by_project.items():
                out.append({"site": site, "kind": k, "who": f"project {project}",
                            "guaranteed": sup.guaranteed[k][project], "may_lose": most,
                            "how": f"{a.from_guarantees[k]} {k} taken from projects' guarantees (while idle at "
                                   "`up`), held until `down`"})
    return out


def short_rows(report: EventReport) -> list[dict[str, Any]]:
    return [{"person": s.person.username, "role": s.person.role, "site": s.person.site or "any",
             "wanted": " or ".join(report.plan.preferences)} for s in report.plan.short]


def document(report: EventReport) -> dict[str, Any]:
    """plan's JSON: everything `aiinfn event plan` shows."""
    ev = report.event
    return {
        "event": ev.name,
        "file": display(report.file),
        "window": {"starts": ev.starts.isoformat(), "ends": ev.ends.isoformat()},
        "sites": list(report.plan.allocations),
        "stacks": {s: report.stack(s) for s in report.plan.allocations},
        "may_take_guarantees": ev.may_take_guarantees,
        "allocation": allocation_rows(report),
        "projects_lose": losses(report),
        "shortfall": {"people": report.plan.shortfall, "who": short_rows(report)},
        "overlapping_events": [{"event": n, "site": s, "seats": k} for n, s, k in report.overlapping],
        "handout": handout_rows(report),
    }


# --------------------------------------------------------------------------- the handout


def handout_rows(report: EventReport) -> list[dict[str, str]]:
    """One row per person: which hub to use, with which profile, and the materials' link there."""
    ev = report.event
    rows = []
    for seat in report.plan.seats:
        if seat.site is None:
            rows.append({"person": seat.person.username, "role": seat.person.role, "site": "", "accelerator": "",
                         "hub_url": "", "profile": "", "materials_url": ""})
            continue
        plan = report.plan.sites[seat.site]
        kind = seat.kind or CPU_ONLY
        rows.append({
            "person": seat.person.username,
            "role": seat.person.role,
            "site": seat.site,
            "accelerator": "" if kind == CPU_ONLY else kind,
            "hub_url": f"https://{event_service.hub_host(plan)}/",
            "profile": event_service.profile_slug(ev, kind),
            "materials_url": event_service.materials_link(ev, plan) or "",
        })
    return rows


def _cell(v: str) -> str:
    """A CSV cell no spreadsheet reads as a formula."""
    return "'" + v if v[:1] in ("=", "+", "-", "@", "\t", "\r") else v


def handout_csv(report: EventReport) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(HANDOUT_COLUMNS)
    for r in handout_rows(report):
        w.writerow([_cell(r[c]) for c in HANDOUT_COLUMNS])
    return buf.getvalue()


def _md(v: str) -> str:
    return v.replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`").replace("<", "&lt;").replace(">", "&gt;")


def handout_markdown(report: EventReport) -> str:
    ev = report.event
    lines = [f"# {_md(ev.description or ev.name)}", "",
             f"{ev.starts.isoformat()} to {ev.ends.isoformat()}. Log in with your INDIGO IAM account at the hub "
             "your row names, and start the profile it names.", ""]
    by_site: dict[str, list[dict[str, str]]] = {}
    for r in handout_rows(report):
        by_site.setdefault(r["site"] or "", []).append(r)
    for site, rows in by_site.items():
        if not site:
            continue
        first = rows[0]
        lines += [f"## {_md(site)}: {first['hub_url']}", ""]
        if first["materials_url"]:
            lines += [f"Materials: [open them in your notebook]({first['materials_url']})", ""]
        lines += ["| person | role | accelerator | profile |", "|---|---|---|---|"]
        lines += [f"| {_md(r['person'])} | {r['role']} | {_md(r['accelerator'] or 'CPU only')} | {_md(r['profile'])} |"
                  for r in rows]
        lines.append("")
    if "" in by_site:
        lines += ["## Not seated", "", "No accelerator could be found for:", ""]
        lines += [f"- {_md(r['person'])} ({r['role']})" for r in by_site[""]]
        lines.append("")
    return "\n".join(lines)


def write(report: EventReport, build_dir: Path) -> Path:
    """build/<event>/: plan.json, handout.csv, handout.md (the directory is replaced whole)."""
    import shutil

    out = build_dir / report.event.name
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / "plan.json").write_text(json_dump(document(report)) + "\n")
    (out / "handout.csv").write_text(handout_csv(report))
    (out / "handout.md").write_text(handout_markdown(report))
    return out


__all__ = ["EventReport", "build", "document", "handout_csv", "handout_markdown", "write"]
