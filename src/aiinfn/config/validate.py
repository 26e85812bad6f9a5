"""Rules that relate several parts of an environment, checked before anything touches a cloud.

``check(env)`` raises the first ConfigError it finds, with the field path that must change and how.
The loader attributes the path to the file that set it.
"""

from __future__ import annotations

import ipaddress
import itertools
from collections import Counter

from ..catalogue import accelerators as cat
from ..catalogue import mig
from ..errors import ConfigError
from ..planning import labels
from ..planning.capacity import capacity, fit_on_hosts, installed_accelerators, requested_accelerators
from ..planning.nodes import inventory, pool_node_names
from . import validate_federation, validate_offload
from .models import Environment, Federation, NodePool, Role
from .paths import format_path, parse_path
from .validate_event import check_event as check_event  # the loader's entry point; the rules live there
from .validate_event import check_reserve

MAX_SERVERS = 7


#: Host memory a flavor needs per passed-through accelerator, at the least (see _check_site).
MIN_RAM_GB_PER_DEVICE = 2


def _fail(path: str, message: str, *related: str) -> None:
    raise ConfigError(message, path=path, related=related)


def _check_network(env: Environment) -> None:
    nets = {
        "network.cidr": env.network.cidr,
        "network.pod_cidr": env.network.pod_cidr,
        "network.service_cidr": env.network.service_cidr,
    }
    for (a, na), (b, nb) in itertools.combinations(nets.items(), 2):
        if na.overlaps(nb):
            _fail(b, f"{nb} overlaps {a} ({na}): node, pod and service networks must be disjoint", a)
    _check_ssh_allow(env)


#: The widest network one ``network.ssh_allow`` entry may be, and the most addresses all entries may cover
#: together: SSH to the bastion is for the networks operators work from, a few institutes' ranges at most.
SSH_ALLOW_MIN_PREFIX = 8
SSH_ALLOW_MAX_ADDRESSES = 2 ** (32 - SSH_ALLOW_MIN_PREFIX)
#: Ranges no operator connects from: an entry inside one of these is a mistake.
_NOT_OPERATOR_NETWORKS = {
    ipaddress.IPv4Network("0.0.0.0/8"): "'this network' (0.0.0.0/8)",
    ipaddress.IPv4Network("127.0.0.0/8"): "loopback",
    ipaddress.IPv4Network("169.254.0.0/16"): "link-local (the metadata service's range)",
    ipaddress.IPv4Network("224.0.0.0/4"): "multicast",
    ipaddress.IPv4Network("240.0.0.0/4"): "reserved",
}


def _check_ssh_allow(env: Environment) -> None:
    """``ssh_allow`` names the networks operators use (``_check_operator_networks``)."""
    _check_operator_networks(env, "network.ssh_allow", env.network.ssh_allow, "SSH", "the bastion's SSH")


def _check_operator_networks(env: Environment, field: str, entries: list[ipaddress.IPv4Network], service: str,
                             reached: str) -> None:
    """``entries`` (``network.ssh_allow``, ``services.monitoring.grafana.allow``) name the networks operators use:
    no entry wider than a /8, no more than a /8's addresses in all (so 0.0.0.0/0 cannot be written in pieces
    either), none in a range no one connects from, and none of the cluster's own networks (they would let a node
    or a tenant's pod reach what the entries open)."""
    net = env.network
    own = {"network.cidr": net.cidr, "network.pod_cidr": net.pod_cidr, "network.service_cidr": net.service_cidr}
    seen: list[ipaddress.IPv4Network] = []
    name = field.rsplit(".", 1)[1]
    for i, entry in enumerate(entries):
        where = f"{field}[{i}]"
        if entry.prefixlen == 0:
            _fail(where, f"0.0.0.0/0 would open {service} to the whole internet: list the networks operators use")
        if entry.prefixlen < SSH_ALLOW_MIN_PREFIX:
            _fail(where, f"{entry} is wider than a /{SSH_ALLOW_MIN_PREFIX} ({entry.num_addresses} addresses): "
                  "list the networks operators use")
        for bad, what in _NOT_OPERATOR_NETWORKS.items():
            if entry.subnet_of(bad):
                _fail(where, f"{entry} is {what}: no operator connects from there; list the networks operators use")
        for other, cidr in own.items():
            if entry.overlaps(cidr):
                _fail(where, f"{entry} overlaps {other} ({cidr}): the cluster's own nodes and pods must not reach "
                      f"{reached}; list the operators' networks", other)
        seen.append(entry)
        covered = sum(n.num_addresses for n in ipaddress.collapse_addresses(seen))
        if covered > SSH_ALLOW_MAX_ADDRESSES:
            _fail(where, f"with the entries before it, {name} covers {covered} addresses, more than a "
                  f"/{SSH_ALLOW_MIN_PREFIX} ({SSH_ALLOW_MAX_ADDRESSES}): list the networks operators use")


