"""Render templates/ with Jinja2 (StrictUndefined): cloud-init, mig-parted config, Ansible inventory.

The stacks pass exactly these documents to the cloud (user data), and ``aiinfn plan`` writes the same
ones under ``build/<env>/`` (``render.artifacts``), so what is reviewed is what is deployed.

Every value from the plan is data, whatever it holds (validation refuses most hostile strings; rendering
does not rely on it). The templates interpolate nothing raw: each value goes through one filter that
emits it as a YAML flow scalar or collection, strings double-quoted with every character that could end
the scalar, the line or the document escaped, so no value changes the document's structure (``yaml``);
in the Ansible inventory each string also carries Ansible's ``!unsafe`` tag, so Ansible never templates
it (``unsafe``). The dynamic inventory's JSON marks strings the same way (``unsafe_json``: Ansible's
``__ansible_unsafe`` markers, which its script inventory plugin honours).
"""

from __future__ import annotations

import json
import math
import unicodedata
from collections.abc import Mapping
from functools import lru_cache
from io import StringIO
from pathlib import Path
from typing import Any

import jinja2

from .. import versions
from ..config.loader import project_root
from ..config.models import Role
from ..planning import Plan
from ..planning.nodes import Node
from ..serialize import yaml_dump
from ..services import harbor, monitoring

ADMIN_USER = "aiinfn"
#: First-boot packages per role (drivers and Kubernetes come later, from Ansible).
BASE_PACKAGES = ["chrony", "curl", "jq", "python3", "nfs-common", "xfsprogs"]
ROLE_PACKAGES: dict[Role, list[str]] = {
    Role.NFS: ["nfs-kernel-server"],
    Role.BACKUP: ["borgbackup"],
    Role.BASTION: ["fail2ban"],
}
#: Local NVMe exposed as the flavor's ephemeral disk: second virtio disk.
EPHEMERAL_DEVICE = "/dev/vdb"


def templates_dir() -> Path:
    return project_root() / "templates"


@lru_cache(maxsize=4)
def _jinja(directory: str) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["yaml"] = to_yaml
    env.filters["unsafe"] = to_unsafe_yaml
    return env


# --------------------------------------------------------------------------- values as YAML, never as code

