"""Role node_exporter on a real host: Debian's prometheus-node-exporter (from the mirror, as on a site's VM) under
systemd, serving the backup job's metric from the textfile collector directory the borgbackup role writes to, so
the backup-age alert has its series; collectors switched as asked; a second run changes nothing; a bad input is
refused before anything changes.

Real: apt, the package, its systemd unit, the exporter's HTTP endpoint scraped as Prometheus scrapes it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import hostlib
import pytest
import yaml

from aiinfn.services.monitoring import BACKUP_METRIC, NODE_EXPORTER_PORT

pytestmark = pytest.mark.integration

BORG_DEFAULTS = hostlib.REPO / "roles" / "borgbackup" / "defaults" / "main.yml"


def _play(tmp_path: Path) -> Path:
    book = tmp_path / "node-exporter.yml"
    book.write_text("- name: node-exporter\n  hosts: vm\n  gather_facts: false\n  roles:\n    - role: node_exporter\n")
    return book


def _scrape(hosts: hostlib.Hosts, name: str) -> list[str]:
    out = hosts.exec(name, ["python3", "-c", "import urllib.request; print(urllib.request.urlopen("
                            f"'http://127.0.0.1:{NODE_EXPORTER_PORT}/metrics', timeout=10).read().decode())"],
                     check=True).stdout
    return out.splitlines()


def test_node_exporter_serves_the_backup_metric_from_the_textfile_directory(
        test_hosts: Callable[..., hostlib.Hosts], tmp_path: Path) -> None:
    hosts = test_hosts(["nfs-01"])
    inv = hosts.inventory(groups={"vm": ["nfs-01"]})
    first = hostlib.run_playbook(_play(tmp_path), inv)
    assert first.rc == 0, first.failed
    assert hosts.exec("nfs-01", "systemctl is-enabled prometheus-node-exporter; systemctl is-active "
                                "prometheus-node-exporter").stdout.split() == ["enabled", "active"]

    # the directory is the one the backup job writes its metric to (borgbackup_metrics_dir's default)
    borg_dir = yaml.safe_load(BORG_DEFAULTS.read_text())["borgbackup_metrics_dir"]
    assert hosts.exec("nfs-01", f"stat -c '%U %a' {borg_dir}", check=True).stdout.split() == ["root", "755"]
    hosts.exec("nfs-01", f"printf '# TYPE {BACKUP_METRIC} gauge\\n{BACKUP_METRIC} 1764590000\\n' > "
                         f"{borg_dir}/aiinfn_borg.prom", check=True)
    lines = _scrape(hosts, "nfs-01")
    assert f"{BACKUP_METRIC} 1.76459e+09" in lines
    assert "node_textfile_scrape_error 0" in lines
    assert any(line.startswith('node_systemd_unit_state{name="prometheus-node-exporter.service",state="active"')
               for line in lines)  # the systemd collector (on by the role's default)

    again = hostlib.run_playbook(_play(tmp_path), inv)
    assert again.rc == 0 and again.changed == {"nfs-01": 0}

    # a collector switched off: the arguments change and the exporter restarts with them
    off = hostlib.run_playbook(_play(tmp_path), hosts.inventory(
        groups={"vm": ["nfs-01"]}, group_vars={"node_exporter_collectors_disabled": ["filesystem"]}))
    assert off.rc == 0, off.failed
    assert not [line for line in _scrape(hosts, "nfs-01") if line.startswith("node_filesystem_")]

    # a bad listen address is refused by name, and the running exporter is left as it was
    bad = hostlib.run_playbook(_play(tmp_path), hosts.inventory(
        groups={"vm": ["nfs-01"]}, group_vars={"node_exporter_listen_address": "0.0.0.0:99999"}))
    assert bad.rc != 0
    (host, _task, msg), = bad.failed
    assert host == "nfs-01" and "listen address 0.0.0.0:99999" in msg
    assert "--no-collector.filesystem" in hosts.read("nfs-01", "/etc/default/prometheus-node-exporter").decode()
