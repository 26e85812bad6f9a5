"""Project quotas and event allocations, derived from real capacity.

A project's share of a kind becomes a nominal quota of ``floor(share * units)`` units, so the sum
over projects never exceeds what exists; units no project is guaranteed stay in the cohort for
anyone to borrow (opportunistic use of idle GPUs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..config.models import Environment
from .capacity import KindCapacity


@dataclass(frozen=True)
class ProjectQuota:
    project: str
    namespace: str
    iam_group: str
    priority: int
    borrowing: bool
    #: kind key -> guaranteed units
    nominal: dict[str, int]


def project_quotas(env: Environment, caps: dict[str, KindCapacity]) -> list[ProjectQuota]:
    out: list[ProjectQuota] = []
    for name, p in env.projects.items():
        nominal = {k: math.floor(share * caps[k].units + 1e-9) for k, share in p.shares.items() if k in caps}
        out.append(ProjectQuota(name, p.namespace or name, p.iam_group, p.priority, p.borrowing, nominal))
    return out


def unassigned(caps: dict[str, KindCapacity], quotas: list[ProjectQuota]) -> dict[str, int]:
    """Units of each kind that no project is guaranteed (the cohort's shared pool)."""
    return {k: c.units - sum(q.nominal.get(k, 0) for q in quotas) for k, c in caps.items()}


@dataclass(frozen=True)
class EventAllocation:
    event: str
    participants: int
    namespace: str
    iam_group: str
    #: kind key -> units reserved for participants, filled in order of preference
    units: dict[str, int]
    cpu: float
    memory_gb: float
    placeholders: int
    #: units of each kind left for everyone else while the event runs
    remaining: dict[str, int]

    @property
    def shortfall(self) -> int:
        """Participants who would get no accelerator (0 when every one is served)."""
        if not self.units:
            return 0
        return max(0, self.participants - sum(self.units.values()))


def event_allocation(env: Environment, caps: dict[str, KindCapacity]) -> EventAllocation | None:
    ev = env.event
    if ev is None:
        return None
    share = ev.per_participant
    units: dict[str, int] = {}
    left = ev.participants
    for kind in share.accelerators:
        take = min(left, caps[kind].units if kind in caps else 0)
        units[kind] = take
        left -= take
    return EventAllocation(
        event=ev.name,
        participants=ev.participants,
        namespace=f"event-{ev.name}",
        iam_group=ev.iam_group,
        units=units,
        cpu=share.cpu * ev.participants,
        memory_gb=share.memory_gb * ev.participants,
        placeholders=ev.placeholders if ev.placeholders is not None else ev.participants,
        remaining={k: (caps[k].units if k in caps else 0) - u for k, u in units.items()},
    )