def _check_pool_keys(base: str, pool: NodePool) -> None:
    """A pool's labels and taints never override the platform's (its prefixes, the scheduling taints), and its
    labels are ones the kubelet sets on itself (RKE2 passes them as --node-labels)."""
    for key in pool.labels:
        where = format_path((*parse_path(base), "labels", key))
        prefix = next((p for p in labels.RESERVED_KEY_PREFIXES if key.startswith(p)), None)
        if prefix is not None:
            _fail(where, f"label {key!r} is under {prefix!r}, which the platform sets itself: choose a key of your own "
                  "domain (such as example.org/rack)")
        if not labels.kubelet_may_self_label(key):
            _fail(where, f"the kubelet refuses to set label {key!r} on its node (in the kubernetes.io and k8s.io "
                  f"namespaces it sets only {', '.join(labels.KUBELET_SELF_LABEL_NAMESPACES)} keys and "
                  f"{', '.join(sorted(labels.KUBELET_SELF_LABELS))}): choose a key of your own domain")
    for i, taint in enumerate(pool.taints):
        where = f"{base}.taints[{i}].key"
        prefix = next((p for p in labels.RESERVED_KEY_PREFIXES if taint.key.startswith(p)), None)
        if prefix is not None:
            _fail(where, f"taint {taint.key!r} is under {prefix!r}, which the platform sets itself: choose a key of "
                  "your own domain")
        if taint.key in labels.RESERVED_TAINT_KEYS:
            hint = "use `reserved_for: <IAM group>`" if taint.key == labels.RESERVED_TAINT else "choose another key"
            _fail(where, f"taint {taint.key!r} is the platform's own scheduling taint: {hint}")


