"""NetworkPolicies the bundles share: default deny in both directions, then explicit allows.

Every namespace the platform creates gets ``default-deny`` (ingress and egress: nothing in, nothing
out) plus ``allow-dns`` (egress to the cluster DNS in kube-system). Each service then adds what its
own pods need, built from the peers below, so "who may reach what" is written once:

* the API server: kube-apiserver runs on the server nodes' host network, so a pod reaches it at a
  node address on 6443 (after the CNI's DNAT of the ``kubernetes`` Service) and at the Service address
  on 443 before it; webhooks the API server calls arrive from node addresses;
* the ingress controller: RKE2's ingress-nginx in kube-system (host ports on every node), seen as its
  pods or, on the host network, as node addresses;
* Prometheus (the monitoring namespace) scraping metrics ports;
* the internet: ``0.0.0.0/0`` except the cluster's own ranges (nodes, pods, Services) and the
  OpenStack metadata service (169.254.169.254, which serves every VM's user data): ``public()``.

Tenant namespaces (projects, events) accept traffic only from their own namespace and send it only
to their own namespace, DNS, the public internet and the ingress (Harbor, the hub): never to another
tenant, to a platform pod directly, to the nodes' other ports or to the metadata service.
Host-network pods (node-exporter, parts of the GPU Operator and the CSI drivers) are not subject to
NetworkPolicies at all; the security groups (stacks/infra/security.py) are their boundary.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..planning import Plan
from ..planning.labels import NAMESPACE_NAME_LABEL

NETPOL_API = "networking.k8s.io/v1"
#: The OpenStack metadata service (user data of every VM, including its cloud-init secrets).
METADATA_SERVICE = "169.254.169.254/32"
ANYWHERE = "0.0.0.0/0"
MONITORING = "monitoring"
KUBE_SYSTEM = "kube-system"
#: RKE2's CoreDNS pods (rke2-coredns chart) and ingress-nginx controller (rke2-ingress-nginx chart).
DNS_PODS = {"k8s-app": "kube-dns"}
INGRESS_PODS = {"app.kubernetes.io/name": "rke2-ingress-nginx"}
#: Pods the Prometheus operator runs for a Prometheus resource.
PROMETHEUS_PODS = {"app.kubernetes.io/name": "prometheus"}
APISERVER_PORT = 6443


@dataclass(frozen=True)
class Ranges:
    """The cluster's address ranges, as the site's environment sets them."""

    nodes: str
    pods: str
    services: str

    @classmethod
    def of(cls, plan: Plan) -> Ranges:
        net = plan.env.network
        return cls(str(net.cidr), str(net.pod_cidr), str(net.service_cidr))

    @property
    def apiserver_service(self) -> str:
        """The ``kubernetes`` Service's address: the first address of the Service range."""
        first = self.services.split("/")[0].rsplit(".", 1)
        return f"{first[0]}.{int(first[1]) + 1}/32"


# --------------------------------------------------------------------------- peers and ports


def in_namespace(namespace: str, pods: dict[str, str] | None = None) -> dict[str, Any]:
    """Pods of ``namespace`` (all of them, or those with labels ``pods``)."""
    peer: dict[str, Any] = {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: namespace}}}
    peer["podSelector"] = {"matchLabels": dict(pods)} if pods else {}
    return peer


def same_namespace() -> dict[str, Any]:
    return {"podSelector": {}}


def block(cidr: str, *, except_: list[str] | None = None) -> dict[str, Any]:
    return {"ipBlock": {"cidr": cidr, **({"except": except_} if except_ else {})}}


def public(ranges: Ranges) -> dict[str, Any]:
    """The internet: anywhere but the cluster's own ranges and the metadata service."""
    return block(ANYWHERE, except_=sorted({ranges.nodes, ranges.pods, ranges.services, METADATA_SERVICE}))


