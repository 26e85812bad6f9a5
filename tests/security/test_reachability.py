"""Who may reach what: every security-group rule and every NetworkPolicy the platform creates.

Two tables, each computed from the rules' semantics rather than from the code that writes them:

* OpenStack security groups, from the offline plan's registrations (``SecGroup``, ``SecGroupRule``,
  and each node's ``Port`` memberships): the rule list is spelled out below, so any new rule fails
  here, and reachability between node roles and from the internet is derived from it;
* NetworkPolicies, from every bundle of a site and an event's bundle, evaluated over sample pods
  and addresses by tests/support/security/netpol.py (the API's allow-rule semantics). The expected
  cross-namespace paths are spelled out below: a path the policies open that is not listed (a
  cross-tenant path, a tenant reaching a platform pod, anything reaching the metadata service)
  fails, and so does a listed path they do not open (a service cut off from what it needs).

No cluster or cloud runs here: the CNI's and Neutron's enforcement is what these semantics model.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from netpol import Cluster, Endpoint

from aiinfn.config.loader import list_environments, load
from aiinfn.config.models import Role
from aiinfn.planning import make_plan
from aiinfn.planning.events import make_event_plan
from aiinfn.planning.labels import NAMESPACE_NAME_LABEL
from aiinfn.preview import Preview
from aiinfn.services import event, harbor, network, notebooks, provisioner, site_bundles, tls
from aiinfn.services.bundle import Manifest

SITES = list_environments(kind="site")
ANYWHERE = "0.0.0.0/0"

# --------------------------------------------------------------------------- security groups

#: Every rule of the security groups: (group, rule, protocol, ports, from). Ports are "min-max";
#: ``from`` is a group or a CIDR ("ssh_allow" stands for each of `network.ssh_allow`).
SECURITY_GROUP_RULES = {
    ("cluster", "kubelet", "tcp", "10250-10250", "cluster"),
    ("cluster", "vxlan", "udp", "8472-8472", "cluster"),
    ("cluster", "cni-health", "tcp", "9099-9099", "cluster"),
    ("cluster", "nodeports", "tcp", "30000-32767", "cluster"),
    ("cluster", "node-exporter", "tcp", "9100-9100", "cluster"),
    ("cluster", "icmp", "icmp", "-", "cluster"),
    ("servers", "supervisor", "tcp", "9345-9345", "cluster"),
    ("servers", "apiserver", "tcp", "6443-6443", "cluster"),
    ("servers", "apiserver-bastion", "tcp", "6443-6443", "bastion"),
    ("servers", "etcd", "tcp", "2379-2381", "servers"),
    ("ingress", "http", "tcp", "80-80", ANYWHERE),
    ("ingress", "https", "tcp", "443-443", ANYWHERE),
    ("bastion", "ssh", "tcp", "22-22", "ssh_allow"),
    ("internal-ssh", "ssh-from-bastion", "tcp", "22-22", "bastion"),
    ("nfs", "nfs", "tcp", "2049-2049", "cluster"),
    ("nfs", "node-exporter", "tcp", "9100-9100", "cluster"),
    ("backup", "borg-ssh", "tcp", "22-22", "nfs"),
    ("backup", "node-exporter", "tcp", "9100-9100", "cluster"),
    ("bastion", "node-exporter", "tcp", "9100-9100", "cluster"),
    # Grafana on the monitoring VM: only from services.monitoring.grafana.allow ("grafana.allow")
    ("monitoring", "grafana", "tcp", "3000-3000", "grafana.allow"),
    ("monitoring", "node-exporter", "tcp", "9100-9100", "cluster"),
}
#: The only rules open to the world: HTTP(S) on the ingress nodes.
WORLD_OPEN = {("ingress", 80), ("ingress", 443)}


@pytest.fixture(params=SITES)
def report(request: pytest.FixtureRequest, shipped_reports: dict[str, Preview]) -> Preview:
    return shipped_reports[request.param]


def security_groups(report: Preview) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """The rules (with group names resolved) and each node's groups, from what the stack registers."""
    site = report.env.site.name
    names = {r.id: r.inputs["name"].removeprefix(f"aiinfn-{site}-")
             for r in report.run.by_type("openstack:networking/secGroup:SecGroup")}
    rules = []
    for r in report.run.by_type("openstack:networking/secGroupRule:SecGroupRule"):
        i = r.inputs
        ports = "-" if i.get("portRangeMin") is None else f"{int(i['portRangeMin'])}-{int(i['portRangeMax'])}"
        rules.append({
            "group": names[i["securityGroupId"]], "key": r.name.split(f"-{names[i['securityGroupId']]}-", 1)[1],
            "protocol": i["protocol"], "ports": ports, "direction": i["direction"],
            "from": names[i["remoteGroupId"]] if i.get("remoteGroupId") else i["remoteIpPrefix"],
        })
    members = {p.inputs["name"]: [names[g] for g in p.inputs["securityGroupIds"]]
               for p in report.run.by_type("openstack:networking/port:Port")}
    return rules, members


