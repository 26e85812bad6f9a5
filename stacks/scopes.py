"""What each scope of stack registers. A stack says its scope in its config (``aiinfn:scope``,
``site`` when unset) and refuses an environment file of another kind: a site stack pointed at an
event file would otherwise plan to destroy the whole site.
"""

from __future__ import annotations

import pulumi
from infra import Infra, InfraArgs
from overlay import Overlay, OverlayArgs

from aiinfn import services
from aiinfn.adopt import imports as adopt_imports
from aiinfn.config.models import AnyEnvironment, Environment, Event, Federation
from aiinfn.config.secrets import secret_refs
from aiinfn.errors import ConfigError, an
from aiinfn.planning import make_plan
from aiinfn.planning.events import make_event_plan
from aiinfn.services import event as event_service
from aiinfn.services.bundle import addressed_nodes
from aiinfn.stacknames import event_stack_name, site_stack_name


def run(config: pulumi.Config, env: AnyEnvironment) -> None:
    scope = config.get("scope") or "site"
    if scope != env.kind:
        raise ConfigError(
            f"stack {pulumi.get_stack()!r} is {an(scope)} stack (aiinfn:scope) but its environment "
            f"{config.require('environment')} is {an(env.kind)} file: point the stack at {an(scope)} file, "
            f"or use a stack of scope {env.kind}"
        )
    if isinstance(env, Environment):
        site(config, env)
    elif isinstance(env, Event):
        event(config, env)
    else:
        federation(config, env)


def site_stack(config: pulumi.Config, site: str) -> str:
    """The fully qualified name of ``site``'s stack (``aiinfn:stack_org``, and ``aiinfn:site_stacks``
    mapping a site to a stack of another name)."""
    return site_stack_name(site, config.get("stack_org"), config.get_object("site_stacks"))


def site(config: pulumi.Config, env: Environment) -> None:
    plan = make_plan(env)
    adopt_imports.register(config)  # `aiinfn adopt`: the resources aiinfn:imports names are adopted
    infra = Infra(env.site.name, InfraArgs(plan=plan))

    # The overlay needs the bootstrapped cluster: it is built once its kubeconfig is in the stack's
    # secrets (`pulumi config set --secret aiinfn:kubeconfig < kubeconfig.yaml`, after bootstrap).
    kubeconfig = config.get_secret("kubeconfig")
    if kubeconfig is not None:
        bundles = services.site_bundles(plan)
        nodes = addressed_nodes(bundles)
        Overlay(
            f"{env.site.name}-overlay",
            OverlayArgs(
                bundles=bundles,
                kubeconfig=kubeconfig,
                secrets={name: config.require_secret(name) for name in sorted(set(secret_refs(env).values()))},
                addresses={n: infra.nodes[n].fixed_ip for n in nodes},
            ),
        )
        pulumi.export("kubeconfig", pulumi.Output.secret(kubeconfig))

    pulumi.export("scope", "site")
    pulumi.export("environment", env.name)
    pulumi.export("inventory", infra.inventory)
    pulumi.export("endpoints", infra.endpoints)
    pulumi.export("network", {"network_id": infra.network.network_id, "subnet_id": infra.network.subnet_id})
    pulumi.export("rke2_token", infra.rke2_token)
    pulumi.export("rke2_agent_token", infra.rke2_agent_token)


def event(config: pulumi.Config, ev: Event) -> None:
    """The event's objects at one of its sites (``aiinfn:site``; by default the site the stack's name
    ``<event>-<site>`` says, or the event's only site)."""
    sites = ev.site_environments()
    # the site: aiinfn:site, else the one the stack's name says (<event>-<site>), else the event's only site
    by_name = [s for s in sites if pulumi.get_stack() == event_stack_name(ev.name, s)]
    name = config.get("site") or (by_name[0] if by_name else next(iter(sites)) if len(sites) == 1 else None)
    if name is None or name not in sites:
        raise ConfigError(
            f"stack {pulumi.get_stack()!r}: set aiinfn:site to the site this event stack deploys to "
            f"(one of {', '.join(sites)})"
        )
    plans = {n: make_plan(e) for n, e in sites.items()}
    event_plan = make_event_plan(ev, plans)
    ref = pulumi.StackReference(f"{ev.name}-{name}-site", stack_name=site_stack(config, name))
    kubeconfig = ref.require_output("kubeconfig")
    # `aiinfn event down` first applies the archive phase (the claims it found), then destroys the stack
    phase = config.get("phase") or "run"
    claims = config.get_object("archive_claims") or [] if phase == "archive" else []
    alloc = event_plan.allocations[name]
    # `aiinfn event materials release|reset` records what it did in the stack's config
    resets = config.get_object("materials_resets") or {}
    materials = event_service.MaterialsState(
        released=bool(config.get_bool("materials_released")),
        resets=tuple(sorted((str(k), str(v)) for k, v in resets.items())) if isinstance(resets, dict) else ())
    bundle = event_service.bundle(ev, plans[name], alloc, phase=phase, claims=[str(c) for c in claims],
                                  materials=materials)
    Overlay(
        f"{ev.name}-{name}",
        OverlayArgs(
            bundles=[bundle],
            kubeconfig=pulumi.Output.secret(kubeconfig),
            secrets={s: config.require_secret(s) for s in bundle.config_secrets()},
            addresses={},
        ),
    )
    pulumi.export("scope", "event")
    pulumi.export("environment", ev.name)
    pulumi.export("site", name)
    pulumi.export("phase", phase)
    pulumi.export("namespace", ev.namespace)
    pulumi.export("namespaces", [n for n in event_service.namespaces(ev)
                                 if any(i.key == f"ns-{n}" for i in bundle.items)])
    pulumi.export("cluster_queue", ev.namespace)
    pulumi.export("hub_url", f"https://{event_service.hub_host(plans[name])}/")
    pulumi.export("window", {"starts": ev.starts.isoformat(), "ends": ev.ends.isoformat()})
    pulumi.export("allocation", {"participants": alloc.participants, "tutors": alloc.tutors, "units": alloc.units,
                                 "placeholders": alloc.placeholders, "placeholder_units": alloc.placeholder_units})


def federation(config: pulumi.Config, fed: Federation) -> None:
    """The federation's objects: read every member's stack (its kubeconfig); the objects that tie the
    sites together come with the federation's services."""
    for name in fed.site_environments():
        pulumi.StackReference(f"{fed.name}-{name}-site", stack_name=site_stack(config, name))
    pulumi.export("scope", "federation")
    pulumi.export("environment", fed.name)
    pulumi.export("sites", list(fed.site_environments()))
    pulumi.export("manager", fed.manager)