#: The Ansible YAML tag of a string Ansible must never template.
UNSAFE_TAG = "!unsafe"
#: How Ansible's JSON (script inventory, ``ansible-inventory --list``) marks such a string.
UNSAFE_MARKER = "__ansible_unsafe"
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t", "\x00": "\\0"}
#: Characters written as escapes: controls, invisible format characters, surrogates, private-use and
#: unassigned code points, and every character YAML reads as a line break.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def _quoted(text: str) -> str:
    """``text`` as a YAML double-quoted scalar that reads back as exactly ``text``, on one line."""
    out = ['"']
    for ch in text:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif unicodedata.category(ch) in _ESCAPED_CATEGORIES:
            o = ord(ch)
            out.append(f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


@lru_cache(maxsize=1)
def _yaml11() -> Any:
    from ruamel.yaml.resolver import VersionedResolver

    return VersionedResolver(version=(1, 1))


def needs_unsafe(text: str) -> bool:
    """Whether ``text`` is tagged ``!unsafe`` (marked ``__ansible_unsafe``) for Ansible: every string, except
    those YAML 1.1 would read as something else if unquoted (``123``, ``0x20B510DE``, ``true``, ``''``, ``~``).
    Ansible 2.19 resolves an ``!unsafe`` scalar as if it were unquoted (``!unsafe "0x1F"`` becomes 31), so
    those are written quoted and untagged: text that reads as a number, boolean or null holds no ``{`` and
    cannot be a template, and a quoted scalar stays text."""
    from ruamel.yaml.nodes import ScalarNode

    return bool(_yaml11().resolve(ScalarNode, text, (True, False)) == "tag:yaml.org,2002:str")


def _flow(value: Any, tag: str) -> str:
    if isinstance(value, str):
        return f"{tag} {_quoted(value)}" if tag and needs_unsafe(value) else _quoted(value)
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        return repr(value)
    if isinstance(value, Mapping):
        items = sorted(value.items(), key=lambda kv: str(kv[0]))
        return "{" + ", ".join(f"{_key(k)}: {_flow(v, tag)}" for k, v in items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_flow(v, tag) for v in value) + "]"
    raise TypeError(f"cannot render a {type(value).__name__} into YAML: convert it to text first")


#: YAML allows an implicit key of at most 1024 characters; a longer one is written as an explicit key (``? k``).
_IMPLICIT_KEY_LIMIT = 1000


def _key(key: Any) -> str:
    text = _flow(key, "")
    return text if len(text) <= _IMPLICIT_KEY_LIMIT else f"? {text} "


def to_yaml(value: Any) -> str:
    """``value`` as one YAML flow node: strings quoted and escaped, mappings with sorted keys."""
    return _flow(value, "")


def to_unsafe_yaml(value: Any) -> str:
    """``to_yaml``, every string (at any depth, mapping keys aside) tagged ``!unsafe`` (``needs_unsafe``): Ansible
    never templates it. (Ansible templates no mapping key; keys are quoted all the same.)"""
    return _flow(value, UNSAFE_TAG)


def unsafe_json(value: Any) -> Any:
    """``value`` for Ansible's JSON inventory: every string (mapping keys aside) as ``{"__ansible_unsafe": s}``,
    as ``to_unsafe_yaml`` tags them (the same strings, so Ansible reads both inventories alike)."""
    if isinstance(value, str):
        return {UNSAFE_MARKER: value} if needs_unsafe(value) else value
    if isinstance(value, Mapping):
        return {k: unsafe_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [unsafe_json(v) for v in value]
    return value


def plain(value: Any) -> Any:
    """The inverse of ``unsafe_json``: markers replaced by their strings (to compare with the plan's values)."""
    if isinstance(value, Mapping):
        if set(value) == {UNSAFE_MARKER} and isinstance(value[UNSAFE_MARKER], str):
            return value[UNSAFE_MARKER]
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def read_inventory(text: str, *, markers: bool = True) -> dict[str, Any]:
    """A rendered inventory (``ansible_inventory``) as data: each ``!unsafe`` string as an ``__ansible_unsafe``
    marker (``markers``, what ansible-runner's inventory dict passes on to Ansible intact) or as plain text."""
    from ruamel.yaml import YAML
    from ruamel.yaml.constructor import SafeConstructor

    class _Constructor(SafeConstructor):
        pass

    def _unsafe(loader: Any, node: Any) -> Any:
        text = loader.construct_scalar(node)
        return {UNSAFE_MARKER: text} if markers else text

    _Constructor.add_constructor(UNSAFE_TAG, _unsafe)
    yaml = YAML(typ="safe", pure=True)
    yaml.Constructor = _Constructor
    return dict(yaml.load(StringIO(text)) or {})


def render(template: str, **context: Any) -> str:
    return _jinja(str(templates_dir())).get_template(template).render(**context)


def node_facts(plan: Plan, node: Node) -> dict[str, Any]:
    """What a node knows about itself (written to /etc/aiinfn/node.json, read by the roles)."""
    return {
        "name": node.name,
        "site": plan.env.site.name,
        "pool": node.pool,
        "role": node.role.value,
        "accelerator": node.accelerator,
        "accelerator_count": node.accelerator_count,
        "mig_config": node.mig_config,
        "labels": node.labels,
        "taints": [t.as_k8s() for t in node.taints],
    }


def cloud_init(plan: Plan, node: Node) -> str:
    env = plan.env
    flavor = env.flavors[node.flavor]
    keys = [env.site.ssh_public_key] if env.site.ssh_public_key else []
    packages = BASE_PACKAGES + ROLE_PACKAGES.get(node.role, [])
    return render(
        "cloud-init/node.yaml.j2",
        node={"name": node.name, "pool": node.pool, "role": node.role.value},
        site=env.site,
        admin_user=ADMIN_USER,
        ssh_keys=keys,
        packages=packages,
        scratch_device=EPHEMERAL_DEVICE if flavor.ephemeral_gb > 0 else None,
        facts_json=json.dumps(node_facts(plan, node), sort_keys=True) + "\n",
    )


def mig_parted(plan: Plan) -> str:
    return yaml_dump(plan.mig_parted_config())


def inventory_groups(plan: Plan) -> dict[str, list[str]]:
    """Ansible groups: ``role_<role>``, ``pool_<pool>``, ``accel_<model>``, plus ``k8s_cluster``."""
    groups: dict[str, list[str]] = {}

    def add(group: str, name: str) -> None:
        groups.setdefault(group.replace("-", "_").lower(), []).append(name)

    for n in plan.nodes:
        add(f"role_{n.role.value}", n.name)
        add(f"pool_{n.pool}", n.name)
        if n.accelerator:
            add(f"accel_{n.accelerator}", n.name)
        if n.is_kubernetes_node:
            add("k8s_cluster", n.name)
        if sts_wire_mounts(plan, node=n):
            add("sts_wire", n.name)
    return dict(sorted(groups.items()))


def sts_wire_mounts(plan: Plan, node: Node) -> list[dict[str, str]]:
    """The shared buckets sts-wire mounts on ``node`` (storage.s3.node_mounts of its pool)."""
    s3 = plan.env.storage.s3
    if s3 is None:
        return []
    return [
        {"name": m.name, "bucket": m.bucket, "mount_path": m.mount_path}
        for m in s3.node_mounts
        if node.pool in m.pools
    ]


def data_device(plan: Plan, node: Node) -> str | None:
    """The block device of the NFS or Borg data volume: the first volume Nova attaches after the ephemeral
    disk (virtio names them in attachment order). Override per host in the inventory when a site differs."""
    if node.role not in (Role.NFS, Role.BACKUP):
        return None
    return "/dev/vdc" if plan.env.flavors[node.flavor].ephemeral_gb > 0 else "/dev/vdb"


def host_vars(plan: Plan, node: Node, address: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if address:
        out["ansible_host"] = address
    out.update(
        {
            "aiinfn_pool": node.pool,
            "aiinfn_role": node.role.value,
            "aiinfn_accelerator": node.accelerator,
            "aiinfn_accelerator_count": node.accelerator_count,
            "aiinfn_mig_config": node.mig_config,
            "aiinfn_node_labels": node.labels,
            "aiinfn_node_taints": [t.as_k8s() for t in node.taints],
        }
    )
    device = data_device(plan, node)
    if device:
        out["aiinfn_data_device"] = device
    mounts = sts_wire_mounts(plan, node)
    if mounts:
        out["aiinfn_sts_wire_mounts"] = mounts
    return out


def site_vars(plan: Plan) -> dict[str, Any]:
    """The inventory's ``all.vars``: what the playbooks map onto the roles' inputs. No secret is here:
    join token, passphrases and client secrets reach the playbooks as extra variables at run time."""
    env = plan.env
    first = {role: next((n.name for n in plan.nodes if n.role is role), None) for role in Role}
    nfs = env.storage.nfs
    backup = env.storage.backup
    s3 = env.storage.s3
    return {
        "aiinfn_site": env.site.name,
        "aiinfn_domain": env.site.domain,
        "ansible_user": ADMIN_USER,
        "aiinfn_ntp_servers": list(env.site.ntp_servers),
        "aiinfn_rke2_version": versions.RKE2,
        "aiinfn_nvidia_driver_version": versions.NVIDIA_DRIVER,
        "aiinfn_nvidia_container_toolkit_version": versions.NVIDIA_CONTAINER_TOOLKIT,
        "aiinfn_xrt_version": versions.XRT,
        "aiinfn_sts_wire_version": versions.STS_WIRE,
        "aiinfn_first_server": first[Role.SERVER],
        "aiinfn_cluster_domain": env.kubernetes.cluster_domain,
        "aiinfn_cluster_cidr": str(env.network.cidr),
        "aiinfn_pod_cidr": str(env.network.pod_cidr),
        "aiinfn_service_cidr": str(env.network.service_cidr),
        "aiinfn_tls_sans": list(env.kubernetes.tls_sans),
        "aiinfn_mig_strategy": env.kubernetes.mig_strategy,
        "aiinfn_oidc": {
            "issuer": env.iam.issuer,
            "client_id": env.iam.client_id,
            "username_claim": env.iam.username_claim,
            "groups_claim": env.iam.groups_claim,
        },
        "aiinfn_registry_mirror": harbor.host(plan),
        "aiinfn_nfs": {"server": first[Role.NFS], "export_path": nfs.export_path} if nfs else None,
        "aiinfn_backup": {
            "server": first[Role.BACKUP],
            "schedule": backup.schedule,
            "check_schedule": backup.check_schedule,
            "retention": backup.retention.model_dump(),
        }
        if backup
        else None,
        "aiinfn_s3": {
            "endpoint": s3.endpoint,
            "region": s3.region,
            "mount_path": s3.mount_path,
            "sts_role": s3.sts_role,
            "client_id": s3.client_id,
            "iam_issuer": env.iam.issuer,
        }
        if s3
        else None,
        "aiinfn_mig_parted_config": plan.mig_parted_config(),
        "aiinfn_artifact_source": env.bootstrap.artifact_source,
        "aiinfn_artifact_sha256": versions.artifact_sha256(),
        "aiinfn_admin_users": [u.model_dump() for u in env.bootstrap.admin_users],
        "aiinfn_reboot": env.bootstrap.reboot,
        # Grafana on the monitoring node: this site's Prometheus, the IAM login, the dashboards (no secret)
        "aiinfn_monitoring": monitoring.grafana_settings(plan),
    }


def ansible_inventory(
    plan: Plan,
    addresses: Mapping[str, str] | None = None,
    *,
    ssh_args: Mapping[str, str] | None = None,
    ssh_user: str | None = None,
) -> str:
    """The inventory YAML. ``ssh_args``: each host's ``ansible_ssh_common_args`` (the bastion as SSH jump host
    and the site's pinned host keys, ``aiinfn.ansible.known_hosts``); ``ssh_user`` replaces ``ansible_user``."""
    addresses = addresses or {}
    ssh_args = ssh_args or {}
    hosts = [{"name": n.name, "vars": host_vars(plan, n, addresses.get(n.name)),
              "ssh_args": ssh_args.get(n.name)} for n in plan.nodes]
    top = site_vars(plan)
    if ssh_user is not None:
        top["ansible_user"] = ssh_user
    return render(
        "ansible/inventory.yaml.j2",
        site=plan.env.site,
        site_vars=top,
        groups=inventory_groups(plan),
        hosts=hosts,
    )
