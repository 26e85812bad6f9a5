"""Role common on real hosts: names, hosts file, chrony sources, kernel settings files, swap, operators, journald.

Real: systemd, chrony's configuration and unit (chronyd itself does not start in a container without
CAP_SYS_TIME), users, sudo (visudo validates), SSH between hosts with the operator's own key.
Not real here: loading kernel modules and applying sysctl live (the hosts share this machine's kernel), so the
role runs with common_kernel_modules_load and common_sysctl_apply false and the test checks the boot-time files.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import hostlib
import pytest

pytestmark = pytest.mark.integration


def _play(tmp_path: Path) -> Path:
    book = tmp_path / "common.yml"
    book.write_text("- name: Common\n  hosts: all\n  roles:\n    - role: common\n")
    return book


def test_common_converges_then_changes_nothing(test_hosts: Callable[..., hostlib.Hosts], tmp_path: Path) -> None:
    hosts = test_hosts(["node-a", "node-b"])
    key = tmp_path / "operator"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    for name in hosts.names:  # a swap line the role must comment out
        with hosts.path(name, "/etc/fstab").open("a") as f:
            f.write("/swapfile none swap sw 0 0\n")
    group_vars = {
        "common_hosts": [{"name": n, "address": hosts.address(n)} for n in hosts.names]
        + [{"name": "not-yet-booted", "address": None}],
        "common_ntp_servers": ["ntp1.example.org", "ntp2.example.org"],
        "common_admin_users": [{"name": "operator", "ssh_keys": [key.with_suffix(".pub").read_text().strip()],
                                "sudo": True}],
        "common_kernel_modules_load": False,
        "common_sysctl_apply": False,
    }
    inv = hosts.inventory(group_vars=group_vars)
    first = hostlib.run_playbook(_play(tmp_path), inv)
    assert first.rc == 0, first.failed
    for name in hosts.names:
        assert hosts.exec(name, "hostname", check=True).stdout.strip() == name
        etc_hosts = hosts.read(name, "/etc/hosts").decode()
        for other in hosts.names:
            assert f"{hosts.address(other)} {other}" in etc_hosts
        assert "not-yet-booted" not in etc_hosts
        sources = hosts.read(name, "/etc/chrony/sources.d/aiinfn.sources").decode()
        assert "server ntp1.example.org iburst" in sources and "server ntp2.example.org iburst" in sources
        # chronyd needs CAP_SYS_TIME, which a container lacks: its unit is enabled and skipped by its condition
        assert hosts.exec(name, "systemctl is-enabled chrony").stdout.strip() == "enabled"
        assert hosts.read(name, "/etc/modules-load.d/aiinfn.conf").decode().split() == ["overlay", "br_netfilter"]
        sysctl = hosts.read(name, "/etc/sysctl.d/60-aiinfn.conf").decode()
        assert "net.ipv4.ip_forward = 1" in sysctl and "net.bridge.bridge-nf-call-iptables = 1" in sysctl
        assert "# /swapfile none swap sw 0 0" in hosts.read(name, "/etc/fstab").decode()
        assert "SystemMaxUse=2G" in hosts.read(name, "/etc/systemd/journald.conf.d/60-aiinfn.conf").decode()
        assert hosts.exec(name, "id -nG operator", check=True).stdout.split().count("sudo") == 1
    # the operator logs in with their own key, from one node to the other, and may use sudo
    hosts.path("node-a", "/root/operator").write_bytes(key.read_bytes())
    hosts.path("node-a", "/root/operator").chmod(0o600)
    res = hosts.exec("node-a", "ssh -i /root/operator -o StrictHostKeyChecking=no -o BatchMode=yes "
                               "operator@node-b sudo -n id -u")
    assert res.returncode == 0 and res.stdout.strip() == "0", res

    again = hostlib.run_playbook(_play(tmp_path), inv)
    assert again.rc == 0, again.failed
    changed_tasks = [e["event_data"]["task"] for e in again.events
                     if e.get("event") == "runner_on_ok" and e["event_data"].get("res", {}).get("changed")]
    assert again.changed == {"node-a": 0, "node-b": 0}, changed_tasks


def test_a_removed_key_loses_access(test_hosts: Callable[..., hostlib.Hosts], tmp_path: Path) -> None:
    """The operators' keys are exactly the environment's: a key taken out of it is taken off the nodes."""
    hosts = test_hosts(["node-k"])
    keys = []
    for n in ("old", "new"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / n)], check=True)
        keys.append((tmp_path / f"{n}.pub").read_text().strip())
    base = {"common_kernel_modules_load": False, "common_sysctl_apply": False}
    both = {**base, "common_admin_users": [{"name": "operator", "ssh_keys": keys, "sudo": False}]}
    assert hostlib.run_playbook(_play(tmp_path), hosts.inventory(group_vars=both)).rc == 0
    only_new = {**base, "common_admin_users": [{"name": "operator", "ssh_keys": keys[1:], "sudo": False}]}
    assert hostlib.run_playbook(_play(tmp_path), hosts.inventory(group_vars=only_new)).rc == 0
    authorized = hosts.read("node-k", "/home/operator/.ssh/authorized_keys").decode()
    assert keys[1] in authorized and keys[0] not in authorized
    assert "operator" not in hosts.read("node-k", "/etc/sudoers.d/aiinfn-admins").decode()
