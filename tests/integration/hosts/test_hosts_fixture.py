"""The test hosts themselves: what every role test relies on holds.

Real: network namespaces on a private bridge, overlay root filesystems, systemd as PID 1 (systemd-nspawn),
sshd, name resolution through /etc/hosts, apt against the Debian mirror through the relay, ansible-playbook
over SSH through aiinfn's runner, a hard power-off, the teardown. Nothing is a stand-in here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import hostlib
import image
import pytest

pytestmark = pytest.mark.integration

#: Where hostlib lives (tests/support/hosts), for the process that crashes below.
SUPPORT = Path(hostlib.__file__).resolve().parent
StartHosts = Callable[..., hostlib.Hosts]


def leftovers(prefix: str) -> list[str]:
    """Anything of ``prefix`` still on this machine: namespaces, mounts, processes, cgroups."""
    found = [f"netns {ns}" for ns in hostlib._namespaces(prefix)]
    found += [f"mount {m}" for m in hostlib._mounts_below(hostlib.run_dir(prefix))]
    found += [f"process {p}" for p in hostlib._procs_of([], f"{hostlib.run_dir(prefix)}/") if hostlib._alive(p)]
    found += [f"cgroup {c}" for c in hostlib._cgroups(prefix) if c.exists()]
    return found


def test_three_hosts_boot_systemd_with_their_names_and_reach_each_other(test_hosts: StartHosts) -> None:
    hosts = test_hosts(["node-1", "node-2", "node-3"])
    assert hosts.names == ["node-1", "node-2", "node-3"]
    expected = {name: hosts.address(name) for name in hosts.names}
    assert len(set(expected.values())) == 3
    for name in hosts.names:
        state = hosts.exec(name, "systemctl is-system-running --wait").stdout.strip()
        assert state in ("running", "degraded"), (name, state)
        assert hosts.exec(name, "ps -p 1 -o comm=", check=True).stdout.strip() == "systemd"
        assert hosts.exec(name, "hostname", check=True).stdout.strip() == name
        assert hosts.read(name, "/etc/hostname").decode().strip() == name
        for other, address in expected.items():
            resolved = hosts.exec(name, ["getent", "hosts", other], check=True).stdout.split()
            assert resolved[:2] == [address, other], (name, other, resolved)
        # its own address on its own interface, nothing else on the machine
        addresses = hosts.exec(name, "ip -4 -o addr show scope global", check=True).stdout
        assert f"inet {expected[name]}/24" in addresses and addresses.count("inet ") == 1, addresses
    # host to host, by name, over the bridge: node-1 talks to node-2's sshd
    banner = hosts.exec("node-1", "timeout 5 bash -c 'exec 3<>/dev/tcp/node-2/22 && head -c 7 <&3'")
    assert banner.stdout == "SSH-2.0", banner
    # and each host is its own machine: a file written on one is not on the others
    hosts.exec("node-3", "echo three > /root/mark", check=True)
    assert hosts.read("node-3", "/root/mark") == b"three\n"
    assert not hosts.exists("node-1", "/root/mark")


def test_apt_inside_a_host_reaches_the_mirror_and_nothing_else(test_hosts: StartHosts) -> None:
    hosts = test_hosts(["apt-1"])
    update = hosts.exec("apt-1", "apt-get update", timeout=600)
    assert update.returncode == 0, update.stdout + update.stderr
    assert "bookworm" in update.stdout and "Err:" not in update.stdout
    # a package download goes through the same relay
    fetch = hosts.exec("apt-1", "cd /tmp && apt-get download -q hello && ls hello_*.deb", timeout=600)
    assert fetch.returncode == 0, fetch.stdout + fetch.stderr
    # the rest of the world is not reachable from a host
    outside = hosts.exec("apt-1", "timeout 3 bash -c 'exec 3<>/dev/tcp/1.1.1.1/80'")
    assert outside.returncode != 0


def test_a_playbook_changes_once_then_nothing(test_hosts: StartHosts, tmp_path: Path) -> None:
    hosts = test_hosts(["pb-1", "pb-2"])
    book = tmp_path / "probe.yml"
    book.write_text(textwrap.dedent("""\
        - name: Probe
          hosts: all
          gather_facts: true
          tasks:
            - name: Write a file naming the host
              ansible.builtin.copy:
                dest: /etc/aiinfn-probe
                content: "{{ inventory_hostname }} {{ probe_word }} {{ ansible_facts['service_mgr'] }}\\n"
                mode: "0640"
            - name: Keep cron running
              ansible.builtin.systemd_service:
                name: cron
                state: started
                enabled: true
        """))
    inventory = hosts.inventory(groups={"probes": ["pb-1", "pb-2"]}, group_vars={"probe_word": "hello"})
    first = hostlib.run_playbook(book, inventory)
    assert first.rc == 0 and first.status == "successful", first.failed or first.stdout[-3000:]
    assert first.changed == {"pb-1": 1, "pb-2": 1}
    assert first.hosts_touched == {"pb-1", "pb-2"}
    assert first.failed == []
    assert any(e.get("event") == "playbook_on_stats" for e in first.events)
    assert hosts.read("pb-2", "/etc/aiinfn-probe") == b"pb-2 hello systemd\n"
    assert hosts.exec("pb-1", "stat -c %a /etc/aiinfn-probe", check=True).stdout.strip() == "640"
    assert hosts.exec("pb-1", "systemctl is-active cron").stdout.strip() == "active"

    again = hostlib.run_playbook(book, inventory)
    assert again.rc == 0, again.failed
    assert again.changed == {"pb-1": 0, "pb-2": 0}

    limited = hostlib.run_playbook(book, inventory, extravars={"probe_word": "bye"}, limit="pb-2")
    assert limited.rc == 0 and limited.hosts_touched == {"pb-2"} and limited.changed == {"pb-2": 1}
    assert hosts.read("pb-1", "/etc/aiinfn-probe") == b"pb-1 hello systemd\n"

    # extra variables are literal data (aiinfn.ansible.runner marks them !unsafe): the broken template comes
    # from the inventory instead, where the play's own variables live
    broken_inventory = hosts.inventory(groups={"probes": ["pb-1", "pb-2"]},
                                       group_vars={"probe_word": "{{ undefined_thing }}"})
    broken = hostlib.run_playbook(book, broken_inventory)
    assert broken.rc != 0
    assert {host for host, _task, _msg in broken.failed} == {"pb-1", "pb-2"}
    assert all("undefined_thing" in msg for _h, _t, msg in broken.failed), broken.failed


PING = """\
- name: Ping every host
  hosts: all
  gather_facts: false
  tasks:
    - name: Ping
      ansible.builtin.ping:
