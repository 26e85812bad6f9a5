"""What a change to an environment does, offline: two plan documents in, actions and deltas out.

``diff(old, new)`` compares two documents of ``aiinfn plan`` (``Preview.document()``, or a
build/<env>/plan.json) resource by resource, by URN, the way ``pulumi preview`` would classify the
steps, without a cloud, a state file or the Pulumi CLI:

* a URN only in ``new`` is **created**, only in ``old`` **deleted** (unless a new resource lists it in
  ``aliases``: then it is the same resource, renamed);
* a URN in both is **updated** when an input differs, after the resource's ``ignore_changes`` paths
  are reset to their old values (as the engine does), or when one of its options changes;
* it is **replaced** when a changed input is one the provider cannot update in place (the tables
  below, each row citing the provider resource it comes from), when a ``replace_on_changes`` path
  changes, or when it refers to the ID of a resource that is itself replaced through an input that
  forces replacement (the new ID is a change; the mock runtime derives IDs from names, so this is
  followed explicitly);
* a few updates that the provider would attempt but the cloud refuses (shrinking a Cinder volume or a
  claim, a StorageClass's reclaim policy) are reported as replacements *required*: only a new resource
  reaches that state, and ``pulumi up`` would fail on the update.

Inputs are compared as the plan holds them: secrets are already ``"[secret]"``, so two secrets are equal
and a secret's value is never seen, shown or compared. Replacement notes say whether the old resource
is deleted first (``delete_before_replace``, or pulumi-kubernetes for an object keeping its name),
whether ``protect`` makes ``pulumi up`` refuse, and whether ``retain_on_delete`` leaves it in the cloud.

Besides resources, the deltas an operator reads: accelerator capacity per kind (units), Kueue quotas per
ClusterQueue, flavor and resource (nominal quota, borrowing and lending limits), the JupyterHub profiles
(by slug), and the nodes (from the plan's ``nodes`` list, or from the instances of older plans).

What this cannot show, as the mock runtime cannot: provider defaults and drift of the live cloud, and
values derived from a replaced resource's outputs other than its ID (the address of a new port).

The second half of the module finds the baseline: the last plan in build/<env>/plan.json, or the
environment files at a git ref planned with today's code (``compare_with_last_plan``,
``compare_with_git_ref``); that part reads files and runs git, and never writes build/.
"""

from __future__ import annotations

import difflib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

from .errors import AiinfnError, ConfigError, ToolMissingError

SECRET = "[secret]"
#: ``--exit-code``: the exit status that means "the plan changes something".
CHANGES_EXIT = 2


class DiffError(AiinfnError):
    """No baseline to compare with (no last plan, a bad git ref, ...): one line naming what to do."""

    exit_code = 1


class _Absent:
    """A value that is not there (a key one side lacks): distinct from ``None``, which a plan may hold."""

    _instance: _Absent | None = None

    def __new__(cls) -> _Absent:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "(absent)"

    def __bool__(self) -> bool:
        return False


ABSENT: Any = _Absent()

PathT = tuple[str | int, ...]
WILDCARD = "*"

# --------------------------------------------------------------------------- property paths

_KEY_RE = re.compile(r"[A-Za-z_$][A-Za-z0-9_$:/-]*")
_PATH_TOKEN_RE = re.compile(r'\.?([^.\[\]"]+)|\[(\d+)\]|\[\*\]|\["((?:[^"\\]|\\.)*)"\]')


def parse_path(text: str) -> PathT:
    """A Pulumi property path (``a.b[0]["x.y"]``, with ``*`` / ``[*]`` wildcards) as components."""
    out: list[str | int] = []
    pos = 0
    while pos < len(text):
        m = _PATH_TOKEN_RE.match(text, pos)
        if m is None or m.end() == pos:
            raise ValueError(f"not a property path: {text!r}")
        if m.group(1) is not None:
            out.append(m.group(1))
        elif m.group(2) is not None:
            out.append(int(m.group(2)))
        elif m.group(3) is not None:
            out.append(json.loads(f'"{m.group(3)}"'))
        else:
            out.append(WILDCARD)
        pos = m.end()
    return tuple(out)


def format_path(path: Sequence[str | int]) -> str:
    """Components as a Pulumi property path: ``spec.resourceGroups[1].flavors[0]``, ``labels["a.b/c"]``."""
    parts: list[str] = []
    for p in path:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        elif _KEY_RE.fullmatch(p) and p != WILDCARD:
            parts.append(f".{p}" if parts else p)
        else:
            parts.append(f"[{json.dumps(p)}]")
    return "".join(parts)


def _children(value: Any, head: str | int) -> Iterator[tuple[str | int, Any]]:
    if isinstance(value, Mapping):
        if head == WILDCARD:
            yield from ((k, value[k]) for k in sorted(value))
        elif str(head) in value:
            yield str(head), value[str(head)]
    elif isinstance(value, list):
        if head == WILDCARD:
            yield from enumerate(value)
        elif isinstance(head, int) and 0 <= head < len(value):
            yield head, value[head]


def select(value: Any, pattern: PathT, prefix: PathT = ()) -> list[tuple[PathT, Any]]:
    """Every (concrete path, value) that ``pattern`` reaches in ``value`` (in a stable order)."""
    if value is ABSENT:
        return []
    if not pattern:
        return [(prefix, value)]
    out: list[tuple[PathT, Any]] = []
    for key, child in _children(value, pattern[0]):
        out.extend(select(child, pattern[1:], (*prefix, key)))
    return out


def reset(new: Any, old: Any, pattern: PathT) -> Any:
    """``new`` with the values ``pattern`` reaches taken from ``old`` (removed where ``old`` has none).

    This is what the engine does with ``ignoreChanges`` before it asks the provider for a diff.
    """
    if not pattern:
        return old
    head, rest = pattern[0], pattern[1:]
    if isinstance(new, Mapping):
        out = dict(new)
        olds = old if isinstance(old, Mapping) else {}
        keys = sorted(set(new) | set(olds)) if head == WILDCARD else [str(head)]
        for k in keys:
            if k not in new and k not in olds:
                continue
            v = reset(new.get(k, ABSENT), olds.get(k, ABSENT), rest)
            if v is ABSENT:
                out.pop(k, None)
            else:
                out[k] = v
        return out
    if isinstance(new, list):
        items = list(new)
        olds_l = old if isinstance(old, list) else []
        idxs = range(len(items)) if head == WILDCARD else ([head] if isinstance(head, int) else [])
        drop: list[int] = []
        for i in idxs:
            if 0 <= i < len(items):
                v = reset(items[i], olds_l[i] if i < len(olds_l) else ABSENT, rest)
                if v is ABSENT:
                    drop.append(i)
                else:
                    items[i] = v
        return [v for i, v in enumerate(items) if i not in drop]
    return new  # the path goes through a value that is not a container: nothing to reset


