"""A worker's kubeconfig for the MultiKueue manager: made from the worker's ServiceAccount token, its
cluster CA and its routable API address, and checked with the rules Kueue applies to MultiKueue
kubeconfigs (it refuses the cluster otherwise) plus what makes one usable from another site.

``problems(text)`` lists what is wrong, one sentence each, never quoting the token: CA data present
(``certificate-authority-data``, base64 of a PEM certificate), no ``insecure-skip-tls-verify``, no file
paths (``certificate-authority``, ``client-certificate``, ``client-key``, ``tokenFile``), no ``exec``
or ``auth-provider`` plugins, an https server that is not loopback or link-local, a token, and a
current context that resolves.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import urlsplit

import yaml

from ..config.validate_federation import _loopback
from ..errors import PlanError

FILE_FIELDS = {"certificate-authority", "client-certificate", "client-key", "tokenFile"}
PLUGINS = {"exec", "auth-provider"}


def build(cluster: str, server: str, ca_data_b64: str, token: str, user: str = "aiinfn-multikueue") -> str:
    """The kubeconfig text (one cluster, one user, one context)."""
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": cluster, "cluster": {"server": server, "certificate-authority-data": ca_data_b64}}],
        "users": [{"name": f"{cluster}-{user}", "user": {"token": token}}],
        "contexts": [{"name": cluster, "context": {"cluster": cluster, "user": f"{cluster}-{user}"}}],
        "current-context": cluster,
        "preferences": {},
    }
    return yaml.safe_dump(doc, sort_keys=True)


def _named(doc: dict[str, Any], key: str, inner: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for entry in doc.get(key) or []:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            body = entry.get(inner)
            out[entry["name"]] = body if isinstance(body, dict) else {}
    return out


def problems(text: str) -> list[str]:
    """What makes ``text`` a kubeconfig Kueue's MultiKueue refuses or cannot use (empty: fine)."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return ["is not YAML"]
    if not isinstance(doc, dict):
        return ["is not a kubeconfig (no mapping)"]
    out: list[str] = []
    clusters, users, contexts = (_named(doc, "clusters", "cluster"), _named(doc, "users", "user"),
                                 _named(doc, "contexts", "context"))
    if not clusters or not users or not contexts:
        out.append("needs clusters, users and contexts")
    for name, c in clusters.items():
        if c.get("insecure-skip-tls-verify"):
            out.append(f"cluster {name!r}: insecure-skip-tls-verify is set (Kueue refuses it)")
        if "certificate-authority" in c:
            out.append(f"cluster {name!r}: certificate-authority is a file path (Kueue refuses paths)")
        ca = c.get("certificate-authority-data")
        if not ca:
            out.append(f"cluster {name!r}: no certificate-authority-data")
        else:
            try:
                pem = base64.b64decode(str(ca), validate=True)
            except (binascii.Error, ValueError):
                pem = b""
            if b"-----BEGIN CERTIFICATE-----" not in pem:
                out.append(f"cluster {name!r}: certificate-authority-data is not a base64 PEM certificate")
        server = str(c.get("server") or "")
        parts = urlsplit(server)
        if parts.scheme != "https":
            out.append(f"cluster {name!r}: server {server!r} is not https")
        elif _loopback(parts.hostname or ""):
            out.append(f"cluster {name!r}: server {server!r} is loopback or link-local, not routable from the manager")
    for name, u in users.items():
        for f in sorted(FILE_FIELDS & set(u)):
            out.append(f"user {name!r}: {f} is a file path (Kueue refuses paths)")
        for f in sorted(PLUGINS & set(u)):
            out.append(f"user {name!r}: {f} plugins are refused by Kueue")
        if not u.get("token") and not (u.get("client-certificate-data") and u.get("client-key-data")):
            out.append(f"user {name!r}: no token")
    current = doc.get("current-context")
    ctx = contexts.get(str(current)) if current else None
    if ctx is None:
        out.append("current-context names no context")
    elif ctx.get("cluster") not in clusters or ctx.get("user") not in users:
        out.append(f"context {current!r} names a cluster or user the file does not have")
    return out


def check(text: str, worker: str) -> str:
    """``text`` when it is a usable MultiKueue kubeconfig, else a PlanError naming the worker."""
    found = problems(text)
    if found:
        raise PlanError(f"the MultiKueue kubeconfig of worker {worker!r} {'; '.join(found)}")
    return text
