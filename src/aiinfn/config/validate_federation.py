"""A federation's rules: its sites can run as one platform.

``mismatches(federation, sites)`` lists every way the member sites disagree, one ConfigError each (one
line, blaming the federation file and the field that names the site or setting): one IAM issuer, the
same login and admin groups, the federated projects at every site with the same namespace and IAM
group, disjoint node/pod/service networks across sites, the same pinned versions (Kubernetes, RKE2,
Kueue, charts) and RKE2 at least 1.32 (Kueue's MultiKueue hands Jobs over through ``managedBy``), a
manager that is not its own worker, a routable API address for every worker, Harbor at the registry's
sites and the JuiceFS CSI driver at every site of the shared volume. ``check_federation`` (the loader's
entry point) raises the first; ``aiinfn validate`` of a federation prints them all.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping
from urllib.parse import urlsplit

from .. import versions
from ..errors import ConfigError
from .models import Environment, Federation

#: Kueue's MultiKueue sets a Job's ``spec.managedBy``, which Kubernetes honours from 1.32 on.
MIN_RKE2 = (1, 32)

VersionsOf = Callable[[Environment], Mapping[str, str]]


#: The widest network ``manager_egress`` may name (a site's public range at most).
EGRESS_MIN_PREFIX = 16


def pinned_versions(env: Environment) -> dict[str, str]:
    """What a site runs: every site of one checkout runs ``aiinfn.versions`` (environments cannot
    override it); a site stack exports this (``versions``) so the federation can compare deployed sites."""
    del env  # the one place a per-site pin would enter
    pins = {"kubernetes": versions.KUBERNETES, "rke2": versions.RKE2, "kueue": versions.KUEUE,
            "kueue_api": versions.KUEUE_API}
    pins.update({f"chart.{name}": v for name, (_, _, v) in sorted(versions.CHARTS.items())})
    return pins


def rke2_minor(release: str) -> tuple[int, int] | None:
    """``v1.33.5+rke2r1`` -> (1, 33)."""
    m = re.match(r"v?(\d+)\.(\d+)\.", release)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain") or host.lower().endswith(".localhost"):
        return True
    try:
        ip = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return ip.is_loopback or ip.is_unspecified or ip.is_link_local


def mismatches(fed: Federation, sites: Mapping[str, Environment],
               versions_of: VersionsOf = pinned_versions) -> list[ConfigError]:
    """Every disagreement among the federation's sites, in the order an operator would fix them."""
    out: list[ConfigError] = []

    def bad(path: str, message: str) -> None:
        out.append(ConfigError(message, path=path))

    names = list(sites)
    index = {n: i for i, n in enumerate(names)}
    if fed.manager not in sites:
        bad("manager", f"{fed.manager!r} is not one of the federation's sites ({', '.join(names)})")
        return out
    first, ref = names[0], sites[names[0]]

    # one IAM: issuer, claims, login and admin groups
    for name, env in sites.items():
        if name == first:
            continue
        at = f"sites[{index[name]}]"
        for field, mine, theirs in (
            ("iam.issuer", env.iam.issuer, ref.iam.issuer),
            ("iam.username_claim", env.iam.username_claim, ref.iam.username_claim),
            ("iam.groups_claim", env.iam.groups_claim, ref.iam.groups_claim),
        ):
            if mine != theirs:
                bad(at, f"site {name!r}: {field} {mine!r} differs from {first!r}'s {theirs!r}: a federation has "
                        "one IAM")
        for field, mine_l, theirs_l in (("iam.user_groups", env.iam.user_groups, ref.iam.user_groups),
                                        ("iam.admin_groups", env.iam.admin_groups, ref.iam.admin_groups)):
            if sorted(mine_l) != sorted(theirs_l):
                bad(at, f"site {name!r}: {field} [{', '.join(sorted(mine_l))}] differs from {first!r}'s "
                        f"[{', '.join(sorted(theirs_l))}]: the same people log in everywhere")

    # a project known at several sites is the same project: same namespace, same IAM group
    seen: dict[str, tuple[str, str, str]] = {}
    for name, env in sites.items():
        for pname, p in env.projects.items():
            ns = p.namespace or pname
            if pname in seen and seen[pname][1:] != (ns, p.iam_group):
                other, ons, ogroup = seen[pname]
                bad(f"sites[{index[name]}]", f"site {name!r}: project {pname!r} (namespace {ns!r}, IAM group "
                    f"{p.iam_group!r}) differs from {other!r}'s (namespace {ons!r}, IAM group {ogroup!r})")
            seen.setdefault(pname, (name, ns, p.iam_group))

    # networks: disjoint across sites (routes and the workers' addresses must not collide)
    nets = [(n, f, net) for n, e in sites.items() for f, net in (
        ("network.cidr", e.network.cidr), ("network.pod_cidr", e.network.pod_cidr),
        ("network.service_cidr", e.network.service_cidr))]
    for i, (n1, f1, a) in enumerate(nets):
        for n2, f2, b in nets[i + 1:]:
            if n1 != n2 and a.overlaps(b):
                bad(f"sites[{index[n2]}]", f"site {n2!r}: {f2} {b} overlaps {n1!r}'s {f1} {a}: federated "
                    "sites' node, pod and service networks must be disjoint")

    # the same pinned versions, RKE2 recent enough for MultiKueue
    pins = {n: dict(versions_of(e)) for n, e in sites.items()}
    for name in names[1:]:
        for key in sorted(set(pins[name]) | set(pins[first])):
            if pins[name].get(key) != pins[first].get(key):
                bad(f"sites[{index[name]}]", f"site {name!r}: {key} {pins[name].get(key)!r} differs from "
                    f"{first!r}'s {pins[first].get(key)!r}: every site runs the same pinned versions")
    for name in names:
        minor = rke2_minor(pins[name].get("rke2", ""))
        if minor is None or minor < MIN_RKE2:
            bad(f"sites[{index[name]}]", f"site {name!r}: rke2 {pins[name].get('rke2')!r} is older than "
                f"1.{MIN_RKE2[1]}: MultiKueue needs Job managedBy (Kubernetes 1.32+)")

    # manager and workers
    workers = fed.worker_sites()
    for i, w in enumerate(fed.workers or []):
        if w == fed.manager:
            bad(f"workers[{i}]", f"{w!r} is the manager: a MultiKueue manager is not its own worker")
        elif w not in sites:
            bad(f"workers[{i}]", f"{w!r} is not one of the federation's sites ({', '.join(names)})")
        elif fed.workers is not None and fed.workers.index(w) != i:
            bad(f"workers[{i}]", f"{w!r} is listed twice")
    if fed.queues and not [w for w in workers if w != fed.manager]:
        bad("workers", "federated queues need at least one worker site besides the manager")
    for w in workers:
        if w == fed.manager or w not in sites:
            continue
        url = fed.api_servers.get(w)
        if url is None:
            bad("api_servers", f"worker {w!r} has no entry: give its Kubernetes API as the manager reaches it "
                f"(https://<name>:6443, a name in {w}'s kubernetes.tls_sans)")
            continue
        host = urlsplit(url).hostname or ""
        if _loopback(host):
            bad(f"api_servers.{w}", f"{host!r} is a loopback or link-local address: Kueue needs the worker's "
                "routable API address")
        elif host not in sites[w].kubernetes.tls_sans:
            bad(f"api_servers.{w}", f"{host!r} is not in {w}'s kubernetes.tls_sans: the API server's certificate "
                "would not name it, and Kueue verifies it")
    real_workers = [w for w in workers if w != fed.manager and w in sites]
    if real_workers and not fed.manager_egress:
        bad("manager_egress", f"the workers' API port admits only their own cluster and bastion: list the networks "
            f"{fed.manager}'s nodes reach {', '.join(real_workers)} from (its router's external address)")
    for i, entry in enumerate(fed.manager_egress):
        if entry.prefixlen < EGRESS_MIN_PREFIX:
            bad(f"manager_egress[{i}]", f"{entry} is wider than a /{EGRESS_MIN_PREFIX}: the workers' Kubernetes API "
                "would admit that much of the internet; list the manager's own addresses")
            continue
        for w in real_workers:
            net = sites[w].network
            for field, cidr in (("network.cidr", net.cidr), ("network.pod_cidr", net.pod_cidr),
                                ("network.service_cidr", net.service_cidr)):
                if entry.overlaps(cidr):
                    bad(f"manager_egress[{i}]", f"{entry} overlaps {w}'s {field} ({cidr}): list the manager's "
                        "external addresses, as the worker sees them")
    for name in fed.api_servers:
        if name not in workers or name == fed.manager:
            bad(f"api_servers.{name}", f"{name!r} is not a worker of the federation ({', '.join(workers)})")

    # federated queues: their projects exist at every site
    for q, queue in fed.queues.items():
        for j, pname in enumerate(queue.projects):
            missing = [n for n, e in sites.items() if pname not in e.projects]
            if missing:
                bad(f"queues.{q}.projects[{j}]", f"project {pname!r} is missing at {', '.join(missing)}: a "
                    "federated project exists at every site (same namespace, same IAM group)")

    # the registry: Harbor at the primary and at every replica
    reg = fed.registry
    if reg is not None:
        if reg.primary not in sites:
            bad("registry.primary", f"{reg.primary!r} is not one of the federation's sites ({', '.join(names)})")
        elif sites[reg.primary].services.harbor is None:
            bad("registry.primary", f"site {reg.primary!r} runs no Harbor (services.harbor)")
        for i, r in enumerate(reg.replicas):
            if r == reg.primary:
                bad(f"registry.replicas[{i}]", f"{r!r} is the primary: it cannot replicate to itself")
            elif r not in sites:
                bad(f"registry.replicas[{i}]", f"{r!r} is not one of the federation's sites ({', '.join(names)})")
            elif sites[r].services.harbor is None:
                bad(f"registry.replicas[{i}]", f"site {r!r} runs no Harbor (services.harbor): give it one, or "
                    "leave it out (its nodes then pull from the primary)")

    # the shared volume: the JuiceFS CSI driver at every site
    if fed.volume is not None:
        for name, env in sites.items():
            jfs = env.storage.juicefs
            if jfs is None or not jfs.enabled:
                bad("volume", f"site {name!r} has no JuiceFS CSI driver (storage.juicefs): the shared volume is "
                    "mounted at every site")
    return out


def check_federation(fed: Federation, sites: Mapping[str, Environment]) -> None:
    """The loader's entry point: the first mismatch, as one line."""
    found = mismatches(fed, sites)
    if found:
        raise found[0]