def covers(pattern: PathT, path: PathT) -> bool:
    """``pattern`` names ``path`` or one of its ancestors (``*`` matches any one component)."""
    if len(pattern) > len(path):
        return False
    return all(p == WILDCARD or str(p) == str(q) for p, q in zip(pattern, path, strict=False))


# --------------------------------------------------------------------------- changes of values


@dataclass(frozen=True)
class Change:
    """One input path whose value differs; ``ABSENT`` on the side that lacks it."""

    path: str
    old: Any
    new: Any

    def document(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"path": self.path}
        if self.old is not ABSENT:
            doc["old"] = self.old
        if self.new is not ABSENT:
            doc["new"] = self.new
        return doc


def changes(old: Any, new: Any, path: PathT = ()) -> list[Change]:
    """The leaf paths where ``old`` and ``new`` differ (mappings by key, lists by position)."""
    if _same(old, new):
        return []
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        out: list[Change] = []
        for k in sorted(set(old) | set(new)):
            out.extend(changes(old.get(k, ABSENT), new.get(k, ABSENT), (*path, k)))
        return out
    if isinstance(old, list) and isinstance(new, list):
        out = []
        for i in range(max(len(old), len(new))):
            out.extend(changes(old[i] if i < len(old) else ABSENT, new[i] if i < len(new) else ABSENT, (*path, i)))
        return out
    return [Change(format_path(path), old, new)]


def _same(a: Any, b: Any) -> bool:
    # Plans hold JSON values with secrets already "[secret]": equality is plain equality, and two
    # secrets are equal (whether the values behind them differ cannot be known, and is not asked).
    if a is ABSENT or b is ABSENT:
        return a is b
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    return bool(a == b)


_QUANTITY_RE = re.compile(r"^([0-9.]+)(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E|m)?$")
_SUFFIX = {
    None: 1.0, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
    "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50, "Ei": 2.0**60,
}


