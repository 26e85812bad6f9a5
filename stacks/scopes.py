"""What each scope of stack registers. A stack says its scope in its config (``aiinfn:scope``,
``site`` when unset) and refuses an environment file of another kind: a site stack pointed at an
event file would otherwise plan to destroy the whole site.
"""

from __future__ import annotations

import ipaddress

import pulumi
from infra import Infra, InfraArgs
from overlay import Overlay, OverlayArgs

from aiinfn import services
from aiinfn.adopt import imports as adopt_imports
from aiinfn.config.loader import load
from aiinfn.config.models import AnyEnvironment, Environment, Event, Federation
from aiinfn.config.secrets import secret_refs
from aiinfn.config.validate_federation import pinned_versions
from aiinfn.errors import ConfigError, an
from aiinfn.federation import kubeconfig as kubeconfig_text
from aiinfn.federation import plans_of as federation_plans
from aiinfn.federation import site_bundles as federation_bundles
from aiinfn.planning import make_plan
from aiinfn.planning.events import make_event_plan
from aiinfn.services import cinder_csi, multikueue
from aiinfn.services import event as event_service
from aiinfn.services import kueue as kueue_service
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
    membership = federation_membership(config, env)  # (its API address, the manager's networks) if a worker
    infra = Infra(env.site.name, InfraArgs(plan=plan, api_allow=membership[1] if membership else ()))

    # The overlay needs the bootstrapped cluster: it is built once its kubeconfig is in the stack's
    # secrets (`pulumi config set --secret aiinfn:kubeconfig < kubeconfig.yaml`, after bootstrap).
    kubeconfig = config.get_secret("kubeconfig")
    if kubeconfig is not None:
        bundles = services.site_bundles(plan)
        worker = membership[0] if membership else None  # the federation's access to this site
        bundles = [*bundles, multikueue.worker_access(plan)] if worker else bundles
        nodes = addressed_nodes(bundles)
        overlay = Overlay(
            f"{env.site.name}-overlay",
            OverlayArgs(
                bundles=bundles,
                kubeconfig=kubeconfig,
                secrets={**{name: config.require_secret(name) for name in sorted(set(secret_refs(env).values()))},
                         # the block storage driver's cloud.conf, from the credential the infrastructure made
                         **({cinder_csi.CLOUD_CONF_REF: infra.block_cloud_conf}
                            if infra.block_cloud_conf is not None else {})},
                addresses={n: infra.nodes[n].fixed_ip for n in nodes},
            ),
        )
        pulumi.export("kubeconfig", pulumi.Output.secret(kubeconfig))
        if worker:
            pulumi.export("multikueue_kubeconfig", worker_kubeconfig(env, worker, overlay, kubeconfig))

    pulumi.export("scope", "site")
    pulumi.export("environment", env.name)
    pulumi.export("inventory", infra.inventory)
    pulumi.export("endpoints", infra.endpoints)
    pulumi.export("network", {"network_id": infra.network.network_id, "subnet_id": infra.network.subnet_id})
    pulumi.export("rke2_token", infra.rke2_token)
    pulumi.export("rke2_agent_token", infra.rke2_agent_token)
    pulumi.export("versions", pinned_versions(env))


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


def federation_membership(config: pulumi.Config,
                          env: Environment) -> tuple[str, tuple[ipaddress.IPv4Network, ...]] | None:
    """The API address the federation (``aiinfn:federation``, a federation environment) gives this site
    and the networks its manager reaches it from, when this site is one of its workers, else None."""
    ref = config.get("federation")
    if not ref:
        return None
    fed = load(ref)
    if not isinstance(fed, Federation):
        raise ConfigError(f"aiinfn:federation {ref!r} is {an(fed.kind)} file, not a federation")
    if env.name not in fed.worker_sites() or env.name == fed.manager:
        return None
    return fed.api_servers[env.name], tuple(fed.manager_egress)


