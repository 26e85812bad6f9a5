"""Render templates/ with Jinja2 (StrictUndefined): cloud-init, mig-parted config, Ansible inventory.

The stacks pass exactly these documents to the cloud (user data), and ``aiinfn plan`` writes the same
ones under ``build/<env>/`` (``render.artifacts``), so what is reviewed is what is deployed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from .. import versions
from ..config.loader import project_root
from ..config.models import Role
from ..planning import Plan
from ..planning.nodes import Node
from ..serialize import yaml_dump
from ..services import harbor

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
    env.filters["tojson"] = lambda v: json.dumps(v, sort_keys=True)
    return env


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
        facts=node_facts(plan, node),
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
        "aiinfn_admin_users": [u.model_dump() for u in env.bootstrap.admin_users],
        "aiinfn_reboot": env.bootstrap.reboot,
    }


def ansible_inventory(plan: Plan, addresses: Mapping[str, str] | None = None) -> str:
    addresses = addresses or {}
    hosts = [{"name": n.name, "vars": host_vars(plan, n, addresses.get(n.name))} for n in plan.nodes]
    return render(
        "ansible/inventory.yaml.j2",
        site=plan.env.site,
        site_vars=site_vars(plan),
        groups=inventory_groups(plan),
        hosts=hosts,
    )
