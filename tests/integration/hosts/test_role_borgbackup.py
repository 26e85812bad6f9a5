"""The borgbackup role, playbooks/backup-prune.yml and playbooks/backup-restore.yml, for real across two hosts.

Real: two hosts (own network namespace, systemd as PID 1, sshd), Debian's borg 1.2 on both and on the machine
running Ansible (the trusted side, which alone holds the passphrase and runs the prune), the client reaching
the backup host over SSH with its own ed25519 key restricted on the server to
`borg serve --append-only --restrict-to-repository`, the prune's key made for one run and let in the same way
for two hours at most, a repokey-blake2 repository whose key the backup host holds without the passphrase, the
systemd services and timers of the role (the backup job is started through systemd, as its timer would), the
node-exporter textfile metric, borg compact on the backup host, borg extract through the restore playbook.
Stand-ins: the backup volume is a file that gets its filesystem and fstab entry but is not mounted, so the
repositories live in /srv/borg on the host's root filesystem (no Cinder volume, no loop devices), the
"NFS export" is a directory on the client that is not exported (no kernel NFS here), and the timers are
not waited for (their schedules are checked as enabled and armed, the jobs started by hand).

The tests run in file order on one pair of hosts: converge, back up and prune, restore, wrong passphrase, then
the append-only checks (a compromised client's delete refused by the prune, rolled back; a compromised backup
host unable to read).
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import shlex
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import hostlib
import pytest

from aiinfn.services.monitoring import BACKUP_METRIC

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[2]
CONVERGE = HERE.parents[2] / "playbooks" / "backup.yml"
RESTORE = REPO_ROOT / "playbooks" / "backup-restore.yml"
PRUNE = REPO_ROOT / "playbooks" / "backup-prune.yml"

SERVER = "backup-01"
CLIENT = "nfs-01"
EXPORT = "/export/platform"
REPO = f"/srv/borg/{CLIENT}"
METRIC_FILE = "/var/lib/prometheus/node-exporter/aiinfn_borg.prom"
PASSPHRASE = "test-" + secrets.token_urlsafe(24)

# Site variables as aiinfn renders them into the inventory (all.vars).
#: The backup volume: a file (no block devices in the test hosts); the data_volume role makes its filesystem
#: and its fstab entry, and cannot mount it here (data_volume_mount_now false).
BACKUP_VOLUME = "/srv/backup-volume.img"
SITE_VARS = {
    "aiinfn_nfs": {"export_path": EXPORT, "server": CLIENT},
    "aiinfn_backup": {
        "server": SERVER,
        "schedule": "*-*-* 02:30:00",
        "check_schedule": "Sun *-*-* 05:00:00",
        "retention": {"daily": 7, "weekly": 4, "monthly": 6},
    },
}

# Hash tree of a directory: type, mode, owner, link target and content hash of every entry below it.
TREE = r"""
set -euo pipefail
cd "$1"
find . -mindepth 1 -printf '%y %m %u:%g %p -> %l\n' | LC_ALL=C sort
find . -mindepth 1 -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum
"""

SEED = r"""
set -euo pipefail
d=$1
mkdir -p "$d/projects/alpha/results" "$d/projects/beta" "$d/home/user one" "$d/empty"
head -c 3000000 /dev/urandom >"$d/projects/alpha/results/weights.bin"
head -c 70000 /dev/urandom >"$d/projects/beta/data.npy"
seq 1 20000 >"$d/projects/alpha/table.csv"
printf 'notebook\n' >"$d/home/user one/analysis notebook.ipynb"
printf 'secret-ish\n' >"$d/home/user one/.netrc"
chmod 0600 "$d/home/user one/.netrc"
chmod 0750 "$d/projects/beta"
ln -s ../alpha/table.csv "$d/projects/beta/table-link.csv"
"""


@pytest.fixture(scope="module")
def hosts(host_image: Path) -> Iterator[hostlib.Hosts]:
    with hostlib.start_hosts([SERVER, CLIENT]) as started:
        yield started


@pytest.fixture(scope="module")
def inventory(hosts: hostlib.Hosts) -> dict:
    return hosts.inventory(groups={"role_backup": [SERVER], "role_nfs": [CLIENT]},
                           hostvars={SERVER: {"aiinfn_data_device": BACKUP_VOLUME}},
                           group_vars={**SITE_VARS, "data_volume_mount_now": False})


@pytest.fixture(scope="module")
def first_run(hosts: hostlib.Hosts, inventory: dict) -> hostlib.PlaybookRun:
    hosts.exec(CLIENT, ["bash", "-c", SEED, "seed", EXPORT], check=True)
    hosts.exec(SERVER, f"truncate -s 320M {BACKUP_VOLUME}", check=True)
    return hostlib.run_playbook(CONVERGE, inventory, {"borgbackup_passphrase": PASSPHRASE})


def sh(hosts: hostlib.Hosts, name: str, script: str, *args: str) -> str:
    """Run a bash script inside a host, fail on non-zero, return stdout."""
    result = hosts.exec(name, ["bash", "-c", script, "script", *args])
    assert result.returncode == 0, f"{name}: {script!r} -> {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def changed_tasks(run: hostlib.PlaybookRun) -> list[tuple[str, str]]:
    """(host, task) of every task that reported a change, for assertion messages."""
    return [
        (e["event_data"].get("host", ""), e["event_data"].get("task", ""))
        for e in run.events
        if e.get("event") == "runner_on_ok" and (e.get("event_data", {}).get("res") or {}).get("changed")
    ]


def tree(hosts: hostlib.Hosts, path: str) -> str:
    return sh(hosts, CLIENT, TREE, path)


def archives(hosts: hostlib.Hosts) -> list[str]:
    return sh(hosts, CLIENT, "/usr/local/sbin/aiinfn-borg list --short").split()


def start_unit(hosts: hostlib.Hosts, name: str, unit: str) -> subprocess.CompletedProcess[str]:
    """systemctl start a oneshot (blocks until it has finished), return the completed process."""
    return hosts.exec(name, ["systemctl", "start", unit])


def journal(hosts: hostlib.Hosts, name: str, unit: str) -> str:
    return hosts.exec(name, ["journalctl", "-u", unit, "--no-pager", "-o", "cat"]).stdout


def prune(inventory: dict, **retention: int) -> hostlib.PlaybookRun:
    """The trusted side's retention run (borg on this machine, the passphrase an extra variable), with the site's
    retention or the one given."""
    backup = {**SITE_VARS["aiinfn_backup"], "retention": {**SITE_VARS["aiinfn_backup"]["retention"], **retention}}
    return hostlib.run_playbook(PRUNE, inventory, {"borgbackup_passphrase": PASSPHRASE, "aiinfn_backup": backup})


def server_keys(hosts: hostlib.Hosts) -> list[str]:
    text = hosts.read(SERVER, "/var/lib/borg/.ssh/authorized_keys").decode()
    return [line for line in text.splitlines() if line and not line.startswith("#")]


def holders(hosts: hostlib.Hosts, name: str, secret: str) -> list[str]:
    """Files on host ``name`` holding ``secret`` (everything but the kernel's and the runtime's trees)."""
    return hosts.exec(name, ["grep", "-rlF", "--", secret, "/etc", "/var", "/srv", "/usr/local", "/root", "/home",
                             "/tmp", "/opt"]).stdout.split()


def segments(hosts: hostlib.Hosts) -> set[str]:
    return set(sh(hosts, SERVER, f"cd {REPO}/data && find . -type f | sort").split())


def last_transaction(hosts: hostlib.Hosts) -> int:
    lines = hosts.read(SERVER, f"{REPO}/transactions").decode().splitlines()
    match = re.match(r"transaction (\d+),", lines[-1])
    assert match, lines[-1]
    return int(match.group(1))


def test_one_run_converges_both_sides_and_rerun_changes_nothing(
    hosts: hostlib.Hosts, inventory: dict, first_run: hostlib.PlaybookRun
) -> None:
    """One play over both groups converges in one run; the second run reports no change."""
    assert first_run.rc == 0, first_run.failed or first_run.stdout[-3000:]
    assert first_run.changed.get(SERVER, 0) > 0 and first_run.changed.get(CLIENT, 0) > 0
    assert PASSPHRASE not in first_run.stdout
    assert PASSPHRASE not in json.dumps(first_run.events, default=str)

    second = hostlib.run_playbook(CONVERGE, inventory, {"borgbackup_passphrase": PASSPHRASE})
    assert second.rc == 0, second.failed
    assert all(n == 0 for n in second.changed.values()), changed_tasks(second)

    # Server: borg system user owning the repository base; the client key only runs append-only serve
    # on its own repository.
    assert sh(hosts, SERVER, "stat -c '%U %a' /srv/borg").split() == ["borg", "700"]
    client_pub = hosts.read(CLIENT, "/etc/borgbackup/id_ed25519.pub").decode().split()
    assert client_pub[0] == "ssh-ed25519"
    keys = [
        line
        for line in hosts.read(SERVER, "/var/lib/borg/.ssh/authorized_keys").decode().splitlines()
        if line and not line.startswith("#")
    ]
    assert keys == [
        f'command="borg serve --append-only --restrict-to-repository {REPO}",restrict '
        f"{client_pub[0]} {client_pub[1]} {client_pub[2]}"
    ]
    # The repository exists, encrypted with repokey-blake2, owned by borg.
    assert sh(hosts, SERVER, f"stat -c %U {REPO}/config").strip() == "borg"
    info = sh(hosts, CLIENT, "/usr/local/sbin/aiinfn-borg info")
    assert "repokey BLAKE2b" in info
    # Passphrase files: 0600, read through BORG_PASSCOMMAND, never in the environment file; only on the client.
    assert sh(hosts, CLIENT, "stat -c '%U %a' /etc/borgbackup/passphrase").split() == ["root", "600"]
    assert hosts.read(CLIENT, "/etc/borgbackup/passphrase").decode() == PASSPHRASE
    env = hosts.read(CLIENT, "/etc/borgbackup/env").decode()
    assert "BORG_PASSCOMMAND=" in env and PASSPHRASE not in env
    assert holders(hosts, CLIENT, PASSPHRASE) == ["/etc/borgbackup/passphrase"]
    # The backup host holds the (encrypted) repository key but never the passphrase, and runs no retention job.
    assert holders(hosts, SERVER, PASSPHRASE) == []
    assert not hosts.exists(SERVER, "/var/lib/borg/passphrase")
    assert hosts.exec(SERVER, "systemctl cat aiinfn-backup-prune.timer").returncode != 0
    # Timers enabled and armed with the configured schedules.
    for name, timer, calendar in [
        (CLIENT, "aiinfn-backup.timer", "*-*-* 02:30:00"),
        (CLIENT, "aiinfn-backup-check.timer", "Sun *-*-* 05:00:00"),
    ]:
        assert sh(hosts, name, f"systemctl is-enabled {timer}").strip() == "enabled"
        assert sh(hosts, name, f"systemctl is-active {timer}").strip() == "active"
        assert calendar in sh(hosts, name, f"systemctl show -p TimersCalendar --value {timer}")


def test_backup_service_creates_an_archive_and_writes_the_metric(
    hosts: hostlib.Hosts, inventory: dict, first_run: hostlib.PlaybookRun
) -> None:
    """Starting the oneshot service backs the export up for real and writes the metric the overlay alerts on;
    the trusted side's prune runs and leaves nothing behind on the backup host."""
    assert not hosts.exists(CLIENT, METRIC_FILE)
    before = time.time()
    result = start_unit(hosts, CLIENT, "aiinfn-backup.service")
    assert result.returncode == 0, journal(hosts, CLIENT, "aiinfn-backup.service")
    assert len(archives(hosts)) == 1
    metrics = hosts.read(CLIENT, METRIC_FILE).decode()
    assert BACKUP_METRIC == "aiinfn_borg_last_success_timestamp_seconds"
    match = re.search(rf'^{BACKUP_METRIC}{{repository="{CLIENT}"}} (\d+)$', metrics, re.M)
    assert match, metrics
    assert before - 5 <= int(match.group(1)) <= time.time() + 5
    assert re.search(rf'^aiinfn_borg_last_run_success{{repository="{CLIENT}"}} 1$', metrics, re.M)

    # Retention from the trusted side: borg here prunes through a key of its own, the backup host compacts,
    # the guard records what was left, and the run's key is gone from the backup host afterwards.
    client_keys = server_keys(hosts)
    run = prune(inventory)
    assert run.rc == 0, run.failed
    assert PASSPHRASE not in run.stdout and PASSPHRASE not in json.dumps(run.events, default=str)
    assert hosts.read(SERVER, f"/var/lib/borg/prune-state/{CLIENT}.archives").decode().split() == archives(hosts)
    assert server_keys(hosts) == client_keys
    assert holders(hosts, SERVER, PASSPHRASE) == []


