"""An event's facts: who is served where, with which accelerator kind, and what that costs the sites.

Supply. What a site can give an event is site policy: the site's ``event_reserve`` (units of kinds,
CPU and memory set aside from its shared pool; see docs/architecture.md, Events), plus, only when the
event sets ``may_take_guarantees``, the units its projects are guaranteed of the same kinds. Each person
(tutor or participant) takes one *seat*: the event's ``per_participant`` CPU and memory and one unit of
one accelerator kind; the reserve's CPU and memory bound the seats a site can hold whatever the kind.
Kinds reserved for a group (``reserved_for`` nodes) are never offered to an event.

Allocation (``assign``): people are assigned to (site, kind) by an exact min-cost flow (networkx's
network simplex, integer costs), optimal for the lexicographic objective

    (tutors served, people served, people on their 1st kind, on their 2nd kind, ...)

so a tutor is never left out for a participant, nobody is left out for somebody's better kind, and
among the solutions that serve the most people, the most get their first choice, then the second...
A roster row's site is a constraint (that person is only ever placed there). People with the same
role and site are interchangeable, so the flow runs over those classes (a few nodes whatever the head
count) and seats are then handed out in roster order: the result is deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction

from ..config.models import Event, RosterEntry
from . import Plan

#: The kind of a CPU-only event's seats (an event with no accelerator preferences).
CPU_ONLY = "cpu"


# --------------------------------------------------------------------------- the exact assignment


@dataclass(frozen=True)
class Person:
    """Who needs a seat, as the solver sees them."""

    key: str
    tutor: bool = False
    #: the only site this person may be placed at (None: any)
    site: str | None = None


@dataclass(frozen=True)
class Score:
    """The lexicographic objective of an assignment (greater is better)."""

    tutors: int
    served: int
    #: people served on their 1st, 2nd, ... kind
    by_rank: tuple[int, ...]

    def key(self) -> tuple[int, ...]:
        return (self.tutors, self.served, *self.by_rank)


def score(people: Sequence[Person], preferences: Sequence[str], result: Sequence[tuple[str, str] | None]) -> Score:
    rank = {k: i for i, k in enumerate(preferences)}
    by_rank = [0] * len(preferences)
    tutors = served = 0
    for p, r in zip(people, result, strict=True):
        if r is None:
            continue
        served += 1
        tutors += p.tutor
        by_rank[rank[r[1]]] += 1
    return Score(tutors, served, tuple(by_rank))


def assign(
    people: Sequence[Person],
    preferences: Sequence[str],
    sites: Sequence[str],
    units: Mapping[tuple[str, str], int],
    seats: Mapping[str, int] | None = None,
) -> list[tuple[str, str] | None]:
    """Each person's (site, kind), or None when they cannot be served: an optimum of ``Score``.

    ``preferences``: the kinds in order of preference (the same for everyone); ``units``: what each
    (site, kind) can give; ``seats``: how many people each site can hold whatever the kind (CPU and
    memory), unbounded when absent. Deterministic: the same inputs give the same list.
    """
    import networkx as nx

    n = len(people)
    if n == 0:
        return []
    kinds = list(dict.fromkeys(preferences))
    ranks = len(kinds)
    base = n + 1
    # Lexicographic weights, exact in integers: each count is at most n < base.
    tutor_w, served_w = base ** (ranks + 1), base**ranks
    classes: dict[tuple[bool, str | None], list[int]] = {}
    for i, p in enumerate(people):
        classes.setdefault((p.tutor, p.site), []).append(i)
    g = nx.DiGraph()
    g.add_node("source", demand=-n)
    g.add_node("sink", demand=n)
    for s in sites:
        cap = None if seats is None else max(0, int(seats.get(s, 0)))
        if cap is None:
            g.add_edge(("site", s), "sink", weight=0)
        else:
            g.add_edge(("site", s), "sink", capacity=cap, weight=0)
        for k in kinds:
            g.add_edge(("unit", s, k), ("site", s), capacity=max(0, int(units.get((s, k), 0))), weight=0)
    for c, ((tutor, site), members) in enumerate(classes.items()):
        node = ("class", c)
        g.add_edge("source", node, capacity=len(members), weight=0)
        g.add_edge(node, "sink", capacity=len(members), weight=0)  # not served
        for s in sites:
            if site is not None and s != site:
                continue
            for r, k in enumerate(kinds):
                gain = tutor * tutor_w + served_w + base ** (ranks - 1 - r)
                g.add_edge(node, ("unit", s, k), capacity=len(members), weight=-gain)
    _, flow = nx.network_simplex(g)
    out: list[tuple[str, str] | None] = [None] * n
    site_order = {s: i for i, s in enumerate(sites)}
    for c, members in enumerate(classes.values()):
        given = sorted(
            ((kinds.index(t[2]), site_order[t[1]], t[1], t[2], f) for t, f in flow[("class", c)].items()
             if isinstance(t, tuple) and t[0] == "unit" and f > 0),
        )
        queue = [(s, k) for _, _, s, k, f in given for _ in range(f)]
        for i, where in zip(members, queue, strict=False):
            out[i] = where
    return out


# --------------------------------------------------------------------------- what a site can give


@dataclass(frozen=True)
class Supply:
    """What one site can give an event."""

    site: str
    #: kind -> units of the site's event reserve
    reserve: dict[str, int]
    #: kind -> project -> units the project is guaranteed (kinds an event may use only)
    guaranteed: dict[str, dict[str, int]]
    #: seats the reserve's CPU and memory hold at this event's per-participant size
    seats: int
    #: the reserve's CPU and memory
    cpu: int
    memory_gb: int

    def units(self, kind: str, take_guarantees: bool) -> int:
        extra = sum(self.guaranteed.get(kind, {}).values()) if take_guarantees else 0
        return self.reserve.get(kind, 0) + extra


def offered_kinds(plan: Plan) -> list[str]:
    """Kinds a site may give an event: every kind of its cohort (none reserved for a group)."""
    return list(plan.visible_kinds(None))


def reserve_of(plan: Plan) -> dict[str, int]:
    """The site's event reserve per kind it may lend: floor(share x the kind's shared pool), 0 where it
    sets none aside (the Kueue Cohort ``aiinfn-events`` holds exactly these: services.kueue)."""
    asked = plan.env.event_reserve.accelerators
    return {k: math.floor(asked.get(k, 0.0) * plan.shared_pool.get(k, 0) + 1e-9) for k in offered_kinds(plan)}


def site_supply(plan: Plan, cpu: float, memory_gb: float) -> Supply:
    kinds = offered_kinds(plan)
    guaranteed = {k: {q.project: q.nominal[k] for q in plan.quotas if q.nominal.get(k)} for k in kinds}
    res = plan.env.event_reserve
    seats = min(math.floor(Fraction(res.cpu) / Fraction(str(cpu))),
                math.floor(Fraction(res.memory_gb) / Fraction(str(memory_gb))))
    return Supply(plan.env.name, reserve_of(plan), guaranteed, seats, res.cpu, res.memory_gb)


# --------------------------------------------------------------------------- an event's plan


@dataclass(frozen=True)
class Seat:
    """One person's place: a site and a kind, or none (short)."""

    person: RosterEntry
    site: str | None
    kind: str | None
    #: 0 for the first preference ...; None when short
    rank: int | None

    @property
    def tutor(self) -> bool:
        return self.person.role == "tutor"


