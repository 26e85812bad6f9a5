"""Block storage for the platform's databases: the OpenStack Cinder CSI driver and its StorageClass.

The small stateful claims (the hub's sqlite, Harbor's PostgreSQL, redis, Trivy and job logs, Prometheus'
TSDB) live on Cinder volumes attached to the node that runs them, not on the platform NFS export (which
every node mounts read-write): a tenant who gets to a node's NFS mount no longer reaches a database.

* The chart ``openstack-cinder-csi`` (``versions.CHARTS``) in the namespace ``cinder-csi``, Pod Security
  ``privileged``: its node plugin mounts block devices on the host (privileged, hostPath, host network),
  which nothing below privileged admits. No tenant can create pods there (docs/security.md).
* Its StorageClass (``storage.block.storage_class``) is ours, not the chart's: reclaimPolicy ``Retain``
  (a deleted claim leaves its volume in Cinder), ``allowVolumeExpansion``, ``WaitForFirstConsumer`` (the
  volume is made in the availability zone of the node that first mounts it), the Cinder volume type and
  zone from ``storage.block`` (else ``site.volume_type`` / ``site.availability_zone``). It is not the
  default class: user homes and areas stay on NFS.
* Its OpenStack credentials: an application credential the site's infrastructure stack creates
  (stacks/infra/block.py: restricted, only ``storage.block.credential_roles``), written into the
  driver's ``cloud.conf`` (``cloud_conf``) and handed to the overlay as a secret Output under the name
  ``CLOUD_CONF_REF``: it exists only in the stack's encrypted state and in the Secret ``SECRET``, never in
  an artifact, plan.json or a plain output. (``ConfigSecret`` is the marker of a secret the registrar
  fills from its ``secrets``, as the federation's worker kubeconfigs are; the artifacts say where it
  comes from.)
* Its Keystone URL: ``storage.block.auth_url``, else the public identity endpoint of the site's region in the
  project's own Keystone catalog, read by the infrastructure stack at deploy time (``catalog_auth_url``).
* NetworkPolicies: the controller reaches the API server and the OpenStack APIs (``API_PORTS`` and the
  auth URL's port, outside the cluster's ranges and never the metadata service); nothing reaches it.

A site without ``storage.block`` keeps its databases on the NFS class (the documented fallback: every
OpenStack site this toolkit builds has Cinder, since its NFS and Borg data are Cinder volumes, so the
fallback is for a site that has not migrated yet, docs/operations.md).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from .. import versions
from ..planning import Plan
from ..planning.labels import PLATFORM_LABEL
from . import network
from .bundle import Bundle, ConfigSecret, Manifest, Release, Secret, manifests, namespace

NAMESPACE = "cinder-csi"
RELEASE = "openstack-cinder-csi"
PROVISIONER = "cinder.csi.openstack.org"
SECRET = "cinder-csi-cloud-config"
SECRET_FILE = "cloud.conf"
#: The name under which the infrastructure stack's cloud.conf (a secret Output) reaches the overlay.
CLOUD_CONF_REF = "openstack-cinder-csi-cloud-conf"
#: OpenStack API ports the controller may reach besides the auth URL's: HTTPS, Keystone, Nova, Cinder.
API_PORTS = (443, 5000, 8774, 8776)
#: What a cloud.conf value may hold: gcfg (the driver's parser) treats ``#``/``;`` as comments, quotes and
#: backslashes as escapes, and a line break would start a new key.
_CONF_VALUE = re.compile(r"[A-Za-z0-9._~%/:@+=,-]+")


def storage_class(plan: Plan) -> str | None:
    """The block StorageClass of the databases, or None when the site has no ``storage.block``."""
    block = plan.env.storage.block
    return block.storage_class if block is not None else None


def class_key(plan: Plan) -> str:
    """The item key of the StorageClass (what a claim on it waits for)."""
    return f"storageclass-{storage_class(plan)}"


def credential_request(plan: Plan) -> dict[str, Any]:
    """What the infrastructure stack asks Keystone for (stacks/infra/block.py; the OpenStack integration test
    makes the same request): the driver's application credential, restricted, with only the roles
    ``storage.block.credential_roles`` names, expiring at ``credential_expires_at`` (UTC midnight) if set."""
    block = plan.env.storage.block
    assert block is not None
    site = plan.env.site.name
    expires = block.credential_expires_at
    return {
        "name": f"aiinfn-{site}-cinder-csi",
        "description": f"aiinfn {site}: the Cinder CSI driver (volumes of the platform's databases)",
        "roles": list(block.credential_roles),
        "unrestricted": False,
        "expires_at": f"{expires.isoformat()}T00:00:00Z" if expires else None,
    }


def catalog_auth_url(catalogs: Sequence[Any], region: str, *, https_only: bool = True) -> str:
    """The Keystone URL of the driver's cloud.conf when ``storage.block.auth_url`` is unset: the public endpoint,
    in ``region``, of the ``identity`` service in the Keystone catalog of the stack's own token (the infrastructure
    stack reads it with ``openstack.identity.get_auth_scope_output``; items as that data source returns them,
    attributes ``type``, ``endpoints``, ``interface``, ``region``, ``url``).

    It must be HTTPS and on a port the controller's NetworkPolicy opens (``API_PORTS``): else one ValueError
    naming ``storage.block.auth_url``, the field that sets the URL explicitly (its port is then opened)."""
    fix = "set storage.block.auth_url to the Keystone v3 URL the cluster's nodes reach"
    urls = sorted({str(e.url) for c in catalogs if c.type == "identity" for e in (c.endpoints or ())
                   if e.interface == "public" and region in (e.region, getattr(e, "region_id", None))})
    if not urls:
        raise ValueError(f"the project's Keystone catalog has no public identity endpoint in region {region!r}: {fix}")
    if len(urls) > 1:
        raise ValueError(f"the project's Keystone catalog has several public identity endpoints in region "
                         f"{region!r} ({', '.join(urls)}): {fix}")
    url = urls[0]
    parts = urlsplit(url)
    if https_only and parts.scheme != "https":
        raise ValueError(f"the project's Keystone catalog names {url}, not HTTPS: {fix}")
    if (parts.port or 443) not in API_PORTS:
        raise ValueError(f"the project's Keystone catalog names {url}, whose port the CSI controller's "
                         f"NetworkPolicy does not open ({', '.join(map(str, API_PORTS))}): {fix}")
    return url


def cloud_conf(auth_url: str, region: str, credential_id: str, credential_secret: str) -> str:
    """The driver's cloud.conf: authenticate with application credential ``credential_id``."""
    fields = {
        "auth-url": auth_url,
        "region": region,
        "application-credential-id": credential_id,
        "application-credential-secret": credential_secret,
    }
    for key, value in fields.items():
        if not _CONF_VALUE.fullmatch(value):
            raise ValueError(f"cloud.conf {key}: a value with characters gcfg would not read literally")
    body = "".join(f"{k}={v}\n" for k, v in fields.items())
    # rescan-on-resize: the node rescans the device after an online expansion (allowVolumeExpansion)
    return f"[Global]\n{body}\n[BlockStorage]\nrescan-on-resize=true\n"