def test_every_security_group_rule_is_listed(report: Preview) -> None:
    rules, _ = security_groups(report)
    allow = [str(c) for c in report.env.network.ssh_allow]
    grafana = report.env.services.monitoring.grafana
    grafana_allow = [str(c) for c in grafana.allow] if grafana else []
    found = set()
    for r in rules:
        assert r["direction"] == "ingress", r
        key, source = r["key"], r["from"]
        if r["group"] == "bastion" and key.startswith("ssh-"):
            assert source in allow, r
            key, source = "ssh", "ssh_allow"
        elif r["group"] == "monitoring" and key.startswith("grafana-"):
            assert source in grafana_allow, r
            key, source = "grafana", "grafana.allow"
        found.add((r["group"], key, r["protocol"], r["ports"], source))
    expected = {x for x in SECURITY_GROUP_RULES
                if (x[0] != "bastion" or allow) and (x[0] != "monitoring" or grafana)}
    assert found == expected, (found - expected, expected - found)


def test_nothing_but_https_on_the_ingress_nodes_is_open_to_the_world(report: Preview) -> None:
    rules, members = security_groups(report)
    for r in rules:
        if r["from"] in (ANYWHERE, "::/0") or (
                "/" in r["from"] and ipaddress.ip_network(r["from"]).num_addresses > 2 ** 24):
            lo, hi = (int(x) for x in r["ports"].split("-"))
            assert (r["group"], lo) in WORLD_OPEN and lo == hi, r
    # and only the bastion takes SSH from outside the site, only from ssh_allow
    for r in rules:
        if r["ports"] == "22-22" and "/" in r["from"]:
            assert r["group"] == "bastion" and r["from"] in [str(c) for c in report.env.network.ssh_allow]
    bastions = [n.name for n in report.plan.nodes if n.role is Role.BASTION]
    for node, groups in members.items():
        if "bastion" in groups:
            assert node in bastions and groups == ["bastion"]


def _sg_reachable(rules: list[dict[str, Any]], src_groups: list[str], dst_groups: list[str], port: int,
                  proto: str = "tcp") -> bool:
    for r in rules:
        if r["group"] not in dst_groups or r["protocol"] != proto or r["from"] not in src_groups:
            continue
        lo, hi = (int(x) for x in r["ports"].split("-"))
        if lo <= port <= hi:
            return True
    return False


def test_node_roles_reach_only_what_they_need(report: Preview) -> None:
    rules, members = security_groups(report)
    role_of = {n.name: n.role for n in report.plan.nodes}
    by_role: dict[Role, list[str]] = {}
    for node, groups in members.items():
        by_role.setdefault(role_of[node], groups)
    gpu = by_role.get(Role.GPU) or by_role[Role.AGENT]
    server = by_role[Role.SERVER]
    # etcd only among servers; the API and supervisor from cluster nodes (API also from the bastion)
    assert _sg_reachable(rules, server, server, 2379) and not _sg_reachable(rules, gpu, server, 2379)
    assert _sg_reachable(rules, gpu, server, 6443) and _sg_reachable(rules, gpu, server, 9345)
    if Role.NFS in by_role:
        nfs = by_role[Role.NFS]
        assert _sg_reachable(rules, gpu, nfs, 2049)
        if Role.BASTION in by_role:
            assert not _sg_reachable(rules, by_role[Role.BASTION], nfs, 2049)
        if Role.BACKUP in by_role:
            backup = by_role[Role.BACKUP]
            assert _sg_reachable(rules, nfs, backup, 22) and not _sg_reachable(rules, gpu, backup, 22)
    # no node role but the bastion reaches a node's SSH
    for role, groups in by_role.items():
        for dst in by_role.values():
            if role is not Role.BASTION:
                assert not _sg_reachable(rules, groups, dst, 22) or "nfs" in groups, role


