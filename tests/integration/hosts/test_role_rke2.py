"""Role rke2 through playbooks/rke2.yml on real hosts: one server initialises, agents join with the agent token.

Real: the playbook and its variable mapping (playbooks/group_vars/all.yml), the copy of the release from a
local artifact directory, the sha256 check against the pinned value (never the checksum file beside the
tarball), unpacking, config.yaml, the Pod Security admission file, registries.yaml, the etcd user and group,
the CIS kernel-parameter file, systemd units, the joiners' wait for port 9345 across hosts and for their join.
Stand-in: the RKE2 release itself (rke2_standin.py: same layout; its `rke2` checks the CIS host requirements
and the admission file as RKE2 does, the server checks every joiner's token against the server and agent tokens
it was configured with, refuses a wrong one and an agent token for a server, and records the nodes that
joined), since RKE2 cannot be downloaded here and would need a real kernel for its containers.
Not run here: applying the kernel parameters live (rke2_sysctl_apply false; the hosts share this machine's
kernel): the stand-in checks the boot-time file systemd-sysctl would apply instead of /proc/sys.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import hostlib
import pytest
from rke2_standin import build_release, tarball_sha256

from aiinfn import versions

pytestmark = pytest.mark.integration

SERVER_TOKEN = "K10-test-server-token-0123456789abcdef"
AGENT_TOKEN = "K10-test-agent-token-fedcba9876543210"
NAMES = ["srv-1", "agt-1", "agt-2"]
#: What RKE2 v1.33's CIS profile checks (pkg/cli/cmds/profile_linux.go), as the role writes it.
CIS_SYSCTL = ["kernel.panic=10", "kernel.panic_on_oops=1", "vm.overcommit_memory=1", "vm.panic_on_oom=0"]


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
        "aiinfn_artifact_sha256": versions.artifact_sha256(),
        "aiinfn_tls_sans": ["api.test.example.org"],
        "aiinfn_oidc": {"issuer": "https://iam.example.org/", "client_id": "platform",
                        "username_claim": "preferred_username", "groups_claim": "groups"},
        "aiinfn_registry_mirror": "harbor.test.example.org",
        "aiinfn_cluster_domain": "cluster.local",
        "aiinfn_pod_cidr": "10.72.0.0/16",
        "aiinfn_service_cidr": "10.73.0.0/16",
        "rke2_sysctl_apply": False,  # the hosts share this machine's kernel
    }
    groups = {"role_server": ["srv-1"], "role_agent": ["agt-1"], "role_gpu": ["agt-2"]}
    groups = {g: [m for m in members if m in hosts.names] for g, members in groups.items()}
    return hosts.inventory(groups=groups, hostvars=hostvars, group_vars=group_vars)


def _secrets(release: Path, **kw: Any) -> dict[str, Any]:
    return {"rke2_token": SERVER_TOKEN, "rke2_agent_token": AGENT_TOKEN,
            "rke2_sha256_override": tarball_sha256(release), **kw}


def _state(hosts: hostlib.Hosts, name: str) -> dict[str, Any]:
    return json.loads(hosts.read(name, "/var/lib/rancher/rke2/standin.json"))


def _joined(hosts: hostlib.Hosts) -> dict[str, Any]:
    path = "/var/lib/rancher/rke2/server/joined-nodes.json"
    return json.loads(hosts.read("srv-1", path)) if hosts.exists("srv-1", path) else {}


def _refused(hosts: hostlib.Hosts) -> list[dict[str, Any]]:
    path = "/var/lib/rancher/rke2/server/join-refused.log"
    if not hosts.exists("srv-1", path):
        return []
    return [json.loads(line) for line in hosts.read("srv-1", path).decode().splitlines()]


def _holders(hosts: hostlib.Hosts, name: str, secret: str) -> list[str]:
    """Files on host ``name`` (outside /proc, /sys, /dev, /run) that contain ``secret``."""
    res = hosts.exec(name, ["grep", "-rlF", "--", secret, "/etc", "/var", "/usr/local", "/root", "/home", "/opt",
                            "/srv", "/tmp"])
    return res.stdout.split()


def test_server_initialises_agents_join_and_rerun_changes_nothing(
    test_hosts: Callable[..., hostlib.Hosts], tmp_path: Path
) -> None:
    version = versions.RKE2
    artifacts = tmp_path / "artifacts"
    release = build_release(artifacts / "rke2", version)
    hosts = test_hosts(NAMES)
    inv = _inventory(hosts, artifacts, version)
    first = hostlib.run_playbook("rke2.yml", inv, extravars=_secrets(release))
    assert first.rc == 0, first.failed
    assert SERVER_TOKEN not in first.stdout and AGENT_TOKEN not in first.stdout  # the tokens never reach the log

    server_conf = hosts.read("srv-1", "/etc/rancher/rke2/config.yaml").decode()
    lines = server_conf.splitlines()
    assert f'token: "{SERVER_TOKEN}"' in lines and f'agent-token: "{AGENT_TOKEN}"' in lines
    assert "server:" not in server_conf
    assert '"oidc-issuer-url=https://iam.example.org/"' in server_conf
    assert '"oidc-groups-prefix=oidc:"' in server_conf and '"oidc-username-prefix=oidc:"' in server_conf
    assert '"api.test.example.org"' in server_conf
    assert {'profile: "cis"', 'cluster-cidr: "10.72.0.0/16"', 'service-cidr: "10.73.0.0/16"',
            'pod-security-admission-config-file: "/etc/rancher/rke2/aiinfn-pss.yaml"',
            '  - "service-account-extend-token-expiration=false"'} <= set(lines)
    assert oct(hosts.path("srv-1", "/etc/rancher/rke2/config.yaml").stat().st_mode & 0o777) == "0o600"
    agent_conf = hosts.read("agt-2", "/etc/rancher/rke2/config.yaml").decode()
    assert f'server: "https://{hosts.address("srv-1")}:9345"' in agent_conf
    assert '"aiinfn.infn.it/accelerator=T4:NoSchedule"' in agent_conf
    assert "oidc" not in agent_conf and "cluster-cidr" not in agent_conf  # API server settings only on servers
    registries = hosts.read("agt-1", "/etc/rancher/rke2/registries.yaml").decode()
    assert '"https://harbor.test.example.org"' in registries and "docker.io:" in registries

    # Pod Security admission: restricted enforced, audited and warned by default; only kube-system exempt
    pss = json.loads(hosts.read("srv-1", "/etc/rancher/rke2/aiinfn-pss.yaml"))
    (plugin,) = pss["plugins"]
    assert (pss["apiVersion"], pss["kind"], plugin["name"]) == (
        "apiserver.config.k8s.io/v1", "AdmissionConfiguration", "PodSecurity")
    config = plugin["configuration"]
    assert config["apiVersion"] == "pod-security.admission.config.k8s.io/v1"
    assert config["defaults"] == {m: "restricted" for m in ("enforce", "audit", "warn")} | {
        f"{m}-version": "latest" for m in ("enforce", "audit", "warn")}
    assert config["exemptions"] == {"usernames": [], "runtimeClasses": [], "namespaces": ["kube-system"]}
    assert _state(hosts, "srv-1")["psa"] == config  # the server started with it
    assert not hosts.exists("agt-1", "/etc/rancher/rke2/aiinfn-pss.yaml")

    # CIS host requirements: the kernel parameters everywhere, the etcd user and group on the server only
    for name in NAMES:
        sysctl = hosts.read(name, "/etc/sysctl.d/60-rke2-cis.conf").decode().splitlines()
        assert [ln for ln in sysctl if not ln.startswith("#")] == CIS_SYSCTL
        # and systemd-sysctl, which applies them at boot, ends with these values (no later file overrides them)
        merged = hosts.exec(name, "/lib/systemd/systemd-sysctl --cat-config", check=True).stdout
        effective = dict(ln.replace(" ", "").split("=", 1) for ln in merged.splitlines()
                         if "=" in ln and not ln.lstrip().startswith(("#", ";")))
        assert sorted(f"{k}={effective.get(k)}" for k in (c.split("=")[0] for c in CIS_SYSCTL)) == CIS_SYSCTL
        assert _state(hosts, name)["profile"] == "cis"
    etcd = hosts.exec("srv-1", "getent passwd etcd", check=True).stdout.strip().split(":")
    assert etcd[6] == "/sbin/nologin" and int(etcd[2]) < 1000  # a system user without a login
    assert hosts.exec("srv-1", "getent group etcd").returncode == 0
    assert hosts.exec("agt-1", "getent passwd etcd").returncode != 0

    # tokens: the agents hold the agent token only; the server token is nowhere on them
    for agent in ("agt-1", "agt-2"):
        conf = hosts.read(agent, "/etc/rancher/rke2/config.yaml").decode().splitlines()
        assert f'token: "{AGENT_TOKEN}"' in conf and not any(ln.startswith("agent-token") for ln in conf)
        assert _holders(hosts, agent, SERVER_TOKEN) == []
        assert _holders(hosts, agent, AGENT_TOKEN) == ["/etc/rancher/rke2/config.yaml"]

    assert hosts.exec("srv-1", "systemctl is-active rke2-server").stdout.strip() == "active"
    for agent in ("agt-1", "agt-2"):
        assert hosts.exec(agent, "systemctl is-active rke2-agent").stdout.strip() == "active"
        assert hosts.exec(agent, "systemctl is-enabled rke2-agent").stdout.strip() == "enabled"
        joined = hosts.exec(agent, "cat /var/lib/rancher/rke2/joined", check=True).stdout
        assert "rke2-standin-supervisor" in joined
    # the server recorded exactly the nodes that joined, from their own addresses, and registered their labels
    record = _joined(hosts)
    assert {n: (r["role"], r["address"]) for n, r in record.items()} == {
        "srv-1": ("server", "127.0.0.1"), "agt-1": ("agent", hosts.address("agt-1")),
        "agt-2": ("agent", hosts.address("agt-2"))}
    nodes = json.loads(hosts.read("srv-1", "/var/lib/rancher/rke2/nodes.json"))
    assert nodes["agt-2"]["labels"]["aiinfn.infn.it/role"] == "gpu"
    assert nodes["agt-2"]["taints"] == ["aiinfn.infn.it/accelerator=T4:NoSchedule"]
    assert _refused(hosts) == []
    assert _state(hosts, "srv-1")["version"] == version

    again = hostlib.run_playbook("rke2.yml", inv, extravars=_secrets(release))
    assert again.rc == 0, again.failed
    assert again.changed == dict.fromkeys(NAMES, 0)


def test_a_wrong_token_is_refused_and_an_agent_token_cannot_join_as_a_server(
    test_hosts: Callable[..., hostlib.Hosts], tmp_path: Path
) -> None:
    """The server checks every joiner's token: a wrong agent token fails the agent's join (the role reports
    it), and the agent token an agent holds cannot join a server, neither through the role nor by hand."""
    artifacts = tmp_path / "artifacts"
    release = build_release(artifacts / "rke2", versions.RKE2)
    hosts = test_hosts(NAMES)
    inv = _inventory(hosts, artifacts, versions.RKE2)
    ok = hostlib.run_playbook("rke2.yml", inv, extravars=_secrets(release), limit="srv-1,agt-1")
    assert ok.rc == 0, ok.failed
    assert set(_joined(hosts)) == {"srv-1", "agt-1"}

    # a wrong agent token: the join is refused and the role says so, naming the node and RKE2's reason
    wrong = "K10-not-the-agent-token-000000000000"
    bad = hostlib.run_playbook("rke2.yml", inv, extravars=_secrets(release, rke2_agent_token=wrong,
                                                                  rke2_join_timeout=15), limit="agt-2")
    assert bad.rc != 0
    (host, task, msg), = bad.failed
    assert host == "agt-2" and task == "Stop when the node did not join"
    assert f"did not join https://{hosts.address('srv-1')}:9345 within 15 s" in msg
    assert "the server refused this node: token is not valid" in msg
    assert wrong not in bad.stdout
    assert "agt-2" not in _joined(hosts)
    assert [(r["node"], r["role"], r["why"]) for r in _refused(hosts)][:1] == [("agt-2", "agent", "token is not valid")]
    assert not hosts.exists("agt-2", "/var/lib/rancher/rke2/agent/kubelet.kubeconfig")

    # root on agt-1 turns it into a server with the token it has: the supervisor refuses the agent token
    attack = hosts.exec("agt-1", "systemctl stop rke2-agent && sed -i '/^profile:/d' /etc/rancher/rke2/config.yaml"
                                 " && timeout 30 /usr/local/bin/rke2 server")
    assert attack.returncode == 1, attack
    assert "the server refused this node: a server joins only with the server token" in attack.stderr
    assert _joined(hosts)["agt-1"]["role"] == "agent"
    assert ("agt-1", "server") in {(r["node"], r["role"]) for r in _refused(hosts)}

    # a server configured (by mistake or theft) with the agent token as its server token is refused as well
    hosts.exec("agt-2", "systemctl disable --now rke2-agent", check=True)  # the refused agent's unit retries
    stolen = hostlib.run_playbook("rke2.yml", inv, limit="agt-2", extravars=_secrets(
        release, rke2_token=AGENT_TOKEN, rke2_agent_token="K10-any-other-agent-token-11111111",
        rke2_node_role="server", rke2_join_timeout=15))
    assert stolen.rc != 0
    assert any("a server joins only with the server token" in msg for _h, _t, msg in stolen.failed), stolen.failed
    assert "agt-2" not in _joined(hosts)

    # and the role refuses to give a server the same token for both roles
    same = hostlib.run_playbook("rke2.yml", inv, limit="srv-1", extravars=_secrets(
        release, rke2_agent_token=SERVER_TOKEN))
    assert same.rc != 0
    assert any("two different secrets" in msg for _h, _t, msg in same.failed), same.failed


def test_a_tampered_release_is_refused_and_an_upgrade_restarts(
    test_hosts: Callable[..., hostlib.Hosts], tmp_path: Path
) -> None:
    old, new = "v1.33.4+rke2r1", "v1.33.5+rke2r1"
    artifacts = tmp_path / "artifacts"
    old_release = build_release(artifacts / "rke2", old)
    hosts = test_hosts(["srv-1"])
    assert hostlib.run_playbook("rke2.yml", _inventory(hosts, artifacts, old), extravars=_secrets(old_release)).rc == 0
    started = _state(hosts, "srv-1")

    release = build_release(artifacts / "rke2", new)
    pinned = tarball_sha256(release)
    tarball = release / "rke2.linux-amd64.tar.gz"
    tarball.write_bytes(tarball.read_bytes() + b"tampered")
    # the checksum file beside it is replaced too, as whoever replaces the tarball can: only the pin counts
    (release / "sha256sum-amd64.txt").write_text(f"{'f' * 64}  rke2.linux-amd64.tar.gz\n")
    bad = hostlib.run_playbook("rke2.yml", _inventory(hosts, artifacts, new),
                               extravars={**_secrets(old_release), "rke2_sha256_override": pinned})
    assert bad.rc != 0
    (host, _task, msg), = bad.failed
    assert host == "srv-1" and "rke2.linux-amd64.tar.gz of RKE2 v1.33.5+rke2r1" in msg
    assert f"is not the pinned {pinned}" in msg and "nothing was installed" in msg
    assert _state(hosts, "srv-1") == started  # the old release runs on, untouched
    assert hosts.read("srv-1", "/var/lib/aiinfn/rke2.version").decode().strip() == old

    release = build_release(artifacts / "rke2", new)  # the genuine release
    good = hostlib.run_playbook("rke2.yml", _inventory(hosts, artifacts, new), extravars=_secrets(release))
    assert good.rc == 0, good.failed
    after = _state(hosts, "srv-1")
    assert after["version"] == new and after["pid"] != started["pid"]


def test_a_missing_token_or_pin_fails_before_anything_is_installed(
    test_hosts: Callable[..., hostlib.Hosts], tmp_path: Path
) -> None:
    artifacts = tmp_path / "artifacts"
    release = build_release(artifacts / "rke2", versions.RKE2)
    hosts = test_hosts(["srv-1"])
    inv = _inventory(hosts, artifacts, versions.RKE2)
    res = hostlib.run_playbook("rke2.yml", inv, extravars={
        "rke2_agent_token": AGENT_TOKEN, "rke2_sha256_override": tarball_sha256(release)})
    assert res.rc != 0
    assert any("rke2_token" in msg for _h, _t, msg in res.failed), res.failed
    # no pin: versions.py carries none for the stand-in (and none at all until one is verified)
    unpinned = hostlib.run_playbook("rke2.yml", inv, extravars={"rke2_token": SERVER_TOKEN,
                                                                "rke2_agent_token": AGENT_TOKEN})
    assert unpinned.rc != 0
    assert any("no pinned sha256 of rke2.linux-amd64.tar.gz" in msg for _h, _t, msg in unpinned.failed)
    assert not hosts.exists("srv-1", "/usr/local/bin/rke2")
