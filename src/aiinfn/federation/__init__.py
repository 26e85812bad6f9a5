"""The federation: what ties the member sites, as facts and as bundles per site.

``site_bundles(fed, plans)`` is what the federation stack registers at each member site (through the
site's kubeconfig, read from its stack): MultiKueue at the manager and the queues at the workers
(``services.multikueue``), Harbor replication at the registry's primary (``federation.registry``),
the shared JuiceFS volume everywhere (``federation.volume``). ``describe(fed)`` is what
``aiinfn plan federation`` shows. A worker's own site stack adds only ``multikueue.worker_access``.
"""

from __future__ import annotations

from typing import Any

from ..config.models import Federation
from ..planning import Plan, make_plan
from ..services import multikueue
from ..services.bundle import Bundle, check
from ..stacknames import site_stack_name
from . import registry, volume


def plans_of(fed: Federation) -> dict[str, Plan]:
    return {n: make_plan(e) for n, e in fed.site_environments().items()}


def site_bundles(fed: Federation, plans: dict[str, Plan]) -> dict[str, list[Bundle]]:
    """Site -> the federation's bundles there (a site may get none)."""
    out: dict[str, list[Bundle]] = {}
    for name, plan in plans.items():
        candidates = [
            multikueue.manager(fed, plans) if name == fed.manager else None,
            multikueue.worker_queues(fed, plan) if name in fed.worker_sites() and name != fed.manager else None,
            registry.bundle(fed, plans) if fed.registry is not None and name == fed.registry.primary else None,
            volume.bundle(fed, plan),
        ]
        bundles = [b for b in candidates if b is not None]
        check(bundles)
        out[name] = bundles
    return out


def describe(fed: Federation) -> dict[str, Any]:
    """Each site's summary, the federated queues and where they run, the replication, the shared volume."""
    plans = plans_of(fed)
    workers = [w for w in fed.worker_sites() if w != fed.manager]
    sites = {}
    for name, plan in plans.items():
        role = "manager" if name == fed.manager else "worker" if name in workers else "member"
        sites[name] = {
            "role": role,
            "stack": site_stack_name(name),
            "nodes": len(plan.nodes),
            "accelerators": {k: c.units for k, c in plan.capacity.items()},
            "projects": sorted(plan.env.projects),
        }
    manager_plan = plans[fed.manager]
    ns = {q.project: q.namespace for q in manager_plan.quotas}
    queues = [{"name": q, "manager": fed.manager, "namespaces": [ns.get(p, p) for p in queue.projects],
               "projects": list(queue.projects), "runs_at": workers,
               "capacity": multikueue.manager_quota(fed, plans)} for q, queue in fed.queues.items()]
    return {"name": fed.name, "manager": fed.manager, "workers": workers, "sites": sites, "queues": queues,
            "registry": registry.describe(fed, plans), "volume": volume.describe(fed, plans)}
