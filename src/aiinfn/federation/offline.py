"""What the offline plan of the federation stack reads of its sites' stacks: each site's kubeconfig (a
placeholder secret), its pinned versions, and for each worker a MultiKueue kubeconfig as the worker's
stack makes it (its real API address from the federation file, a placeholder CA and token), so the
federation stack runs its checks on the same shape it reads for real."""

from __future__ import annotations

import base64
from typing import Any

from pulumi.runtime import rpc

from ..config.models import Federation
from ..config.validate_federation import pinned_versions
from ..stacknames import site_stack_name
from . import kubeconfig

PLACEHOLDER = "offline-plan-placeholder"
#: Not a certificate: the shape of one, so the kubeconfig rules see CA data where a real stack has it.
PLACEHOLDER_CA = base64.b64encode(b"-----BEGIN CERTIFICATE-----\nb2ZmbGluZQ==\n-----END CERTIFICATE-----\n").decode()


def _secret(value: str) -> dict[str, Any]:
    return {rpc._special_sig_key: rpc._special_secret_sig, "value": value}


def references(fed: Federation) -> dict[str, dict[str, Any]]:
    """Fully qualified site stack name -> its outputs, as the federation stack reads them offline."""
    out: dict[str, dict[str, Any]] = {}
    for name, env in fed.site_environments().items():
        outs: dict[str, Any] = {"kubeconfig": _secret(PLACEHOLDER), "versions": pinned_versions(env)}
        if name in fed.api_servers:
            outs["multikueue_kubeconfig"] = _secret(kubeconfig.build(name, fed.api_servers[name], PLACEHOLDER_CA,
                                                                     PLACEHOLDER))
        out[site_stack_name(name)] = outs
    return out