def worker_kubeconfig(env: Environment, server: str, overlay: Overlay,
                      kubeconfig: pulumi.Input[str]) -> pulumi.Output[str]:
    """The manager's kubeconfig of this worker: the ServiceAccount's token and the cluster's CA (both in
    its token Secret, read back once the Secret exists) and the federation's routable API address."""
    import base64

    import pulumi_kubernetes as k8s

    provider = k8s.Provider(f"{env.site.name}-multikueue-k8s", kubeconfig=kubeconfig)
    token = k8s.core.v1.Secret.get(
        f"{env.site.name}-multikueue-token", f"{kueue_service.NAMESPACE}/{multikueue.WORKER_TOKEN}",
        opts=pulumi.ResourceOptions(provider=provider, depends_on=[overlay.resources[multikueue.TOKEN_KEY]]))

    def build(data: dict[str, str] | None) -> str:
        data = data or {}  # the API server fills the token in; an empty one is refused by the federation
        return kubeconfig_text.build(env.site.name, server, data.get("ca.crt", ""),
                                     base64.b64decode(data.get("token", "")).decode())

    return pulumi.Output.secret(token.data.apply(build))


def federation(config: pulumi.Config, fed: Federation) -> None:
    """The federation's objects at each member site, through the site's kubeconfig read from its stack:
    MultiKueue at the manager (each worker's kubeconfig read from the worker's stack and checked with
    Kueue's rules), the federated LocalQueues at the workers, Harbor replication at the registry's
    primary, the shared JuiceFS volume everywhere. The sites' pinned versions are compared first."""
    sites = fed.site_environments()
    plans = federation_plans(fed)
    refs = {n: pulumi.StackReference(f"{fed.name}-{n}-site", stack_name=site_stack(config, n)) for n in sites}
    pulumi.Output.all(**{n: r.get_output("versions") for n, r in refs.items()}).apply(
        lambda deployed: _same_versions(fed, deployed))
    per_site = federation_bundles(fed, plans)
    workers = [w for w in fed.worker_sites() if w != fed.manager]
    read = {multikueue.kubeconfig_ref(w): pulumi.Output.secret(refs[w].require_output("multikueue_kubeconfig").apply(
        lambda text, w=w: kubeconfig_text.check(str(text), w))) for w in workers if fed.queues}
    for name, bundles in per_site.items():
        if not bundles:
            continue
        wanted = sorted({s for b in bundles for s in b.config_secrets()})
        Overlay(
            f"{fed.name}-{name}",
            OverlayArgs(
                bundles=bundles,
                kubeconfig=pulumi.Output.secret(refs[name].require_output("kubeconfig")),
                secrets={s: read[s] if s in read else config.require_secret(s) for s in wanted},
                addresses={},
            ),
        )
    pulumi.export("scope", "federation")
    pulumi.export("environment", fed.name)
    pulumi.export("sites", list(sites))
    pulumi.export("manager", fed.manager)
    pulumi.export("workers", workers)
    pulumi.export("queues", {q: {"projects": list(v.projects), "runs_at": workers} for q, v in fed.queues.items()})
    pulumi.export("registry", {"primary": fed.registry.primary, "replicas": list(fed.registry.replicas)}
                  if fed.registry else None)
    pulumi.export("volume", fed.volume.name if fed.volume else None)


def _same_versions(fed: Federation, deployed: dict[str, object]) -> None:
    """Refuse sites deployed with other pins than this checkout's (a site stack exports `versions`)."""
    ours = {n: pinned_versions(e) for n, e in fed.site_environments().items()}
    for name, pins in deployed.items():
        if isinstance(pins, dict) and pins != ours[name]:
            diff = sorted(k for k in set(pins) | set(ours[name]) if pins.get(k) != ours[name].get(k))
            raise ConfigError(f"site {name!r}'s stack runs other pinned versions ({', '.join(diff)}): update "
                              "that site first (`aiinfn up " + name + "`), then the federation")
