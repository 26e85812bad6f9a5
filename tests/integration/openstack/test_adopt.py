"""`aiinfn adopt` against a real OpenStack: a site built by hand (through openstacksdk, with names, flavors
and metadata that partly differ from the environment) is matched to the plan's resources, the bulk
import file has exactly the plan's types, names and parents (checked against Pulumi's import file
format), the reported differences are exactly the ones made by hand, each with its effect, and the
cloud is unchanged afterwards (a listing of everything the project holds, with update times, before
and after).

The hand-built site (fixture-env.yaml's site ``fixture``):

* network ``legacy-nodes`` (the plan says ``aiinfn-fixture``: mapped), its subnet with the plan's CIDR
  but another name, no router;
* security group ``aiinfn-fixture-cluster`` with the plan's kubelet rule and an SSH rule the plan
  lacks; no other group;
* keypair ``aiinfn-fixture`` with the environment's public key;
* ``k8s-server-01`` as planned (flavor, metadata, key), outside the anti-affinity group;
* ``gpu-a100-01`` with the right flavor, but ``aiinfn:pool=gpu`` and an extra ``owner`` key;
* ``old-gpu-2`` (the mapping names it for ``gpu-a100-02``) on the CPU flavor;
* ``nfs-01`` booted without a key, with the stateful volume as ``nfs-export`` (mapped), 30 GB where
  the plan says 20, attached;
* ``scratch-01`` tagged for the site, which no node matches.

Gaps, named: `pulumi import` itself cannot run here (no Pulumi CLI), so the import file is checked
against the format's rules as the CLI's reader applies them (types, unique names, IDs except for
components, every parent an entry of the file) and against the plan's URNs, rebuilt from the file the
way the engine builds them. Servers boot from the image (Cinder's fake driver cannot fill a volume).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from openstack_world import ENV_FILE, World, delete_servers, wait_active

from aiinfn.adopt import adopt
from aiinfn.adopt.match import INSTANCE, PORT, RULE, SECGROUP, VOLUME
from aiinfn.config.loader import project_root

pytestmark = pytest.mark.integration

SITE = "fixture"
MAPPING = "servers:\n  gpu-a100-02: old-gpu-2\nvolumes:\n  aiinfn-fixture-nfs-data: nfs-export\nnetwork: legacy-nodes\n"


def snapshot(conn: Any) -> dict[str, Any]:
    """Everything the project holds that adopt reads, with update times: equal before and after means unchanged."""
    def rows(items: Any, *fields: str) -> list[tuple[Any, ...]]:
        return sorted(tuple(json.dumps(getattr(i, f, None), sort_keys=True, default=str) for f in fields)
                      for i in items)

    return {
        "servers": rows(conn.compute.servers(details=True), "id", "name", "status", "flavor", "metadata",
                        "key_name", "updated_at", "attached_volumes"),
        "ports": rows(conn.network.ports(), "id", "name", "security_group_ids", "fixed_ips", "tags", "updated_at",
                      "device_id"),
        "volumes": rows(conn.block_storage.volumes(details=True), "id", "name", "size", "status", "metadata",
                        "updated_at", "attachments"),
        "networks": rows(conn.network.networks(), "id", "name", "tags", "updated_at"),
        "subnets": rows(conn.network.subnets(), "id", "name", "cidr", "updated_at"),
        "routers": rows(conn.network.routers(), "id", "name", "updated_at"),
        "security_groups": rows(conn.network.security_groups(), "id", "name", "security_group_rules", "updated_at"),
        "keypairs": rows(conn.compute.keypairs(), "name", "public_key"),
        "server_groups": rows(conn.compute.server_groups(), "id", "name", "member_ids"),
    }


@pytest.fixture(scope="module")
def handmade(world: World) -> Iterator[dict[str, Any]]:
    world.prepare()
    world.set_quotas({"instances": 50, "cores": 200, "ram": 512000, "ports": 100, "volumes": 20,
                      "gigabytes": 1000, "security_groups": 20, "security_group_rules": 200})
    conn = world.member()
    env = world.report.env
    made: dict[str, list[Any]] = {"servers": [], "ports": [], "volumes": [], "groups": [], "keypairs": [],
                                  "networks": []}
    try:
        net = conn.network.create_network(name="legacy-nodes")
        made["networks"].append(net)
        subnet = conn.network.create_subnet(network_id=net.id, name="legacy-subnet", ip_version=4,
                                            cidr=str(env.network.cidr), enable_dhcp=True,
                                            dns_nameservers=[str(a) for a in env.site.dns_nameservers])
        sg = conn.network.create_security_group(name="aiinfn-fixture-cluster", description="aiinfn fixture: cluster")
        made["groups"].append(sg)
        conn.network.create_security_group_rule(security_group_id=sg.id, direction="ingress", ethertype="IPv4",
                                                protocol="tcp", port_range_min=10250, port_range_max=10250,
                                                remote_group_id=sg.id, description="aiinfn kubelet")
        conn.network.create_security_group_rule(security_group_id=sg.id, direction="ingress", ethertype="IPv4",
                                                protocol="tcp", port_range_min=22, port_range_max=22,
                                                remote_ip_prefix="0.0.0.0/0")
        made["keypairs"].append(conn.compute.create_keypair(name="aiinfn-fixture",
                                                            public_key=env.site.ssh_public_key))
        image = conn.image.find_image(env.site.image)
        flavor = {n: conn.compute.find_flavor(n) for n in env.flavors}
        md = {n.name: dict(world.report.run.get(f"::{SITE}-{n.name}-vm").inputs["metadata"])
              for n in world.report.plan.nodes}
        gpu_md = {**md["gpu-a100-01"], "aiinfn:pool": "gpu", "owner": "alice"}
        servers = [  # (name, flavor, metadata, key, port name, security groups)
            ("k8s-server-01", "it.cpu-2c-4g", md["k8s-server-01"], "aiinfn-fixture", "k8s-server-01", [sg.id]),
            ("gpu-a100-01", "it.gpu-a100x2", gpu_md, "aiinfn-fixture", "gpu-a100-01", [sg.id]),
            ("old-gpu-2", "it.cpu-2c-4g", md["gpu-a100-02"], "aiinfn-fixture", "old-gpu-2-port", [sg.id]),
            ("nfs-01", "it.cpu-2c-4g", md["nfs-01"], None, "nfs-01", []),
            ("scratch-01", "it.cpu-1c-2g", {"aiinfn:site": SITE}, None, "scratch-01", []),
        ]
        for name, fl, metadata, key, port_name, groups in servers:
            port = conn.network.create_port(network_id=net.id, name=port_name, fixed_ips=[{"subnet_id": subnet.id}],
                                            security_group_ids=groups)
            made["ports"].append(port)
            extra = {"key_name": key} if key else {}
            made["servers"].append(conn.compute.create_server(
                name=name, flavor_id=flavor[fl].id, image_id=image.id, networks=[{"port": port.id}],
                metadata=metadata, availability_zone="nova", **extra))
        active = wait_active(conn, made["servers"])
        vol = conn.block_storage.create_volume(name="nfs-export", size=30, volume_type="__DEFAULT__",
                                               availability_zone="nova",
                                               metadata={"aiinfn:site": SITE, "aiinfn:stateful": "true",
                                                         "aiinfn:mount": "/export/platform"})
        made["volumes"].append(vol)
        conn.block_storage.wait_for_status(vol, status="available", wait=120)
        conn.compute.create_volume_attachment(active["nfs-01"], volume_id=vol.id)
        conn.block_storage.wait_for_status(vol, status="in-use", wait=120)
        yield {"conn": conn, "servers": active, "network": net, "subnet": subnet, "sg": sg, "volume": vol}
    finally:
        for s in made["servers"]:
            for a in conn.compute.volume_attachments(s):
                conn.compute.delete_volume_attachment(a, s)
        for v in made["volumes"]:
            conn.block_storage.wait_for_status(conn.block_storage.get_volume(v), status="available", wait=120)
            conn.block_storage.delete_volume(v, ignore_missing=True)
        delete_servers(conn, made["servers"])
        for p in made["ports"]:
            conn.network.delete_port(p, ignore_missing=True)
        for g in made["groups"]:
            conn.network.delete_security_group(g, ignore_missing=True)
        for k in made["keypairs"]:
            conn.compute.delete_keypair(k, ignore_missing=True)
        for n in made["networks"]:
            conn.network.delete_network(n, ignore_missing=True)
        world.admin.compute.revert_quota_set(world.project.id)
        conn.close()


@pytest.fixture(scope="module")
def adopted(handmade: dict[str, Any], world: World, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("adopt")
    mapping = tmp / "mapping.yaml"
    mapping.write_text(MAPPING)
    before = snapshot(handmade["conn"])
    import os

    os.environ["OS_CLIENT_CONFIG_FILE"] = str(world.clouds_yaml)
    result = adopt(str(ENV_FILE), "aiinfn-it", mapping=mapping, build_dir=tmp / "build", stack_dir=tmp)
    after = snapshot(handmade["conn"])
    return {"result": result, "before": before, "after": after, "tmp": tmp}


def test_the_cloud_is_unchanged(adopted: dict[str, Any]) -> None:
    assert adopted["before"] == adopted["after"]
    assert adopted["before"]["servers"], "the listing saw the hand-built servers"


def test_mapping_matches_names_and_hand_picked_names(adopted: dict[str, Any], handmade: dict[str, Any]) -> None:
    a = adopted["result"].adoption
    servers = handmade["servers"]
    got = {(r.type, r.name): (r.id, r.how) for r in a.adopted}
    nodes = ("k8s-server-01", "gpu-a100-01", "gpu-a100-02", "nfs-01")
    assert {n: got[(INSTANCE, f"{SITE}-{n}-vm")] for n in nodes} == {
        "k8s-server-01": (servers["k8s-server-01"].id, "name"),
        "gpu-a100-01": (servers["gpu-a100-01"].id, "name"),
        "gpu-a100-02": (servers["old-gpu-2"].id, "mapping"),
        "nfs-01": (servers["nfs-01"].id, "name"),
    }
    # each node's port is its server's own port, whatever its name
    ports = {r.name: r.live_name for r in a.adopted if r.type == PORT}
    assert ports == {f"{SITE}-k8s-server-01-port": "k8s-server-01", f"{SITE}-gpu-a100-01-port": "gpu-a100-01",
                     f"{SITE}-gpu-a100-02-port": "old-gpu-2-port", f"{SITE}-nfs-01-port": "nfs-01"}
    assert got[(VOLUME, f"{SITE}-stateful-nfs-data")] == (handmade["volume"].id, "mapping")
    attach = got[("openstack:compute/volumeAttach:VolumeAttach", f"{SITE}-stateful-nfs-data-attach")]
    assert attach[0] == f"{servers['nfs-01'].id}/{handmade['volume'].id}"
    assert got[("openstack:networking/network:Network", f"{SITE}-network-net")] == (handmade["network"].id, "mapping")
    assert got[("openstack:networking/subnet:Subnet", f"{SITE}-network-subnet")] == (handmade["subnet"].id, "cidr")
    assert got[(SECGROUP, f"{SITE}-secgroups-cluster")] == (handmade["sg"].id, "name")
    assert {n for t, n in got if t == RULE} == {f"{SITE}-secgroups-cluster-kubelet"}
    assert got[("openstack:compute/keypair:Keypair", f"{SITE}-keypair")] == ("aiinfn-fixture", "name")
    # what is not there is created by up; the stray is left alone
    missing = {n for t, n in a.missing if t != RULE}
    assert missing == {f"{SITE}-network-router", f"{SITE}-network-router-if", f"{SITE}-servers-antiaffinity",
                       f"{SITE}-k8s-agent-01-vm", f"{SITE}-k8s-agent-01-port", f"{SITE}-bastion-01-vm",
                       f"{SITE}-bastion-01-port", f"{SITE}-k8s-agent-01-fip", f"{SITE}-k8s-agent-01-fip-assoc",
                       f"{SITE}-bastion-01-fip", f"{SITE}-bastion-01-fip-assoc",
                       *(f"{SITE}-secgroups-{g}" for g in ("servers", "ingress", "bastion", "internal-ssh", "nfs",
                                                           "backup"))}
    assert a.unmatched_servers == ["scratch-01"]


def test_differences_are_exactly_the_hand_made_ones(adopted: dict[str, Any]) -> None:
    a = adopted["result"].adoption
    got = {(d.resource, d.attribute, json.dumps(d.live), json.dumps(d.plan), d.effect)
           for d in a.differences if d.effect != "create"}
    s = SITE
    cluster = "aiinfn-fixture-cluster"
    expected = {
        (f"{s}-network-net", "name", '"legacy-nodes"', '"aiinfn-fixture"', "update"),
        (f"{s}-network-net", "tags", "[]", '["aiinfn:site=fixture"]', "update"),
        (f"{s}-network-subnet", "name", '"legacy-subnet"', '"aiinfn-fixture-nodes"', "update"),
        (f"{s}-network-subnet", "tags", "[]", '["aiinfn:site=fixture"]', "update"),
        (f"{s}-secgroups-cluster", "tags", "[]", '["aiinfn:site=fixture"]', "update"),
        (f"{s}-secgroups-cluster", "rule", '"ingress IPv4 tcp 22 from 0.0.0.0/0"', "null", "kept"),
        # k8s-server-01: outside the anti-affinity group (Nova sets it at boot only)
        (f"{s}-k8s-server-01-vm", "serverGroup", "null", '"aiinfn-fixture-servers"', "ignored"),
        # gpu-a100-01: a wrong tag and a key the plan does not set
        (f"{s}-gpu-a100-01-vm", "metadata.aiinfn:pool", '"gpu"', '"a100"', "update"),
        (f"{s}-gpu-a100-01-vm", "metadata.owner", '"alice"', "null", "update"),
        # old-gpu-2: another name and the CPU flavor
        (f"{s}-gpu-a100-02-vm", "name", '"old-gpu-2"', '"gpu-a100-02"', "update"),
        (f"{s}-gpu-a100-02-vm", "flavor", '"it.cpu-2c-4g"', '"it.gpu-a100x2"', "resize"),
        (f"{s}-gpu-a100-02-port", "name", '"old-gpu-2-port"', '"gpu-a100-02"', "update"),
        # nfs-01: no key
        (f"{s}-nfs-01-vm", "keyPair", "null", '"aiinfn-fixture"', "replace"),
        (f"{s}-stateful-nfs-data", "name", '"nfs-export"', '"aiinfn-fixture-nfs-data"', "update"),
        (f"{s}-stateful-nfs-data", "size", "30", "20", "replacement required"),
    }
    # every port: the plan's groups (only `cluster` exists here) and tags
    for node, groups in (("k8s-server-01", ["internal-ssh", "cluster", "servers"]),
                         ("gpu-a100-01", ["internal-ssh", "cluster"]), ("gpu-a100-02", ["internal-ssh", "cluster"]),
                         ("nfs-01", ["internal-ssh", "nfs"])):
        have = [cluster] if node != "nfs-01" else []
        want = sorted(f"aiinfn-fixture-{g}" for g in groups)
        expected.add((f"{s}-{node}-port", "securityGroupIds", json.dumps(have), json.dumps(want), "update"))
        expected.add((f"{s}-{node}-port", "tags", "[]",
                      json.dumps(sorted(["aiinfn:site=fixture", f"aiinfn:node={node}"])), "update"))
    assert got == expected
    # the replacements, marked: the keyless server and the volume Cinder cannot shrink
    assert sorted((d.resource, d.attribute) for d in a.replacements()) == [
        (f"{s}-nfs-01-vm", "keyPair"), (f"{s}-stateful-nfs-data", "size")]
    # rules the group lacks are created by up, one difference each
    created = {d.resource for d in a.differences if d.effect == "create"}
    assert created == {f"{s}-secgroups-cluster-{k}" for k in ("vxlan", "cni-health", "nodeports", "node-exporter",
                                                               "icmp")}


def test_import_file_is_pulumi_bulk_format_with_the_plans_urns(adopted: dict[str, Any], world: World) -> None:
    doc = json.loads(adopted["result"].import_path.read_text())
    assert set(doc) == {"resources"}
    entries = doc["resources"]
    names = [e["name"] for e in entries]
    assert len(names) == len(set(names)), "names are unique in the file"
    allowed = {"type", "name", "logicalName", "id", "parent", "component"}
    by_name = {e["name"]: e for e in entries}
    for e in entries:
        assert set(e) <= allowed and e["type"] and e["name"]
        assert ("id" in e) != bool(e.get("component")), "an ID for every resource, none for a component"
        if "parent" in e:
            assert e["parent"] in by_name, "every parent is an entry of the file"

    # the URN the engine builds from each entry (parent type chain, then the logical name) is the plan's
    def urn(e: dict[str, Any]) -> str:
        chain = [e["type"]]
        p = e.get("parent")
        while p:
            chain.insert(0, by_name[p]["type"])
            p = by_name[p].get("parent")
        return f"urn:pulumi:{world.report.stack}::aiinfn::{'$'.join(chain)}::{e['logicalName']}"

    plan = {r.urn: r for r in world.report.run.registrations}
    for e in entries:
        assert urn(e) in plan, e
        assert plan[urn(e)].custom != bool(e.get("component"))
    adopted_ids = {a.urn: a.id for a in adopted["result"].adoption.adopted}
    assert {urn(e): e["id"] for e in entries if "id" in e} == adopted_ids


def test_stack_file_sets_the_import_ids(adopted: dict[str, Any]) -> None:
    from ruamel.yaml import YAML

    stack = adopted["result"].stack_file
    assert stack == adopted["tmp"] / "Pulumi.openstack-fixture.yaml"
    config = YAML(typ="safe").load(stack.read_text())["config"]
    assert config["aiinfn:imports"] == adopted["result"].adoption.imports()
    # a path relative to the project, never the checkout's absolute path
    assert config["aiinfn:environment"] == str(ENV_FILE.relative_to(project_root()))


def test_adopt_cli_reports_and_exits_on_replacements(handmade: dict[str, Any], world: World, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    mapping = tmp_path / "m.yaml"
    mapping.write_text(MAPPING)
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(world.clouds_yaml), "COLUMNS": "200"}
    res = subprocess.run([sys.executable, "-m", "aiinfn.cli", "adopt", str(ENV_FILE), "--cloud", "aiinfn-it",
                          "--mapping", str(mapping), "--build-dir", str(tmp_path / "b"), "--no-write-stack",
                          "--exit-code", "-o", "json"], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 2, res.stderr
    doc = json.loads(res.stdout)
    assert doc["summary"]["replacements"] == 2
    bad = tmp_path / "bad.yaml"
    bad.write_text("servers:\n  gpu-a100-09: x\n")
    res = subprocess.run([sys.executable, "-m", "aiinfn.cli", "adopt", str(ENV_FILE), "--cloud", "aiinfn-it",
                          "--mapping", str(bad), "--build-dir", str(tmp_path / "b"), "--no-write-stack"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 1
    assert res.stderr.strip().count("\n") == 0 and "servers.gpu-a100-09" in res.stderr
