"""Role rke2 through playbooks/rke2.yml on real hosts: one server initialises, two agents join.

Real: the playbook and its variable mapping (playbooks/group_vars/all.yml), the copy of the release from a
local artifact directory, the sha256 check against the published list, unpacking, config.yaml and
registries.yaml, systemd units, the joiners' wait for port 9345 across hosts.
Stand-in: the RKE2 release itself (rke2_standin.py: same layout and checksum file; its `rke2` refuses to run
without a token, listens on 9345 as a server and connects to it as an agent), since RKE2 cannot be downloaded
here and would need a real kernel for its containers.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hostlib
import pytest
from rke2_standin import build_release

from aiinfn import versions

pytestmark = pytest.mark.integration

TOKEN = "K10-test-join-token-0123456789abcdef"
NAMES = ["srv-1", "agt-1", "agt-2"]


def _inventory(hosts: hostlib.Hosts, artifacts: Path, version: str) -> dict[str, Any]:
    roles = {"srv-1": "server", "agt-1": "agent", "agt-2": "gpu"}
    hostvars = {
        n: {
            "aiinfn_role": roles[n],
            "aiinfn_node_labels": {"aiinfn.infn.it/role": roles[n]},
            "aiinfn_node_taints": [{"key": "aiinfn.infn.it/accelerator", "value": "T4", "effect": "NoSchedule"}]
            if roles[n] == "gpu" else [],
        }
        for n in hosts.names
    }
    group_vars = {
        "aiinfn_first_server": "srv-1",
        "aiinfn_rke2_version": version,
        "aiinfn_artifact_source": str(artifacts),
        "aiinfn_tls_sans": ["api.test.example.org"],
        "aiinfn_oidc": {"issuer": "https://iam.example.org/", "client_id": "platform",
                        "username_claim": "preferred_username", "groups_claim": "groups"},
        "aiinfn_registry_mirror": "harbor.test.example.org",
        "aiinfn_cluster_domain": "cluster.local",
    }
    groups = {"role_server": ["srv-1"], "role_agent": ["agt-1"], "role_gpu": ["agt-2"]}
    groups = {g: [m for m in members if m in hosts.names] for g, members in groups.items()}
    return hosts.inventory(groups=groups, hostvars=hostvars, group_vars=group_vars)


def _state(hosts: hostlib.Hosts, name: str) -> dict[str, Any]:
    return json.loads(hosts.read(name, "/var/lib/rancher/rke2/standin.json"))


def test_server_initialises_agents_join_and_rerun_changes_nothing(
    test_hosts: Callable[..., hostlib.Hosts], tmp_path: Path
) -> None:
    version = versions.RKE2
    artifacts = tmp_path / "artifacts"
    build_release(artifacts / "rke2", version)
    hosts = test_hosts(NAMES)
    inv = _inventory(hosts, artifacts, version)
    first = hostlib.run_playbook("rke2.yml", inv, extravars={"rke2_token": TOKEN})
    assert first.rc == 0, first.failed
    assert TOKEN not in first.stdout  # the token never reaches the log

    server_conf = hosts.read("srv-1", "/etc/rancher/rke2/config.yaml").decode()
    assert f'token: "{TOKEN}"' in server_conf and "server:" not in server_conf
    assert '"oidc-issuer-url=https://iam.example.org/"' in server_conf
    assert '"oidc-groups-prefix=oidc:"' in server_conf and '"oidc-username-prefix=oidc:"' in server_conf
    assert '"api.test.example.org"' in server_conf
    assert oct(hosts.path("srv-1", "/etc/rancher/rke2/config.yaml").stat().st_mode & 0o777) == "0o600"
    agent_conf = hosts.read("agt-2", "/etc/rancher/rke2/config.yaml").decode()
    assert f'server: "https://{hosts.address("srv-1")}:9345"' in agent_conf
    assert '"aiinfn.infn.it/accelerator=T4:NoSchedule"' in agent_conf
    assert "oidc" not in agent_conf  # API server settings only on servers
    registries = hosts.read("agt-1", "/etc/rancher/rke2/registries.yaml").decode()
    assert '"https://harbor.test.example.org"' in registries and "docker.io:" in registries

    assert hosts.exec("srv-1", "systemctl is-active rke2-server").stdout.strip() == "active"
    for agent in ("agt-1", "agt-2"):
        assert hosts.exec(agent, "systemctl is-active rke2-agent").stdout.strip() == "active"
        assert hosts.exec(agent, "systemctl is-enabled rke2-agent").stdout.strip() == "enabled"
        joined = hosts.exec(agent, "cat /var/lib/rancher/rke2/joined", check=True).stdout
        assert "rke2-standin-supervisor" in joined
    assert _state(hosts, "srv-1")["version"] == version

    again = hostlib.run_playbook("rke2.yml", inv, extravars={"rke2_token": TOKEN})
    assert again.rc == 0, again.failed
    assert again.changed == dict.fromkeys(NAMES, 0)


def test_a_tampered_release_is_refused_and_an_upgrade_restarts(
    test_hosts: Callable[..., hostlib.Hosts], tmp_path: Path
) -> None:
    old, new = "v1.33.4+rke2r1", "v1.33.5+rke2r1"
    artifacts = tmp_path / "artifacts"
    build_release(artifacts / "rke2", old)
    hosts = test_hosts(["srv-1"])
    assert hostlib.run_playbook("rke2.yml", _inventory(hosts, artifacts, old), extravars={"rke2_token": TOKEN}).rc == 0
    started = _state(hosts, "srv-1")

    release = build_release(artifacts / "rke2", new)
    tarball = release / "rke2.linux-amd64.tar.gz"
    tarball.write_bytes(tarball.read_bytes() + b"tampered")
    bad = hostlib.run_playbook("rke2.yml", _inventory(hosts, artifacts, new), extravars={"rke2_token": TOKEN})
    assert bad.rc != 0
    (host, _task, msg), = bad.failed
    assert host == "srv-1" and "rke2.linux-amd64.tar.gz of RKE2 v1.33.5+rke2r1" in msg
    assert "nothing was installed" in msg
    assert _state(hosts, "srv-1") == started  # the old release runs on, untouched
    assert hosts.read("srv-1", "/var/lib/aiinfn/rke2.version").decode().strip() == old

    build_release(artifacts / "rke2", new)  # the genuine release
    good = hostlib.run_playbook("rke2.yml", _inventory(hosts, artifacts, new), extravars={"rke2_token": TOKEN})
    assert good.rc == 0, good.failed
    after = _state(hosts, "srv-1")
    assert after["version"] == new and after["pid"] != started["pid"]


def test_a_missing_token_fails_before_anything_is_installed(
    test_hosts: Callable[..., hostlib.Hosts], tmp_path: Path
) -> None:
    artifacts = tmp_path / "artifacts"
    build_release(artifacts / "rke2", versions.RKE2)
    hosts = test_hosts(["srv-1"])
    res = hostlib.run_playbook("rke2.yml", _inventory(hosts, artifacts, versions.RKE2))
    assert res.rc != 0
    assert any("rke2_token" in msg for _h, _t, msg in res.failed), res.failed
    assert not hosts.exists("srv-1", "/usr/local/bin/rke2")
