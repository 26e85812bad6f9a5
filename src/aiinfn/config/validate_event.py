"""Events' rules: an event fits the sites it draws on, its roster is a list of people, a site's event
reserve fits the site.

``check_event(event, sites)`` runs after the event and every site it names are loaded and valid; it
reads the roster CSV beside the event file (``event._roster``). ``check_reserve(env)`` is one of a
site's cross-field rules. Every failure is one ConfigError naming the file and the field (for a roster,
the CSV and its line) and the fix.

A roster is data: a CSV with a header line naming its columns, ``username`` (the person's IAM username,
as the hub logs them in) and optionally ``site`` (the only site that person may be placed at) and
``role`` (``participant``, the default, or ``tutor``). Unknown or repeated columns, a username listed
twice (compared as the hub does, lowercased), a value that is not a plain name, more than
``MAX_EVENT_PEOPLE`` rows are refused. Nothing of it is ever interpreted: usernames go to the hub's
registration (JSON) and the handout (CSV and Markdown, where a value can never start a formula).
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from pathlib import Path

from ..errors import ConfigError
from ..planning import Plan, make_plan
from ..planning.events import CPU_ONLY, offered_kinds, solve
from .models import (
    MAX_EVENT_PEOPLE,
    Environment,
    Event,
    RosterEntry,
    clip,
    describe_character,
)
from .paths import format_path

#: An IAM username as the hub takes it (INDIGO IAM's preferred_username): letters, digits and ._-.
USERNAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
ROSTER_COLUMNS = ("username", "site", "role")
ROLES = ("participant", "tutor")
MAX_ROSTER_BYTES = 1_000_000


def _fail(path: str, message: str, *related: str) -> None:
    raise ConfigError(message, path=path, related=related)


# --------------------------------------------------------------------------- the roster


def display(path: Path) -> str:
    """A path as an operator would type it (relative to the working directory when it can be)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (OSError, ValueError, RuntimeError):
        return str(path)


def _roots(naming: Path) -> list[Path]:
    """Where a roster may be: the checkout holding the event file (the directory with Pulumi.yaml and
    environments/), and the event file's own directory tree (the rule of environments' named files)."""
    out = []
    here = naming.resolve().parent
    for d in (here, *here.parents):
        if (d / "Pulumi.yaml").is_file() and (d / "environments").is_dir():
            out.append(d)
            break
    out.append(here)
    return out


def roster_file(event: Event) -> Path:
    """Where the event's roster is: relative to the event file."""
    assert event.roster is not None
    base = Path(event._file).parent if event._file else Path.cwd()
    return base / event.roster


def read_roster(event: Event) -> tuple[RosterEntry, ...]:
    """The roster's rows, or one ConfigError naming the CSV (or the event's ``roster`` field) and the line."""
    path = roster_file(event)
    naming = Path(event._file) if event._file else path
    try:
        real = path.resolve()
        found = real.is_file()
    except (OSError, RuntimeError, ValueError):
        _fail("roster", f"{clip(event.roster)} is not a usable file name")
    if not found:
        _fail("roster", f"{clip(event.roster)} not found (looked for {display(path)}): the roster is a CSV beside "
                        "the event file")
    if not any(real.is_relative_to(r) for r in _roots(naming)):
        _fail("roster", f"{clip(event.roster)} is {display(real)}, outside this checkout and the event file's "
                        "directory: keep the roster beside the event")
    name = display(path)

    def bad(line: int, message: str) -> ConfigError:
        return ConfigError(message, file=name, path=f"line {line}")

    try:
        raw = real.read_bytes()[: MAX_ROSTER_BYTES + 1]
    except OSError as e:
        raise ConfigError(f"cannot read the roster ({e.strerror})", file=name) from None
    if len(raw) > MAX_ROSTER_BYTES:
        raise ConfigError(f"roster is larger than {MAX_ROSTER_BYTES} bytes", file=name)
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"roster is not UTF-8 text (byte {e.start})", file=name) from None
    if "\x00" in text:
        raise ConfigError("roster holds a NUL byte: it is not a CSV file", file=name)
    try:
        rows = list(csv.reader(io.StringIO(text, newline=""), strict=True))
    except csv.Error as e:
        raise ConfigError(f"roster is not valid CSV ({e})", file=name) from None
    numbered = [(i + 1, r) for i, r in enumerate(rows) if any(c.strip() for c in r)]
    if not numbered:
        raise ConfigError("roster is empty: its first line names the columns (username[,site][,role])", file=name)
    header_line, header = numbered[0]
    columns = [c.strip().lower() for c in header]
    for c in columns:
        if c not in ROSTER_COLUMNS:
            raise bad(header_line, f"unknown column {clip(c)} (columns: {', '.join(ROSTER_COLUMNS)}; the first line "
                                   "names them)")
    seen_cols = set()
    for c in columns:
        if c in seen_cols:
            raise bad(header_line, f"column {c!r} is named twice")
        seen_cols.add(c)
    if "username" not in columns:
        raise bad(header_line, "no username column: the first line names the columns, username first")
    out: list[RosterEntry] = []
    first_line: dict[str, int] = {}
    for line, row in numbered[1:]:
        if len(row) != len(columns):
            raise bad(line, f"{len(row)} values for {len(columns)} columns ({', '.join(columns)})")
        values = dict(zip(columns, (v.strip() for v in row), strict=True))
        user = values["username"]
        if not USERNAME_RE.fullmatch(user):
            ch = next((c for c in user if not re.fullmatch(r"[A-Za-z0-9._-]", c)), None)
            why = f": {describe_character(ch)} is not allowed" if ch is not None else ""
            raise bad(line, f"{clip(user)} is not an IAM username (letters, digits and ._-, starting with a letter "
                            f"or digit, at most 64){why}")
        key = user.lower()
        if key in first_line:
            raise bad(line, f"username {user!r} is also on line {first_line[key]}: list each person once")
        first_line[key] = line
        site = values.get("site") or None
        role = (values.get("role") or "participant").lower()
        if role not in ROLES:
            raise bad(line, f"role {clip(values.get('role'))} is neither participant nor tutor")
        if site is not None and not re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", site):
            raise bad(line, f"site {clip(site)} is not a site name")
        out.append(RosterEntry(username=key, site=site, role=role, line=line))
        if len(out) > MAX_EVENT_PEOPLE:
            raise bad(line, f"more than {MAX_EVENT_PEOPLE} people: split the event")
    if not out:
        raise ConfigError("roster lists nobody: one line per person after the header", file=name)
    sites = event.site_environments()
    for r in out:
        if r.site is not None and r.site not in sites:
            raise bad(r.line, f"site {r.site!r} is not one of the event's sites ({', '.join(sites)})")
        if r.role == "tutor" and event.tutors_group is None:
            raise bad(r.line, f"{r.username!r} is a tutor but the event has no tutors_group (the IAM group that "
                              "gives tutors their role)")
    return tuple(out)