def tcp(*ports: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": p} for p in ports]


def ingress_controller(ranges: Ranges) -> list[dict[str, Any]]:
    """Where traffic from RKE2's ingress-nginx comes from: its pods, or node addresses on the host network."""
    return [in_namespace(KUBE_SYSTEM, INGRESS_PODS), block(ranges.nodes)]


# --------------------------------------------------------------------------- policies


def policy(
    name: str,
    namespace: str,
    *,
    pods: dict[str, str] | None = None,
    ingress: list[dict[str, Any]] | None = None,
    egress: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """A NetworkPolicy for ``pods`` (all pods of the namespace when None) with the given allow rules;
    a direction is in ``policyTypes`` only when rules for it are given (the default deny isolates both)."""
    spec: dict[str, Any] = {"podSelector": {"matchLabels": dict(pods)} if pods else {}, "policyTypes": []}
    if ingress is not None:
        spec["policyTypes"].append("Ingress")
        spec["ingress"] = ingress
    if egress is not None:
        spec["policyTypes"].append("Egress")
        spec["egress"] = egress
    return {"apiVersion": NETPOL_API, "kind": "NetworkPolicy", "metadata": {"name": name, "namespace": namespace},
            "spec": spec}


def default_deny(namespace: str) -> dict[str, Any]:
    """Isolate every pod of ``namespace`` in both directions: only explicit allows let traffic through."""
    return {"apiVersion": NETPOL_API, "kind": "NetworkPolicy",
            "metadata": {"name": "default-deny", "namespace": namespace},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}


def allow_dns(namespace: str) -> dict[str, Any]:
    return policy("allow-dns", namespace, egress=[{
        "to": [in_namespace(KUBE_SYSTEM, DNS_PODS)],
        "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
    }])


def allow_same_namespace(namespace: str) -> dict[str, Any]:
    """The namespace's pods talk to each other (both directions)."""
    return policy("allow-same-namespace", namespace, ingress=[{"from": [same_namespace()]}],
                  egress=[{"to": [same_namespace()]}])


def allow_apiserver(namespace: str, ranges: Ranges, pods: dict[str, str] | None = None) -> dict[str, Any]:
    """Egress of ``pods`` to the Kubernetes API (controllers, operators, the sidecars that watch it)."""
    return policy("allow-apiserver", namespace, pods=pods, egress=[
        {"to": [block(ranges.nodes)], "ports": tcp(APISERVER_PORT)},
        {"to": [block(ranges.apiserver_service)], "ports": tcp(443)},
    ])


def allow_from_apiserver(namespace: str, ranges: Ranges, ports: list[int], pods: dict[str, str] | None = None,
                         name: str = "allow-webhooks") -> dict[str, Any]:
    """Ingress from the API server (admission webhooks, aggregated APIs) on ``ports``: node addresses."""
    return policy(name, namespace, pods=pods, ingress=[{"from": [block(ranges.nodes)], "ports": tcp(*ports)}])


def allow_from_prometheus(namespace: str, ports: list[int], pods: dict[str, str] | None = None) -> dict[str, Any]:
    """Ingress from Prometheus (the monitoring namespace) to the metrics ``ports``."""
    return policy("allow-prometheus", namespace, pods=pods,
                  ingress=[{"from": [in_namespace(MONITORING, PROMETHEUS_PODS)], "ports": tcp(*ports)}])


def allow_public_egress(namespace: str, ranges: Ranges, ports: list[int] | None, pods: dict[str, str] | None = None,
                        name: str = "allow-internet") -> dict[str, Any]:
    """Egress of ``pods`` to the internet on ``ports`` (every port when None; never the cluster's ranges
    or the metadata service)."""
    rule: dict[str, Any] = {"to": [public(ranges)]}
    if ports is not None:
        rule["ports"] = tcp(*ports)
    return policy(name, namespace, pods=pods, egress=[rule])


#: cert-manager's HTTP-01 solver pods (created in the namespace of the Ingress they prove).
ACME_SOLVER_PODS = {"acme.cert-manager.io/http01-solver": "true"}
ACME_SOLVER_PORT = 8089


def allow_from_ingress(namespace: str, ranges: Ranges, ports: list[int], pods: dict[str, str] | None = None,
                       name: str = "allow-ingress") -> dict[str, Any]:
    """Ingress from RKE2's ingress-nginx to ``pods`` on ``ports`` (what an Ingress of the namespace routes to)."""
    return policy(name, namespace, pods=pods,
                  ingress=[{"from": ingress_controller(ranges), "ports": tcp(*ports)}])


def allow_acme_solver(namespace: str, ranges: Ranges) -> dict[str, Any]:
    """The ingress controller reaches cert-manager's HTTP-01 solver in a namespace with an Ingress."""
    return allow_from_ingress(namespace, ranges, [ACME_SOLVER_PORT], ACME_SOLVER_PODS, name="allow-acme-solver")


def baseline(namespace: str, *, same_namespace: bool = True) -> list[dict[str, Any]]:
    """What every namespace of the platform starts from: deny all, DNS, and (usually) its own pods."""
    out = [default_deny(namespace), allow_dns(namespace)]
    if same_namespace:
        out.append(allow_same_namespace(namespace))
    return out


def tenant(namespace: str, ranges: Ranges) -> list[dict[str, Any]]:
    """A project's or an event's namespace: its own pods, DNS, the internet and the ingress (Harbor, the
    hub by their public names); nothing from another namespace, nothing to the cluster's pods,
    Services, nodes' other ports or the metadata service."""
    return [
        *baseline(namespace),
        policy("allow-internet", namespace, egress=[
            {"to": [public(ranges)]},
            {"to": ingress_controller(ranges), "ports": tcp(80, 443)},
        ]),
    ]
