"""The test hosts themselves: what the role tests rely on holds (real systemd, names, SSH, apt, Ansible).

Real: network namespaces, systemd as PID 1, sshd, apt against the Debian mirror, ansible-playbook over SSH.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import hostlib
import pytest

pytestmark = pytest.mark.integration


def test_hosts_boot_systemd_with_their_names_and_reach_each_other(test_hosts: Callable[..., hostlib.Hosts]) -> None:
    hosts = test_hosts(["alpha", "beta", "gamma"])
    for name in hosts.names:
        state = hosts.exec(name, "systemctl is-system-running --wait").stdout.strip()
        assert state in ("running", "degraded"), (name, state)
        assert hosts.exec(name, "hostname", check=True).stdout.strip() == name
    # by name, over the bridge, to the other host's sshd
    res = hosts.exec("alpha", "timeout 5 bash -c 'exec 3<>/dev/tcp/beta/22 && head -c 7 <&3'")
    assert res.stdout.startswith("SSH-2.0"), res
    assert hosts.exec("gamma", "getent hosts alpha", check=True).stdout.split()[0] == hosts.address("alpha")


def test_apt_inside_a_host_reaches_the_mirror(test_hosts: Callable[..., hostlib.Hosts]) -> None:
    hosts = test_hosts(["apt-1"])
    res = hosts.exec("apt-1", "apt-get update -q", timeout=300)
    assert res.returncode == 0, res.stderr
    assert "bookworm" in res.stdout


def test_a_playbook_changes_once_then_nothing(test_hosts: Callable[..., hostlib.Hosts], tmp_path: Path) -> None:
    hosts = test_hosts(["pb-1", "pb-2"])
    book = tmp_path / "touch.yml"
    book.write_text(
        "- name: Write a file\n  hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - name: File\n      ansible.builtin.copy:\n        dest: /etc/aiinfn-probe\n"
        "        content: \"{{ inventory_hostname }}\\n\"\n        mode: \"0644\"\n"
    )
    first = hostlib.run_playbook(book, hosts.inventory())
    assert first.rc == 0, first.failed
    assert first.changed == {"pb-1": 1, "pb-2": 1}
    assert hosts.read("pb-2", "/etc/aiinfn-probe") == b"pb-2\n"
    again = hostlib.run_playbook(book, hosts.inventory())
    assert again.rc == 0 and again.changed == {"pb-1": 0, "pb-2": 0}


def test_a_killed_host_is_unreachable_and_the_others_stay(test_hosts: Callable[..., hostlib.Hosts]) -> None:
    hosts = test_hosts(["k-1", "k-2"])
    hosts.kill("k-1")
    assert hosts.exec("k-1", "true", timeout=30).returncode != 0
    assert hosts.exec("k-2", "true").returncode == 0
    hosts.revive("k-1")
    assert hosts.exec("k-1", "hostname", check=True).stdout.strip() == "k-1"


def test_stop_leaves_nothing_behind(host_image: Path) -> None:
    hosts = hostlib.start_hosts(["gone-1", "gone-2"], prefix="az", net="10.254.99")
    root = hosts.hosts["gone-1"].root
    hosts.stop()
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not [ln for ln in namespaces.splitlines() if ln.startswith("az")]
    mounts = Path("/proc/mounts").read_text()
    assert str(root) not in mounts
    ps = subprocess.run(["pgrep", "-f", f"{root}"], capture_output=True, text=True)
    assert ps.stdout.strip() == ""