def test_restore_after_delete_and_alter_is_byte_identical(hosts: hostlib.Hosts, inventory: dict) -> None:
    """Data deleted and altered after the backup comes back byte-identical, staged and in place."""
    original = tree(hosts, EXPORT)
    assert "weights.bin" in original and ".netrc" in original
    sh(
        hosts,
        CLIENT,
        f"""
        rm -rf {EXPORT}/projects/alpha/results '{EXPORT}/home/user one/.netrc'
        printf 'tampered' | dd of={EXPORT}/projects/beta/data.npy bs=1 seek=100 conv=notrunc status=none
        chmod 0777 {EXPORT}/projects/beta
    """,
    )
    damaged = tree(hosts, EXPORT)
    assert damaged != original

    archive = archives(hosts)[-1]
    run = hostlib.run_playbook(RESTORE, inventory)
    assert run.rc == 0, run.failed
    staged = f"{EXPORT}.restore-{archive}"
    assert tree(hosts, staged) == original
    assert tree(hosts, EXPORT) == damaged  # a staging restore does not touch the export

    # A second staging restore into the same place is refused rather than mixed with older files.
    again = hostlib.run_playbook(RESTORE, inventory)
    assert again.rc != 0
    assert any("exists already" in msg for _, _, msg in again.failed), again.failed

    # In place needs the explicit confirmation.
    refused = hostlib.run_playbook(RESTORE, inventory, {"restore_in_place": True})
    assert refused.rc != 0
    assert any("restore_confirm" in msg for _, _, msg in refused.failed), refused.failed
    assert tree(hosts, EXPORT) == damaged
    confirmed = hostlib.run_playbook(
        RESTORE, inventory, {"restore_in_place": True, "restore_confirm": EXPORT, "restore_archive": archive}
    )
    assert confirmed.rc == 0, confirmed.failed
    assert tree(hosts, EXPORT) == original


