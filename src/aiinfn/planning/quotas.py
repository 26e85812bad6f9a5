"""Project quotas, derived from real capacity.

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
