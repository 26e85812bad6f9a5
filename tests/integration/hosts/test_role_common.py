"""Role common on real hosts: names, hosts file, chrony sources, kernel settings files, swap, operators, journald,
and the retirement of the shared bootstrap account once the operators' own accounts exist.

Real: systemd, chrony's configuration and unit (chronyd itself does not start in a container without
CAP_SYS_TIME), users, sudo (visudo validates), SSH between hosts with the operator's own key.
Not real here: loading kernel modules and applying sysctl live (the hosts share this machine's kernel), so the
role runs with common_kernel_modules_load and common_sysctl_apply false (modprobe and `sysctl -p` are not run)
and the test checks the boot-time files, and what systemd-modules-load and systemd-sysctl would read of them
at boot as systemd merges them (`systemd-analyze cat-config`, `systemd-sysctl --cat-config`).
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import hostlib
import pytest
from image import ensure_key as image_key

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
        assert hosts.read(name, "/etc/modules-load.d/aiinfn.conf") == b"overlay\nbr_netfilter\n"
        sysctl = hosts.read(name, "/etc/sysctl.d/60-aiinfn.conf").decode()
        assert "net.ipv4.ip_forward = 1" in sysctl and "net.bridge.bridge-nf-call-iptables = 1" in sysctl
        # what systemd reads at boot, as systemd itself merges it (neither is run: the kernel is shared)
        modules = hosts.exec(name, "systemd-analyze cat-config modules-load.d", check=True).stdout
        assert "# /etc/modules-load.d/aiinfn.conf\noverlay\nbr_netfilter\n" in modules
        merged = hosts.exec(name, "/lib/systemd/systemd-sysctl --cat-config", check=True).stdout
        effective = dict(line.replace(" ", "").split("=", 1) for line in merged.splitlines()
                         if "=" in line and not line.lstrip().startswith(("#", ";")))
        assert {k: effective.get(k) for k in ("net.ipv4.ip_forward", "net.bridge.bridge-nf-call-iptables",
                                              "fs.inotify.max_user_watches", "vm.max_map_count")} == {
            "net.ipv4.ip_forward": "1", "net.bridge.bridge-nf-call-iptables": "1",
            "fs.inotify.max_user_watches": "1048576", "vm.max_map_count": "262144"}
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


#: What cloud-init makes of templates/cloud-init/node.yaml.j2's `users:` entry (the bootstrap account: the site's
#: one key, groups adm and sudo, passwordless sudo in 90-cloud-init-users, password locked); cloud-init itself
#: does not run on the test hosts, so this does it by hand.
CLOUD_INIT_USER = """
set -e
useradd -m -s /bin/bash -c 'aiinfn operator' -G adm,sudo aiinfn
passwd -l aiinfn >/dev/null
install -d -m 0700 -o aiinfn -g aiinfn /home/aiinfn/.ssh
install -m 0600 -o aiinfn -g aiinfn /root/.ssh/authorized_keys /home/aiinfn/.ssh/authorized_keys
echo 'aiinfn ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/90-cloud-init-users
chmod 0440 /etc/sudoers.d/90-cloud-init-users
useradd -m -s /bin/bash localadmin
"""


def test_operators_replace_the_bootstrap_account_and_removed_ones_lose_theirs(
    test_hosts: Callable[..., hostlib.Hosts], tmp_path: Path
) -> None:
    """A node's first run logs in as the bootstrap account cloud-init made (through playbooks/group_vars'
    ansible_user), creates the operators' accounts and ends by retiring the bootstrap account (as site.yml does,
    playbooks/bootstrap-account.yml); the next runs log in as the operator named by aiinfn_operator with their
    own key, while the bootstrap account no longer logs in. An operator taken off the list loses the account;
    an account the role did not create is never touched, and an operator cannot remove the account the run logs
    in as. Real: sshd, PAM (an expired account is refused), sudo, useradd/userdel."""
    import yaml

    from aiinfn.render import ADMIN_USER

    group_vars_file = hostlib.REPO / "playbooks" / "group_vars" / "all.yml"
    assert yaml.safe_load(group_vars_file.read_text())["aiinfn_bootstrap_user"] == ADMIN_USER  # cloud-init's name
    hosts = test_hosts(["node-o"])
    hosts.exec("node-o", CLOUD_INIT_USER, check=True)
    localadmin = hosts.exec("node-o", "getent passwd localadmin; getent shadow localadmin", check=True).stdout
    keys = {}
    for n in ("alice", "bob"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / n)], check=True)
        keys[n] = (tmp_path / f"{n}.pub").read_text().strip()
    book = tmp_path / "site-like.yml"
    book.write_text("- name: Common\n  hosts: all\n  become: true\n  roles:\n    - role: common\n"
                    f"- name: Bootstrap account\n  ansible.builtin.import_playbook: "
                    f"{hostlib.REPO / 'playbooks' / 'bootstrap-account.yml'}\n")
    (tmp_path / "group_vars").symlink_to(hostlib.REPO / "playbooks" / "group_vars")

    def inventory(users: list[str]) -> dict:
        admins = [{"name": u, "ssh_keys": [keys[u]], "sudo": u == "alice"} for u in users]
        inv = hosts.inventory(group_vars={"aiinfn_ntp_servers": [], "aiinfn_admin_users": admins,
                                          "common_kernel_modules_load": False, "common_sysctl_apply": False})
        inv["all"]["hosts"]["node-o"].pop("ansible_user")  # the playbooks' group_vars decide whom to log in as
        return inv

    def logins() -> list[str]:
        journal = hosts.exec("node-o", "journalctl -u ssh --no-pager -o cat", check=True).stdout
        users = [line.split()[3] for line in journal.splitlines() if line.startswith("Accepted publickey for")]
        return [u for u in users if u != "root"]  # root: this test's own look at the host

    def login(user: str, key: Path) -> subprocess.CompletedProcess[str]:
        argv = hosts.ssh_argv("node-o")
        argv[argv.index("-i") + 1] = str(key)
        argv[-1] = f"{user}@{hosts.address('node-o')}"
        return subprocess.run([*argv, "sudo -n id -un"], capture_output=True, text=True, timeout=60)

    # first contact: as the bootstrap account
    first = hostlib.run_playbook(book, inventory(["alice", "bob"]))
    assert first.rc == 0, first.failed
    assert "aiinfn" in logins() and "alice" not in logins()
    assert hosts.exec("node-o", "getent group aiinfn-operators", check=True).stdout.strip().endswith(":alice,bob")
    assert login("alice", tmp_path / "alice").stdout.strip() == "root"
    no_sudo = login("bob", tmp_path / "bob")
    assert no_sudo.returncode != 0 and "bob" not in hosts.read("node-o", "/etc/sudoers.d/aiinfn-admins").decode()
    # the bootstrap account is retired: no key, no sudo, no groups, locked and expired; its key no longer logs in
    assert not hosts.exists("node-o", "/home/aiinfn/.ssh/authorized_keys")
    assert "aiinfn" not in hosts.read("node-o", "/etc/sudoers.d/90-cloud-init-users").decode()
    assert hosts.exec("node-o", "id -Gn aiinfn", check=True).stdout.split() == ["aiinfn"]
    shadow = hosts.exec("node-o", "getent shadow aiinfn", check=True).stdout.strip().split(":")
    assert shadow[1].startswith("!") and shadow[7] == "1"
    refused = login("aiinfn", Path(image_key()))
    assert refused.returncode == 255 and "root" not in refused.stdout
    assert hosts.exec("node-o", "getent passwd localadmin; getent shadow localadmin").stdout == localadmin

    # after: as the operator, with their own key; nothing changes
    as_alice = {"aiinfn_operator": "alice", "ansible_ssh_private_key_file": str(tmp_path / "alice")}
    again = hostlib.run_playbook(book, inventory(["alice", "bob"]), extravars=as_alice)
    assert again.rc == 0, again.failed
    assert again.changed == {"node-o": 0}
    assert logins()[-1] == "alice"
    # without an operator, the run would log in as the retired account: the node refuses it
    stale = hostlib.run_playbook(book, inventory(["alice", "bob"]))
    assert stale.rc != 0 and [h for h, _t, _m in stale.failed] == ["node-o"]
    assert "Permission denied" in stale.failed[0][2]

    # bob is taken off the list: his account and home go; localadmin and the retired account stay as they are
    removed = hostlib.run_playbook(book, inventory(["alice"]), extravars=as_alice)
    assert removed.rc == 0, removed.failed
    assert hosts.exec("node-o", "getent passwd bob").returncode != 0 and not hosts.exists("node-o", "/home/bob")
    assert hosts.exec("node-o", "getent group aiinfn-operators", check=True).stdout.strip().endswith(":alice")
    assert hosts.exec("node-o", "getent passwd localadmin; getent shadow localadmin").stdout == localadmin
    assert hosts.exec("node-o", "getent passwd aiinfn").returncode == 0
    # alice cannot remove the account this run logs in as
    herself = hostlib.run_playbook(book, inventory(["bob"]), extravars=as_alice)
    assert herself.rc != 0
    assert any("this run logs in as alice" in m for _h, _t, m in herself.failed), herself.failed
    assert hosts.exec("node-o", "getent passwd alice").returncode == 0