def storage_class_object(plan: Plan) -> dict[str, Any]:
    block = plan.env.storage.block
    assert block is not None
    site = plan.env.site
    params = {"type": block.volume_type or site.volume_type,
              "availability": block.availability_zone or site.availability_zone}
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": block.storage_class},
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Retain",
        "allowVolumeExpansion": True,
        "volumeBindingMode": "WaitForFirstConsumer",
        "parameters": {k: v for k, v in params.items() if v},
    }


def values(plan: Plan) -> dict[str, Any]:
    return {
        # the credentials come from our Secret (never the chart's, never the host's /etc/config)
        "secret": {"enabled": True, "create": False, "hostMount": False, "name": SECRET, "filename": SECRET_FILE},
        # the StorageClass is ours (storage_class_object): the chart makes none
        "storageClass": {"enabled": False},
        "clusterID": plan.env.site.name,
        "csi": {"plugin": {
            "image": {"repository": versions.CINDER_CSI_IMAGE, "tag": versions.CINDER_CSI},
            # no host CA bundle (the chart's default mounts /etc/cacert from the host): only the cloud.conf
            "volumes": [],
            "volumeMounts": [{"name": "cloud-config", "mountPath": "/etc/config", "readOnly": True}],
        }},
    }


def network_policies(plan: Plan) -> list[dict[str, Any]]:
    block = plan.env.storage.block
    assert block is not None
    ranges = network.Ranges.of(plan)
    # unset auth_url: the catalog's endpoint, whose port catalog_auth_url requires to be one of API_PORTS
    auth_port = (urlsplit(block.auth_url).port or 443) if block.auth_url else 443
    return [
        *network.baseline(NAMESPACE, same_namespace=False),
        network.allow_apiserver(NAMESPACE, ranges),
        network.allow_public_egress(NAMESPACE, ranges, sorted({*API_PORTS, auth_port}), name="allow-openstack-api"),
    ]


def bundle(plan: Plan) -> Bundle | None:
    if plan.env.storage.block is None:
        return None
    ns = f"ns-{NAMESPACE}"
    return Bundle("cinder-csi", (
        namespace(NAMESPACE, "privileged", {PLATFORM_LABEL: "true"}),  # see the module's docstring
        *manifests(*network_policies(plan)),
        Secret(SECRET, (ns,), name=SECRET, namespace=NAMESPACE, data={SECRET_FILE: ConfigSecret(CLOUD_CONF_REF)}),
        Release(RELEASE, (ns, SECRET), chart=RELEASE, namespace=NAMESPACE, values=values(plan)),
        # claims on the class wait for it, and it for the driver (the provider reads the class's binding mode)
        Manifest(class_key(plan), (RELEASE,), storage_class_object(plan)),
    ))
