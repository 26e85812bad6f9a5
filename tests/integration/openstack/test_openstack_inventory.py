"""The dynamic inventory against a real OpenStack: servers booted with exactly what the plan registers give
the inventory the plan renders, as `aiinfn inventory` prints it and as Ansible reads it through
inventory/openstack.py; strays, drifted tags, duplicates and missing nodes are reported, not listed.

The servers are made from the offline plan's registrations (network, subnet, ports on the subnet,
keypair, server group, instances with their metadata, zone, key and scheduler hint), as `pulumi up`
would make them, with one difference the fixture forces: they boot from the image, not from a volume
(Cinder's fake driver cannot fill a volume from an image). Neutron assigns the ports' addresses, as it
does for the stacks' ports (which name only the subnet), so the planned inventory's mocked addresses
are not the cloud's: the inventories are compared with every address left out, and each address is
checked against Nova's view of its server. GPU nodes use the flavor with ``pci_passthrough:alias=a100:2``,
so Nova's scheduler claims two of the fake A100s for each.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openstack_fixture import COMPUTES
from openstack_world import ENV_FILE, INSTANCE, MEMBER_CLOUD, World, boot_plan, delete_servers, wait_active

from aiinfn.config.loader import load
from aiinfn.openstack import connect as osconnect
from aiinfn.openstack import inventory as inv
from aiinfn.openstack.connect import find
from aiinfn.planning import make_plan
from aiinfn.render import inventory_groups, plain, site_vars

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def site(world: World) -> Iterator[dict[str, Any]]:
    """The plan's servers, booted from its registrations in the test project; all removed afterwards."""
    world.prepare()
    # room for the strays the tests add on top of the plan
    world.set_quotas({"instances": 50, "cores": 200, "ram": 512000, "ports": 100})
    conn = world.member()
    try:
        with boot_plan(conn, world.report) as booted:
            yield {"conn": conn, **booted}
    finally:
        world.admin.compute.revert_quota_set(world.project.id)
        conn.close()


def aiinfn(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(world.clouds_yaml)}
    return subprocess.run([sys.executable, "-m", "aiinfn.cli", *args], capture_output=True, text=True,
                          env=env, timeout=300)


def ansible_env(world: World, env_file: Path = ENV_FILE) -> dict[str, str]:
    return {
        **os.environ,
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "OS_CLIENT_CONFIG_FILE": str(world.clouds_yaml),
        "AIINFN_ENV": str(env_file),
        "OS_CLOUD": MEMBER_CLOUD,
        # an inventory source Ansible cannot parse must fail the command, not yield an empty inventory
        "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true",
        "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "true",
        "ANSIBLE_LOCALHOST_WARNING": "false",
        "ANSIBLE_HOST_KEY_CHECKING": "false",
        "ANSIBLE_NOCOLOR": "true",
    }


def ansible_inventory(world: World, source: Path, *args: str) -> Any:
    res = subprocess.run([str(BIN / "ansible-inventory"), "-i", str(source), *args], capture_output=True,
                         text=True, env=ansible_env(world), timeout=300)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def inventory_doc(text: str) -> Any:
    """The YAML inventory as data (Ansible's ``!unsafe`` strings read as plain strings)."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    yaml.constructor.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))
    return yaml.load(text)


def _text(value: Any) -> str:
    """A string as Ansible writes it (plain, or wrapped as an unsafe value in JSON)."""
    return str(value["__ansible_unsafe"]) if isinstance(value, dict) and "__ansible_unsafe" in value else str(value)


def without_addresses(doc: Any) -> tuple[Any, dict[str, str]]:
    """``doc`` with every host's ``ansible_host`` taken out, and those addresses by host."""
    found: dict[str, str] = {}

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            out = {}
            for k, v in node.items():
                if k == "hosts" and isinstance(v, dict):
                    hosts = {}
                    for name, hv in v.items():
                        hv = dict(hv or {})
                        if "ansible_host" in hv:
                            found[name] = _text(hv.pop("ansible_host"))
                        hosts[name] = walk(hv)
                    out[k] = hosts
                elif k == "hostvars" and isinstance(v, dict):
                    hv_out = {}
                    for name, hv in v.items():
                        hv = dict(hv)
                        if "ansible_host" in hv:
                            found[name] = _text(hv.pop("ansible_host"))
                        hv_out[name] = walk(hv)
                    out[k] = hv_out
                else:
                    out[k] = walk(v)
            return out
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(doc), found


