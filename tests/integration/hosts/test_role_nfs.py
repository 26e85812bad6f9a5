"""Roles nfs_server and nfs_client on real hosts: the platform filesystem is made once, never reformatted,
exported to each cluster node's address (never a network) with root squashed to the owner of a closed export
root, which holds the platform areas directory the hub's provisioner fills as its own identity; clients get
the NFS client and mount the export only where a consumer needs it.

Real: blkid, mkfs.xfs / mkfs.ext4, fstab and exports files, exportfs loading the export table (its view,
`exportfs -v`, is what the kernel server would serve), the apt packages, the playbook, and systemd's own
fstab generator turning a consumer's fstab line into the mount unit systemd would start at boot.
Not real here: the data volume is a file in the host (there are no block devices or loop devices in the test
hosts), so nothing is mounted (nfs_server_mount_now false; the generator skips device entries in a container,
so the server's fstab line is checked as text and against blkid's UUID), and the kernel NFS server does not
run (nfs_server_start_service false: nfs-server.service needs the nfsd module); clients write fstab without
mounting (nfs_client_mount_now false), so no NFS traffic and no squashing by a live server is exercised: who
may write in the areas directory is checked on the server's filesystem as the identities a squashing server
would act as (the areas identity, and `nobody` for a client's root), through a descriptor of the directory as a
client's file handle would reach it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import hostlib
import pytest

from aiinfn.hub import identity

pytestmark = pytest.mark.integration

VOLUME = "/srv/platform-volume.img"


def _play(tmp_path: Path) -> Path:
    book = tmp_path / "nfs.yml"
    book.write_text(
        "- name: Server\n  hosts: server\n  roles:\n    - role: nfs_server\n"
        "- name: Clients\n  hosts: client\n  roles:\n    - role: nfs_client\n"
    )
    return book


#: mkdir in the areas directory as ``uid`` through a descriptor opened first (the NFS client's file handle of
#: the mounted areas: over NFS the export root's 0700 is crossed once, at mount time, by the squashed root).
MKDIR_AS = """
import os, sys
fd = os.open("/export/platform/areas", os.O_RDONLY | os.O_DIRECTORY)
os.setgroups([]); os.setgid(int(sys.argv[1])); os.setuid(int(sys.argv[1]))
try:
    os.mkdir(sys.argv[2], 0o755, dir_fd=fd)
except PermissionError:
    print("refused")
else:
    print("made")
"""


def _mkdir_in_areas(hosts: hostlib.Hosts, uid: int, name: str) -> str:
    return str(hosts.exec("nfs-1", ["python3", "-c", MKDIR_AS, str(uid), name], check=True).stdout.strip())


def _inventory(hosts: hostlib.Hosts, fstype: str = "xfs", **kw: object) -> dict:
    return hosts.inventory(
        groups={"server": ["nfs-1"], "client": ["worker-1"]},
        group_vars={
            "nfs_server_device": VOLUME, "nfs_server_fstype": fstype, "nfs_server_export_path": "/export/platform",
            "nfs_server_clients": [hosts.address("worker-1")], "nfs_server_mount_now": False,
            "nfs_server_start_service": False,
            "nfs_client_server": hosts.address("nfs-1"), "nfs_client_export": "/export/platform",
            "nfs_client_mount_path": "/platform", "nfs_client_mount_now": False, **kw,
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
    worker = hosts.address("worker-1")
    assert exports.splitlines()[1:] == [
        f"/export/platform {worker}(rw,sync,no_subtree_check,root_squash,anonuid=65534,anongid=65534)"]
    # the table exportfs loaded: that one address, root squashed, not all squashed
    table = " ".join(hosts.exec("nfs-1", "exportfs -v", check=True).stdout.split())
    assert table.startswith(f"/export/platform {worker}(") and table.count("(") == 1
    assert all(o in table.split("(")[1].rstrip(")").split(",") for o in ("rw", "root_squash", "no_all_squash"))
    # the export root belongs to the squashed identity and is closed to everyone else
    root = hosts.exec("nfs-1", "stat -c '%u %g %a' /export/platform", check=True).stdout.split()
    assert root == ["65534", "65534", "700"]
    # the areas the hub's provisioner fills: owned by its platform identity, which it switches to (never root)
    areas = hosts.exec("nfs-1", "stat -c '%u %g %a' /export/platform/areas", check=True).stdout.split()
    assert areas == [str(identity.AREAS_UID), str(identity.AREAS_UID), "755"]
    assert _mkdir_in_areas(hosts, identity.AREAS_UID, "home") == "made"  # the provisioner's first step
    assert _mkdir_in_areas(hosts, 65534, "x") == "refused"  # a client's root, squashed, cannot
    client_fstab = hosts.read("worker-1", "/etc/fstab").decode()
    assert f"{hosts.address('nfs-1')}:/export/platform /platform nfs4 rw,hard,noatime,vers=4.2,_netdev" in client_fstab
    assert hosts.exists("worker-1", "/platform")
    # the mount unit systemd would make of that line at boot (its fstab generator, run as at boot)
    gen = hosts.exec("worker-1", "rm -rf /tmp/gen && mkdir /tmp/gen && /lib/systemd/system-generators/"
                                 "systemd-fstab-generator /tmp/gen /tmp/gen /tmp/gen && cat /tmp/gen/platform.mount"
                                 " && ls /tmp/gen/remote-fs.target.requires", check=True).stdout.splitlines()
    assert {f"What={hosts.address('nfs-1')}:/export/platform", "Where=/platform", "Type=nfs4",
            "Options=rw,hard,noatime,vers=4.2,_netdev", "Before=remote-fs.target"} <= set(gen)
    assert gen[-1] == "platform.mount"  # pulled in by remote-fs.target: mounted at boot, after the network

    formatted = _digest(hosts)
    again = hostlib.run_playbook(_play(tmp_path), inv)
    assert again.rc == 0, again.failed
    assert again.changed == {"nfs-1": 0, "worker-1": 0}
    assert _digest(hosts) == formatted  # not made again

    # no consumer on the node any more (the site's setting): the mount goes, the NFS client stays
    retired = hostlib.run_playbook(_play(tmp_path), _inventory(hosts, nfs_client_mount_path="",
                                                               nfs_client_retired_mount_paths=["/platform"]))
    assert retired.rc == 0, retired.failed
    assert "/export/platform" not in hosts.read("worker-1", "/etc/fstab").decode()
    assert hosts.exec("worker-1", "dpkg-query -W -f='${db:Status-Status}' nfs-common").stdout == "installed"
    assert hosts.exists("worker-1", "/sbin/mount.nfs4")  # what the kubelet mounts the volumes with

    # a network instead of the nodes' addresses is refused, and the export table is left as it was
    net = hostlib.run_playbook(_play(tmp_path), _inventory(hosts, nfs_server_clients=[f"{hosts.net}.0/24"]))
    assert net.rc != 0
    (host, _task, msg), = net.failed
    assert host == "nfs-1" and "one IPv4 address each" in msg
    assert hosts.read("nfs-1", "/etc/exports.d/aiinfn.exports").decode() == exports


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
