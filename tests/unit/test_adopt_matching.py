"""`aiinfn adopt` without a cloud: matching and differences over a hand-written listing, the mapping file's
one-line errors, the stack file's ``aiinfn:imports``, and the Pulumi program adopting exactly the
resources it names (under the mock runtime: the import ID reaches the engine's RegisterResource).

The live cloud side (listing, a hand-built site, the cloud unchanged) is in
tests/integration/openstack/test_adopt.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from aiinfn import preview
from aiinfn.adopt.imports import import_file, import_options, write_stack_imports
from aiinfn.adopt.live import Live
from aiinfn.adopt.match import (
    ATTACH,
    INSTANCE,
    KEYPAIR,
    NETWORK,
    PORT,
    ROUTER,
    ROUTER_IF,
    RULE,
    SECGROUP,
    SERVER_GROUP,
    SUBNET,
    VOLUME,
    AdoptError,
    check_mapping,
    match,
)
from aiinfn.config.loader import project_root
from aiinfn.offline import runtime

ROOT = project_root()
ENV = ROOT / "tests" / "support" / "openstack" / "fixture-env.yaml"


@pytest.fixture(scope="module")
def report() -> preview.Preview:
    return preview.build(ENV)


def as_built(report: preview.Preview) -> Live:
    """The cloud exactly as `pulumi up` would leave it, from the plan's registrations (IDs ``live-<mock>``)."""
    regs = report.run.registrations
    lid = {r.id: f"live-{r.id}" for r in regs if r.custom}
    live = Live()
    env = report.env
    live.images = {"img": env.site.image}
    ext = "ext-net"
    live.networks.append({"id": ext, "name": env.site.external_network, "mtu": None, "tags": [], "external": True})
    for r in regs:
        i = r.inputs
        if r.type == NETWORK:
            live.networks.append({"id": lid[r.id], "name": i["name"], "mtu": i.get("mtu"), "tags": sorted(i["tags"]),
                                  "external": False})
        elif r.type == SUBNET:
            live.subnets.append({"id": lid[r.id], "name": i["name"], "network_id": lid[i["networkId"]],
                                 "cidr": i["cidr"], "enable_dhcp": i["enableDhcp"],
                                 "dns_nameservers": list(i["dnsNameservers"]), "tags": sorted(i["tags"])})
        elif r.type == ROUTER:
            live.routers.append({"id": lid[r.id], "name": i["name"], "external_network_id": ext,
                                 "tags": sorted(i["tags"])})
        elif r.type == SECGROUP:
            live.security_groups.append({"id": lid[r.id], "name": i["name"], "description": i["description"],
                                         "tags": sorted(i["tags"]), "rules": []})
        elif r.type == KEYPAIR:
            live.keypairs[i["name"]] = i["publicKey"]
        elif r.type == SERVER_GROUP:
            live.server_groups.append({"id": lid[r.id], "name": i["name"], "members": []})
        elif r.type == VOLUME:
            live.volumes.append({"id": lid[r.id], "name": i["name"], "size": int(i["size"]),
                                 "volume_type": i["volumeType"], "availability_zone": i["availabilityZone"],
                                 "metadata": dict(i["metadata"]), "attached_to": []})
    sgs = {g["id"]: g for g in live.security_groups}
    for r in report.run.by_type(RULE):
        i = r.inputs
        sgs[lid[i["securityGroupId"]]]["rules"].append({
            "id": f"live-{r.id}", "direction": i["direction"], "ethertype": i["ethertype"], "protocol": i["protocol"],
            "port_range_min": i.get("portRangeMin"), "port_range_max": i.get("portRangeMax"),
            "remote_group_id": lid[i["remoteGroupId"]] if i.get("remoteGroupId") else None,
            "remote_ip_prefix": i.get("remoteIpPrefix")})
    for g in live.security_groups:  # Neutron's default egress rules: not the plan's, not a difference
        g["rules"].append({"id": f"{g['id']}-egress", "direction": "egress", "ethertype": "IPv4", "protocol": None,
                           "port_range_min": None, "port_range_max": None, "remote_group_id": None,
                           "remote_ip_prefix": None})
    ports = {r.id: r for r in report.run.by_type(PORT)}
    for r in report.run.by_type(INSTANCE):
        i = r.inputs
        node = report.plan.node(i["name"])
        hints = [h["group"] for h in i.get("schedulerHints") or []]
        for g in live.server_groups:
            if hints and g["id"] == lid[hints[0]]:
                g["members"].append(lid[r.id])
        live.servers.append({"id": lid[r.id], "name": i["name"], "flavor": node.flavor, "image_id": "img",
                             "key_name": i.get("keyPair"), "availability_zone": i["availabilityZone"],
                             "metadata": dict(i["metadata"]), "volumes": [], "status": "ACTIVE"})
        (net,) = i["networks"]
        p = ports[net["port"]].inputs
        live.ports.append({"id": lid[net["port"]], "name": p["name"], "network_id": lid[p["networkId"]],
                           "device_id": lid[r.id], "device_owner": "compute:nova",
                           "fixed_ips": [{"subnet_id": lid[f["subnetId"]], "ip_address": "10.0.0.9"}
                                         for f in p["fixedIps"]],
                           "security_group_ids": sorted(lid[g] for g in p["securityGroupIds"]),
                           "tags": sorted(p["tags"])})
    for r in report.run.by_type(ROUTER_IF):
        live.ports.append({"id": f"live-{r.id}", "name": "", "network_id": "", "device_id": lid[r.inputs["routerId"]],
                           "device_owner": "network:router_interface",
                           "fixed_ips": [{"subnet_id": lid[r.inputs["subnetId"]], "ip_address": "10.0.0.1"}],
                           "security_group_ids": [], "tags": []})
    for r in report.run.by_type(ATTACH):
        vol = next(v for v in live.volumes if v["id"] == lid[r.inputs["volumeId"]])
        vol["attached_to"].append(lid[r.inputs["instanceId"]])
    return live