@dataclass(frozen=True)
class EventAllocation:
    """The event at one site."""

    event: str
    site: str
    #: people (tutors and participants) seated here
    participants: int
    namespace: str
    iam_group: str
    #: kind key -> seats of that kind here
    units: dict[str, int]
    cpu: float
    memory_gb: float
    #: warm placeholder seats here (at most one per seat)
    placeholders: int
    #: units of each kind left at the site for everyone else while the event runs
    remaining: dict[str, int]
    tutors: int = 0
    #: kind -> placeholders of that kind
    placeholder_units: dict[str, int] = field(default_factory=dict)
    #: kind -> units that come from the site's event reserve / from projects' guarantees
    from_reserve: dict[str, int] = field(default_factory=dict)
    from_guarantees: dict[str, int] = field(default_factory=dict)
    #: kind -> project -> the most of its guarantee the project may lose during the window
    projects_may_lose: dict[str, dict[str, int]] = field(default_factory=dict)
    #: usernames seated here -> their kind (rosters only)
    assignments: dict[str, str] = field(default_factory=dict)

    @property
    def cpu_quota(self) -> int:
        """Whole CPU cores the event's queue may use here (the seats' CPU, rounded up)."""
        return math.ceil(Fraction(str(self.cpu)) - Fraction(1, 10**9))

    @property
    def memory_quota_gb(self) -> int:
        return math.ceil(Fraction(str(self.memory_gb)) - Fraction(1, 10**9))


@dataclass(frozen=True)
class EventPlan:
    event: Event
    #: site name -> that site's plan
    sites: dict[str, Plan]
    #: site name -> the event there
    allocations: dict[str, EventAllocation]
    #: everyone, tutors first, in roster order
    seats: list[Seat] = field(default_factory=list)
    #: site name -> what it could give
    supply: dict[str, Supply] = field(default_factory=dict)

    @property
    def short(self) -> list[Seat]:
        """People who get no seat at any site."""
        return [s for s in self.seats if s.site is None]

    @property
    def shortfall(self) -> int:
        """People who would get no seat (0 when every one is served)."""
        return len(self.short)

    @property
    def preferences(self) -> list[str]:
        return list(self.event.per_participant.accelerators) or [CPU_ONLY]