# --------------------------------------------------------------------------- NetworkPolicies

UDP = "UDP"
#: Ports probed between every pair of endpoints (what the platform's services listen on, and more).
PORTS = [(53, UDP), (53, "TCP"), *((p, "TCP") for p in (22, 80, 443, 2049, 5432, 6379, 6443, 8001, 8080, 8081,
                                                         8082, 8089, 8443, 8888, 9100, 9400, 9402, 9443, 9567,
                                                         10250))]
METADATA = "169.254.169.254"
INTERNET = "192.0.2.80"


def world(site: str) -> tuple[Cluster, list[Endpoint], set[str], set[str]]:
    """The site's policies (its bundles and an event's at the site), sample endpoints, the tenant
    namespaces, and the namespaces the platform's policies govern."""
    plan = make_plan(load(site))
    bundles = site_bundles(plan)
    events = [e for e in (load(n) for n in list_environments(kind="event")) if site in e.site_environments()]
    for ev in events:
        alloc = make_event_plan(ev, {n: make_plan(e) for n, e in ev.site_environments().items()}).allocations[site]
        bundles.append(event.bundle(ev, plan, alloc))
    objs = [i.manifest for b in bundles for i in b.items if isinstance(i, Manifest)]
    policies = [o for o in objs if o["kind"] == "NetworkPolicy"]
    ns_objs = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Namespace"}
    namespaces = {n: {**(o["metadata"].get("labels") or {}), NAMESPACE_NAME_LABEL: n} for n, o in ns_objs.items()}
    for n in (network.KUBE_SYSTEM, "jupyterhub"):
        namespaces.setdefault(n, {NAMESPACE_NAME_LABEL: n})
    tenants = {q.namespace for q in plan.quotas} | {e.namespace for e in events}
    governed = {p["metadata"]["namespace"] for p in policies}
    ranges = network.Ranges.of(plan)
    pods = ipaddress.ip_network(ranges.pods).hosts()
    roles: dict[str, dict[str, dict[str, str]]] = {
        network.KUBE_SYSTEM: {"dns": network.DNS_PODS, "ingress": network.INGRESS_PODS, "pod": {}},
        "jupyterhub": {"hub": event.HUB_PODS, "proxy": event.PROXY_PODS,
                       "notebook": {"component": "singleuser-server"}},
        network.MONITORING: {"prometheus": network.PROMETHEUS_PODS, "pod": {}},
        harbor.NAMESPACE: {"harbor": {**harbor.HARBOR_PODS, "component": "core"}, "setup": harbor.SETUP_PODS,
                           "acme": network.ACME_SOLVER_PODS, "pod": {}},
        tls.NAMESPACE: {"controller": tls.CONTROLLER_PODS, "pod": {}},
        notebooks.NAMESPACE: {"notebook": {"component": "singleuser-server"}},
        provisioner.NAMESPACE: {"provisioner": provisioner.PODS, "pod": {}},
    }
    endpoints = [
        Endpoint(f"{ns}/{role}", str(next(pods)), ns, tuple(sorted(labels.items())))
        for ns in sorted(namespaces) for role, labels in roles.get(ns, {"pod": {}}).items()
    ]
    node = ipaddress.ip_network(ranges.nodes).network_address + 10
    endpoints += [
        Endpoint("node", str(node)),
        Endpoint("apiserver-service", ranges.apiserver_service.split("/")[0]),
        Endpoint("metadata", METADATA),
        Endpoint("internet", INTERNET),
    ]
    return Cluster(policies, namespaces), endpoints, tenants, governed