def test_a_cloud_built_as_planned_is_adopted_whole_with_no_difference(report: preview.Preview) -> None:
    a = match(report, as_built(report))
    assert a.differences == []
    adoptable = {r.urn for r in report.run.registrations
                 if r.type in {NETWORK, SUBNET, ROUTER, ROUTER_IF, SECGROUP, RULE, KEYPAIR, SERVER_GROUP, INSTANCE,
                               PORT, VOLUME, ATTACH}}
    assert {x.urn for x in a.adopted} == adoptable
    # what adoption never takes (floating IPs and their associations) is created by up, and said so
    assert {t for t, _ in a.missing} == {"openstack:networking/floatingIp:FloatingIp",
                                         "openstack:networking/floatingIpAssociate:FloatingIpAssociate"}
    assert all(x.id.startswith("live-") for x in a.adopted if x.type not in (KEYPAIR, ATTACH))
    attach = next(x for x in a.adopted if x.type == ATTACH)
    assert attach.id.count("/") == 1, "a volume attachment is imported as <instance>/<volume>"


def test_a_flavor_change_is_a_resize_and_a_shrink_is_refused(report: preview.Preview) -> None:
    live = as_built(report)
    gpu = next(s for s in live.servers if s["name"] == "gpu-a100-01")
    gpu["flavor"] = "it.cpu-2c-4g"
    gpu["availability_zone"] = "other"
    nfs = next(v for v in live.volumes if v["name"] == "aiinfn-fixture-nfs-data")
    nfs["size"] = 25
    a = match(report, live)
    got = {(d.resource, d.attribute, d.effect, d.forces_replacement) for d in a.differences}
    assert got == {
        ("fixture-gpu-a100-01-vm", "flavor", "resize", False),
        ("fixture-gpu-a100-01-vm", "availabilityZone", "replace", True),
        ("fixture-stateful-nfs-data", "size", "replacement required", True),
    }


def test_a_port_on_another_network_forces_replacement(report: preview.Preview) -> None:
    live = as_built(report)
    port = next(p for p in live.ports if p["name"] == "nfs-01")
    port["network_id"] = "elsewhere"
    a = match(report, live)
    (d,) = [d for d in a.differences if d.attribute == "networkId"]
    assert (d.resource, d.effect) == ("fixture-nfs-01-port", "replace")


def test_a_name_two_servers_share_is_refused(report: preview.Preview) -> None:
    live = as_built(report)
    twin = dict(next(s for s in live.servers if s["name"] == "nfs-01"), id="twin")
    live.servers.append(twin)
    with pytest.raises(AdoptError, match="2 live servers are named 'nfs-01': name the one to adopt by its ID"):
        match(report, live)


