"""`aiinfn bootstrap` refuses, before any host is touched, what would go wrong: a missing secret, an add-node
or remove-node run without a limit or aimed at the first server or a stateful node, a readable secrets file,
an unknown playbook. Run as real processes where the exit code and the single line matter."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aiinfn.ansible import checks as bs
from aiinfn.config.loader import load
from aiinfn.planning import Plan, make_plan

ROOT = Path(__file__).resolve().parents[2]
HOSTS_SITE = ROOT / "tests" / "support" / "hosts" / "site-env.yaml"


@pytest.fixture(scope="module")
def cnaf_plan() -> Plan:
    return make_plan(load("cnaf"))


def test_site_needs_the_join_token_and_the_borg_passphrase(cnaf_plan: Plan) -> None:
    needs = {n.variable: n.name for n in bs.secrets_needed(cnaf_plan.env, "site")}
    assert needs["rke2_token"] == "rke2-token"
    assert needs["rke2_agent_token"] == "rke2-agent-token"  # agents get only this one (issue 10)
    assert needs["borgbackup_passphrase"] == cnaf_plan.env.storage.backup.passphrase_secret
    assert "borgbackup_passphrase" not in {n.variable for n in bs.secrets_needed(cnaf_plan.env, "add-node")}
    assert bs.secrets_needed(cnaf_plan.env, "mig") == []


def test_node_mounts_need_the_nodes_client_secret_and_refresh_token() -> None:
    """sts-wire on a node cannot start without a refresh token (it would prompt for a login on a terminal): a
    site with S3 node mounts hands the role both the client secret and the refresh token."""
    env = load(str(HOSTS_SITE))
    assert env.storage.s3 is not None and env.storage.s3.node_mounts
    needs = {n.variable: n.name for n in bs.secrets_needed(env, "site")}
    assert needs["sts_wire_client_secret"] == env.storage.s3.client_secret
    assert needs["sts_wire_refresh_token"] == "sts-wire-refresh-token"
    assert "sts_wire_refresh_token" in {n.variable for n in bs.secrets_needed(env, "add-node")}
    assert "sts_wire_refresh_token" not in {n.variable for n in bs.secrets_needed(load("cnaf"), "site")}


def test_role_defaults_agree_with_what_the_platform_expects() -> None:
    """The NFS role makes the areas directory the hub's provisioner works in, owned by the identity it switches to;
    a drift between the role's defaults and the product's constants would leave notebooks without homes."""
    import yaml

    from aiinfn.hub import identity, provisioner
    from aiinfn.services import jupyterhub, nfs

    defaults = yaml.safe_load((ROOT / "roles" / "nfs_server" / "defaults" / "main.yml").read_text())
    assert defaults["nfs_server_areas_dir"] == jupyterhub.AREAS_DIR
    assert defaults["nfs_server_volumes_dir"] == nfs.VOLUMES_DIR != jupyterhub.AREAS_DIR  # the provisioner's only
    assert defaults["nfs_server_areas_uid"] == identity.AREAS_UID == provisioner.AREAS_UID
    assert "root_squash" in defaults["nfs_server_options"].split(",")


def test_secrets_come_from_the_environment_then_the_file_then_the_stack(tmp_path: Path, cnaf_plan: Plan) -> None:
    needs = bs.secrets_needed(cnaf_plan.env, "site")
    f = tmp_path / "secrets.yaml"
    f.write_text("rke2-token: from-file-token-0123456789\nborg-passphrase: from-file-passphrase\n")
    f.chmod(0o600)
    got = bs.resolve_secrets(needs, secrets_file=f, environ={"AIINFN_SECRET_RKE2_TOKEN": "from-env-token"},
                             stack_lookup=lambda name: "from-stack")
    assert set(got) == {n.variable for n in needs}
    assert {k: got[k] for k in ("rke2_token", "borgbackup_passphrase", "rke2_agent_token")} == {
        "rke2_token": "from-env-token", "borgbackup_passphrase": "from-file-passphrase",
        "rke2_agent_token": "from-stack"}
    only_stack = bs.resolve_secrets(needs, environ={}, stack_lookup=lambda name: f"stack-{name}")
    assert only_stack["rke2_token"] == "stack-rke2-token"


def test_a_missing_secret_is_named_with_where_to_put_it(cnaf_plan: Plan) -> None:
    needs = bs.secrets_needed(cnaf_plan.env, "site")
    with pytest.raises(bs.BootstrapError) as e:
        bs.resolve_secrets(needs, environ={"AIINFN_SECRET_RKE2_TOKEN": "x" * 20}, stack_lookup=lambda n: None)
    msg = str(e.value)
    assert "borg-passphrase" in msg and "rke2-token" not in msg and "--secrets-file" in msg


def test_a_secrets_file_others_can_read_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "secrets.yaml"
    f.write_text("rke2-token: abc\n")
    f.chmod(0o644)
    with pytest.raises(bs.BootstrapError, match="chmod 600"):
        bs.read_secrets_file(f)


@pytest.mark.parametrize(
    ("playbook", "limit", "fragment"),
    [
        ("add-node", None, "needs --limit"),
        ("remove-node", "", "needs --limit"),
        ("add-node", "k8s-server-01", "first server"),
        ("remove-node", "nfs-01", "nfs node"),
        ("remove-node", "backup-01", "backup node"),
        ("add-node", "gpu-h100-09", "not a node of environment cnaf"),
        ("add-node", "gpu-*", "no patterns"),
    ],
)
def test_add_and_remove_node_are_limited_to_cluster_nodes(cnaf_plan: Plan, playbook: str, limit: str | None,
                                                          fragment: str) -> None:
    with pytest.raises(bs.BootstrapError, match=fragment):
        bs.check_limit(cnaf_plan, playbook, limit)


def test_a_gpu_node_may_be_added_or_removed(cnaf_plan: Plan) -> None:
    bs.check_limit(cnaf_plan, "add-node", "gpu-a100-01")
    bs.check_limit(cnaf_plan, "remove-node", "gpu-t4-02,gpu-t4-01")
    bs.check_limit(cnaf_plan, "site", None)


def _aiinfn(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AIINFN_SECRET_")}
    return subprocess.run([sys.executable, "-m", "aiinfn.cli", *args], capture_output=True, text=True,
                          env={**clean, **(env or {}), "PATH": "/usr/bin:/bin"}, check=False, timeout=120)


def test_cli_refuses_a_run_without_secrets_before_touching_anything(tmp_path: Path) -> None:
    inv = tmp_path / "inventory.yaml"
    inv.write_text("all:\n  hosts: {}\n")
    res = _aiinfn("bootstrap", "cnaf", "-i", str(inv))
    assert res.returncode == 2, res
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "rke2-token" in lines[0] and "Traceback" not in res.stderr


def test_cli_refuses_add_node_without_limit_and_an_unknown_playbook(tmp_path: Path) -> None:
    res = _aiinfn("bootstrap", "cnaf", "--playbook", "add-node")
    assert res.returncode == 2 and "--limit" in res.stderr
    res = _aiinfn("bootstrap", "cnaf", "--playbook", "upgrade")
    assert res.returncode == 2 and "not one of" in res.stderr


ROLE_INPUTS = """\
- name: Inputs the playbooks compute for the roles
  hosts: all
  gather_facts: false
  connection: local
  tasks:
    - name: Write them down
      ansible.builtin.copy:
        dest: "{{ out_dir }}/{{ inventory_hostname }}.json"
        mode: "0600"
        content: >-
          {{ {'cluster_cidr': rke2_cluster_cidr, 'service_cidr': rke2_service_cidr, 'rke2_sha256': rke2_sha256,
              'sts_wire_sha256': sts_wire_sha256, 'xrt_sha256': fpga_xrt_sha256,
              'nfs_clients': nfs_server_clients, 'nfs_mount': nfs_client_mount_path,
              'nfs_retired': nfs_client_retired_mount_paths} | to_json }}
