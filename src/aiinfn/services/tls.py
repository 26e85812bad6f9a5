"""TLS: cert-manager and the ClusterIssuer every ingress of the platform uses.

ACME (Let's Encrypt unless ``services.tls.acme_server`` says otherwise) with HTTP-01 through RKE2's
ingress-nginx when the site gives a contact address, self-signed otherwise.

Pod Security ``restricted``: the chart's controller, webhook, cainjector and startup check run as
non-root with seccomp RuntimeDefault, no privilege escalation and every capability dropped. Network:
the API server (all three), the webhook called by the API server (10250), Prometheus on the
controller's metrics (9402), and the controller's ACME traffic to the internet (443, and 80 for its
HTTP-01 self-check), never the cluster's ranges or the metadata service.
"""

from __future__ import annotations

from typing import Any

from ..planning import Plan
from ..planning.labels import PLATFORM_LABEL
from . import network
from .bundle import Bundle, Release, manifests, namespace

NAMESPACE = "cert-manager"
CLUSTER_ISSUER = "aiinfn"
INGRESS_CLASS = "nginx"  # RKE2's bundled ingress-nginx
RELEASE = "cert-manager"
WEBHOOK_PORT = 10250
METRICS_PORT = 9402
#: The chart's controller pods.
CONTROLLER_PODS = {"app.kubernetes.io/name": "cert-manager", "app.kubernetes.io/component": "controller"}


def ingress_annotations() -> dict[str, str]:
    """Annotations that give an Ingress a certificate from the platform's issuer."""
    return {"cert-manager.io/cluster-issuer": CLUSTER_ISSUER}


def values() -> dict[str, Any]:
    return {"crds": {"enabled": True, "keep": True}, "prometheus": {"servicemonitor": {"enabled": True}}}


def cluster_issuer(plan: Plan) -> dict[str, Any]:
    tls = plan.env.services.tls
    if tls.acme_email:
        spec: dict[str, Any] = {
            "acme": {
                "email": tls.acme_email,
                "server": tls.acme_server,
                "privateKeySecretRef": {"name": "aiinfn-acme-account"},
                "solvers": [{"http01": {"ingress": {"ingressClassName": INGRESS_CLASS}}}],
            }
        }
    else:
        spec = {"selfSigned": {}}
    return {"apiVersion": "cert-manager.io/v1", "kind": "ClusterIssuer", "metadata": {"name": CLUSTER_ISSUER},
            "spec": spec}


def network_policies(plan: Plan) -> list[dict[str, Any]]:
    ranges = network.Ranges.of(plan)
    return [
        *network.baseline(NAMESPACE),
        network.allow_apiserver(NAMESPACE, ranges),
        network.allow_from_apiserver(NAMESPACE, ranges, [WEBHOOK_PORT]),
        network.allow_from_prometheus(NAMESPACE, [METRICS_PORT]),
        network.allow_public_egress(NAMESPACE, ranges, [80, 443], CONTROLLER_PODS, name="allow-acme"),
    ]


def bundle(plan: Plan) -> Bundle:
    return Bundle(
        "tls",
        (
            namespace(NAMESPACE, "restricted", {PLATFORM_LABEL: "true"}),
            *manifests(*network_policies(plan)),
            Release(RELEASE, (f"ns-{NAMESPACE}",), chart="cert-manager", namespace=NAMESPACE, values=values(),
                    crd_groups=("cert-manager.io", "acme.cert-manager.io")),
            *manifests(cluster_issuer(plan), after=(RELEASE,)),
        ),
    )
