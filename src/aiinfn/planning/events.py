"""An event's facts at each site it draws on: who is served there, with which kinds, and what is left.

Participants are placed site by site in the order the event lists its sites, and within a site by
kind in the order of preference, each kind up to the units the site has.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..config.models import Event
from . import Plan


@dataclass(frozen=True)
class EventAllocation:
    """The event at one site."""

    event: str
    site: str
    participants: int
    namespace: str
    iam_group: str
    #: kind key -> units reserved for participants at this site
    units: dict[str, int]
    cpu: float
    memory_gb: float
    placeholders: int
    #: units of each kind left at the site for everyone else while the event runs
    remaining: dict[str, int]


@dataclass(frozen=True)
class EventPlan:
    event: Event
    #: site name -> that site's plan
    sites: dict[str, Plan]
    #: site name -> the event there
    allocations: dict[str, EventAllocation]

    @property
    def shortfall(self) -> int:
        """Participants who would get no accelerator (0 when every one is served)."""
        if not self.event.per_participant.accelerators:
            return 0
        served = sum(sum(a.units.values()) for a in self.allocations.values())
        return max(0, self.event.participants - served)


def make_event_plan(event: Event, sites: dict[str, Plan]) -> EventPlan:
    share = event.per_participant
    left = event.participants
    placeholders_left = event.placeholders if event.placeholders is not None else event.participants
    allocations: dict[str, EventAllocation] = {}
    for name, plan in sites.items():
        units: dict[str, int] = {}
        here = 0
        for kind in share.accelerators:
            free = plan.capacity[kind].units if kind in plan.capacity else 0
            take = min(left, free)
            units[kind] = take
            left -= take
            here += take
        if not share.accelerators:
            here, left = left, 0
        placeholders = min(placeholders_left, here)
        placeholders_left -= placeholders
        allocations[name] = EventAllocation(
            event=event.name,
            site=name,
            participants=here,
            namespace=event.namespace,
            iam_group=event.iam_group,
            units=units,
            cpu=share.cpu * here,
            memory_gb=share.memory_gb * here,
            placeholders=placeholders,
            remaining={k: (plan.capacity[k].units if k in plan.capacity else 0) - u for k, u in units.items()},
        )
    return EventPlan(event, sites, allocations)
