"""The one registrar of service bundles: every item of every bundle becomes a Pulumi resource.

Shared by every scope (a site's overlay, an event's objects, the federation's). What a service
contains is decided by its module in ``aiinfn.services``; this component only turns items into
resources, with one set of rules:

* every item is ``<name>-<key>``, a child of this component, on the cluster of ``kubeconfig``;
* an item waits for the items it names in ``after``, for the item that creates its namespace, and
  (custom resources) for the release that installs its CRDs;
* Secrets are filled from Pulumi config secrets or generated credentials and stay secret outputs;
* node addresses inside values and manifests are the infrastructure's outputs;
* stateful objects (``Manifest.protect``) are protected and retained on delete.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
import pulumi_random as random

from aiinfn import versions
from aiinfn.services.bundle import (
    AnyItem,
    Bundle,
    ConfigSecret,
    Generated,
    Manifest,
    RandomBytes,
    RandomPassword,
    Release,
    Secret,
    late_values,
    resolve,
)

#: The pulumi-kubernetes provider version resources are registered with (what its SDK classes use).
PROVIDER_VERSION = version("pulumi_kubernetes")


def release_args(chart: str, namespace: str, values: pulumi.Input[Mapping[str, Any]],
                 release: str | None = None) -> dict[str, Any]:
    """A pinned chart (versions.CHARTS) as helm.v3.Release arguments: atomic, cleaned up on failure."""
    repo, name, pinned = versions.CHARTS[chart]
    args: dict[str, Any] = {
        "name": release or chart,
        "chart": name if not repo.startswith("oci://") else f"{repo}/{name}",
        "version": pinned,
        "namespace": namespace,
        "create_namespace": False,
        "atomic": True,
        "cleanup_on_fail": True,
        "values": values,
    }
    if not repo.startswith("oci://"):
        args["repository_opts"] = k8s.helm.v3.RepositoryOptsArgs(repo=repo)
    return args


@dataclass(frozen=True)
class OverlayArgs:
    bundles: list[Bundle]
    kubeconfig: pulumi.Input[str]
    #: every Pulumi config secret the bundles name (name -> secret Output)
    secrets: Mapping[str, pulumi.Output[str]]
    #: fixed IPs of the nodes the bundles' values name (node -> address)
    addresses: Mapping[str, pulumi.Input[str]]


class Overlay(pulumi.ComponentResource):
    def __init__(self, name: str, args: OverlayArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aiinfn:overlay:Overlay", name, None, opts)
        self._name = name
        self._args = args
        self._provider = k8s.Provider(
            f"{name}-k8s",
            kubeconfig=args.kubeconfig,
            enable_server_side_apply=True,
            opts=pulumi.ResourceOptions(parent=self),
        )
        items = [i for b in args.bundles for i in b.items]
        self._namespaces = {
            str(i.manifest["metadata"]["name"]): i.key
            for i in items
            if isinstance(i, Manifest) and i.kind == "Namespace"
        }
        self._crds = {g: i.key for i in items if isinstance(i, Release) for g in i.crd_groups}
        self.resources: dict[str, pulumi.Resource] = {}
        releases: dict[str, pulumi.Output[Any]] = {}
        for item in _in_order(items, self._waits_for):
            res = self._register(item)
            self.resources[item.key] = res
            if isinstance(item, Release) and isinstance(res, k8s.helm.v3.Release):
                releases[item.release_name] = res.status
        self.register_outputs(
            {
                "releases": releases,
                "services": {b.service: sorted(i.key for i in b.items) for b in args.bundles},
            }
        )

    def _waits_for(self, item: AnyItem) -> list[str]:
        deps = list(item.after)
        if isinstance(item, Manifest | Release | Secret):
            ns = item.namespace
            if ns and ns in self._namespaces and self._namespaces[ns] != item.key:
                deps.append(self._namespaces[ns])
        if isinstance(item, Manifest) and item.api_group in self._crds:
            deps.append(self._crds[item.api_group])
        return list(dict.fromkeys(deps))

    def _opts(self, item: AnyItem, **extra: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(
            parent=self,
            provider=self._provider,
            depends_on=[self.resources[d] for d in self._waits_for(item)],
            **extra,
        )

    def _late(self, value: Mapping[str, Any]) -> pulumi.Input[Mapping[str, Any]]:
        """``value`` with its node addresses filled in (an Output when it has any)."""
        nodes = sorted({a.node for a in late_values(value)})
        if not nodes:
            return value
        known = {n: self._args.addresses[n] for n in nodes}
        return pulumi.Output.all(**known).apply(lambda a: resolve(value, a))

    def _secret_value(self, value: str | ConfigSecret | Generated) -> pulumi.Input[str]:
        if isinstance(value, ConfigSecret):
            return self._args.secrets[value.name]
        if isinstance(value, Generated):
            out: pulumi.Output[str] = getattr(self.resources[value.key], value.output)
            return out.apply(lambda v, p=value.prefix: p + v) if value.prefix else out
        return value

    def _register(self, item: AnyItem) -> pulumi.Resource:
        name = f"{self._name}-{item.key}"
        if isinstance(item, RandomPassword):
            return random.RandomPassword(name, length=item.length, special=item.special,
                                         opts=pulumi.ResourceOptions(parent=self))
        if isinstance(item, RandomBytes):
            return random.RandomBytes(name, length=item.length, opts=pulumi.ResourceOptions(parent=self))
        if isinstance(item, Secret):
            data = {k: self._secret_value(v) for k, v in item.data.items()}
            manifest = {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": item.metadata(),
                "type": "Opaque",
                "stringData": pulumi.Output.secret(data),
            }
            # as the SDK's Secret class: what the cluster returns is secret too
            return KubernetesObject(name, manifest, self._opts(item, additional_secret_outputs=["data", "stringData"]),
                                    manifest)
        if isinstance(item, Release):
            return k8s.helm.v3.Release(
                name, **release_args(item.chart, item.namespace, self._late(item.values), item.release_name),
                opts=self._opts(item),
            )
        extra = {"protect": True, "retain_on_delete": True} if item.protect else {}
        return KubernetesObject(name, self._late(item.manifest), self._opts(item, **extra), item.manifest)


def _in_order(items: list[AnyItem], waits_for: Any) -> list[AnyItem]:
    """Items so that each comes after what it waits for (stable: bundle order otherwise)."""
    keys = {i.key: i for i in items}
    done: set[str] = set()
    out: list[AnyItem] = []

    def visit(item: AnyItem, path: tuple[str, ...]) -> None:
        if item.key in done:
            return
        if item.key in path:
            raise pulumi.RunError(f"overlay items wait for each other: {' -> '.join((*path, item.key))}")
        for dep in waits_for(item):
            visit(keys[dep], (*path, item.key))
        done.add(item.key)
        out.append(item)

    for item in items:
        visit(item, ())
    return out


def type_token(api_version: str, kind: str) -> str:
    """The provider's type token of a Kubernetes kind (the core group is ``core/v1``)."""
    return f"kubernetes:{'core/' + api_version if '/' not in api_version else api_version}:{kind}"


class KubernetesObject(pulumi.CustomResource):
    """A Kubernetes object registered with every top-level field of its manifest.

    pulumi_kubernetes' CustomResource class only carries ``spec``; Kueue's WorkloadPriorityClass has
    ``value`` and ``description`` at the top level, so every object is registered whole, with the type
    token and provider version the SDK's own classes use.
    """

    def __init__(
        self,
        name: str,
        manifest: pulumi.Input[Mapping[str, Any]],
        opts: pulumi.ResourceOptions,
        shape: Mapping[str, Any],
    ) -> None:
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(version=PROVIDER_VERSION))
        props = manifest if isinstance(manifest, Mapping) else {k: pulumi.Output.from_input(manifest).apply(
            lambda m, k=k: m[k]) for k in shape}
        super().__init__(type_token(str(shape["apiVersion"]), str(shape["kind"])), name, dict(props), opts)