def assert_addresses_are_novas(found: dict[str, str], site: dict[str, Any], world: World) -> None:
    """Every node's address is the fixed IPv4 Nova lists for its server on the site network, inside
    the plan's node CIDR."""
    net = inv.site_network(world.report.plan)
    cidr = ipaddress.ip_network(str(world.report.env.network.cidr))
    assert set(found) == {n.name for n in world.report.plan.nodes}
    for name, address in found.items():
        server = world.admin.compute.get_server(site["servers"][name].id)
        fixed = [a["addr"] for a in server.addresses[net] if a["version"] == 4 and a.get("OS-EXT-IPS:type") == "fixed"]
        assert fixed == [address], (name, server.addresses)
        assert ipaddress.ip_address(address) in cidr


# --------------------------------------------------------------------------- the inventory equals the plan's


def test_gpu_servers_are_scheduled_onto_the_fake_gpus(site: dict[str, Any], world: World) -> None:
    gpu_nodes = [n for n in world.report.plan.nodes if n.accelerator]
    assert gpu_nodes, "the fixture environment must have GPU nodes"
    for node in gpu_nodes:
        server = world.admin.compute.get_server(site["servers"][node.name].id)
        assert server.status == "ACTIVE" and server.compute_host in COMPUTES
        assert server.flavor["extra_specs"]["pci_passthrough:alias"] == "a100:2"


def test_servers_carry_the_tags_the_plan_assigns(site: dict[str, Any], world: World) -> None:
    plan = world.report.plan
    registered = {r.inputs["name"]: r.inputs["metadata"] for r in world.report.run.by_type(INSTANCE)}
    for node in plan.nodes:
        assert inv.expected_tags(plan, node) == registered[node.name]  # the library expects what stacks assign
        assert site["servers"][node.name].metadata == registered[node.name]


def test_the_grouping_from_tags_is_the_plans(site: dict[str, Any], world: World) -> None:
    conn = osconnect.connect(MEMBER_CLOUD, timeout=10)
    try:
        found = {s.name: s for s in inv.site_servers(conn, "fixture")}
    finally:
        conn.close()
    plan = world.report.plan
    assert set(found) == {n.name for n in plan.nodes}
    assert inv.groups_from_tags({n.name: found[n.name].metadata for n in plan.nodes}) == inventory_groups(plan)
    assert inventory_groups(plan)["accel_a100_80gb"] == ["gpu-a100-01", "gpu-a100-02"]


def test_inventory_command_prints_the_plans_inventory(site: dict[str, Any], world: World) -> None:
    res = aiinfn(world, "inventory", str(ENV_FILE))
    assert res.returncode == 0, res.stderr
    live, addresses = without_addresses(inventory_doc(res.stdout))
    planned, mocked = without_addresses(inventory_doc(world.report.artifacts["ansible/inventory.yaml"]))
    assert live == planned
    assert set(mocked) == set(addresses)
    assert_addresses_are_novas(addresses, site, world)
    assert res.stderr.strip() == ""


def test_ansible_reads_the_script_as_it_reads_the_plans_inventory(
    site: dict[str, Any], world: World, tmp_path: Path
) -> None:
    planned = tmp_path / "inventory.yaml"
    planned.write_text(world.report.artifacts["ansible/inventory.yaml"])
    script = ROOT / "inventory" / "openstack.py"
    dynamic, addresses = without_addresses(ansible_inventory(world, script, "--list"))
    assert dynamic == without_addresses(ansible_inventory(world, planned, "--list"))[0]
    assert_addresses_are_novas(addresses, site, world)
    assert _text(dynamic["_meta"]["hostvars"]["gpu-a100-02"]["aiinfn_mig_config"]) == "aiinfn-a100-80gb-1g.10gbx7"
    one = ansible_inventory(world, script, "--host", "gpu-a100-02")
    assert _text(one.pop("ansible_host")) == addresses["gpu-a100-02"]
    from_plan = ansible_inventory(world, planned, "--host", "gpu-a100-02")
    from_plan.pop("ansible_host")
    assert one == from_plan


def test_cli_json_is_the_script_list(site: dict[str, Any], world: World) -> None:
    res = aiinfn(world, "inventory", str(ENV_FILE), "-o", "json")
    assert res.returncode == 0, res.stderr
    script = subprocess.run([str(ROOT / "inventory" / "openstack.py"), "--list"], capture_output=True, text=True,
                            env=ansible_env(world), timeout=300)
    assert script.returncode == 0, script.stderr
    assert json.loads(res.stdout) == json.loads(script.stdout)
    doc = plain(json.loads(script.stdout))  # strings come as Ansible's unsafe markers
    assert doc["all"]["vars"] == site_vars(make_plan(load(ENV_FILE)))
    assert doc["all"]["vars"]["aiinfn_site"] == "fixture" and doc["all"]["vars"]["ansible_user"] == "aiinfn"
    assert doc["role_gpu"]["hosts"] == ["gpu-a100-01", "gpu-a100-02"]