# --------------------------------------------------------------------------- the event over its sites


def check_event(event: Event, sites: dict[str, Environment]) -> None:
    """An event fits the sites it draws on: its names are free there, its kinds exist, its roster is a
    list of people, its tutors fit (participants who do not fit are a shortfall, which the plan shows)."""
    plans = {name: make_plan(env) for name, env in sites.items()}
    for name, env in sites.items():
        taken = {p.namespace or p_name for p_name, p in env.projects.items()}
        if event.namespace in taken or event.namespace in env.projects:
            _fail("name", f"namespace {event.namespace!r} is already a project's namespace or queue at site {name!r}")
    offered: dict[str, int] = {}
    for plan in plans.values():
        for kind in offered_kinds(plan):
            offered[kind] = offered.get(kind, 0) + plan.capacity[kind].units
    kinds = event.per_participant.accelerators
    for i, kind in enumerate(kinds):
        if kind not in offered:
            _fail(
                f"per_participant.accelerators[{i}]",
                f"no site of the event offers {kind!r} (kinds offered: {', '.join(sorted(offered)) or 'none'})",
                "sites",
            )
        if kind in kinds[:i]:
            _fail(f"per_participant.accelerators[{i}]", f"{kind!r} is listed twice")
    _check_teardown(event, sites)
    if event.roster is not None:
        event._roster = read_roster(event)
    _check_tutors(event, plans)


def _check_teardown(event: Event, sites: dict[str, Environment]) -> None:
    for name, env in sites.items():
        if event.teardown.to == "s3" and env.storage.s3 is None:
            _fail("teardown.to", f"site {name!r} has no S3 storage (storage.s3) to archive to: archive to nfs, or "
                                 "delete")
        if event.teardown.to == "nfs" and env.storage.nfs is None:
            _fail("teardown.to", f"site {name!r} has no platform NFS (storage.nfs) to archive to")


def _check_tutors(event: Event, plans: Mapping[str, Plan]) -> None:
    tutors = [p for p in event.people() if p.role == "tutor"]
    if not tutors:
        return
    seats = solve(event, plans, tutors)
    short = [s for s in seats if s.site is None]
    if not short:
        return
    can = len(seats) - len(short)
    kinds = event.per_participant.accelerators or [CPU_ONLY]
    where = "projects' guarantees included" if event.may_take_guarantees else (
        "the sites' event reserves; may_take_guarantees would add what projects are guaranteed")
    if event.roster is not None:
        names = ", ".join(s.person.username for s in short[:5]) + (" ..." if len(short) > 5 else "")
        _fail("roster", f"{len(tutors)} tutors need a seat each but the event's sites can give them {can} "
                        f"({' or '.join(kinds)}; {where}): no seat for {names}", "per_participant", "sites")
    _fail("tutors", f"{len(tutors)} tutors need a seat each but the event's sites can give them {can} "
                    f"({' or '.join(kinds)}; {where}): fewer tutors, more kinds or sites", "per_participant", "sites")


# --------------------------------------------------------------------------- a site's event reserve


def check_reserve(env: Environment) -> None:
    """The site's event reserve is of kinds it has and may lend (none reserved for a group), and no more
    CPU and memory than its users' pods can get (its accelerators are shares of the shared pool: they fit)."""
    res = env.event_reserve
    if not (res.accelerators or res.cpu or res.memory_gb):
        return
    plan = make_plan(env)
    offered = offered_kinds(plan)
    for kind in res.accelerators:
        where = format_path(("event_reserve", "accelerators", kind))
        if kind not in plan.capacity:
            _fail(where, f"the site has no {kind!r} (kinds: {', '.join(plan.capacity) or 'none'})")
        if kind not in offered:
            _fail(where, f"{kind!r} is reserved for a group (reserved_for): events cannot be given it")
    cpu, mem = plan.schedulable()
    if res.cpu > cpu:
        _fail("event_reserve.cpu", f"{res.cpu} CPU cores but users' pods can get {cpu} at this site")
    if res.memory_gb > mem:
        _fail("event_reserve.memory_gb", f"{res.memory_gb} GiB but users' pods can get {mem} GiB at this site")


__all__ = ["check_event", "check_reserve", "read_roster", "roster_file"]