def people_of(event: Event) -> list[Person]:
    return [Person(p.username, p.role == "tutor", p.site) for p in event.people()]


def _problem(event: Event, plans: Mapping[str, Plan]) -> tuple[dict[str, Supply], dict[tuple[str, str], int],
                                                                 dict[str, int]]:
    share = event.per_participant
    supply = {n: site_supply(p, share.cpu, share.memory_gb) for n, p in plans.items()}
    units: dict[tuple[str, str], int] = {}
    for n, s in supply.items():
        if share.accelerators:
            for k in share.accelerators:
                units[(n, k)] = s.units(k, event.may_take_guarantees)
        else:
            units[(n, CPU_ONLY)] = s.seats
    return supply, units, {n: s.seats for n, s in supply.items()}


def solve(event: Event, plans: Mapping[str, Plan], people: Sequence[RosterEntry] | None = None) -> list[Seat]:
    """Each person's seat (``people``: the event's own, tutors first, by default)."""
    everyone = list(event.people() if people is None else people)
    _, units, seats = _problem(event, plans)
    prefs = list(event.per_participant.accelerators) or [CPU_ONLY]
    result = assign([Person(p.username, p.role == "tutor", p.site) for p in everyone], prefs, list(plans), units,
                    seats)
    rank = {k: i for i, k in enumerate(prefs)}
    return [Seat(p, r[0], r[1], rank[r[1]]) if r else Seat(p, None, None, None)
            for p, r in zip(everyone, result, strict=True)]


def _spread(total: int, caps: dict[tuple[str, str], int]) -> dict[tuple[str, str], int]:
    """``total`` placeholders over (site, kind) seats, proportionally (largest remainder, ties in order),
    never more than a cell's seats."""
    seats = sum(caps.values())
    total = min(total, seats)
    if seats == 0:
        return dict.fromkeys(caps, 0)
    exact = {c: Fraction(total * n, seats) for c, n in caps.items()}
    out = {c: math.floor(v) for c, v in exact.items()}
    left = total - sum(out.values())
    for c in sorted(caps, key=lambda c: (-(exact[c] - out[c]), list(caps).index(c)))[:left]:
        out[c] += 1
    return out


def make_event_plan(event: Event, plans: Mapping[str, Plan]) -> EventPlan:
    """The event over its sites: the exact allocation, each site's share, what projects lose."""
    share = event.per_participant
    seats = solve(event, plans)
    supply, _, _ = _problem(event, plans)
    prefs = list(share.accelerators) or [CPU_ONLY]
    cells: dict[tuple[str, str], int] = {(s, k): 0 for s in plans for k in prefs}
    for seat in seats:
        if seat.site is not None and seat.kind is not None:
            cells[(seat.site, seat.kind)] += 1
    wanted = event.placeholders if event.placeholders is not None else sum(cells.values())
    holds = _spread(wanted, cells)
    allocations: dict[str, EventAllocation] = {}
    for name, plan in plans.items():
        here = [s for s in seats if s.site == name]
        units = {k: cells[(name, k)] for k in prefs} if share.accelerators else {}
        sup = supply[name]
        from_reserve = {k: min(n, sup.reserve.get(k, 0)) for k, n in units.items()}
        from_guarantees = {k: n - from_reserve[k] for k, n in units.items()}
        lose = {k: {p: min(extra, g) for p, g in sup.guaranteed.get(k, {}).items()}
                for k, extra in from_guarantees.items() if extra}
        allocations[name] = EventAllocation(
            event=event.name,
            site=name,
            participants=len(here),
            namespace=event.namespace,
            iam_group=event.iam_group,
            units=units,
            cpu=float(Fraction(str(share.cpu)) * len(here)),
            memory_gb=float(Fraction(str(share.memory_gb)) * len(here)),
            placeholders=sum(holds[(name, k)] for k in prefs),
            remaining={k: (plan.capacity[k].units if k in plan.capacity else 0) - u for k, u in units.items()},
            tutors=sum(1 for s in here if s.tutor),
            placeholder_units={k: holds[(name, k)] for k in prefs} if share.accelerators else {},
            from_reserve=from_reserve,
            from_guarantees=from_guarantees,
            projects_may_lose=lose,
            assignments={s.person.username.lower(): s.kind or CPU_ONLY for s in here} if event.named else {},
        )
    return EventPlan(event, dict(plans), allocations, seats, supply)


def overlaps(a: Event, b: Event) -> bool:
    """The two events' windows share a day."""
    return a.starts <= b.ends and b.starts <= a.ends