def test_ansible_playbook_runs_on_the_dynamic_inventory(site: dict[str, Any], world: World, tmp_path: Path) -> None:
    playbook = tmp_path / "check.yml"
    playbook.write_text(
        "- name: GPU nodes as the roles see them\n"
        "  hosts: accel_a100_80gb\n"
        "  gather_facts: false\n"
        "  connection: local\n"
        "  tasks:\n"
        "    - name: Host variables come from the plan, the address from the cloud\n"
        "      ansible.builtin.assert:\n"
        "        that:\n"
        "          - aiinfn_role == 'gpu'\n"
        "          - aiinfn_accelerator == 'A100-80GB' and aiinfn_accelerator_count == 2\n"
        "          - aiinfn_node_labels['nvidia.com/mig.config'] == aiinfn_mig_config\n"
        "          - ansible_host is match('10\\.230\\.0\\.')\n"
        "          - aiinfn_site == 'fixture'\n"
    )
    res = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(ROOT / "inventory" / "openstack.py"),
                          str(playbook)], capture_output=True, text=True, env=ansible_env(world), timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    recap = res.stdout[res.stdout.index("PLAY RECAP"):]
    assert "gpu-a100-01" in recap and "gpu-a100-02" in recap and "k8s-server-01" not in recap
    assert "failed=0" in recap


# --------------------------------------------------------------------------- reported, not guessed


def test_strays_drift_duplicates_and_missing_nodes_are_reported(
    site: dict[str, Any], world: World, tmp_path: Path
) -> None:
    conn = site["conn"]
    plan = world.report.plan
    small = find(conn.compute.find_flavor, "it.cpu-1c-2g")
    tags = inv.expected_tags(plan, plan.node("k8s-agent-01"))
    extra = [
        conn.compute.create_server(name="gpu-a100-99", flavor_id=small.id, image_id=site["image"].id,
                                   networks="none", metadata=tags),
        conn.compute.create_server(name="other-site-01", flavor_id=small.id, image_id=site["image"].id,
                                   networks="none", metadata={**tags, "aiinfn:site": "elsewhere"}),
        conn.compute.create_server(name="nfs-01", flavor_id=small.id, image_id=site["image"].id,
                                   networks="none", metadata=inv.expected_tags(plan, plan.node("nfs-01"))),
    ]
    agent = site["servers"]["k8s-agent-01"]
    grown = tmp_path / "grown.yaml"  # one more agent in the environment, not yet applied
    grown.write_text(json.dumps({"extends": str(ENV_FILE), "node_pools": {"agent": {"count": 2}}}))
    try:
        wait_active(conn, extra)
        conn.compute.set_server_metadata(agent, **{"aiinfn:pool": "old-agents"})
        res = aiinfn(world, "inventory", str(grown))
        assert res.returncode == 0, res.stderr
        listed = set(make_inventory_hosts(res.stdout))
        assert listed == {"k8s-server-01", "gpu-a100-01", "gpu-a100-02", "bastion-01"}
        notes = [line for line in res.stderr.splitlines() if line.strip()]
        assert all(line.startswith("note: ") for line in notes), res.stderr
        text = "\n".join(notes)
        assert "server gpu-a100-99 is tagged for site fixture but not in the plan: left out" in text
        assert "nfs-01 names more than one server of site fixture: left out" in text
        assert ("server k8s-agent-01 has tags other than the plan's (aiinfn:pool='old-agents', plan 'agent')"
                in text)
        assert "planned node k8s-agent-02 has no server in the cloud" in text
        assert "other-site-01" not in text + res.stdout
        assert len(notes) == 4
        strict = aiinfn(world, "inventory", str(grown), "--strict")
        assert strict.returncode == 1 and strict.stdout == res.stdout
    finally:
        conn.compute.set_server_metadata(agent, **{"aiinfn:pool": "agent"})
        delete_servers(conn, extra)


def make_inventory_hosts(text: str) -> list[str]:
    from ruamel.yaml import YAML

    data = YAML(typ="safe", pure=True).load(text)
    return list((data["all"].get("hosts") or {}).keys())


def test_inventory_of_another_environment_lists_nothing(site: dict[str, Any], world: World, tmp_path: Path) -> None:
    """Servers are found by the site tag alone: another site's environment on the same project sees none."""
    other = tmp_path / "other.yaml"
    other.write_text(json.dumps({"extends": str(ENV_FILE), "site": {"name": "elsewhere"}}))
    plan = make_plan(load(other))
    res = aiinfn(world, "inventory", str(other), "-o", "json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["_meta"]["hostvars"] == {}
    missing = [line for line in res.stderr.splitlines() if "has no server in the cloud" in line]
    assert len(missing) == len(plan.nodes)
