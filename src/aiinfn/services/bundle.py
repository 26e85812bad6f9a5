"""The contract of a service: one declarative bundle, read by the registrar and by the artifact writer.

A service module (``aiinfn.services.<service>``) turns the plan's facts into a ``Bundle``: the Helm
releases it installs with their values, the plain Kubernetes objects it applies, the Secrets it needs
(filled by reference, never by value), random credentials it generates, and the order between them.
Nothing else decides what a service contains:

* ``stacks/overlay`` registers every item of every bundle as a Pulumi resource (one registrar for the
  site, event and federation scopes);
* ``aiinfn.render.artifacts`` writes the same items to ``build/<env>/`` (Secrets with their values
  replaced by where they come from).

Values that are only known once the infrastructure exists (a node's fixed IP) are ``NodeAddress``
markers inside values and manifests; secret values are ``ConfigSecret`` (a Pulumi config secret the
environment names) or ``Generated`` (the output of a ``RandomPassword`` / ``RandomBytes`` item).

Keys: every item has a ``key``, unique in its scope, that becomes its Pulumi resource name
(``<component>-<key>``): a key never changes for the life of the resource (renaming one recreates
the object). ``after`` lists keys the item waits for; objects in a namespace some bundle creates wait
for it, and custom resources wait for the release that installs their CRDs (``Release.crd_groups``)
without saying so.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .. import versions
from ..planning.labels import pod_security as pod_security_labels

# --------------------------------------------------------------------------- late values


@dataclass(frozen=True)
class NodeAddress:
    """The fixed IP of node ``node`` (``ip`` or ``ip:port``), known once the infrastructure exists."""

    node: str
    port: int | None = None

    def render(self, ip: str) -> str:
        return ip if self.port is None else f"{ip}:{self.port}"


@dataclass(frozen=True)
class ConfigSecret:
    """The value of the Pulumi config secret ``aiinfn:<name>`` (``pulumi config set --secret``)."""

    name: str


@dataclass(frozen=True)
class Generated:
    """An output (``result``, ``bcrypt_hash``; ``hex``) of the ``RandomPassword``/``RandomBytes`` item
    with key ``key``, after the plain ``prefix`` (``user:`` of an htpasswd line)."""

    key: str
    output: str = "result"
    prefix: str = ""


SecretValue = str | ConfigSecret | Generated


# --------------------------------------------------------------------------- items


@dataclass(frozen=True)
class Item:
    key: str
    after: tuple[str, ...] = ()


@dataclass(frozen=True)
class Manifest(Item):
    """A Kubernetes object, exactly as applied (may hold ``NodeAddress`` markers)."""

    manifest: Mapping[str, Any] = field(default_factory=dict)
    #: Stateful (a database's or a user's claim): Pulumi refuses to delete or replace it, and a forced
    #: removal from the stack leaves it in the cluster.
    protect: bool = False

    @property
    def kind(self) -> str:
        return str(self.manifest["kind"])

    @property
    def namespace(self) -> str | None:
        ns = self.manifest.get("metadata", {}).get("namespace")
        return str(ns) if ns else None

    @property
    def api_group(self) -> str:
        api = str(self.manifest["apiVersion"])
        return api.rpartition("/")[0]


@dataclass(frozen=True)
class Release(Item):
    """A Helm release of a pinned chart (``versions.CHARTS[chart]``)."""

    chart: str = ""
    namespace: str = ""
    values: Mapping[str, Any] = field(default_factory=dict)
    #: API groups whose CRDs this release installs: objects of these groups wait for it.
    crd_groups: tuple[str, ...] = ()
    #: The Helm release's name when a chart is installed more than once (default: the chart's name).
    name: str = ""

    @property
    def release_name(self) -> str:
        return self.name or self.chart


@dataclass(frozen=True)
class Secret(Item):
    """A Kubernetes Secret whose values come from Pulumi secrets or generated credentials."""

    name: str = ""
    namespace: str = ""
    data: Mapping[str, SecretValue] = field(default_factory=dict)
    #: Labels and annotations of the Secret (plain strings, never secret).
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.name, "namespace": self.namespace}
        if self.labels:
            meta["labels"] = dict(self.labels)
        if self.annotations:
            meta["annotations"] = dict(self.annotations)
        return meta

    def references(self) -> Iterator[ConfigSecret | Generated]:
        for value in self.data.values():
            if not isinstance(value, str):
                yield value


@dataclass(frozen=True)
class RandomPassword(Item):
    """A password generated once and kept in the stack's state (output ``result``, secret)."""

    length: int = 32
    special: bool = False


