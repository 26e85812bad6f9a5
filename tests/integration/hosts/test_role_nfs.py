"""Roles nfs_server and nfs_client on real hosts: the platform filesystem is made once, never reformatted,
exported to the cluster's network, and listed in the clients' fstab.

Real: blkid, mkfs.xfs / mkfs.ext4, fstab and exports files, the apt packages, the playbook.
Not real here: the data volume is a file in the host (there are no block devices or loop devices in the test
hosts), so nothing is mounted (nfs_server_mount_now false) and the kernel NFS server does not run
(nfs_server_start_service false); clients write fstab without mounting (nfs_client_mount_now false).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import hostlib
import pytest

pytestmark = pytest.mark.integration

VOLUME = "/srv/platform-volume.img"


def _play(tmp_path: Path) -> Path:
    book = tmp_path / "nfs.yml"
    book.write_text(
        "- name: Server\n  hosts: server\n  roles:\n    - role: nfs_server\n"
        "- name: Clients\n  hosts: client\n  roles:\n    - role: nfs_client\n"
    )
    return book


def _inventory(hosts: hostlib.Hosts, fstype: str = "xfs") -> dict:
    return hosts.inventory(
        groups={"server": ["nfs-1"], "client": ["worker-1"]},
        group_vars={
            "nfs_server_device": VOLUME, "nfs_server_fstype": fstype, "nfs_server_export_path": "/export/platform",
            "nfs_server_clients": [f"{hosts.net}.0/24"], "nfs_server_mount_now": False,
            "nfs_server_start_service": False,
            "nfs_client_server": hosts.address("nfs-1"), "nfs_client_export": "/export/platform",
            "nfs_client_mount_path": "/platform", "nfs_client_mount_now": False,
        },
    )


def _digest(hosts: hostlib.Hosts) -> str:
    return hashlib.sha256(hosts.path("nfs-1", VOLUME).read_bytes()).hexdigest()


def test_an_empty_volume_gets_a_filesystem_and_is_exported(test_hosts: Callable[..., hostlib.Hosts],
                                                           tmp_path: Path) -> None:
    hosts = test_hosts(["nfs-1", "worker-1"])
    hosts.exec("nfs-1", f"truncate -s 320M {VOLUME}", check=True)
    inv = _inventory(hosts)
    first = hostlib.run_playbook(_play(tmp_path), inv)
    assert first.rc == 0, first.failed
    assert hosts.exec("nfs-1", f"blkid -o value -s TYPE {VOLUME}", check=True).stdout.strip() == "xfs"
    uuid = hosts.exec("nfs-1", f"blkid -o value -s UUID {VOLUME}", check=True).stdout.strip()
    fstab = hosts.read("nfs-1", "/etc/fstab").decode()
    assert f"UUID={uuid} /export/platform xfs defaults,noatime" in fstab
    exports = hosts.read("nfs-1", "/etc/exports.d/aiinfn.exports").decode()
    assert f"/export/platform {hosts.net}.0/24(rw,sync,no_subtree_check,root_squash)" in exports
    client_fstab = hosts.read("worker-1", "/etc/fstab").decode()
    assert f"{hosts.address('nfs-1')}:/export/platform /platform nfs4 rw,hard,noatime,vers=4.2,_netdev" in client_fstab
    assert hosts.exists("worker-1", "/platform")

    formatted = _digest(hosts)
    again = hostlib.run_playbook(_play(tmp_path), inv)
    assert again.rc == 0, again.failed
    assert again.changed == {"nfs-1": 0, "worker-1": 0}
    assert _digest(hosts) == formatted  # not made again


def test_a_volume_with_another_filesystem_is_never_reformatted(test_hosts: Callable[..., hostlib.Hosts],
                                                               tmp_path: Path) -> None:
    hosts = test_hosts(["nfs-1", "worker-1"])
    hosts.exec("nfs-1", f"truncate -s 64M {VOLUME} && mkfs.ext4 -q -L userdata {VOLUME}", check=True)
    before = _digest(hosts)
    res = hostlib.run_playbook(_play(tmp_path), _inventory(hosts, fstype="xfs"))
    assert res.rc != 0
    (host, _task, msg), = res.failed
    assert host == "nfs-1" and "holds a ext4 filesystem, not xfs" in msg and "left as it is" in msg
    assert _digest(hosts) == before
    assert "/export/platform" not in hosts.read("nfs-1", "/etc/fstab").decode()