def quantity(value: Any) -> float | None:
    """A number, or a Kubernetes quantity (``"10Gi"``, ``"500m"``) in base units; None otherwise."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        m = _QUANTITY_RE.match(value.strip())
        if m:
            try:
                return float(m.group(1)) * _SUFFIX[m.group(2)]
            except ValueError:
                return None
    return None


# --------------------------------------------------------------------------- replacement rules


@dataclass(frozen=True)
class Rule:
    """Input paths a provider cannot change in place.

    ``kind``: ``force-new`` (the provider plans a replacement: ``pulumi up`` replaces), ``decrease``
    (only a smaller number forces it), ``refused`` / ``refused-decrease`` (the provider would update in
    place and the cloud or API server rejects it: only a new resource gets there).
    """

    paths: tuple[str, ...]
    source: str
    kind: Literal["force-new", "decrease", "refused", "refused-decrease"] = "force-new"
    why: str = ""


_TPO = "terraform-provider-openstack v3.4.0 (bridged by pulumi-openstack 5.5.x)"
_TPR = "terraform-provider-random (bridged by pulumi-random 4.x)"
_PK8S = "pulumi-kubernetes 4.x, provider/pkg/provider/diff.go forceNew"

#: Pulumi type -> rules. Paths are the Pulumi (camelCase) names of the Terraform arguments marked
#: ``ForceNew: true`` (or RequiresReplace) in the provider's schema; ``region`` is ForceNew everywhere.
OPENSTACK_RULES: dict[str, tuple[Rule, ...]] = {
    "openstack:compute/instance:Instance": (
        # name, flavorId/flavorName (resize), imageId/imageName (rebuild), metadata, securityGroups,
        # adminPass, powerState and tags are updated in place; see UPDATE_EFFECTS.
        Rule(("region", "availabilityZone", "availabilityZoneHints", "networkMode", "networks",
              "hypervisorHostname", "configDrive", "keyPair", "userData"),
             f"{_TPO}: openstack_compute_instance_v2 ForceNew arguments"),
        # block_device and scheduler_hints are not ForceNew themselves, but every field inside is.
        Rule(("blockDevices", "schedulerHints"),
             f"{_TPO}: openstack_compute_instance_v2 block_device.*, scheduler_hints.* ForceNew"),
    ),
    "openstack:networking/port:Port": (
        Rule(("region", "networkId", "macAddress", "tenantId", "deviceOwner", "deviceId", "valueSpecs"),
             f"{_TPO}: openstack_networking_port_v2 ForceNew arguments"),
    ),
    "openstack:blockstorage/volume:Volume": (
        # size is not ForceNew: an increase is an in-place extend; volumeType is an in-place retype.
        Rule(("region", "availabilityZone", "snapshotId", "sourceVolId", "imageId", "backupId",
              "consistencyGroupId", "sourceReplica", "schedulerHints"),
             f"{_TPO}: openstack_blockstorage_volume_v3 ForceNew arguments"),
        Rule(("size",), f"{_TPO}: openstack_blockstorage_volume_v3 Update only extends; Cinder cannot shrink",
             kind="refused-decrease",
             why="a Cinder volume cannot shrink: the provider would try an extend and `pulumi up` fails; "
                 "only a new, empty volume has the smaller size"),
    ),
    "openstack:compute/flavor:Flavor": (
        # Only description and extraSpecs are updated in place.
        Rule(("region", "flavorId", "name", "ram", "vcpus", "disk", "swap", "rxTxFactor", "isPublic", "ephemeral"),
             f"{_TPO}: openstack_compute_flavor_v2 ForceNew arguments"),
    ),
    "openstack:compute/keypair:Keypair": (
        Rule(("region", "name", "publicKey", "valueSpecs", "userId"),
             f"{_TPO}: openstack_compute_keypair_v2 ForceNew arguments"),
    ),
    "openstack:networking/floatingIp:FloatingIp": (
        Rule(("region", "address", "pool", "tenantId", "valueSpecs", "dnsName", "dnsDomain"),
             f"{_TPO}: openstack_networking_floatingip_v2 ForceNew arguments"),
    ),
    "openstack:networking/floatingIpAssociate:FloatingIpAssociate": (
        # portId is updated in place (the address moves to the new port).
        Rule(("region", "floatingIp"), f"{_TPO}: openstack_networking_floatingip_associate_v2 ForceNew arguments"),
    ),
    "openstack:networking/subnet:Subnet": (
        Rule(("region", "networkId", "cidr", "prefixLength", "tenantId", "ipVersion", "ipv6AddressMode",
              "ipv6RaMode", "subnetpoolId", "valueSpecs"),
             f"{_TPO}: openstack_networking_subnet_v2 ForceNew arguments"),
    ),
    "openstack:networking/network:Network": (
        Rule(("region", "tenantId", "valueSpecs", "availabilityZoneHints", "transparentVlan"),
             f"{_TPO}: openstack_networking_network_v2 ForceNew arguments"),
    ),
    "openstack:networking/router:Router": (
        Rule(("region", "distributed", "tenantId", "valueSpecs", "availabilityZoneHints"),
             f"{_TPO}: openstack_networking_router_v2 ForceNew arguments"),
    ),
    "openstack:networking/routerInterface:RouterInterface": (
        Rule(("region", "routerId", "subnetId", "portId"),
             f"{_TPO}: openstack_networking_router_interface_v2 ForceNew arguments"),
    ),
    "openstack:networking/secGroup:SecGroup": (
        Rule(("region", "tenantId", "deleteDefaultRules"),
             f"{_TPO}: openstack_networking_secgroup_v2 ForceNew arguments"),
    ),
    "openstack:networking/secGroupRule:SecGroupRule": (
        # Every argument of a rule is ForceNew: a rule is never updated.
        Rule(("region", "description", "direction", "ethertype", "portRangeMin", "portRangeMax", "protocol",
              "remoteGroupId", "remoteIpPrefix", "remoteAddressGroupId", "securityGroupId", "tenantId"),
             f"{_TPO}: openstack_networking_secgroup_rule_v2 (every argument ForceNew)"),
    ),
    "openstack:compute/serverGroup:ServerGroup": (
        Rule(("region", "name", "policies", "rules", "valueSpecs"),
             f"{_TPO}: openstack_compute_servergroup_v2 ForceNew arguments"),
    ),
    "openstack:compute/volumeAttach:VolumeAttach": (
        Rule(("region", "instanceId", "volumeId", "multiattach", "tag", "vendorOptions"),
             f"{_TPO}: openstack_compute_volume_attach_v2 ForceNew arguments"),
    ),
    "random:index/randomPassword:RandomPassword": (
        Rule(("keepers", "length", "special", "upper", "lower", "number", "numeric", "minNumeric", "minUpper",
              "minLower", "minSpecial", "overrideSpecial"),
             f"{_TPR}: random_password RequiresReplace plan modifiers"),
    ),
    "random:index/randomBytes:RandomBytes": (
        Rule(("keepers", "length"), f"{_TPR}: random_bytes RequiresReplace plan modifiers"),
    ),
    "kubernetes:helm.sh/v3:Release": (
        Rule(("name", "namespace"), "pulumi-kubernetes 4.x, provider/pkg/provider/helm_release.go Diff forceNewFields"),
    ),
}

#: Every Kubernetes object: changing its identity is a replacement (pulumi-kubernetes diff.go).
KUBERNETES_IDENTITY = Rule(("metadata.name", "metadata.namespace"), f"{_PK8S}: metadataForceNewProperties")
_SELECTOR = ("spec.selector",)
_K8S_API = "Kubernetes API validation"

#: (API group, kind) -> rules, for the versions the provider lists (core and the v1 APIs used here).
KUBERNETES_RULES: dict[tuple[str, str], tuple[Rule, ...]] = {
    ("", "PersistentVolumeClaim"): (
        Rule(("spec.accessModes", "spec.selector", "spec.storageClassName", "spec.volumeName"), _PK8S),
        Rule(("spec.volumeMode", "spec.dataSource", "spec.dataSourceRef"),
             f"{_K8S_API} (ValidatePersistentVolumeClaimUpdate: spec is immutable but resources.requests)",
             kind="refused", why="the API server rejects a change of an immutable claim field"),
        Rule(("spec.resources.requests.storage",),
             f"{_K8S_API} (ValidatePersistentVolumeClaimUpdate: storage can not be less than previous value)",
             kind="refused-decrease", why="a claim cannot shrink: the API server rejects the update"),
    ),
    ("", "PersistentVolume"): (
        Rule(tuple(f"spec.{s}" for s in (
            "awsElasticBlockStore", "azureDisk", "azureFile", "cephfs", "cinder", "csi", "fc", "flexVolume",
            "flocker", "gcePersistentDisk", "glusterfs", "hostPath", "iscsi", "local", "nfs",
            "photonPersistentDisk", "portworxVolume", "quobyte", "rbd", "scaleIO", "storageos", "vsphereVolume",
        )), _PK8S),
    ),
    # Secrets and ConfigMaps: their data is replaced, not patched, unless the provider is configured
    # with enableSecretMutable / enableConfigMapMutable (see _mutable_data below).
    ("", "Secret"): (Rule(("type", "stringData", "data"), f"{_PK8S} (Secret, enableSecretMutable unset)"),),
    ("", "ConfigMap"): (Rule(("data", "binaryData"), f"{_PK8S} (ConfigMap, enableConfigMapMutable unset)"),),
    ("", "Service"): (Rule(("spec.clusterIP",), _PK8S),),
    ("", "ResourceQuota"): (Rule(("spec.scopes",), _PK8S),),
    ("apps", "Deployment"): (Rule(_SELECTOR, _PK8S),),
    ("apps", "DaemonSet"): (Rule(_SELECTOR, _PK8S),),
    ("apps", "StatefulSet"): (
        Rule(("spec.podManagementPolicy", "spec.revisionHistoryLimit", "spec.selector", "spec.serviceName",
              "spec.volumeClaimTemplates"), _PK8S),
    ),
    # A Job's template is immutable: any change to what it runs is a new Job.
    ("batch", "Job"): (Rule(("spec.completions", "spec.parallelism", "spec.selector", "spec.template"), _PK8S),),
    ("rbac.authorization.k8s.io", "RoleBinding"): (Rule(("roleRef",), _PK8S),),
    ("rbac.authorization.k8s.io", "ClusterRoleBinding"): (Rule(("roleRef",), _PK8S),),
    ("storage.k8s.io", "StorageClass"): (
        Rule(("parameters", "provisioner"), _PK8S),
        Rule(("reclaimPolicy", "volumeBindingMode"),
             f"{_K8S_API} (ValidateStorageClassUpdate: updates to reclaimPolicy are forbidden, "
             "volumeBindingMode immutable)",
             kind="refused", why="the API server rejects the update"),
    ),
}


@dataclass(frozen=True)
class Effect:
    """What an in-place update of these paths does to the running thing (no replacement)."""

    paths: tuple[str, ...]
    text: str
    source: str
    when: Literal["change", "increase"] = "change"


UPDATE_EFFECTS: dict[str, tuple[Effect, ...]] = {
    "openstack:compute/instance:Instance": (
        # Not ForceNew; the provider's Update calls Nova resize and confirms it (CustomizeDiff forces a
        # replacement only when the old flavor no longer exists).
        Effect(("flavorId", "flavorName"), "resize: Nova resizes the VM in place, which stops and restarts it",
               f"{_TPO}: openstack_compute_instance_v2 Update (servers.Resize, ConfirmResize)"),
        Effect(("imageId", "imageName", "personalities"), "rebuild: the boot disk is re-imaged in place",
               f"{_TPO}: openstack_compute_instance_v2 Update (servers.Rebuild)"),
    ),
    "openstack:blockstorage/volume:Volume": (
        Effect(("size",), "extend in place (attached: needs enableOnlineResize and Cinder 3.42)",
               f"{_TPO}: openstack_blockstorage_volume_v3 Update (volumes.ExtendSize)", when="increase"),
        Effect(("volumeType",), "retype in place (volumeRetypePolicy never: Cinder refuses if the data must move)",
               f"{_TPO}: openstack_blockstorage_volume_v3 Update (volumes.ChangeType)"),
    ),
    "openstack:compute/flavor:Flavor": (
        Effect(("extraSpecs",), "extra specs updated in place: running VMs keep the specs they booted with",
               f"{_TPO}: openstack_compute_flavor_v2 Update"),
    ),
    "openstack:networking/floatingIpAssociate:FloatingIpAssociate": (
        Effect(("portId",), "the floating IP moves to the new port",
               f"{_TPO}: openstack_networking_floatingip_associate_v2 Update"),
    ),
}

#: Types whose name is unique in the cloud: a replacement that keeps the name and creates the new one
#: first fails (Nova: FlavorExists / KeyPairExists, 409 Conflict).
UNIQUE_NAMES = {"openstack:compute/flavor:Flavor": "flavor", "openstack:compute/keypair:Keypair": "key pair"}


def _api(inputs: Mapping[str, Any]) -> tuple[str, str] | None:
    version = inputs.get("apiVersion")
    kind = inputs.get("kind")
    if not isinstance(version, str) or not isinstance(kind, str):
        return None
    group = version.rsplit("/", 1)[0] if "/" in version else ""
    return group, kind


def rules_for(typ: str, inputs: Mapping[str, Any], *, mutable_data: frozenset[str] = frozenset()) -> tuple[Rule, ...]:
    """The replacement rules of a resource: by type, or for Kubernetes objects by API group and kind."""
    if typ in OPENSTACK_RULES:
        return OPENSTACK_RULES[typ]
    if typ.startswith("kubernetes:") and not typ.startswith("kubernetes:helm.sh/"):
        api = _api(inputs)
        if api is None:
            return (KUBERNETES_IDENTITY,)
        if api[1] in mutable_data and inputs.get("immutable") is not True:
            return (KUBERNETES_IDENTITY,)
        return (KUBERNETES_IDENTITY, *KUBERNETES_RULES.get(api, ()))
    return ()


# --------------------------------------------------------------------------- resources


Action = Literal["create", "delete", "update", "replace"]


@dataclass(frozen=True)
class Reason:
    """Why a resource is replaced: the path, the kind of rule and where the rule comes from."""

    path: str
    kind: str
    source: str
    why: str = ""

    def document(self) -> dict[str, Any]:
        return {"path": self.path, "kind": self.kind, "source": self.source, "why": self.why}


@dataclass
class ResourceChange:
    """One resource the step would touch: its action, changed inputs and options, and why/what it means."""

    urn: str
    type: str
    name: str
    action: Action
    custom: bool = True
    changes: list[Change] = field(default_factory=list)
    options: list[Change] = field(default_factory=list)
    reasons: list[Reason] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    delete_before_replace: bool = False
    renamed_from: str | None = None

    @property
    def short(self) -> str:
        return short_urn(self.urn)

    @property
    def required(self) -> bool:
        """A replacement the provider would not do itself (the update would be refused)."""
        return self.action == "replace" and all(r.kind.startswith("refused") for r in self.reasons)

    def document(self) -> dict[str, Any]:
        return {
            "urn": self.urn,
            "type": self.type,
            "name": self.name,
            "action": self.action,
            "custom": self.custom,
            "changes": [c.document() for c in self.changes],
            "options": [c.document() for c in self.options],
            "replace_because": [r.document() for r in self.reasons],
            "replacement_required": self.required,
            "notes": list(self.notes),
            "delete_before_replace": self.delete_before_replace,
            "renamed_from": self.renamed_from,
        }


def short_urn(urn: str) -> str:
    """``urn:pulumi:s::p::a$b$openstack:compute/instance:Instance::n`` -> ``Instance n``."""
    parts = urn.split("::")
    if len(parts) < 4:
        return urn
    return f"{parts[2].split('$')[-1].split(':')[-1]} {parts[-1]}"


_MOCK_ID_RE = re.compile(r"^(.+)-[0-9a-f]{8}$")


def _resources(doc: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    return {r["urn"]: r for r in doc.get("resources") or [] if isinstance(r, Mapping) and "urn" in r}


def _id_index(resources: Iterable[Mapping[str, Any]]) -> dict[str, list[str]]:
    """Resource name -> URNs of custom resources (the mock runtime's IDs are ``<name>-<8 hex>``)."""
    out: dict[str, list[str]] = {}
    for r in resources:
        if r.get("custom"):
            out.setdefault(str(r.get("name")), []).append(str(r["urn"]))
    return out


def _referenced(inputs: Any, names: Mapping[str, list[str]], path: PathT = ()) -> Iterator[tuple[PathT, str]]:
    """(path, URN) for every input holding the mocked ID of a resource of the plan."""
    if isinstance(inputs, Mapping):
        for k in sorted(inputs):
            yield from _referenced(inputs[k], names, (*path, k))
    elif isinstance(inputs, list):
        for i, v in enumerate(inputs):
            yield from _referenced(v, names, (*path, i))
    elif isinstance(inputs, str):
        m = _MOCK_ID_RE.match(inputs)
        if m and m.group(1) in names:
            for urn in names[m.group(1)]:
                yield path, urn


def _mutable_data(resources: Iterable[Mapping[str, Any]]) -> frozenset[str]:
    kinds = set()
    for r in resources:
        if r.get("type") == "pulumi:providers:kubernetes":
            inputs = r.get("inputs") or {}
            if str(inputs.get("enableSecretMutable")).lower() == "true":
                kinds.add("Secret")
            if str(inputs.get("enableConfigMapMutable")).lower() == "true":
                kinds.add("ConfigMap")
    return frozenset(kinds)


def _parses(text: str) -> bool:
    try:
        parse_path(text)
    except ValueError:
        return False
    return True


def _effective_inputs(old: Mapping[str, Any], new: Mapping[str, Any]) -> Any:
    """The new inputs with the new resource's ``ignore_changes`` reset to the old values."""
    inputs: Any = new.get("inputs") or {}
    for ignored in new.get("ignore_changes") or []:
        try:
            inputs = reset(inputs, old.get("inputs") or {}, parse_path(str(ignored)))
        except ValueError:
            continue
    return inputs


def _rule_hits(rule: Rule, old_inputs: Any, new_inputs: Any, changed: Sequence[Change]) -> list[str]:
    """The changed paths ``rule`` turns into a replacement (none when it does not apply)."""
    hits: list[str] = []
    for text in rule.paths:
        pattern = parse_path(text)
        before, after = select(old_inputs, pattern), select(new_inputs, pattern)
        if rule.kind in ("decrease", "refused-decrease"):
            olds = dict(before)
            for p, v in after:
                o, n = quantity(olds.get(p)), quantity(v)
                if o is not None and n is not None and n < o:
                    hits.append(format_path(p))
        elif not _same(before, after):
            # report the changed leaves under the path, or the change of a whole object holding it
            near = [c.path for c in changed
                    if covers(pattern, parse_path(c.path)) or covers(parse_path(c.path), pattern)]
            hits.extend(near or [text])
    return hits


def _classify(
    rc: ResourceChange, new: Mapping[str, Any], old_inputs: Any, new_inputs: Any, mutable: frozenset[str]
) -> None:
    """Set the action, the reasons for a replacement and the effects of an in-place update."""
    rules = rules_for(rc.type, new_inputs if isinstance(new_inputs, Mapping) else {}, mutable_data=mutable)
    for rule in rules:
        for p in _rule_hits(rule, old_inputs, new_inputs, rc.changes):
            rc.reasons.append(Reason(p, rule.kind, rule.source, rule.why))
    for text in new.get("replace_on_changes") or []:
        try:
            pattern = parse_path(str(text))
        except ValueError:
            continue
        rc.reasons.extend(Reason(c.path, "replace-on-changes", "the resource's replace_on_changes option")
                          for c in rc.changes if covers(pattern, parse_path(c.path)))
    rc.action = "replace" if rc.reasons else "update"


def _effects(rc: ResourceChange) -> None:
    """Notes on what an in-place update does to the running thing (a resize reboots the VM)."""
    for eff in UPDATE_EFFECTS.get(rc.type, ()):
        for c in rc.changes:
            if not any(covers(parse_path(t), parse_path(c.path)) for t in eff.paths):
                continue
            if eff.when == "increase" and not (quantity(c.new) or 0) > (quantity(c.old) or 0):
                continue
            rc.notes.append(f"{c.path}: {eff.text}")
            break


def _metadata(inputs: Any) -> Mapping[str, Any]:
    meta = inputs.get("metadata") if isinstance(inputs, Mapping) else None
    return meta if isinstance(meta, Mapping) else {}


def _replacement_notes(rc: ResourceChange, old: Mapping[str, Any], new: Mapping[str, Any], new_inputs: Any) -> None:
    if rc.type.startswith("kubernetes:") and not rc.type.startswith("kubernetes:helm.sh/"):
        # pulumi-kubernetes (provider.go Diff) deletes first when the object keeps its name and namespace.
        o, n = _metadata(old.get("inputs")), _metadata(new_inputs)
        same = o.get("name") == n.get("name") and o.get("namespace") == n.get("namespace")
        rc.delete_before_replace = bool(new.get("delete_before_replace")) or same
    else:
        rc.delete_before_replace = bool(new.get("delete_before_replace"))
    if rc.delete_before_replace:
        rc.notes.append("deletes the old one first, then creates the new one")
    else:
        rc.notes.append("creates the new one first, then deletes the old one")
        what = UNIQUE_NAMES.get(rc.type)
        oi = old.get("inputs") or {}
        if what and isinstance(new_inputs, Mapping) and oi.get("name") == new_inputs.get("name"):
            rc.notes.append(f"Nova {what} names are unique: creating the replacement first fails; "
                            "set delete_before_replace or rename it")
    if old.get("protect"):
        rc.notes.append("protected: `pulumi up` refuses to replace it (unprotect it first)")
    if old.get("retain_on_delete"):
        rc.notes.append("retain_on_delete: the old one is left in the cloud, outside the stack")
    if rc.required:
        rc.notes.append("the provider would update it in place and the update is refused: replace it "
                        "explicitly (`pulumi up --replace <urn>`)")


_OPTION_DEFAULTS: dict[str, Any] = {
    "protect": False, "retain_on_delete": False, "delete_before_replace": False,
    "ignore_changes": [], "replace_on_changes": [],
}


def _option_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[Change]:
    out: list[Change] = []
    for k, default in _OPTION_DEFAULTS.items():
        a, b = old.get(k) or default, new.get(k) or default
        if isinstance(a, list) and isinstance(b, list):
            a, b = sorted(map(str, a)), sorted(map(str, b))
        if not _same(a, b):
            out.append(Change(k, a, b))
    return out


def resource_changes(old_doc: Mapping[str, Any], new_doc: Mapping[str, Any]) -> list[ResourceChange]:
    """Every resource that is created, deleted, updated or replaced, sorted by URN."""
    olds, news = _resources(old_doc), _resources(new_doc)
    mutable = _mutable_data(news.values())
    renamed: dict[str, str] = {}  # old URN -> new URN, through aliases
    for urn, r in news.items():
        if urn in olds:
            continue
        for alias in r.get("aliases") or []:
            if isinstance(alias, str) and alias in olds and alias not in news:
                renamed[alias] = urn
                break
    pairs = {urn: urn for urn in olds if urn in news} | renamed  # old URN -> new URN
    out: dict[str, ResourceChange] = {}
    effective: dict[str, Any] = {}
    for o_urn, n_urn in pairs.items():
        old, new = olds[o_urn], news[n_urn]
        inputs = _effective_inputs(old, new)
        effective[n_urn] = inputs
        rc = ResourceChange(n_urn, str(new.get("type")), str(new.get("name")), "update", bool(new.get("custom")))
        if o_urn != n_urn:
            rc.renamed_from = o_urn
        rc.changes = changes(old.get("inputs") or {}, inputs)
        rc.options = _option_changes(old, new)
        if not (rc.changes or rc.options or rc.renamed_from):
            continue
        _classify(rc, new, old.get("inputs") or {}, inputs, mutable)
        out[n_urn] = rc
    # A replaced resource gets a new ID: whatever holds that ID changes, and is replaced in turn when
    # the input holding it forces replacement (a replaced port replaces its instance).
    names = _id_index(news.values())
    done: set[str] = set()
    while True:
        replaced = {u for u, rc in out.items() if rc.action == "replace"} - done
        if not replaced:
            break
        done |= replaced
        for n_urn in pairs.values():
            if n_urn in replaced or (n_urn in out and out[n_urn].action == "replace"):
                continue
            new = news[n_urn]
            ignored = [parse_path(str(t)) for t in new.get("ignore_changes") or [] if _parses(str(t))]
            refs = [(p, u) for p, u in _referenced(effective[n_urn], names)
                    if u in replaced and not any(covers(i, p) for i in ignored)]
            if not refs:
                continue
            rc = out.get(n_urn) or ResourceChange(n_urn, str(new.get("type")), str(new.get("name")), "update",
                                                  bool(new.get("custom")))
            for p, u in refs:
                text = format_path(p)
                if not any(c.path == text for c in rc.changes):
                    rc.changes.append(Change(text, _get(effective[n_urn], p), f"(new ID of {short_urn(u)})"))
                for rule in rules_for(rc.type, effective[n_urn], mutable_data=mutable):
                    if rule.kind == "force-new" and any(covers(parse_path(t), p) for t in rule.paths):
                        rc.reasons.append(Reason(text, "replaced-dependency", rule.source,
                                                 f"refers to {short_urn(u)}, which is replaced"))
                        break
            rc.changes.sort(key=lambda c: c.path)
            rc.action = "replace" if rc.reasons else "update"
            out[n_urn] = rc
    for urn, rc in out.items():
        if rc.action == "replace":
            _replacement_notes(rc, olds[rc.renamed_from or urn], news[urn], effective[urn])
        else:
            _effects(rc)
    for urn, r in news.items():
        if urn not in olds and urn not in renamed.values():
            out[urn] = ResourceChange(urn, str(r.get("type")), str(r.get("name")), "create", bool(r.get("custom")))
    for urn, r in olds.items():
        if urn not in news and urn not in renamed:
            rc = ResourceChange(urn, str(r.get("type")), str(r.get("name")), "delete", bool(r.get("custom")))
            if r.get("protect"):
                rc.notes.append("protected: `pulumi up` refuses to delete it (unprotect it first)")
            if r.get("retain_on_delete"):
                rc.notes.append("retain_on_delete: removed from the stack, left in the cloud")
            out[urn] = rc
    return [out[u] for u in sorted(out)]


def _get(value: Any, path: PathT) -> Any:
    for p in path:
        if isinstance(value, Mapping) and str(p) in value:
            value = value[str(p)]
        elif isinstance(value, list) and isinstance(p, int) and 0 <= p < len(value):
            value = value[p]
        else:
            return ABSENT
    return value


# --------------------------------------------------------------------------- derived deltas


@dataclass
class Delta:
    """One thing an operator tracks (a capacity kind, a queue, a profile, a node) and how it moved."""

    key: str
    change: Literal["added", "removed", "changed"]
    fields: list[Change] = field(default_factory=list)

    def document(self) -> dict[str, Any]:
        return {"key": self.key, "change": self.change, "fields": [c.document() for c in self.fields]}


def _deltas(old: Mapping[str, Mapping[str, Any]], new: Mapping[str, Mapping[str, Any]]) -> list[Delta]:
    out: list[Delta] = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, ABSENT), new.get(key, ABSENT)
        if a is ABSENT:
            out.append(Delta(key, "added", changes({}, b)))
        elif b is ABSENT:
            out.append(Delta(key, "removed", changes(a, {})))
        else:
            moved = changes(a, b)
            if moved:
                out.append(Delta(key, "changed", moved))
    return out