"""


def test_a_killed_host_is_unreachable_and_the_others_stay(test_hosts: StartHosts, tmp_path: Path) -> None:
    hosts = test_hosts(["k-1", "k-2", "k-3"])
    hosts.kill("k-1")
    assert hosts.exec("k-1", "true", timeout=60).returncode == 255  # ssh cannot connect
    dead = hosts.exec("k-2", "timeout 5 bash -c 'exec 3<>/dev/tcp/k-1/22'")
    assert dead.returncode != 0
    for name in ("k-2", "k-3"):
        assert hosts.exec(name, "systemctl is-active ssh").stdout.strip() == "active"
    banner = hosts.exec("k-2", "timeout 5 bash -c 'exec 3<>/dev/tcp/k-3/22 && head -c 7 <&3'")
    assert banner.stdout == "SSH-2.0"
    # a playbook sees it as unreachable, the others as fine
    (tmp_path / "ping.yml").write_text(PING)
    run = hostlib.run_playbook(tmp_path / "ping.yml", hosts.inventory())
    assert {host for host, _t, _m in run.failed} == {"k-1"}
    assert run.hosts_touched >= {"k-2", "k-3"}
    # its disk survives the power-off: it boots again with what it had
    hosts.exec("k-2", "true", check=True)
    hosts.revive("k-1")
    assert hosts.exec("k-1", "hostname", check=True).stdout.strip() == "k-1"


def test_stop_leaves_nothing_behind(host_image: Path) -> None:
    prefix = hostlib.default_prefix()
    hosts = hostlib.start_hosts(["gone-1", "gone-2"])
    assert leftovers(prefix)  # the check below can see what hosts leave
    nspawn = [h.proc.pid for h in hosts.hosts.values() if h.proc is not None]
    hosts.stop()
    hosts.stop()  # twice is fine
    assert leftovers(prefix) == []
    assert not any(hostlib._alive(pid) for pid in nspawn)
    assert sorted(p.name for p in hostlib.run_dir(prefix).iterdir()) == ["logs"]


def test_a_crashed_run_is_cleaned_up_by_the_next(host_image: Path) -> None:
    """A process that dies without stopping its hosts: cleanup_stale (run by every start) removes them."""
    prefix = hostlib.default_prefix()
    crash = textwrap.dedent(f"""\
        import os, sys
        sys.path.insert(0, {str(SUPPORT)!r})
        import hostlib
        hostlib.start_hosts(["crash-1", "crash-2"], prefix={prefix!r}, net={hostlib.default_net()!r})
        os._exit(3)
        """)
    res = subprocess.run([sys.executable, "-c", crash], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(SUPPORT)})
    assert res.returncode == 3, res.stderr
    assert len(hostlib._namespaces(prefix)) == 3  # two hosts and the hub were left running
    hostlib.cleanup_stale(prefix)
    assert leftovers(prefix) == []
    # and the prefix is usable again
    with hostlib.start_hosts(["again-1"]) as hosts:
        assert hosts.exec("again-1", "hostname", check=True).stdout.strip() == "again-1"
    assert leftovers(prefix) == []


def test_a_prefix_in_use_is_refused_not_destroyed(test_hosts: StartHosts) -> None:
    hosts = test_hosts(["busy-1"])
    with pytest.raises(hostlib.HostsError, match="in use"):
        hostlib.start_hosts(["other-1"], prefix=hosts.prefix)
    with pytest.raises(hostlib.HostsError, match="in use"):
        hostlib.cleanup_stale(hosts.prefix)
    assert hosts.exec("busy-1", "true").returncode == 0


def test_image_cache_is_keyed_on_the_package_list() -> None:
    assert image.image_path().exists()
    assert set(image.extra_packages()) <= set(image.all_packages())
    assert "borgbackup" in image.extra_packages()