def test_wrong_passphrase_fails_cleanly(hosts: hostlib.Hosts, inventory: dict) -> None:
    """A wrong passphrase fails with a message, keeps the good one stored and never touches the metric."""
    metric_before = hosts.read(CLIENT, METRIC_FILE)
    archives_before = archives(hosts)

    # Through the role: both sides refuse before replacing the stored passphrase.
    wrong = "wrong-" + secrets.token_urlsafe(16)
    run = hostlib.run_playbook(CONVERGE, inventory, {"borgbackup_passphrase": wrong})
    assert run.rc != 0
    failed_hosts = {host for host, _, _ in run.failed}
    assert failed_hosts == {CLIENT}, run.failed  # the backup host holds no passphrase to check
    assert all("passphrase" in msg and "incorrect" in msg for _, _, msg in run.failed), run.failed
    assert wrong not in run.stdout and wrong not in json.dumps(run.events, default=str)
    assert hosts.read(CLIENT, "/etc/borgbackup/passphrase").decode() == PASSPHRASE
    assert holders(hosts, SERVER, wrong) == [] and holders(hosts, SERVER, PASSPHRASE) == []
    # the trusted side's prune with a wrong passphrase reads nothing, prunes nothing
    before = archives(hosts)
    bad_prune = hostlib.run_playbook(PRUNE, inventory, {"borgbackup_passphrase": wrong})
    assert bad_prune.rc != 0 and any("incorrect" in m for _h, _t, m in bad_prune.failed), bad_prune.failed
    assert wrong not in bad_prune.stdout and archives(hosts) == before

    # A stored passphrase gone wrong: the backup job fails (non-zero), says why, leaves the metric alone.
    sh(hosts, CLIENT, f"printf %s {shlex.quote(wrong)} >/etc/borgbackup/passphrase")
    try:
        result = start_unit(hosts, CLIENT, "aiinfn-backup.service")
        assert result.returncode != 0
        assert sh(hosts, CLIENT, "systemctl show -p Result --value aiinfn-backup.service").strip() == "exit-code"
        log = journal(hosts, CLIENT, "aiinfn-backup.service")
        assert "passphrase supplied" in log and "is incorrect" in log, log
        assert "left unchanged" in log
        assert hosts.read(CLIENT, METRIC_FILE) == metric_before
    finally:
        encoded = base64.b64encode(PASSPHRASE.encode()).decode()
        sh(hosts, CLIENT, f"printf %s {encoded} | base64 -d >/etc/borgbackup/passphrase")
    assert archives(hosts) == archives_before

    # With the right passphrase again the next run succeeds and moves the metric forward.
    time.sleep(1.1)
    result = start_unit(hosts, CLIENT, "aiinfn-backup.service")
    assert result.returncode == 0, journal(hosts, CLIENT, "aiinfn-backup.service")
    assert hosts.read(CLIENT, METRIC_FILE) != metric_before
    assert len(archives(hosts)) == len(archives_before) + 1