@dataclass(frozen=True)
class RandomBytes(Item):
    """Random bytes generated once and kept in the stack's state (outputs ``hex``, ``base64``, secret)."""

    length: int = 32


AnyItem = Manifest | Release | Secret | RandomPassword | RandomBytes


# --------------------------------------------------------------------------- the bundle


@dataclass(frozen=True)
class Bundle:
    """What one service puts on a cluster."""

    service: str
    items: tuple[AnyItem, ...] = ()

    def of(self, cls: type[Any]) -> list[Any]:
        return [i for i in self.items if isinstance(i, cls)]

    @property
    def releases(self) -> list[Release]:
        return self.of(Release)

    @property
    def manifests(self) -> list[Manifest]:
        return self.of(Manifest)

    @property
    def secrets(self) -> list[Secret]:
        return self.of(Secret)

    def config_secrets(self) -> list[str]:
        """Names of the Pulumi config secrets the bundle reads."""
        return sorted({r.name for s in self.secrets for r in s.references() if isinstance(r, ConfigSecret)})


def object_key(obj: Mapping[str, Any]) -> str:
    """The key of a plain object: kind, namespace and name (``localqueue-theory-default``)."""
    meta = obj["metadata"]
    parts = [str(obj["kind"]).lower(), str(meta.get("namespace", "")), str(meta["name"])]
    return "-".join(p for p in parts if p)


def manifests(*objs: Mapping[str, Any], after: tuple[str, ...] = ()) -> tuple[Manifest, ...]:
    """Plain objects as items keyed by ``object_key``."""
    return tuple(Manifest(object_key(o), after, o) for o in objs)


PodSecurity = Literal["restricted", "baseline", "privileged"]


def namespace_object(name: str, pod_security: PodSecurity, labels: Mapping[str, str] | None = None) -> dict[str, Any]:
    """A Namespace that enforces Pod Security level ``pod_security`` (and warns and audits at restricted)."""
    all_labels = {**dict(labels or {}), **pod_security_labels(pod_security, f"v{versions.KUBERNETES}")}
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": all_labels}}


def namespace(name: str, pod_security: PodSecurity, labels: Mapping[str, str] | None = None) -> Manifest:
    """A namespace a service owns, keyed ``ns-<name>``, at Pod Security level ``pod_security``: only what
    the service's own pods need (``restricted`` unless they use host resources)."""
    return Manifest(f"ns-{name}", (), namespace_object(name, pod_security, labels))


def claim(name: str, namespace: str, storage_class: str, size_gb: int) -> dict[str, Any]:
    """A ReadWriteOnce claim for a service's database (registered with ``protect``)."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": storage_class,
            "resources": {"requests": {"storage": f"{size_gb}Gi"}},
        },
    }


def late_values(value: Any) -> Iterator[NodeAddress]:
    """Every ``NodeAddress`` inside ``value``."""
    if isinstance(value, NodeAddress):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from late_values(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from late_values(v)


def resolve(value: Any, addresses: Mapping[str, str], missing: str = "<fixed IP of {node}>") -> Any:
    """``value`` with every ``NodeAddress`` replaced by its address (``missing`` when unknown)."""
    if isinstance(value, NodeAddress):
        ip = addresses.get(value.node)
        return value.render(ip) if ip else missing.format(node=value.node)
    if isinstance(value, Mapping):
        return {k: resolve(v, addresses, missing) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [resolve(v, addresses, missing) for v in value]
    return value


def addressed_nodes(bundles: list[Bundle]) -> list[str]:
    """The nodes whose address some item of ``bundles`` needs."""
    nodes: set[str] = set()
    for b in bundles:
        for item in b.items:
            if isinstance(item, Manifest):
                nodes.update(a.node for a in late_values(item.manifest))
            elif isinstance(item, Release):
                nodes.update(a.node for a in late_values(item.values))
    return sorted(nodes)


def check(bundles: list[Bundle]) -> None:
    """Refuse a set of bundles the registrar could not register: duplicate keys, an ``after`` that
    names no item. (A programming error, not an environment's: tests run it on every plan.)"""
    keys: dict[str, str] = {}
    for b in bundles:
        for item in b.items:
            if item.key in keys:
                raise ValueError(f"item key {item.key!r} of {b.service} is also in {keys[item.key]}")
            keys[item.key] = b.service
    for b in bundles:
        for item in b.items:
            for dep in item.after:
                if dep not in keys:
                    raise ValueError(f"{b.service}: {item.key} waits for {dep!r}, which no bundle has")