@pytest.mark.parametrize(("data", "message"), [
    ({"server": {}}, "server: not a mapping field"),
    ({"servers": ["a"]}, "servers: must be a mapping of names"),
    ({"servers": {"nfs-01": 3}}, "servers.nfs-01: must be the live resource's name or ID"),
    ({"network": {"a": "b"}}, "network: must be a name"),
])
def test_mapping_errors_name_the_field(data: Any, message: str) -> None:
    with pytest.raises(AdoptError, match=message):
        check_mapping(data, "m.yaml")


def test_mapping_naming_an_unknown_node_is_refused(report: preview.Preview) -> None:
    with pytest.raises(AdoptError, match=r"servers.gpu-a100-09: the plan has no such node"):
        match(report, as_built(report), {"servers": {"gpu-a100-09": "x"}})


def test_import_file_entries_carry_the_plan_names_and_parents(report: preview.Preview) -> None:
    a = match(report, as_built(report))
    doc = import_file(a, report)
    entries = {e["name"]: e for e in doc["resources"]}
    vm = entries["fixture-nfs-01-vm"]
    assert vm == {"type": INSTANCE, "name": "fixture-nfs-01-vm", "logicalName": "fixture-nfs-01-vm",
                  "id": next(x.id for x in a.adopted if x.name == "fixture-nfs-01-vm"), "parent": "fixture-nfs-01"}
    assert entries["fixture-nfs-01"] == {"type": "aiinfn:infra:Node", "name": "fixture-nfs-01",
                                         "logicalName": "fixture-nfs-01", "component": True, "parent": "fixture"}
    assert entries["fixture"] == {"type": "aiinfn:infra:Infra", "name": "fixture", "logicalName": "fixture",
                                  "component": True}
    # components come before the resources they parent, as the file is read top down
    order = list(entries)
    assert order.index("fixture") < order.index("fixture-nfs-01") < order.index("fixture-nfs-01-vm")


def test_stack_file_keeps_its_settings_and_gets_the_imports(tmp_path: Path) -> None:
    stack = tmp_path / "Pulumi.cnaf.yaml"
    stack.write_text("# a comment the operator wrote\nconfig:\n  aiinfn:scope: site\n"
                     "  aiinfn:environment: environments/cnaf.yaml\n  aiinfn:kubeconfig:\n    secure: AAAA\n")
    write_stack_imports(stack, {"cnaf-gpu-t4-01-vm": "abc"}, "environments/other.yaml")
    text = stack.read_text()
    assert text.startswith("# a comment the operator wrote\n")
    assert "secure: AAAA" in text and "aiinfn:environment: environments/cnaf.yaml" in text
    assert "aiinfn:imports:\n    cnaf-gpu-t4-01-vm: abc\n" in text
    new = tmp_path / "Pulumi.new.yaml"
    write_stack_imports(new, {"x": "1"}, "environments/new.yaml")
    assert "aiinfn:environment: environments/new.yaml" in new.read_text()


def test_import_options_only_for_adoptable_named_resources() -> None:
    imports = {"fixture-nfs-01-vm": "i-1", "fixture-rke2-token": "t"}
    assert import_options(imports, INSTANCE, "fixture-nfs-01-vm") == {"import_": "i-1",
                                                                      "ignore_changes": ["schedulerHints"]}
    assert import_options(imports, "random:index/randomPassword:RandomPassword", "fixture-rke2-token") is None
    assert import_options(imports, PORT, "fixture-nfs-01-port") is None


def test_the_program_adopts_exactly_the_named_resources(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, str] = {}
    original = runtime.PlanMocks.new_resource

    def recording(self: Any, args: Any) -> Any:
        if args.resource_id:
            seen[args.name] = args.resource_id
        return original(self, args)

    monkeypatch.setattr(runtime.PlanMocks, "new_resource", recording)
    imports = {"fixture-nfs-01-vm": "srv-1", "fixture-nfs-01-port": "port-1", "fixture-network-net": "net-1"}
    run = runtime.run_program(ROOT / "stacks" / "__main__.py", project="aiinfn", stack="openstack-fixture",
                              config={"aiinfn:environment": str(ENV), "aiinfn:scope": "site",
                                      "aiinfn:imports": json.dumps(imports)})
    assert seen == imports
    vm = run.get("::fixture-nfs-01-vm")
    assert "schedulerHints" in vm.ignore_changes and "userData" in vm.ignore_changes
    other = run.get("::fixture-k8s-server-01-vm")
    assert "schedulerHints" not in other.ignore_changes