def capacity_of(doc: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Kind -> units, devices, the nodes holding it, the projects' guaranteed units and the shared pool."""
    out: dict[str, dict[str, Any]] = {}
    for row in doc.get("capacity") or []:
        if isinstance(row, Mapping) and "kind" in row:
            out[str(row["kind"])] = {k: row.get(k) for k in ("units", "devices", "nodes", "guaranteed", "shared")}
    return out


def quotas_of(doc: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """ClusterQueue -> flavor -> resource -> nominalQuota, borrowingLimit, lendingLimit (those it sets)."""
    out: dict[str, dict[str, Any]] = {}
    for r in doc.get("resources") or []:
        typ = str(r.get("type", ""))
        if not (typ.startswith("kubernetes:kueue.x-k8s.io/") and typ.endswith(":ClusterQueue")):
            continue
        inputs = r.get("inputs") or {}
        name = str((inputs.get("metadata") or {}).get("name") or r.get("name"))
        quotas: dict[str, Any] = {}
        for group in (inputs.get("spec") or {}).get("resourceGroups") or []:
            for flavor in group.get("flavors") or []:
                for res in flavor.get("resources") or []:
                    limits = {k: res[k] for k in ("nominalQuota", "borrowingLimit", "lendingLimit") if k in res}
                    quotas.setdefault(str(flavor.get("name")), {})[str(res.get("name"))] = limits
        out[name] = quotas
    return out


def profile_resources(profile: Mapping[str, Any]) -> str:
    """One line: what a notebook of this profile is guaranteed and limited to."""
    o = profile.get("kubespawner_override") or {}
    parts = []
    if "cpu_guarantee" in o or "cpu_limit" in o:
        parts.append(f"cpu {o.get('cpu_guarantee', '-')}-{o.get('cpu_limit', '-')}")
    if "mem_guarantee" in o or "mem_limit" in o:
        parts.append(f"memory {o.get('mem_guarantee', '-')}-{o.get('mem_limit', '-')}")
    for res, n in sorted((o.get("extra_resource_limits") or {}).items()):
        parts.append(f"{res} {n}")
    return ", ".join(parts) or "-"


def profiles_of(doc: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """JupyterHub profile slug -> display name, description, resources line, and the rest of it."""
    out: dict[str, dict[str, Any]] = {}
    for r in doc.get("resources") or []:
        inputs = r.get("inputs") or {}
        if r.get("type") != "kubernetes:helm.sh/v3:Release" or inputs.get("name") != "jupyterhub":
            continue
        values = inputs.get("values") or {}
        profiles = ((values.get("singleuser") or {}) if isinstance(values, Mapping) else {}).get("profileList") or []
        for p in profiles if isinstance(profiles, list) else []:
            if not isinstance(p, Mapping):
                continue
            rest = {k: v for k, v in p.items() if k not in ("slug", "display_name", "description")}
            out[str(p.get("slug") or p.get("display_name"))] = {
                "display_name": p.get("display_name"),
                "description": p.get("description"),
                "resources": profile_resources(p),
                "settings": rest,
            }
    return out


_NODE_FIELDS = ("pool", "role", "flavor", "accelerator", "accelerator_count", "mig_config", "labels", "taints")


def nodes_of(doc: Mapping[str, Any], *, full: bool = True) -> dict[str, dict[str, Any]]:
    """Node name -> pool, role, flavor (and accelerators, MIG config, labels, taints when the plan has them).

    Plans since the ``nodes`` list carry every field; older ones are read from the instances' inputs
    (name, metadata ``aiinfn:pool`` / ``aiinfn:role``, the flavor by name or through its ID).
    """
    if full and isinstance(doc.get("nodes"), list):
        return {str(n["name"]): {k: n.get(k) for k in _NODE_FIELDS} for n in doc["nodes"] if "name" in n}
    resources = list(doc.get("resources") or [])
    flavors = {str(r.get("name")): (r.get("inputs") or {}).get("name") for r in resources
               if r.get("type") == "openstack:compute/flavor:Flavor"}
    out: dict[str, dict[str, Any]] = {}
    for r in resources:
        if r.get("type") != "openstack:compute/instance:Instance":
            continue
        inputs = r.get("inputs") or {}
        meta = inputs.get("metadata") or {}
        flavor = inputs.get("flavorName")
        if not flavor and isinstance(inputs.get("flavorId"), str):
            m = _MOCK_ID_RE.match(inputs["flavorId"])
            key = m.group(1) if m else inputs["flavorId"]
            flavor = flavors.get(key) or key  # a managed Flavor's name, or the looked-up flavor's name
        out[str(inputs.get("name") or r.get("name"))] = {
            "pool": meta.get("aiinfn:pool"), "role": meta.get("aiinfn:role"), "flavor": flavor}
    return out


# --------------------------------------------------------------------------- the whole diff


@dataclass
class PlanDiff:
    """Everything ``aiinfn diff`` reports about going from ``old`` to ``new``."""

    environment: str
    scope: str | None
    resources: list[ResourceChange]
    capacity: list[Delta]
    queues: list[Delta]
    profiles: list[Delta]
    nodes: list[Delta]

    def counts(self) -> dict[str, int]:
        by = {a: sum(1 for r in self.resources if r.action == a) for a in ("create", "update", "replace", "delete")}
        return {"add": by["create"], "change": by["update"], "replace": by["replace"], "delete": by["delete"]}

    @property
    def changed(self) -> bool:
        return bool(self.resources or self.capacity or self.queues or self.profiles or self.nodes)

    def summary_line(self) -> str:
        c = self.counts()
        return f"{c['add']} to add, {c['change']} to change, {c['replace']} to replace, {c['delete']} to delete"

    def document(self) -> dict[str, Any]:
        return {
            "environment": self.environment,
            "scope": self.scope,
            "changed": self.changed,
            "summary": self.counts(),
            "resources": [r.document() for r in self.resources],
            "capacity": [d.document() for d in self.capacity],
            "queues": [d.document() for d in self.queues],
            "profiles": [d.document() for d in self.profiles],
            "nodes": [d.document() for d in self.nodes],
        }


def diff(old: Mapping[str, Any], new: Mapping[str, Any]) -> PlanDiff:
    """Compare two plan documents (``old`` the baseline); pure: neither is modified."""
    full_nodes = isinstance(old.get("nodes"), list) and isinstance(new.get("nodes"), list)
    env = new.get("environment") or {}
    return PlanDiff(
        environment=str(env.get("name") or ""),
        scope=new.get("scope") if isinstance(new.get("scope"), str) else None,
        resources=resource_changes(old, new),
        capacity=_deltas(capacity_of(old), capacity_of(new)),
        queues=_deltas(quotas_of(old), quotas_of(new)),
        profiles=_deltas(profiles_of(old), profiles_of(new)),
        nodes=_deltas(nodes_of(old, full=full_nodes), nodes_of(new, full=full_nodes)),
    )


def text_change(old: str, new: str) -> str:
    """A short account of a multi-line text change: ``+3 -1 lines``."""
    added = removed = 0
    for line in difflib.ndiff(old.splitlines(), new.splitlines()):
        if line.startswith("+ "):
            added += 1
        elif line.startswith("- "):
            removed += 1
    return f"text: +{added} -{removed} lines"


# --------------------------------------------------------------------------- baselines


@dataclass
class Comparison:
    """A diff and what it was taken against (``baseline``: a file, or ``<ref>:environments/...``)."""

    baseline: str
    old: dict[str, Any]
    new: dict[str, Any]
    result: PlanDiff

    def document(self) -> dict[str, Any]:
        return {"baseline": self.baseline, **self.result.document()}


def read_plan(path: Path, env: str) -> dict[str, Any]:
    """A plan document from ``path``; a missing or unreadable file is one DiffError saying what to do."""
    hint = f"run `aiinfn plan {env}` first, or compare with a git ref (`aiinfn diff {env} --against HEAD`)"
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise DiffError(f"no last plan of {env!r} at {path}: {hint}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DiffError(f"{path} cannot be read ({type(e).__name__}): {hint}") from None
    try:
        doc = json.loads(text)
    except ValueError as e:
        raise DiffError(f"{path} is not a plan (invalid JSON: {e}): {hint}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("resources"), list):
        raise DiffError(f"{path} is not a plan document of `aiinfn plan` (no resources list): {hint}")
    return doc


def _check_stacks(old: Mapping[str, Any], new: Mapping[str, Any], where: str) -> None:
    a, b = old.get("stack"), new.get("stack")
    if a and b and a != b:
        raise DiffError(f"{where} was planned for stack {a!r}, this plan is for stack {b!r}: URNs differ by "
                        f"stack; pass --stack {a} or plan again")


def compare_with_last_plan(
    env_ref: str | Path, build_dir: Path, *, stack: str | None = None, root: Path | None = None
) -> Comparison:
    """The environment as it is now against build/<env>/plan.json (the last `aiinfn plan`)."""
    from . import preview
    from .config.loader import load, resolve

    environment = load(resolve(env_ref, root), root=root)  # the name locates the file; fails early
    path = build_dir / environment.name / "plan.json"
    old = read_plan(path, environment.name)
    new = preview.build(env_ref, stack=stack, root=root).document()
    _check_stacks(old, new, str(path))
    return Comparison(str(path), old, new, diff(old, new))


def _git(root: Path, *args: str, binary: bool = False) -> subprocess.CompletedProcess[Any]:
    if shutil.which("git") is None:
        raise ToolMissingError("git is not installed: `aiinfn diff --against` reads environments/ from git")
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
    try:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=not binary,
                              env=env, timeout=120, check=False)
    except subprocess.TimeoutExpired:
        raise DiffError(f"git {args[0]} took more than 120 s in {root}") from None


def _first_line(text: str | bytes) -> str:
    s = text.decode(errors="replace") if isinstance(text, bytes) else text
    return next((line.strip() for line in s.splitlines() if line.strip()), "no message")


def extract_environments(root: Path, ref: str, into: Path) -> str:
    """Write ``environments/`` as it is at git ``ref`` under ``into``; returns the commit it resolved to."""
    top = _git(root, "rev-parse", "--show-toplevel")
    if top.returncode != 0:
        raise DiffError(f"{root} is not a git checkout ({_first_line(top.stderr)}): --against needs one; "
                        "compare with the last plan instead (omit --against)")
    if ref.startswith("-"):
        raise DiffError(f"{ref!r} is not a git ref")
    commit = _git(root, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    if commit.returncode != 0 or not commit.stdout.strip():
        raise DiffError(f"{ref!r} is not a commit of the git checkout at {top.stdout.strip()}: give a branch, "
                        "tag or commit (e.g. HEAD, origin/main)")
    sha = commit.stdout.strip()
    prefix = PurePosixPath(os.path.relpath(root.resolve(), Path(top.stdout.strip()).resolve()).replace(os.sep, "/"))
    envdir = str(prefix / "environments") if str(prefix) != "." else "environments"
    listed = _git(root, "ls-tree", "-d", "--name-only", sha, "--", envdir)
    if listed.returncode != 0 or not listed.stdout.strip():
        raise DiffError(f"there is no environments/ directory at {ref} ({sha[:12]})")
    archive = _git(root, "archive", "--format=tar", sha, "--", envdir, binary=True)
    if archive.returncode != 0:
        raise DiffError(f"git archive of environments/ at {ref} failed: {_first_line(archive.stderr)}")
    _unpack(archive.stdout, envdir, into / "environments")
    return sha


def _unpack(data: bytes, top: str, dest: Path) -> None:
    """Regular files and directories under ``top`` of a tar archive, written below ``dest`` (nothing else)."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for member in tar:
            rel = PurePosixPath(member.name)
            if rel.is_absolute() or ".." in rel.parts or not rel.is_relative_to(top):
                continue
            target = dest.joinpath(*rel.relative_to(top).parts)
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
            elif member.isfile():
                f = tar.extractfile(member)
                if f is not None:
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(f.read())


def project_at(root: Path, ref: str, into: Path) -> str:
    """A project root at ``into``: environments/ from ``ref``, the rest symlinked to today's ``root``."""
    sha = extract_environments(root, ref, into)
    for entry in sorted(root.iterdir()):
        if entry.name in ("stacks", "templates") or re.fullmatch(r"Pulumi(\.[^/]+)?\.yaml", entry.name):
            (into / entry.name).symlink_to(entry.resolve())
    return sha


def _env_under(root: Path, env_ref: str | Path) -> PurePosixPath:
    from .config.loader import resolve

    path = resolve(env_ref, root).resolve()
    try:
        return PurePosixPath(path.relative_to((root / "environments").resolve()).as_posix())
    except ValueError:
        raise DiffError(f"{path} is not under {root / 'environments'}: --against compares the files of "
                        "environments/ at a git ref") from None


def compare_with_git_ref(
    env_ref: str | Path, ref: str, *, stack: str | None = None, root: Path | None = None
) -> Comparison:
    """The environment files as they were at git ``ref`` against the working tree, both planned with today's
    stacks/ and templates/ (a temporary project root: environments/ from git, the rest symlinked)."""
    from . import preview
    from .config.loader import project_root

    root = (root or project_root()).resolve()
    rel = _env_under(root, env_ref)  # the environment as it is now: a name or a path under environments/
    with tempfile.TemporaryDirectory(prefix="aiinfn-diff-") as tmp:
        at = Path(tmp)
        sha = project_at(root, ref, at)
        old_file = at / "environments" / rel
        label = f"{ref}:environments/{rel}"
        if not old_file.is_file():
            raise DiffError(f"environment environments/{rel} does not exist at {ref} ({sha[:12]}): nothing to "
                            "compare with; compare with the last plan instead (omit --against)")
        try:
            old = preview.build(old_file, stack=stack, root=at).document()
        except ConfigError as e:
            def at_ref(text: str) -> str:
                for base in {str(at), str(at.resolve())}:
                    text = text.replace(base + os.sep, f"{ref}:")
                return text

            raise ConfigError(at_ref(e.message), file=at_ref(e.file) if e.file else label, path=e.path) from None
    new = preview.build(env_ref, stack=stack, root=root).document()
    _check_stacks(old, new, label)
    return Comparison(label, old, new, diff(old, new))
