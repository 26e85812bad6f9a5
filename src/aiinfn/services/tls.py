"""TLS: cert-manager and the ClusterIssuer every ingress of the platform uses.

ACME (Let's Encrypt unless ``services.tls.acme_server`` says otherwise) with HTTP-01 through RKE2's
ingress-nginx when the site gives a contact address, self-signed otherwise.
"""

from __future__ import annotations

from typing import Any

from ..planning import Plan
from .bundle import Bundle, Release, manifests, namespace

NAMESPACE = "cert-manager"
CLUSTER_ISSUER = "aiinfn"
INGRESS_CLASS = "nginx"  # RKE2's bundled ingress-nginx
RELEASE = "cert-manager"


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


def bundle(plan: Plan) -> Bundle:
    return Bundle(
        "tls",
        (
            namespace(NAMESPACE, "baseline"),
            Release(RELEASE, (f"ns-{NAMESPACE}",), chart="cert-manager", namespace=NAMESPACE, values=values(),
                    crd_groups=("cert-manager.io", "acme.cert-manager.io")),
            *manifests(cluster_issuer(plan), after=(RELEASE,)),
        ),
    )
