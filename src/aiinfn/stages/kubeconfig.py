"""The cluster's kubeconfig: fetched from the first server through the bastion, its address rewritten.

RKE2 writes the admin kubeconfig to ``/etc/rancher/rke2/rke2.yaml`` on each server, pointing at
``https://127.0.0.1:6443``. ``fetch`` reads it over SSH (``aiinfn.ansible.known_hosts``: through the
bastion, host key pinned) into memory only, ``rewrite`` points every cluster at the API endpoint, and the
stage stores the result as the stack's secret ``aiinfn:kubeconfig``. It is never written to a file, a log
line or an error message: an error names the file, the field and what is wrong with it, never a value.
"""

from __future__ import annotations

from io import StringIO
from typing import Any

from ..ansible.known_hosts import SshAccess
from ..errors import AiinfnError

#: Where RKE2 writes the admin kubeconfig on a server.
RKE2_KUBECONFIG = "/etc/rancher/rke2/rke2.yaml"
APISERVER_PORT = 6443


class KubeconfigError(AiinfnError):
    exit_code = 1


def api_url(host: str, port: int = APISERVER_PORT) -> str:
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


def rewrite(text: str, server: str) -> str:
    """``text`` (a kubeconfig) with every cluster's ``server`` set to ``server``; the rest unchanged."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    yaml = YAML(typ="rt", pure=True)
    try:
        doc: Any = yaml.load(StringIO(text))
    except (YAMLError, UnicodeDecodeError):
        raise KubeconfigError(f"{RKE2_KUBECONFIG}: not YAML") from None
    clusters = doc.get("clusters") if isinstance(doc, dict) else None
    if doc is None or not isinstance(clusters, list) or not clusters:
        raise KubeconfigError(f"{RKE2_KUBECONFIG}: no clusters: is this a kubeconfig?")
    for i, entry in enumerate(clusters):
        cluster = entry.get("cluster") if isinstance(entry, dict) else None
        if not isinstance(cluster, dict) or "server" not in cluster:
            raise KubeconfigError(f"{RKE2_KUBECONFIG}: clusters[{i}].cluster.server is missing")
        cluster["server"] = server
    out = StringIO()
    yaml.dump(doc, out)
    return out.getvalue()


def fetch(access: SshAccess, server: str, address: str) -> str:
    """The kubeconfig RKE2 wrote on ``server`` (at ``address``), read through the bastion."""
    read = f"cat {RKE2_KUBECONFIG}" if access.user == "root" else f"sudo -n cat {RKE2_KUBECONFIG}"
    return access.run(server, address, read)