def _check_pools(env: Environment) -> None:
    seen: dict[str, str] = {}
    for pool_name, pool in env.node_pools.items():
        base = f"node_pools.{pool_name}"
        _check_pool_keys(base, pool)
        names = pool_node_names(pool_name, pool)
        for i, name in enumerate(names):
            where = f"{base}.nodes[{i}]" if pool.nodes is not None else f"{base}.count"
            if len(name) > 63:
                # only generated names can be: explicit ones are DNS labels already
                _fail(
                    f"{base}.name_prefix" if pool.name_prefix else base,
                    f"generated node name {name!r} is longer than 63 characters: set a shorter `name_prefix`",
                    base,
                )
            if name in seen:
                _fail(
                    where,
                    f"node name {name!r} is also in pool {seen[name]!r}: node names must be unique",
                    f"node_pools.{seen[name]}",
                )
            seen[name] = pool_name

        if pool.flavor not in env.flavors:
            known = ", ".join(env.flavors) or "none defined"
            _fail(f"{base}.flavor", f"flavor {pool.flavor!r} is not defined under `flavors` (defined: {known})")
        flavor = env.flavors[pool.flavor]

        accel = pool.accelerators
        if pool.role in (Role.GPU, Role.FPGA) and accel is None:
            _fail(
                f"{base}.accelerators",
                f"a `{pool.role.value}` pool needs `accelerators: {{model, per_node}}`",
                f"{base}.role",
            )
        if accel is not None:
            model = cat.model(accel.model)
            if pool.role not in (Role.GPU, Role.FPGA):
                _fail(f"{base}.role", f"pool has accelerators, so its role must be gpu or fpga, not {pool.role.value}")
            expected = Role.GPU if model.device_class is cat.DeviceClass.GPU else Role.FPGA
            if pool.role is not expected:
                _fail(
                    f"{base}.role",
                    f"{model.name} is a {model.device_class.value}: the pool's role must be {expected.value}",
                    f"{base}.accelerators",
                )
            carried = flavor.accelerators.get(model.name, 0)
            if carried != accel.per_node:
                what = f"{carried}x {model.name}" if carried else f"no {model.name}"
                _fail(
                    f"{base}.accelerators.per_node",
                    f"pool wants {accel.per_node}x {model.name} per node but flavor {pool.flavor!r} carries "
                    f"{what}: set the flavor's `accelerators: {{{model.name}: {accel.per_node}}}` or change the pool",
                    base,
                    format_path(("flavors", pool.flavor)),
                )
            others = set(flavor.accelerators) - {model.name}
            if others:
                _fail(f"{base}.flavor", f"flavor {pool.flavor!r} also passes through {', '.join(sorted(others))}")
            if pool.mig is not None:
                if not model.mig_capable:
                    _fail(f"{base}.mig", f"{model.name} does not support MIG: remove `mig`")
                try:
                    mig.validate(model, pool.mig)
                except mig.MigLayoutError as e:
                    where = f"{base}.mig[{e.index}]" if e.index is not None else f"{base}.mig"
                    _fail(where, str(e))
                if env.kubernetes.mig_strategy == "single" and len(set(pool.mig)) > 1:
                    _fail(
                        f"{base}.mig",
                        f"layout mixes {', '.join(sorted(set(pool.mig)))} but kubernetes.mig_strategy is "
                        "'single' (one profile per node): use one profile, or set mig_strategy: mixed",
                    )
        elif flavor.accelerators:
            _fail(
                f"{base}.accelerators",
                f"flavor {pool.flavor!r} passes through {', '.join(flavor.accelerators)} but the pool declares "
                "no `accelerators`",
                f"{base}.flavor",
                format_path(("flavors", pool.flavor)),
            )
        if pool.ingress and pool.role not in (Role.AGENT, Role.SERVER):
            _fail(f"{base}.ingress", "only agent or server pools can carry the ingress", f"{base}.role")
        if pool.ingress and not names and env.network.ingress.hostname:
            _fail(f"{base}.nodes" if pool.nodes is not None else f"{base}.count",
                  f"the ingress pool has no node, but network.ingress.hostname publishes "
                  f"{env.network.ingress.hostname}: give the pool a node, or move `ingress: true` to a pool with nodes",
                  "network.ingress.hostname")

    servers = [n for n, p in env.node_pools.items() if p.role is Role.SERVER]
    if not servers:
        _fail("node_pools", "no pool has role `server`: the cluster needs its RKE2 servers")
    if len(servers) > 1:
        _fail(
            f"node_pools.{servers[1]}.role",
            f"only one server pool is supported (already: {servers[0]!r})",
            f"node_pools.{servers[0]}.role",
        )
    sp = env.node_pools[servers[0]]
    n_servers = len(pool_node_names(servers[0], sp))
    if n_servers % 2 == 0 or n_servers > MAX_SERVERS:
        where = f"node_pools.{servers[0]}." + ("count" if sp.count is not None else "nodes")
        _fail(where, f"{n_servers} servers: etcd needs an odd number (1, 3 or 5) for quorum")

    roles = Counter(p.role for p in env.node_pools.values())
    for role in (Role.NFS, Role.BACKUP, Role.BASTION, Role.MONITORING):
        pools = [n for n, p in env.node_pools.items() if p.role is role]
        if len(pools) > 1:
            _fail(
                f"node_pools.{pools[1]}.role",
                f"only one {role.value} pool is supported (already: {pools[0]!r})",
                f"node_pools.{pools[0]}.role",
            )
        if pools and len(pool_node_names(pools[0], env.node_pools[pools[0]])) != 1:
            p = env.node_pools[pools[0]]
            _fail(
                f"node_pools.{pools[0]}." + ("count" if p.count is not None else "nodes"),
                f"the {role.value} pool holds exactly one node",
            )
    if env.storage.nfs is not None and not roles[Role.NFS]:
        _fail("storage.nfs", "the platform filesystem needs a node pool with role `nfs`", "node_pools")
    if env.storage.backup is not None and not roles[Role.BACKUP]:
        _fail(
            "storage.backup", "backups need a node pool with role `backup` (it holds the Borg repository)", "node_pools"
        )
    if env.network.ssh_allow and not roles[Role.BASTION]:
        _fail("network.ssh_allow", "SSH is allowed from outside but there is no `bastion` pool to receive it")
    grafana = env.services.monitoring.grafana
    if grafana is not None and not roles[Role.MONITORING]:
        _fail("services.monitoring.grafana", "Grafana needs a node pool with role `monitoring` (its own VM)",
              "node_pools")
    if roles[Role.MONITORING] and grafana is None:
        mon = next(n for n, p in env.node_pools.items() if p.role is Role.MONITORING)
        _fail(f"node_pools.{mon}.role", "the `monitoring` node runs Grafana: set services.monitoring.grafana "
              "(its IAM client and the networks that reach it)", "services.monitoring.grafana")
    if grafana is not None:
        _check_operator_networks(env, "services.monitoring.grafana.allow", grafana.allow, "Grafana", "Grafana")


