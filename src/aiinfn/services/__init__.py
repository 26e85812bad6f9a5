"""The platform's services, one module each, each turning the plan's facts into one ``Bundle``.

``site_bundles(plan)`` is the whole overlay of a site, in the order its parts depend on each other;
the registrar (stacks/overlay) and the artifact writer (aiinfn.render.artifacts) both read it, so what
a service contains is decided here and nowhere else.
"""

from __future__ import annotations

from ..planning import Plan
from . import (
    batch,
    gpu_operator,
    harbor,
    images,
    juicefs,
    jupyterhub,
    kueue,
    monitoring,
    nfs,
    notebooks,
    offload,
    policy,
    projects,
    provisioner,
    tls,
)
from .bundle import Bundle, check


def site_bundles(plan: Plan) -> list[Bundle]:
    """Every bundle of a site's overlay (a service the environment does not ask for has none)."""
    storage_class = nfs.storage_class(plan)
    filesystem = nfs.bundle(plan)
    hub = jupyterhub.bundle(plan, storage_class, (nfs.RELEASE,) if filesystem else ())
    candidates = [
        gpu_operator.bundle(plan),
        kueue.bundle(plan, notebooks.NAMESPACE if hub else None),
        projects.bundle(plan),
        policy.bundle(plan),
        filesystem,
        hub,
        notebooks.bundle(plan, storage_class),
        provisioner.bundle(plan, storage_class),
        tls.bundle(plan),
        monitoring.bundle(plan, storage_class),
        juicefs.bundle(plan),
        harbor.bundle(plan, storage_class),
        images.bundle(plan),
        batch.bundle(plan),
        offload.bundle(plan, kueue.COHORT),
    ]
    bundles = [b for b in candidates if b is not None]
    check(bundles)
    return bundles


__all__ = ["Bundle", "site_bundles"]