"""


def test_the_environments_networks_and_the_pins_reach_the_roles(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    """Issue 13's newcomer bug: network.pod_cidr and service_cidr were validated but never reached RKE2. Rendered
    inventory -> playbooks/group_vars -> role inputs, evaluated by ansible-playbook itself: the environment's
    networks become RKE2's, each artifact's pin in versions.py is found under the key the playbooks look up, NFS
    is exported to each cluster node's address (not the NFS or backup node's) and the export root is mounted on
    no node."""
    from aiinfn import versions
    from aiinfn.ansible import runner
    from aiinfn.config.models import Role
    from aiinfn.render import ansible_inventory

    env = load("cnaf")
    env = env.model_copy(update={"network": env.network.model_copy(
        update={"pod_cidr": "10.91.0.0/16", "service_cidr": "10.92.0.0/16"})})
    plan = make_plan(env)
    pins = {"rke2": "a" * 64, "sts-wire": "b" * 64, "xrt": "c" * 64}
    for component, files in versions.ARTIFACT_SHA256.items():
        for key in files:
            monkeypatch.setitem(files, key, pins[component])
    addresses = {n.name: f"10.200.{i // 250}.{i % 250 + 2}" for i, n in enumerate(plan.nodes)}
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(ansible_inventory(plan, addresses))
    play_dir = tmp_path / "play"
    play_dir.mkdir()
    (play_dir / "group_vars").symlink_to(ROOT / "playbooks" / "group_vars")
    (play_dir / "inputs.yml").write_text(ROLE_INPUTS)
    out = tmp_path / "out"
    out.mkdir()
    fpga = next(n.name for n in plan.nodes if n.role is Role.FPGA)
    server = next(n.name for n in plan.nodes if n.role is Role.SERVER)
    bin_dir = Path(sys.executable).parent
    res = subprocess.run(
        [str(bin_dir / "ansible-playbook"), "-i", str(inventory), str(play_dir / "inputs.yml"),
         "--limit", f"{server},{fpga}", "-e", json.dumps({"out_dir": str(out),
                                                           "ansible_python_interpreter": sys.executable})],
        capture_output=True, text=True, cwd=tmp_path, timeout=300,
        env={**os.environ, **runner.ansible_env(), "ANSIBLE_HOME": str(tmp_path / ".ansible")})
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    got = json.loads((out / f"{server}.json").read_text())
    assert (got["cluster_cidr"], got["service_cidr"]) == ("10.91.0.0/16", "10.92.0.0/16")
    assert got["rke2_sha256"] == "a" * 64 and got["sts_wire_sha256"] == "b" * 64
    xrt_file = f"{versions.XRT}/xrt_{versions.XRT}_12-amd64-xrt.deb"  # roles/fpga_xrt's package name
    assert json.loads((out / f"{fpga}.json").read_text())["xrt_sha256"] == {xrt_file: "c" * 64}
    cluster = {Role.SERVER, Role.AGENT, Role.GPU, Role.FPGA}
    assert sorted(got["nfs_clients"]) == sorted(addresses[n.name] for n in plan.nodes if n.role in cluster)
    assert got["nfs_mount"] == "" and got["nfs_retired"] == [env.storage.nfs.export_path]


def test_retention_and_monitoring_runs_get_their_secrets_and_nothing_else(root: Path) -> None:
    """`aiinfn bootstrap -p backup-prune` hands over the Borg passphrase (prune runs where it is, never on the
    backup host); `-p monitoring` Grafana's IAM client secret; neither gets a cluster token."""
    env = load("cnaf", root=root)
    prune = {n.variable for n in bs.secrets_needed(env, "backup-prune")}
    monitoring = {n.variable for n in bs.secrets_needed(env, "monitoring")}
    assert prune == {"borgbackup_passphrase"}
    assert monitoring == {"grafana_iam_client_secret"}