def test_client_key_cannot_destroy_archives(hosts: hostlib.Hosts, inventory: dict) -> None:
    """Through its append-only key the client cannot remove backed-up data, reach another repository or
    delete the repository; a `borg delete` it issues is only a new transaction, which the retention job
    refuses to make permanent and the operator rolls back (aiinfn-backup-rollback) to the same archives."""
    borg = "/usr/local/sbin/aiinfn-borg"
    # Another repository, or a shell, is out of reach of the client key.
    other = hosts.exec(CLIENT, [borg, "info", f"ssh://borg@{SERVER}:22/srv/borg/other"])
    assert other.returncode != 0 and "not allowed" in other.stderr, other.stderr
    shell = hosts.exec(CLIENT, ["bash", "-c", f". /etc/borgbackup/env; $BORG_RSH borg@{SERVER} id </dev/null"])
    assert "uid=" not in shell.stdout
    before = archives(hosts)
    assert len(before) >= 2
    # Deleting the whole repository is refused in append-only mode.
    destroy = hosts.exec(CLIENT, ["bash", "-c", f"BORG_DELETE_I_KNOW_WHAT_I_AM_DOING=YES {borg} delete"])
    assert destroy.returncode != 0
    assert "append-only" in destroy.stderr, destroy.stderr
    assert hosts.exists(SERVER, f"{REPO}/config")
    assert archives(hosts) == before

    segments_before = segments(hosts)
    good_transaction = last_transaction(hosts)

    # The client deletes an archive: borg 1.2 lets the command "succeed" (the manifest it writes no longer
    # lists the archive) but append-only keeps every segment file; the deletion is a new transaction.
    victim = before[0]
    delete = hosts.exec(CLIENT, [borg, "delete", f"::{victim}"])
    assert delete.returncode == 0, delete.stderr  # borg 1.2 (bookworm); a later borg may refuse outright
    assert victim not in archives(hosts)
    assert segments_before <= segments(hosts)
    assert last_transaction(hosts) > good_transaction

    # The trusted side's prune notices the vanished archive and neither prunes nor compacts; its key goes anyway.
    kept = segments(hosts)
    keys = server_keys(hosts)
    refused = prune(inventory)
    assert refused.rc != 0
    (host, _task, msg), = refused.failed
    assert host == SERVER and "archives vanished since the last prune" in msg and victim in msg
    assert segments(hosts) == kept
    assert server_keys(hosts) == keys

    # Operator rollback to the transaction before the delete brings the same archive list back.
    out = sh(hosts, SERVER, f"/usr/local/sbin/aiinfn-backup-rollback {CLIENT} {good_transaction}")
    clear = re.search(r"rm -rf (.+)$", out, re.M)
    assert clear, out
    sh(hosts, CLIENT, f"rm -rf {clear.group(1)}")
    assert archives(hosts) == before
    result = start_unit(hosts, CLIENT, "aiinfn-backup-check.service")
    assert result.returncode == 0, journal(hosts, CLIENT, "aiinfn-backup-check.service")

    # The rolled-back archive restores byte-identical to the data it holds.
    expected = tree(hosts, EXPORT)
    target = "/var/tmp/restore-victim"
    run = hostlib.run_playbook(RESTORE, inventory, {"restore_archive": victim, "restore_target": target})
    assert run.rc == 0, run.failed
    assert tree(hosts, target) == expected

    # Retention works again afterwards: every archive is of today, so a retention of one daily archive leaves the
    # newest one (with the site's 7 daily, borg would also keep the oldest while fewer than 7 days exist); the
    # backup host compacts (the pruned archives' segments go) and the newest restores byte-identical.
    newest = archives(hosts)[-1]
    pruned = prune(inventory, daily=1, weekly=0, monthly=0)
    assert pruned.rc == 0, pruned.failed
    assert archives(hosts) == [newest]
    assert hosts.read(SERVER, f"/var/lib/borg/prune-state/{CLIENT}.archives").decode().split() == [newest]
    assert not segments(hosts) >= kept  # compaction rewrote segments: the deleted data is gone for real
    target = "/var/tmp/restore-newest"
    run = hostlib.run_playbook(RESTORE, inventory, {"restore_target": target})
    assert run.rc == 0, run.failed
    assert tree(hosts, target) == expected
    result = start_unit(hosts, CLIENT, "aiinfn-backup.service")
    assert result.returncode == 0, journal(hosts, CLIENT, "aiinfn-backup.service")


def test_the_backup_host_cannot_read_the_backups(hosts: hostlib.Hosts) -> None:
    """Root on the backup host has the repositories and their (encrypted) key, but no passphrase anywhere:
    borg there cannot list, let alone extract, an archive."""
    assert holders(hosts, SERVER, PASSPHRASE) == []
    for attempt in ("BORG_PASSPHRASE=", "BORG_PASSPHRASE=guess"):
        res = hosts.exec(SERVER, f"cd /tmp && {attempt} BORG_BASE_DIR=/tmp/attacker "
                                 f"BORG_RELOCATED_REPO_ACCESS_IS_OK=yes borg list {REPO} </dev/null")
        assert res.returncode != 0, res.stdout
        assert "passphrase" in res.stderr.lower(), res.stderr
        assert res.stdout.strip() == ""
