"""The exact allocation of an event's people to (site, accelerator kind).

The solver (``planning.events.assign``, a min-cost flow) is held against brute force: on small
hypothesis-generated cases (people with roles and required sites, 1-2 sites, 1-3 kinds in order of
preference, units per site and kind, seats per site), every assignment is enumerated and the best
``Score`` (tutors served, people served, then people on their 1st, 2nd ... kind) must equal the
solver's, whose assignment must itself be feasible. Then, on the shipped sites: capacity is never
exceeded, projects' guarantees are untouched unless the event allows it, the output is the same for
the same input in another process (hash seed) and in any run.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aiinfn.config.loader import load
from aiinfn.config.models import Event
from aiinfn.planning import make_plan
from aiinfn.planning.events import Person, assign, make_event_plan, reserve_of, score, site_supply

SITES = ["s1", "s2", "s3"]
KINDS = ["K1", "K2", "K3"]


@st.composite
def problems(draw: st.DrawFn) -> tuple[list[Person], list[str], list[str], dict[tuple[str, str], int],
                                       dict[str, int] | None]:
    # at most 5 people over at most 6 (site, kind) cells: at most 7^5 assignments to enumerate
    sites = SITES[: draw(st.integers(1, 2))]
    kinds = KINDS[: draw(st.integers(1, 3))]
    n = draw(st.integers(0, 5))
    people = [Person(f"p{i}", draw(st.booleans()), draw(st.sampled_from([None, None, *sites]))) for i in range(n)]
    units = {(s, k): draw(st.integers(0, 3)) for s in sites for k in kinds}
    seats = draw(st.one_of(st.none(), st.fixed_dictionaries({s: st.integers(0, 4) for s in sites})))
    return people, kinds, sites, units, seats


def feasible(people: list[Person], sites: list[str], units: dict[tuple[str, str], int], seats: dict[str, int] | None,
             result: list[tuple[str, str] | None]) -> bool:
    used = Counter(r for r in result if r is not None)
    per_site = Counter(r[0] for r in result if r is not None)
    return (all(n <= units.get(c, 0) for c, n in used.items())
            and (seats is None or all(n <= seats.get(s, 0) for s, n in per_site.items()))
            and all(r is None or (p.site is None or r[0] == p.site) for p, r in zip(people, result, strict=True))
            and all(r is None or r[0] in sites for r in result))


def brute_force(people: list[Person], kinds: list[str], sites: list[str], units: dict[tuple[str, str], int],
                seats: dict[str, int] | None) -> tuple[int, ...]:
    options: list[tuple[str, str] | None] = [None, *itertools.product(sites, kinds)]
    best: tuple[int, ...] | None = None
    for result in itertools.product(options, repeat=len(people)):
        if feasible(people, sites, units, seats, list(result)):
            key = score(people, kinds, list(result)).key()
            best = key if best is None or key > best else best
    assert best is not None
    return best


@settings(max_examples=int(os.environ.get("AIINFN_ALLOCATION_EXAMPLES", "300")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(problems())
def test_the_allocation_is_optimal_against_brute_force(problem: tuple) -> None:  # type: ignore[type-arg]
    people, kinds, sites, units, seats = problem
    result = assign(people, kinds, sites, units, seats)
    assert len(result) == len(people)
    assert feasible(people, sites, units, seats, result), result
    assert score(people, kinds, result).key() == brute_force(people, kinds, sites, units, seats)


def test_tutors_come_first_then_everyone_served_then_first_choices() -> None:
    """One K1 at s1 and one K2: a tutor takes one before any participant; two participants are both
    served (one on their second choice) rather than one on the first and one left out."""
    people = [Person("a"), Person("b"), Person("t", tutor=True)]
    units = {("s1", "K1"): 1, ("s1", "K2"): 1}
    result = assign(people, ["K1", "K2"], ["s1"], units)
    assert result[2] is not None
    assert sum(r is not None for r in result) == 2
    people = [Person("a"), Person("b")]
    result = assign(people, ["K1", "K2"], ["s1"], units)
    assert sorted(result) == [("s1", "K1"), ("s1", "K2")]  # type: ignore[type-var]


def test_a_roster_site_is_a_constraint() -> None:
    people = [Person("bari", site="s2"), Person("any")]
    result = assign(people, ["K1"], ["s1", "s2"], {("s1", "K1"): 5, ("s2", "K1"): 0})
    assert result == [None, ("s1", "K1")]


# --------------------------------------------------------------------------- on the shipped sites


@pytest.fixture(scope="module")
def example() -> Event:
    ev = load("hackathon-example")
    assert isinstance(ev, Event)
    return ev


def _plans(ev: Event) -> dict[str, object]:
    return {n: make_plan(e) for n, e in ev.site_environments().items()}


def test_capacity_and_the_reserve_are_never_exceeded(example: Event) -> None:
    """Seats of each kind at each site never exceed what the site can give the event (its reserve,
    plus its projects' guarantees since the example allows them), nor the units that exist, nor the
    seats the reserve's CPU and memory hold."""
    plans = _plans(example)
    ep = make_event_plan(example, plans)  # type: ignore[arg-type]
    for site, a in ep.allocations.items():
        plan = plans[site]
        sup = site_supply(plan, example.per_participant.cpu, example.per_participant.memory_gb)  # type: ignore[arg-type]
        for kind, n in a.units.items():
            assert n <= sup.units(kind, True)
            assert n == 0 or sup.units(kind, True) <= plan.capacity[kind].units  # type: ignore[attr-defined]
        assert a.participants <= sup.seats
        assert a.cpu <= plan.env.event_reserve.cpu and a.memory_gb <= plan.env.event_reserve.memory_gb  # type: ignore[attr-defined]
        assert a.placeholders <= a.participants
    assert ep.shortfall == 0
    # every roster row placed once, where its site says
    assert len(ep.seats) == len(example.people())
    for seat in ep.seats:
        assert seat.person.site is None or seat.site == seat.person.site


def test_guarantees_are_kept_unless_the_event_allows_it(example: Event) -> None:
    """Without may_take_guarantees the event draws on the sites' event reserves only: cnaf's 7 A100
    slices, nothing at recas (whose T4s are all projects'); projects lose nothing, the rest is short."""
    strict = example.model_copy(update={"may_take_guarantees": False})
    strict._sites, strict._roster, strict._file = example._sites, example._roster, example._file
    plans = _plans(strict)
    ep = make_event_plan(strict, plans)  # type: ignore[arg-type]
    for site, a in ep.allocations.items():
        reserve = reserve_of(plans[site])  # type: ignore[arg-type]
        for kind, n in a.units.items():
            assert n <= reserve.get(kind, 0), (site, kind)
            assert a.from_guarantees[kind] == 0
        assert a.projects_may_lose == {}
    assert ep.allocations["cnaf"].units == {"A100-80GB/1g.10gb": 7, "T4": 0}
    assert ep.allocations["recas"].participants == 0
    assert ep.shortfall == len(example.people()) - 7
    # the two tutors are among the seated
    assert all(s.site is not None for s in ep.seats if s.tutor)
    allowed = make_event_plan(example, plans)  # type: ignore[arg-type]
    assert allowed.shortfall == 0
    assert allowed.allocations["cnaf"].projects_may_lose == {
        "A100-80GB/1g.10gb": {"lhc-ml": 7, "theory": 7, "astro": 7}}


def test_the_same_input_gives_the_same_allocation_in_another_process(example: Event, root: Path) -> None:
    code = ("from aiinfn.config.loader import load; from aiinfn.planning import make_plan; "
            "from aiinfn.planning.events import make_event_plan; ev = load('hackathon-example'); "
            "p = make_event_plan(ev, {n: make_plan(e) for n, e in ev.site_environments().items()}); "
            "print([(s.person.username, s.site, s.kind) for s in p.seats], "
            "{k: (a.units, a.placeholder_units) for k, a in p.allocations.items()})")
    outs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout for seed in ("1", "2")}
    assert len(outs) == 1
    here = make_event_plan(example, _plans(example))  # type: ignore[arg-type]
    assert [(s.person.username, s.site, s.kind) for s in here.seats] == [
        (s.person.username, s.site, s.kind) for s in make_event_plan(example, _plans(example)).seats]  # type: ignore[arg-type]