def _ns(e: Endpoint) -> str | None:
    return e.namespace


Rule = Callable[[str, str, int, str], bool]


def expected_paths(tenants: set[str], governed: set[str]) -> Rule:
    """The cross-namespace paths the platform means to open (anything else must be closed)."""
    platform_api = {"kueue-system", "gpu-operator", "nfs-provisioner", "cert-manager", "monitoring", "juicefs",
                    "cinder-csi"}
    scraped = {"kueue-system": {8443}, "gpu-operator": {9400, 8080}, "cert-manager": {9402}, "juicefs": {9567}}
    webhooks = {"kueue-system": {9443, 8082}, "cert-manager": {10250}, "monitoring": {10250}}
    events = {t for t in tenants if t.startswith("event-")}

    def rule(src: str, dst: str, port: int, proto: str) -> bool:
        sns, dns_ = src.split("/")[0], dst.split("/")[0]
        if dst == "kube-system/dns" and port == 53:
            return True
        apiserver = (dst == "node" and port == 6443) or (dst == "apiserver-service" and port == 443)
        if apiserver and (sns in platform_api or src == "harbor/setup"):
            return True
        if sns == notebooks.NAMESPACE:  # users' notebooks: the internet, the ingress, the hub's API and tokens
            return (dst == "internet" or (dst in ("node", "kube-system/ingress") and port in (80, 443))
                    or (dst == "jupyterhub/hub" and port in (8081, 8181)))
        if dns_ == notebooks.NAMESPACE:
            return src in ("jupyterhub/hub", "jupyterhub/proxy") and port == 8888
        if dst == f"{provisioner.NAMESPACE}/provisioner":
            return src == "jupyterhub/hub" and port == provisioner.PORT
        if sns in tenants:
            if dst == "internet" or (dst in ("node", "kube-system/ingress") and port in (80, 443)):
                return True
            return sns in events and dst == "jupyterhub/hub" and port == 8081
        if src in ("cert-manager/controller", "harbor/harbor") and dst == "internet" and port in (80, 443):
            return True
        if sns == "juicefs" and dst == "internet":
            return True
        # the Cinder CSI controller: the OpenStack APIs (Keystone, Nova, Cinder; the auth URL's port is one of these
        # at the shipped sites), never the metadata service (internet excludes it)
        if sns == "cinder-csi" and dst == "internet" and port in (443, 5000, 8774, 8776):
            return True
        if src == "monitoring/prometheus":
            if dst == "node" or ("/" in dst and dns_ not in governed):
                return True
            if port in scraped.get(dns_, set()) or (dst == "harbor/harbor" and port == 8001):
                return True
        if src in ("node", "kube-system/ingress") and ((dst == "harbor/harbor" and port == 8080)
                                                       or (dst == "harbor/acme" and port == 8089)):
            return True
        if src == "node" and port in webhooks.get(dns_, set()):
            return True
        return src in ("jupyterhub/hub", "jupyterhub/proxy") and dns_ in events and port == 8888

    return rule


def paths(cluster: Cluster, endpoints: list[Endpoint], governed: set[str]) -> Iterator[tuple[str, str, int, str]]:
    """Every cross-namespace (or external) path with at least one end under the platform's policies."""
    for src in endpoints:
        for dst in endpoints:
            if src is dst or (src.namespace is not None and src.namespace == dst.namespace):
                continue
            if _ns(src) not in governed and _ns(dst) not in governed:
                continue
            for port, proto in PORTS:
                if cluster.reachable(src, dst, port, proto):
                    yield src.name, dst.name, port, proto


