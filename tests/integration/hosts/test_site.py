"""site.yml, add-node.yml and remove-node.yml on a whole site of real hosts, from the inventory aiinfn renders.

Five hosts (one RKE2 server, an A100 node with MIG, a T4 node, the NFS node, the backup node; a second A100 node
for add-node): every role of the site runs for real on systemd hosts over SSH, with the stand-ins and switches
of site_bench.py (RKE2, sts-wire, NVIDIA packages, GPUs and XRT are stand-ins; no kernel modules, live sysctl,
block-device or NFS mounts). What is checked is what an operator checks after a bootstrap, then that a rerun
changes nothing, that adding a node touches only that node (every other host's files, by content, and the first
server's records of its cluster, where only the new node's join and labels appear), and that a run cut short by a
host dying converges when run again. The hosts log in as root (the test hosts' key); the bootstrap account and
the operators' logins are test_role_common's.
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
NEW = "gpu-a100-02"
#: The first server's stand-in records of its cluster (rke2_standin.py): they change when a node joins or is
#: labelled, and are compared by what they hold.
RECORDS = ["/var/lib/rancher/rke2/nodes.json", "/var/lib/rancher/rke2/server/joined-nodes.json",
           "/var/lib/rancher/rke2/kubectl.log", "/var/lib/rancher/rke2/kubectl.calls.jsonl"]
#: Every file of a host: content hash, mode and owner by path (JSON), on the host's own python; minus what the
#: host's own systemd and journald write as time passes, and the first server's records.
SNAPSHOT = r"""
import hashlib, json, os, stat, sys
skip, records, out = ("/var/log", "/var/lib/systemd", "/var/cache", "/var/tmp"), set(sys.argv[1:]), {}
for top in ("/etc", "/usr", "/var", "/srv", "/opt", "/root", "/home", "/data"):
    for d, dirs, files in os.walk(top):
        dirs[:] = [x for x in dirs if os.path.join(d, x) not in skip and not os.path.ismount(os.path.join(d, x))]
        for f in files:
            p = os.path.join(d, f)
            st = os.lstat(p)
            if p in records or not stat.S_ISREG(st.st_mode):
                continue
            with open(p, "rb") as fh:
                out[p] = f"{hashlib.sha256(fh.read()).hexdigest()} {st.st_mode & 0o7777:o} {st.st_uid}:{st.st_gid}"
