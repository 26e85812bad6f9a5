"""NetworkPolicy semantics (networking.k8s.io/v1), evaluated over sample endpoints.

What a conforming CNI (RKE2's Canal) enforces, as the API documents it:

* a pod is isolated for a direction when some policy of its namespace selects it (``podSelector``)
  and lists that direction in ``policyTypes``; a pod no policy isolates accepts (sends) everything;
* traffic is allowed when the source may send it (egress of the source's policies) and the
  destination may receive it (ingress of the destination's policies); the allow rules of all the
  policies that select a pod add up, and nothing denies;
* a rule matches when one of its peers matches the other end (``podSelector`` alone: pods of the
  policy's namespace; ``namespaceSelector`` alone: every pod of the selected namespaces; both: the
  selected pods of the selected namespaces; ``ipBlock``: an address in ``cidr`` and in none of
  ``except``) and one of its ports matches (``protocol``, default TCP; ``port`` and ``endPort``;
  no ``ports``: every port);
* host-network pods and addresses outside the cluster have no policies: only the other end's apply.

``ipBlock`` is applied to pod addresses too, which some CNIs do and some do not: counting it makes
more paths reachable, so a test that finds none is conservative. Not modelled: named ports (the
platform's policies use numbers), SCTP, the CNI's own exceptions (node-local traffic to a pod's
kubelet probes).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Endpoint:
    """A pod (``namespace`` set) or an address outside the pod network (``namespace`` None)."""

    name: str
    ip: str
    namespace: str | None = None
    labels: tuple[tuple[str, str], ...] = ()
    host_network: bool = False

    @property
    def label_map(self) -> dict[str, str]:
        return dict(self.labels)

    @property
    def is_pod(self) -> bool:
        return self.namespace is not None and not self.host_network


def selects(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A label selector's verdict (an empty selector selects everything)."""
    selector = selector or {}
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        key, op, values = e["key"], e["operator"], e.get("values") or []
        if (op == "Exists" and key not in labels) or (op == "DoesNotExist" and key in labels):
            return False
        if (op == "In" and labels.get(key) not in values) or (op == "NotIn" and labels.get(key) in values):
            return False
    return True


def _in_block(ip: str, block: dict[str, Any]) -> bool:
    addr = ipaddress.ip_address(ip)
    if addr not in ipaddress.ip_network(block["cidr"]):
        return False
    return not any(addr in ipaddress.ip_network(e) for e in block.get("except") or [])


@dataclass
class Cluster:
    policies: list[dict[str, Any]]
    #: namespace -> its labels (with ``kubernetes.io/metadata.name``, which the API server sets)
    namespaces: dict[str, dict[str, str]] = field(default_factory=dict)

    def _selecting(self, pod: Endpoint, direction: str) -> list[dict[str, Any]]:
        return [p for p in self.policies
                if p["metadata"]["namespace"] == pod.namespace
                and direction in p["spec"].get("policyTypes", [])
                and selects(p["spec"].get("podSelector"), pod.label_map)]

    def _peer(self, peer: dict[str, Any], policy_ns: str, other: Endpoint) -> bool:
        if "ipBlock" in peer:
            return _in_block(other.ip, peer["ipBlock"])
        if not other.is_pod:
            return False
        if "namespaceSelector" in peer:
            ns_labels = self.namespaces.get(other.namespace or "", {})
            if not selects(peer["namespaceSelector"], ns_labels):
                return False
        elif other.namespace != policy_ns:
            return False
        return "podSelector" not in peer or selects(peer["podSelector"], other.label_map)

    @staticmethod
    def _port(rule: dict[str, Any], port: int, protocol: str) -> bool:
        ports = rule.get("ports")
        if not ports:
            return True
        for p in ports:
            if p.get("protocol", "TCP") != protocol:
                continue
            if "port" not in p:
                return True
            if p["port"] <= port <= p.get("endPort", p["port"]):
                return True
        return False

    def _allows(self, pod: Endpoint, other: Endpoint, port: int, protocol: str, direction: str) -> bool:
        selecting = self._selecting(pod, direction)
        if not selecting:
            return True
        key, peers = ("egress", "to") if direction == "Egress" else ("ingress", "from")
        for p in selecting:
            for rule in p["spec"].get(key) or []:
                peer_list = rule.get(peers)
                peer_ok = not peer_list or any(self._peer(x, p["metadata"]["namespace"], other) for x in peer_list)
                if peer_ok and self._port(rule, port, protocol):
                    return True
        return False

    def reachable(self, src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP") -> bool:
        """May ``src`` open a connection to ``dst`` on ``port``?"""
        if src.is_pod and not self._allows(src, dst, port, protocol, "Egress"):
            return False
        return not (dst.is_pod and not self._allows(dst, src, port, protocol, "Ingress"))

    def isolated(self, pod: Endpoint) -> tuple[bool, bool]:
        """(ingress, egress): whether some policy isolates ``pod`` in each direction."""
        return bool(self._selecting(pod, "Ingress")), bool(self._selecting(pod, "Egress"))
