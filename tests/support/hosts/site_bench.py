"""A whole site on test hosts, as `aiinfn bootstrap` would see it: the inventory aiinfn renders from an
environment (site-env.yaml beside this file by default), with the test hosts' addresses and SSH
settings, the stand-in artifacts, NVIDIA packages and GPUs, and the few switches of what the test hosts cannot
do (load kernel modules, apply sysctl live, mount block devices or NFS, start the kernel NFS server, reload udev),
and the stand-ins' digests in the roles' test-only ``*_sha256_override`` variables.

Used by test_site.py and benchmarks/bootstrap.py.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import hostlib
from gpu_standins import build_nvidia_repo, install_gpus
from rke2_standin import build_release as build_rke2
from rke2_standin import tarball_sha256 as rke2_tarball_sha256
from sts_wire_standin import SHA256 as STS_WIRE_SHA256
from sts_wire_standin import build_release as build_sts_wire

from aiinfn import versions
from aiinfn.config.loader import load
from aiinfn.planning import Plan, make_plan
from aiinfn.render import ansible_inventory, read_inventory

HERE = Path(__file__).resolve().parent
ENV_FILE = HERE / "site-env.yaml"
VOLUME = "/srv/data-volume.img"
SECRETS = {
    "rke2_token": "K10-site-server-token-0123456789abcdef",
    "rke2_agent_token": "K10-site-agent-token-fedcba9876543210",
    "borgbackup_passphrase": "site-borg-passphrase-0123",
    "sts_wire_client_secret": "site-iam-client-secret-0123",
    "sts_wire_refresh_token": "site-node-refresh-token-0123",
}
#: What the test hosts cannot do (see hostlib's docstring); everything else runs as on a site.
TEST_HOST_SWITCHES = {
    "common_kernel_modules_load": False,
    "common_sysctl_apply": False,
    "rke2_sysctl_apply": False,
    "data_volume_mount_now": False,
    "nfs_server_mount_now": False,
    "nfs_server_start_service": False,
    "nfs_client_mount_now": False,
    "fpga_xrt_verify_device": False,
    "fpga_xrt_reload_udev": False,
    "nvidia_driver_repositories": [{"name": "nvidia-standin", "uris": "file:/srv/nvidia-repo", "suites": "./",
                                    "trusted": True}],
}


def plan(env: str | Path = ENV_FILE) -> Plan:
    return make_plan(load(str(env)))


def artifacts(directory: Path) -> Path:
    """The site's artifact source: RKE2 and sts-wire stand-in releases, as an air-gapped site lays them out."""
    build_rke2(directory / "rke2", versions.RKE2)
    build_sts_wire(directory)
    return directory


def artifact_overrides(directory: Path) -> dict[str, str]:
    """The stand-ins' digests, in the roles' test-only override variables (versions.py pins the real ones)."""
    return {"rke2_sha256_override": rke2_tarball_sha256(directory / "rke2" / versions.RKE2),
            "sts_wire_sha256_override": STS_WIRE_SHA256}


def prepare_hosts(p: Plan, hosts: hostlib.Hosts, work: Path) -> None:
    """Put on each host what a VM of the site would have and the test hosts lack: GPUs, volumes, the repo."""
    repo = work / "nvidia-repo"
    if not repo.exists():
        build_nvidia_repo(repo, versions.NVIDIA_DRIVER, versions.NVIDIA_CONTAINER_TOOLKIT)
    for node in p.nodes:
        if node.name not in hosts.names:
            continue
        if node.accelerator and node.role.value == "gpu":
            shutil.copytree(repo, hosts.path(node.name, "/srv/nvidia-repo"), dirs_exist_ok=True)
            install_gpus(hosts, node.name, node.accelerator, node.accelerator_count)
        if node.role.value in ("nfs", "backup"):
            hosts.exec(node.name, f"truncate -s 320M {VOLUME}", check=True)


def inventory(p: Plan, hosts: hostlib.Hosts, source: Path) -> dict[str, Any]:
    """aiinfn's rendered inventory of ``p`` with the test hosts' addresses, as an ansible-runner dict."""
    rendered = ansible_inventory(p, {n: hosts.address(n) for n in hosts.names})
    doc = read_inventory(rendered)  # !unsafe strings as __ansible_unsafe markers: the roles get them as data
    top = doc["all"]
    for name, hv in top["hosts"].items():
        hv.update(hosts.connection_vars(name))
        if hv.get("aiinfn_data_device"):
            hv["aiinfn_data_device"] = VOLUME
    top["vars"].update({"aiinfn_artifact_source": str(source), **TEST_HOST_SWITCHES, **artifact_overrides(source)})
    top["vars"].pop("ansible_user", None)  # the test hosts log in as root
    return doc  # type: ignore[no-any-return]