json.dump(out, sys.stdout)
"""


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


def _records(hosts: hostlib.Hosts) -> dict[str, Any]:
    nodes, joined, log, calls = (hosts.read("k8s-server-01", path).decode() for path in RECORDS)
    return {"nodes": json.loads(nodes), "joined": json.loads(joined), "log": log.splitlines(),
            "calls": calls.splitlines()}


def _snapshot(hosts: hostlib.Hosts, name: str) -> dict[str, str]:
    """path -> "sha256 mode owner" of every file of ``name`` (see SNAPSHOT)."""
    out = hosts.exec(name, ["python3", "-c", SNAPSHOT, *RECORDS], check=True).stdout
    return json.loads(out)  # type: ignore[no-any-return]


def test_site_converges_on_every_node(site: Any) -> None:
    hosts, inv, first = site
    assert first.rc == 0, first.failed
    assert set(first.changed) == set(FIRST)
    secrets = site_bench.SECRETS.values()
    assert not any(s in first.stdout for s in secrets)
    # RKE2: the server runs, the GPU nodes joined it with the agent token, and hold no other
    assert _active(hosts, "k8s-server-01", "rke2-server")
    server_token, agent_token = site_bench.SECRETS["rke2_token"], site_bench.SECRETS["rke2_agent_token"]
    for gpu in ("gpu-a100-01", "gpu-t4-01"):
        assert _active(hosts, gpu, "rke2-agent")
        assert hosts.address("k8s-server-01") in hosts.exec(gpu, "cat /var/lib/rancher/rke2/joined").stdout
        conf = hosts.read(gpu, "/etc/rancher/rke2/config.yaml").decode()
        assert "aiinfn.infn.it/accelerator=" in conf
        assert f'token: "{agent_token}"' in conf.splitlines() and 'profile: "cis"' in conf.splitlines()
        assert hosts.exec(gpu, ["grep", "-rlF", server_token, "/etc", "/var", "/usr/local", "/root"]).stdout == ""
    joined = _records(hosts)["joined"]
    assert {n: r["role"] for n, r in joined.items()} == {
        "k8s-server-01": "server", "gpu-a100-01": "agent", "gpu-t4-01": "agent"}
    server_conf = hosts.read("k8s-server-01", "/etc/rancher/rke2/config.yaml").decode()
    assert '"oidc-issuer-url=https://iam.hosts.test/"' in server_conf
    # the pod and service networks of the environment (network.pod_cidr, service_cidr), hardened, PSA restricted
    assert {'cluster-cidr: "10.72.0.0/16"', 'service-cidr: "10.73.0.0/16"', 'profile: "cis"',
            f'agent-token: "{agent_token}"'} <= set(server_conf.splitlines())
    pss = json.loads(hosts.read("k8s-server-01", "/etc/rancher/rke2/aiinfn-pss.yaml"))["plugins"][0]["configuration"]
    assert pss["defaults"]["enforce"] == "restricted" and pss["exemptions"]["namespaces"] == ["kube-system"]
    # the A100 node is sliced as planned and labelled through the server
    state = json.loads(hosts.read("gpu-a100-01", "/var/lib/fake-nvidia/state.json"))
    assert [sorted(gi["profile"] for gi in g["gis"]) for g in state["gpus"].values()] == [["1g.10gb"] * 7] * 2
    nodes = json.loads(hosts.read("k8s-server-01", "/var/lib/rancher/rke2/nodes.json"))
    assert nodes["gpu-a100-01"]["labels"]["nvidia.com/mig.config"] == "aiinfn-a100-80gb-1g.10gbx7"
    # platform filesystem: exported by nfs-01 to each cluster node of the inventory (the one add-node adds
    # included) and nothing else, root squashed; the export root mounted on no node (nothing there reads it),
    # the NFS client installed for the kubelet's volume mounts
    cluster = sorted(hosts.address(n) for n in inv["all"]["children"]["k8s_cluster"]["hosts"])
    options = "(rw,sync,no_subtree_check,root_squash,anonuid=65534,anongid=65534)"
    exports = hosts.read("nfs-01", "/etc/exports.d/aiinfn.exports").decode().splitlines()
    assert exports[1:] == ["/export/platform " + " ".join(a + options for a in cluster)]
    assert len(cluster) == 4 and hosts.address("nfs-01") not in cluster and hosts.address("backup-01") not in cluster
    assert hosts.exec("nfs-01", "stat -c '%u:%g %a' /export/platform", check=True).stdout.strip() == "65534:65534 700"
    for node in ("k8s-server-01", "gpu-a100-01", "gpu-t4-01"):
        assert "/export/platform" not in hosts.read(node, "/etc/fstab").decode()
        assert hosts.exists(node, "/sbin/mount.nfs4")
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
    """add-node of a GPU node (an A100 with MIG): every other host's files are the same, by content, mode and
    owner; the first server's records of its cluster gain exactly the new node's join, registration and MIG
    label (set through its kubectl by delegation), and nothing about any other node."""
    hosts, inv, first = site
    assert first.rc == 0
    before = {n: _snapshot(hosts, n) for n in FIRST}
    records = _records(hosts)
    added = hostlib.run_playbook("add-node.yml", inv, extravars=site_bench.SECRETS, limit=NEW)
    assert added.rc == 0, added.failed
    assert added.hosts_touched == {NEW}  # no other host was gathered or changed (delegated tasks count as NEW's)
    assert added.changed_hosts == {NEW}
    assert _active(hosts, NEW, "rke2-agent")
    after = {n: _snapshot(hosts, n) for n in FIRST}
    changed = {n: sorted(p for p in before[n].keys() | after[n].keys() if before[n].get(p) != after[n].get(p))
               for n in FIRST}
    assert changed == {n: [] for n in FIRST}
    assert all(len(before[n]) > 1000 for n in FIRST)  # the snapshots did see the hosts' files
    now = _records(hosts)
    # the new node joined as an agent from its own address; the other nodes' records are as they were
    assert {k: v for k, v in now["joined"].items() if k != NEW} == records["joined"]
    assert (now["joined"][NEW]["role"], now["joined"][NEW]["address"]) == ("agent", hosts.address(NEW))
    assert {k: v for k, v in now["nodes"].items() if k != NEW} == records["nodes"]
    labels = now["nodes"][NEW]["labels"]
    assert labels["nvidia.com/mig.config"] == "aiinfn-a100-80gb-1g.10gbx7"
    assert labels["aiinfn.infn.it/accelerator"] == "A100-80GB"
    assert now["log"][:len(records["log"])] == records["log"]  # kubectl's calls: only appended ...
    new_calls = now["log"][len(records["log"]):]
    assert new_calls and all(NEW in call for call in new_calls)  # ... and each about the new node
    assert now["calls"][:len(records["calls"])] == records["calls"]
    assert all(NEW in json.loads(c)["argv"] for c in now["calls"][len(records["calls"]):])
    state = json.loads(hosts.read(NEW, "/var/lib/fake-nvidia/state.json"))
    assert [sorted(gi["profile"] for gi in g["gis"]) for g in state["gpus"].values()] == [["1g.10gb"] * 7] * 2
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
                                   "rke2-agent-token": site_bench.SECRETS["rke2_agent_token"],
                                   "borg-passphrase": site_bench.SECRETS["borgbackup_passphrase"],
                                   "stswire-client-secret": site_bench.SECRETS["sts_wire_client_secret"],
                                   "sts-wire-refresh-token": site_bench.SECRETS["sts_wire_refresh_token"]}))
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
    # the NFS server no longer exports to the removed node (by delegation), and still to the others
    exports = hosts.read("nfs-01", "/etc/exports.d/aiinfn.exports").decode()
    assert f" {hosts.address(NEW)}(" not in exports and f" {hosts.address('gpu-t4-01')}(" in exports
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
