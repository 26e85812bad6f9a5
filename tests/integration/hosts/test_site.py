"""site.yml, add-node.yml and remove-node.yml on a whole site of real hosts, from the inventory aiinfn renders.

Five hosts (one RKE2 server, an A100 node with MIG, a T4 node, the NFS node, the backup node; a second T4 node
for add-node): every role of the site runs for real on systemd hosts over SSH, with the stand-ins and switches
of site_bench.py (RKE2, sts-wire, NVIDIA packages, GPUs and XRT are stand-ins; no kernel modules, live sysctl,
block-device or NFS mounts). What is checked is what an operator checks after a bootstrap, then that a rerun
changes nothing, that adding a node touches only that node, and that a run cut short by a host dying converges
when run again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hostlib
import pytest
import site_bench

from aiinfn.ansible.runner import run_playbook

pytestmark = [pytest.mark.integration, pytest.mark.slow]

FIRST = ["k8s-server-01", "gpu-a100-01", "gpu-t4-01", "nfs-01", "backup-01"]
NEW = "gpu-t4-02"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, host_image: Path) -> Any:
    work = tmp_path_factory.mktemp("site")
    p = site_bench.plan()
    hosts = hostlib.start_hosts([*FIRST, NEW])
    try:
        site_bench.prepare_hosts(p, hosts, work)
        source = site_bench.artifacts(work / "artifacts")
        inv = site_bench.inventory(p, hosts, source)
        first = hostlib.run_playbook("site.yml", inv, extravars=site_bench.SECRETS, limit=f"!{NEW}")
        yield hosts, inv, first
    finally:
        hosts.stop()


def _active(hosts: hostlib.Hosts, name: str, unit: str) -> bool:
    return hosts.exec(name, f"systemctl is-active {unit}").stdout.strip() == "active"


def test_site_converges_on_every_node(site: Any) -> None:
    hosts, _inv, first = site
    assert first.rc == 0, first.failed
    assert set(first.changed) == set(FIRST)
    secrets = site_bench.SECRETS.values()
    assert not any(s in first.stdout for s in secrets)
    # RKE2: the server runs, the GPU nodes joined it
    assert _active(hosts, "k8s-server-01", "rke2-server")
    for gpu in ("gpu-a100-01", "gpu-t4-01"):
        assert _active(hosts, gpu, "rke2-agent")
        assert hosts.address("k8s-server-01") in hosts.exec(gpu, "cat /var/lib/rancher/rke2/joined").stdout
        assert "aiinfn.infn.it/accelerator=" in hosts.read(gpu, "/etc/rancher/rke2/config.yaml").decode()
    server_conf = hosts.read("k8s-server-01", "/etc/rancher/rke2/config.yaml").decode()
    assert '"oidc-issuer-url=https://iam.hosts.test/"' in server_conf
    # the A100 node is sliced as planned and labelled through the server
    state = json.loads(hosts.read("gpu-a100-01", "/var/lib/fake-nvidia/state.json"))
    assert [sorted(gi["profile"] for gi in g["gis"]) for g in state["gpus"].values()] == [["1g.10gb"] * 7] * 2
    nodes = json.loads(hosts.read("k8s-server-01", "/var/lib/rancher/rke2/nodes.json"))
    assert nodes["gpu-a100-01"]["labels"]["nvidia.com/mig.config"] == "aiinfn-a100-80gb-1g.10gbx7"
    # platform filesystem: exported by nfs-01, in every cluster node's fstab
    assert "/export/platform 10.254.0.0/24(" in hosts.read("nfs-01", "/etc/exports.d/aiinfn.exports").decode()
    for node in ("k8s-server-01", "gpu-a100-01", "gpu-t4-01"):
        assert f"{hosts.address('nfs-01')}:/export/platform" in hosts.read(node, "/etc/fstab").decode()
    # backups: the NFS node backs up to the backup node
    assert hosts.exec("nfs-01", "systemctl is-enabled aiinfn-backup.timer").stdout.strip() == "enabled"
    assert hosts.exec("backup-01", "id -u borg").returncode == 0
    # the shared bucket on the A100 node only
    assert _active(hosts, "gpu-a100-01", "sts-wire@datasets")
    assert not hosts.exists("gpu-t4-01", "/etc/systemd/system/sts-wire@.service")
    # every node's base
    for node in FIRST:
        assert hosts.exec(node, "hostname").stdout.strip() == node


def test_a_second_run_changes_nothing(site: Any) -> None:
    _hosts, inv, first = site
    assert first.rc == 0
    again = hostlib.run_playbook("site.yml", inv, extravars=site_bench.SECRETS, limit=f"!{NEW}")
    assert again.rc == 0, again.failed
    assert again.changed == dict.fromkeys(FIRST, 0)


def test_add_node_touches_only_the_new_node(site: Any) -> None:
    hosts, inv, first = site
    assert first.rc == 0
    before = {n: hosts.exec(n, "find /etc /var/lib/rancher -newer /etc/hostname -type f | sort | md5sum").stdout
              for n in FIRST}
    added = hostlib.run_playbook("add-node.yml", inv, extravars=site_bench.SECRETS, limit=NEW)
    assert added.rc == 0, added.failed
    assert added.hosts_touched == {NEW}  # no other host was gathered, changed or even connected to
    assert added.changed_hosts == {NEW}
    assert _active(hosts, NEW, "rke2-agent")
    after = {n: hosts.exec(n, "find /etc /var/lib/rancher -newer /etc/hostname -type f | sort | md5sum").stdout
             for n in FIRST}
    assert after == before
    refused = hostlib.run_playbook("add-node.yml", inv, extravars=site_bench.SECRETS)
    assert refused.rc != 0 and any("--limit" in msg for _h, _t, msg in refused.failed)


def test_the_bootstrap_command_runs_the_site_and_names_a_failure(site: Any, tmp_path: Path) -> None:
    """`aiinfn bootstrap` as an operator runs it: an inventory file, secrets in a 0600 file, a summary per host;
    and a failing task named with its host and message, exit 1."""
    _hosts, inv, first = site
    assert first.rc == 0
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(json.dumps(inv))
    secrets = tmp_path / "secrets.yaml"
    secrets.write_text(json.dumps({"rke2-token": site_bench.SECRETS["rke2_token"],
                                   "borg-passphrase": site_bench.SECRETS["borgbackup_passphrase"],
                                   "stswire-client-secret": site_bench.SECRETS["sts_wire_client_secret"]}))
    secrets.chmod(0o600)
    cmd = [sys.executable, "-m", "aiinfn.cli", "bootstrap", str(site_bench.ENV_FILE), "-i", str(inventory),
           "--secrets-file", str(secrets)]
    env = {**os.environ, "ANSIBLE_HOST_KEY_CHECKING": "False", "COLUMNS": "200"}
    ok = subprocess.run([*cmd, "--limit", "gpu-t4-01"], capture_output=True, text=True, env=env, timeout=900)
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert "gpu-t4-01" in ok.stdout and "done: 1 hosts, 0 changed" in ok.stdout
    assert not any(v in ok.stdout + ok.stderr for v in site_bench.SECRETS.values())
    bad = subprocess.run([*cmd, "--limit", "nfs-01", "-e", "nfs_server_fstype=ext4"], capture_output=True,
                         text=True, env=env, timeout=900)
    assert bad.returncode == 1
    failures = [ln for ln in bad.stderr.splitlines() if ln.startswith("failed:")]
    assert len(failures) == 1 and failures[0].startswith("failed: nfs-01: Never reformat")
    assert "holds a xfs filesystem, not ext4" in failures[0]


def test_remove_node_drains_deletes_and_cleans_only_that_node(site: Any) -> None:
    hosts, inv, first = site
    assert first.rc == 0
    assert hostlib.run_playbook("add-node.yml", inv, extravars=site_bench.SECRETS, limit=NEW).rc == 0
    removed = hostlib.run_playbook("remove-node.yml", inv, limit=NEW)
    assert removed.rc == 0, removed.failed
    log = hosts.read("k8s-server-01", "/var/lib/rancher/rke2/kubectl.log").decode().splitlines()
    assert [line.split()[0] for line in log if NEW in line][-2:] == ["drain", "delete"]
    assert not hosts.exists(NEW, "/usr/local/bin/rke2") and not hosts.exists(NEW, "/etc/rancher/rke2")
    assert "/export/platform" not in hosts.read(NEW, "/etc/fstab").decode()
    assert removed.changed_hosts == {NEW}
    again = hostlib.run_playbook("remove-node.yml", inv, limit=NEW)
    assert again.rc == 0 and again.changed_hosts == set()
    refused = hostlib.run_playbook("remove-node.yml", inv, limit="k8s-server-01")
    assert refused.rc != 0 and any("first server" in msg for _h, _t, msg in refused.failed)


def test_a_run_cut_short_by_a_dying_host_converges_when_run_again(site: Any) -> None:
    """gpu-t4-01 is powered off while site.yml runs (at its first RKE2 task): the run fails for that host;
    the host comes back (a rebooted VM) and the next run converges with every host in its place."""
    hosts, inv, first = site
    assert first.rc == 0
    victim = "gpu-t4-01"
    hosts.exec(victim, "systemctl stop rke2-agent && rm -rf /etc/rancher/rke2 /var/lib/aiinfn/rke2.version")
    killed = threading.Event()

    def on_event(event: dict[str, Any]) -> None:
        data = event.get("event_data") or {}
        if (not killed.is_set() and event.get("event") == "runner_on_start" and data.get("host") == victim
                and data.get("role") == "rke2"):
            hosts.kill(victim)
            killed.set()

    cut: Callable[..., Any] = run_playbook
    result = cut(hostlib.REPO / "playbooks" / "site.yml", inv, extravars=site_bench.SECRETS, limit=f"!{NEW}",
                 envvars={"ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_TIMEOUT": "10"}, on_event=on_event)
    assert killed.is_set()
    assert result.rc != 0 and {f.host for f in result.failures} == {victim}
    hosts.revive(victim)
    again = hostlib.run_playbook("site.yml", inv, extravars=site_bench.SECRETS, limit=f"!{NEW}")
    assert again.rc == 0, again.failed
    assert _active(hosts, victim, "rke2-agent")
    final = hostlib.run_playbook("site.yml", inv, extravars=site_bench.SECRETS, limit=f"!{NEW}")
    assert final.rc == 0 and sum(final.changed.values()) == 0