def _check_operators(env: Environment) -> None:
    """An operator with sudo exists, so bootstrap retires the shared account (roles/common,
    bootstrap_account.yml); or the site keeps it on purpose (``bootstrap.keep_bootstrap_account``)."""
    b = env.bootstrap
    with_sudo = any(u.sudo for u in b.admin_users)
    if not with_sudo and not b.keep_bootstrap_account:
        # the field the file would set (the section itself when the file has none)
        where = "bootstrap.admin_users" if "bootstrap" in env.model_fields_set else "bootstrap"
        _fail(where, "no user in admin_users has sudo, so the shared bootstrap account (one key, "
              "passwordless sudo on every node) is never retired: list at least one operator with `sudo: true`, "
              "or set bootstrap.keep_bootstrap_account: true to keep that account on purpose",
              "bootstrap.keep_bootstrap_account")
    if with_sudo and b.keep_bootstrap_account:
        _fail("bootstrap.keep_bootstrap_account", "an admin user has sudo, so bootstrap retires the shared "
              "account anyway: remove keep_bootstrap_account (it only applies to a site without such a user)",
              "bootstrap.admin_users")


def _check_site(env: Environment) -> None:
    if env.site.ssh_public_key is None:
        extra = (" (bootstrap.admin_users' keys are installed by Ansible, which logs in with this one first)"
                 if env.bootstrap.admin_users else "")
        _fail("site.ssh_public_key", "no SSH key reaches the nodes: set site.ssh_public_key to the operators' OpenSSH "
              "public key (the line of their .pub file), the key of the `aiinfn` account Ansible logs in with" + extra)
    for name, f in env.flavors.items():
        for model in f.accelerators:
            if model not in cat.MODELS:  # pragma: no cover - the model validator already refuses it
                _fail(format_path(("flavors", name, "accelerators")), f"unknown accelerator {model!r}")
        devices = sum(f.accelerators.values())
        # a floor, not a sizing: each passed-through device needs a vCPU to drive it, and its driver and
        # a process using it need host memory (MIN_RAM_GB_PER_DEVICE) besides the system's
        if devices and f.vcpus < devices:
            _fail(format_path(("flavors", name, "vcpus")), f"{f.vcpus} vCPUs for {devices} accelerators: give the "
                  f"flavor at least one vCPU per device ({devices})", format_path(("flavors", name, "accelerators")))
        if devices and f.ram_gb < MIN_RAM_GB_PER_DEVICE * devices:
            _fail(format_path(("flavors", name, "ram_gb")), f"{f.ram_gb} GB of RAM for {devices} accelerators: give "
                  f"the flavor at least {MIN_RAM_GB_PER_DEVICE} GB per device ({MIN_RAM_GB_PER_DEVICE * devices} GB)",
                  format_path(("flavors", name, "accelerators")))
    if not env.site.hosts:
        return
    nodes = inventory(env)
    installed = installed_accelerators(env)
    for model, need in requested_accelerators(nodes).items():
        have = installed.get(model, 0)
        if need > have:
            pools = [n for n, p in env.node_pools.items() if p.accelerators and p.accelerators.model == model]
            _fail(
                f"node_pools.{pools[0]}.accelerators",
                f"pools ask for {need}x {model} but the site's hosts have {have}: lower the node count or "
                "add the hardware to site.hosts",
                *(f"node_pools.{p}" for p in pools),
                "site.hosts",
            )
    fit = fit_on_hosts(env, nodes)
    if fit.unplaced:
        node = next(n for n in nodes if n.name == fit.unplaced)
        _fail(
            f"node_pools.{node.pool}",
            f"node {node.name!r} fits on no host in site.hosts ({fit.reason}, after placing the larger nodes)",
            # packing is global: every pool and flavor placed before this node is involved
            "node_pools",
            "flavors",
            "site.hosts",
        )


