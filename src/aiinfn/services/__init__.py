"""The platform's services, one module each, each turning the plan's facts into one ``Bundle``.

``site_bundles(plan)`` is the whole overlay of a site, in the order its parts depend on each other;
the registrar (stacks/overlay) and the artifact writer (aiinfn.render.artifacts) both read it, so what
a service contains is decided here and nowhere else.
"""

from __future__ import annotations

from ..planning import Plan
from . import (
    batch,
    cinder_csi,
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
    # the databases' claims: on the block class when the site has one (after it), else on the filesystem
    block = cinder_csi.bundle(plan)
    block_class = cinder_csi.storage_class(plan)
    on_block = (cinder_csi.class_key(plan),) if block else ()
    hub = jupyterhub.bundle(plan, storage_class, ((nfs.RELEASE,) if filesystem else ()) + on_block, block_class)
    candidates = [
        block,
        gpu_operator.bundle(plan),
        kueue.bundle(plan, notebooks.NAMESPACE if hub else None),
        projects.bundle(plan),
        policy.bundle(plan),
        filesystem,
        hub,
        notebooks.bundle(plan, storage_class),
        provisioner.bundle(plan, storage_class),
        tls.bundle(plan),
        monitoring.bundle(plan, block_class or storage_class, on_block),
        juicefs.bundle(plan),
        harbor.bundle(plan, storage_class, block_class, on_block),
        images.bundle(plan),
        batch.bundle(plan),
        offload.bundle(plan, kueue.COHORT),
    ]
    bundles = [b for b in candidates if b is not None]
    check(bundles)
    return bundles


__all__ = ["Bundle", "site_bundles"]