@pytest.mark.parametrize("site", SITES)
def test_the_network_policies_open_exactly_the_listed_paths(site: str) -> None:
    cluster, endpoints, tenants, governed = world(site)
    rule = expected_paths(tenants, governed)
    opened = set(paths(cluster, endpoints, governed))
    wanted = {(s.name, d.name, p, proto) for s in endpoints for d in endpoints for p, proto in PORTS
              if s is not d and not (s.namespace is not None and s.namespace == d.namespace)
              and (_ns(s) in governed or _ns(d) in governed) and rule(s.name, d.name, p, proto)}
    assert sorted(opened - wanted) == [], "paths the policies open that nobody listed"
    assert sorted(wanted - opened) == [], "listed paths the policies do not open"


@pytest.mark.parametrize("site", SITES)
def test_no_tenant_path_crosses_to_another_tenant_the_platform_or_the_metadata_service(site: str) -> None:
    """The properties that matter, stated apart from the full list above."""
    cluster, endpoints, tenants, governed = world(site)
    assert len(tenants) >= 2
    by_name = {e.name: e for e in endpoints}
    for src in endpoints:
        # every pod of a namespace under the platform's policies (the hub's chart and RKE2 police their
        # own: z2jh's singleuser egress rules block the metadata service by default)
        if src.namespace in governed:
            for port, proto in PORTS:
                assert not cluster.reachable(src, by_name["metadata"], port, proto), (src.name, port)
        if src.namespace not in tenants:
            continue
        for dst in endpoints:
            if dst.namespace is None or dst.namespace == src.namespace:
                continue
            for port, proto in PORTS:
                if cluster.reachable(src, dst, port, proto):
                    allowed = (dst.name == "kube-system/dns"
                               or (dst.name == "kube-system/ingress" and port in (80, 443))
                               or (dst.name == "jupyterhub/hub" and port == 8081
                                   and src.namespace.startswith("event-")))
                    assert allowed, (src.name, dst.name, port)
    # and the isolation is not vacuous: a tenant's pods talk among themselves and to the internet
    tenant = sorted(tenants)[0]
    a = Endpoint("a", "10.42.250.1", tenant)
    b = Endpoint("b", "10.42.250.2", tenant)
    assert cluster.reachable(a, b, 8888) and cluster.reachable(a, by_name["internet"], 443)


@pytest.mark.parametrize("site", SITES)
def test_every_namespace_of_the_platform_is_isolated_both_ways(site: str) -> None:
    cluster, endpoints, _, governed = world(site)
    for e in endpoints:
        if e.namespace in governed:
            assert cluster.isolated(e) == (True, True), e.name
    plan = make_plan(load(site))
    namespaces = {i.manifest["metadata"]["name"] for b in site_bundles(plan) for i in b.items
                  if isinstance(i, Manifest) and i.kind == "Namespace"}
    # the hub's namespace is isolated by the chart's own policies (z2jh networkPolicy), the rest by ours
    assert namespaces - {"jupyterhub"} <= governed


def test_the_evaluator_has_teeth() -> None:
    """A policy without an egress rule isolates; an ipBlock except holds; a namespaceSelector needs
    the namespace's labels; ports count."""
    pol = network.policy("x", "a", egress=[{"to": [network.block("0.0.0.0/0", except_=["10.0.0.0/8"])],
                                            "ports": network.tcp(443)}])
    c = Cluster([pol, network.default_deny("b")], {"a": {NAMESPACE_NAME_LABEL: "a"}, "b": {NAMESPACE_NAME_LABEL: "b"}})
    src = Endpoint("s", "10.42.0.1", "a")
    assert c.reachable(src, Endpoint("i", "192.0.2.1"), 443)
    assert not c.reachable(src, Endpoint("i", "192.0.2.1"), 80)
    assert not c.reachable(src, Endpoint("n", "10.1.2.3"), 443)
    assert not c.reachable(Endpoint("o", "192.0.2.9"), Endpoint("d", "10.42.0.9", "b"), 443)
    peer = Cluster([network.policy("y", "b", ingress=[{"from": [network.in_namespace("a")]}])],
                   {"a": {NAMESPACE_NAME_LABEL: "a"}, "b": {}})
    assert peer.reachable(src, Endpoint("d", "10.42.0.9", "b"), 1)
    assert not peer.reachable(Endpoint("z", "10.42.0.7", "c"), Endpoint("d", "10.42.0.9", "b"), 1)