def _check_projects(env: Environment) -> None:
    nodes = inventory(env)
    caps = capacity(env, nodes)
    reserved_for = {n.name: n.reserved_for for n in nodes}
    # kinds all of whose nodes are reserved for one group (as Plan.reserved_kinds): only that group's queues hold them
    reserved = {k: next(iter(g)) for k, c in caps.items()
                if len(g := {reserved_for.get(n) for n in c.nodes}) == 1 and next(iter(g)) is not None}
    totals: dict[str, list[tuple[str, float]]] = {}
    namespaces: dict[str, str] = {}
    for pname, p in env.projects.items():
        ns = p.namespace or pname
        if ns in namespaces:
            _fail(f"projects.{pname}.namespace", f"namespace {ns!r} is already used by project {namespaces[ns]!r}")
        namespaces[ns] = pname
        for kind, share in p.shares.items():
            if kind not in caps:
                offered = ", ".join(caps) or "none"
                _fail(
                    format_path(("projects", pname, "shares", kind)),
                    f"the cluster offers no {kind!r} (kinds offered: {offered})",
                    "node_pools",
                    "kubernetes.mig_strategy",
                )
            owner = reserved.get(kind)
            if owner is not None and owner != p.iam_group:
                pools = sorted(name for name, pool in env.node_pools.items() if pool.reserved_for == owner)
                _fail(format_path(("projects", pname, "shares", kind)),
                      f"{kind} is reserved for {owner} (node_pools.{pools[0] if pools else '?'}.reserved_for): a "
                      f"project of {p.iam_group} can never use it; remove the share", "node_pools")
            totals.setdefault(kind, []).append((pname, share))
    for kind, items in totals.items():
        total = sum(s for _, s in items)
        if total > 1.0 + 1e-9:
            detail = " + ".join(f"{n} {s:g}" for n, s in items)
            last = items[-1][0]
            _fail(
                format_path(("projects", last, "shares", kind)),
                f"shares of {kind} add up to {total:g} ({detail}), above the whole capacity "
                f"({caps[kind].units} units = 1.0): lower them",
                *(f"projects.{n}.shares" for n, _ in items),
            )
    for kind, items in totals.items():
        units = caps[kind].units
        for pname, share in items:  # a guarantee is floor(share x units) (planning/quotas.py)
            if share > 0 and int(share * units + 1e-9) == 0:
                _fail(format_path(("projects", pname, "shares", kind)),
                      f"share {share:g} of {units} {kind} units guarantees floor({share:g} x {units}) = 0 units: raise "
                      f"it to at least {1 / units:.4g} (one unit), or remove it", "node_pools")


def _check_services(env: Environment) -> None:
    hub = env.services.jupyterhub
    if hub is not None and hub.images and hub.default_image not in hub.images.values():
        _fail("services.jupyterhub.default_image", "default_image must be one of `images`")
    if hub is not None and hub.team_images:
        if env.services.harbor is None:
            _fail("services.jupyterhub.team_images", "team images are built into the platform's Harbor: configure "
                  "services.harbor, or remove team_images")
        for name in hub.team_images:
            if name in hub.images:
                _fail(f"services.jupyterhub.team_images.{name}", f"{name!r} is also an entry of `images`: give the "
                      "team image another name")
    h = env.services.harbor
    if h is not None and h.s3_bucket and not (h.s3_access_key_secret and h.s3_secret_key_secret):
        _fail("services.harbor", "s3_bucket needs s3_access_key_secret and s3_secret_key_secret")
    s3 = env.storage.s3
    for i, m in enumerate(s3.node_mounts if s3 else []):
        for pool in m.pools:
            if pool not in env.node_pools:
                _fail(f"storage.s3.node_mounts[{i}].pools", f"{pool!r} is not a node pool (pools: "
                      f"{', '.join(env.node_pools)})")
    block = env.storage.block
    if block is not None:
        for other, cls in (("storage.nfs", env.storage.nfs), ("storage.juicefs", env.storage.juicefs)):
            if cls is not None and cls.storage_class == block.storage_class:
                _fail("storage.block.storage_class", f"{block.storage_class!r} is also {other}'s StorageClass: "
                      "give the block class a name of its own", f"{other}.storage_class")
    if env.storage.juicefs is not None and env.storage.s3 is None:
        _fail("storage.juicefs", "JuiceFS stores its data in S3: configure storage.s3 first")


def check(env: Environment) -> None:
    """Every cross-field rule, in the order an operator would fix them."""
    _check_network(env)
    _check_pools(env)
    _check_site(env)
    _check_operators(env)
    _check_projects(env)
    _check_services(env)
    validate_offload.check(env)
    check_reserve(env)


def check_federation(federation: Federation, sites: dict[str, Environment]) -> None:
    """The federation's sites can run as one platform (config/validate_federation.py has the rules)."""
    validate_federation.check_federation(federation, sites)
