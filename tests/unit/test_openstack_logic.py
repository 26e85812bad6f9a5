"""Live-cloud commands, the parts that need no cloud: what a plan asks of a project, quota arithmetic,
PCI alias parsing, flavor comparison, how connection failures read, and the dynamic inventory built from
servers' metadata. The same code runs against a real OpenStack in tests/integration/openstack/.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from keystoneauth1 import exceptions as ks
from openstack import exceptions as sdk

from aiinfn import preview
from aiinfn.catalogue.accelerators import pci_alias_spec
from aiinfn.openstack import connect as osconnect
from aiinfn.openstack import inventory as inv
from aiinfn.openstack import preflight as pf
from aiinfn.openstack.requirements import DEFAULT_RULES_PER_GROUP, requirements
from aiinfn.render import inventory_groups, plain


@pytest.fixture(scope="module")
def cnaf() -> preview.Preview:
    return preview.build("cnaf")


@pytest.fixture(scope="module")
def recas() -> preview.Preview:
    return preview.build("recas")


# --------------------------------------------------------------------------- what the plan needs


def test_requirements_count_what_the_plan_adds(cnaf: preview.Preview) -> None:
    req = requirements(cnaf)
    env = cnaf.env
    nodes = cnaf.plan.nodes
    assert req.counts["instances"] == req.counts["ports"] == len(nodes)
    assert req.cores == sum(env.flavors[n.flavor].vcpus for n in nodes)
    assert req.ram_mb == sum(env.flavors[n.flavor].ram_gb * 1024 for n in nodes)
    assert req.counts["volumes"] == len(nodes) + 2  # boot volumes + NFS data + Borg repository
    stateful = env.storage.nfs.size_gb + env.storage.backup.size_gb  # type: ignore[union-attr]
    assert req.gigabytes > stateful
    assert req.counts["floating_ips"] == 3  # the bastion, the ingress node, Grafana's monitoring VM
    assert req.counts["security_groups"] == 8  # the seven of every site and the monitoring VM's
    rules = len(cnaf.run.by_type("openstack:networking/secGroupRule:SecGroupRule"))
    assert req.counts["security_group_rules"] == rules + DEFAULT_RULES_PER_GROUP * 8
    a100 = next(f for f in req.flavors if f.name == "gpu-a100x4")
    assert (a100.vcpus, a100.pci_alias, a100.managed) == (112, "a100-80gb:4", True)
    assert req.keypair is not None and req.keypair[0] == "aiinfn-cnaf"


def test_needs_add_the_ports_neutron_makes_and_the_server_group(cnaf: preview.Preview) -> None:
    need = pf.needs(cnaf)
    nodes = cnaf.plan.nodes
    # one port per node, one for the router interface, one for DHCP on the node subnet
    assert need.quotas["ports"] == len(nodes) + 2
    assert need.quotas["server_groups"] == 1
    assert need.quotas["server_group_members"] == sum(1 for n in nodes if n.role.value == "server")
    assert need.quotas["instances"] == len(nodes) and need.quotas["cores"] == requirements(cnaf).cores
    assert set(need.quotas) == set(pf.QUOTAS)
    env = cnaf.env
    declared = {env.site.volume_type, env.storage.backup.volume_type}  # type: ignore[union-attr]
    assert need.uses_volumes and need.volume_types == sorted(declared)
    assert need.manage_flavors is True
    gpu = next(f for f in need.flavors if f.name == "gpu-a100x4")
    assert gpu.aliases == {"a100-80gb": 4} and gpu.alias_spec == "a100-80gb:4" and gpu.managed


def test_existing_flavors_are_expected_not_created(recas: preview.Preview) -> None:
    need = pf.needs(recas)
    assert need.flavors and not any(f.managed for f in need.flavors) and not need.manage_flavors
    t4 = next(f for f in need.flavors if f.name == "large.gpu.t4x2")
    assert (t4.vcpus, t4.ram_mb, t4.aliases) == (24, 192 * 1024, {"t4": 2})


# --------------------------------------------------------------------------- quota arithmetic


@pytest.mark.parametrize(
    ("limit", "used", "need", "ok", "short"),
    [(-1, 50, 1000, True, None), (10, 4, 6, True, None), (10, 5, 6, False, 1), (0, 0, 1, False, 1),
     (3, 7, 1, False, 5)],
)
def test_quota_covers_the_plan_on_top_of_usage(limit: int, used: int, need: int, ok: bool, short: int | None) -> None:
    check = pf.quota_check("cores", limit, used, need)
    assert check.ok is ok
    if ok:
        assert check.remedy == ""
    else:
        assert check.detail == f"{used}/{limit} used, plan adds {need}: {short} short"
        assert f"raise cores to at least {used + need}" in check.remedy


def test_a_warning_does_not_fail_preflight() -> None:
    assert pf.Check("flavor x", "warn", "exists").ok and not pf.Check("flavor x", "fail", "no").ok


def test_microversions_compare_numerically() -> None:
    assert pf.parse_microversion("2.95") == (2, 95) and pf.MIN_COMPUTE_MICROVERSION <= (2, 95)
    assert pf.parse_microversion((2, 93)) == (2, 93)  # keystoneauth's form
    assert pf.parse_microversion("2.9") == (2, 9) and pf.MIN_COMPUTE_MICROVERSION > (2, 9)
    assert pf.parse_microversion(None) is None and pf.parse_microversion("garbage") is None


# --------------------------------------------------------------------------- PCI aliases and flavors


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [("a100:2", {"a100": 2}), ("a100:2,t4:1", {"a100": 2, "t4": 1}), (" t4 : 1 , a100:2 ", {"a100": 2, "t4": 1}),
     (None, {}), ("", {})],
)
def test_alias_specs_parse_as_nova_reads_them(spec: str | None, parsed: dict[str, int]) -> None:
    assert pf.parse_alias(spec) == parsed
    assert pci_alias_spec(parsed) == (",".join(f"{a}:{c}" for a, c in sorted(parsed.items())) or None)


@pytest.mark.parametrize(
    ("spec", "reason"),
    [("a100", "alias 'a100' has no count"), ("a100:", "alias 'a100' has no count"), (":2", "empty alias name"),
     ("a100:x", "count 'x', not a positive whole number"), ("a100:0", "count '0'"),
     ("a100:1,a100:2", "appears twice")],
)
def test_alias_specs_nova_cannot_boot_are_refused(spec: str, reason: str) -> None:
    with pytest.raises(pf.AliasError, match=reason):
        pf.parse_alias(spec)


GPU = pf.FlavorSpec("gpu", 4, 8192, 0, {"a100": 2}, {"hw:cpu_policy": "dedicated"}, managed=False)


def test_a_flavor_matching_the_plan_has_no_problems() -> None:
    assert pf.flavor_problems(GPU, 4, 8192, 0, {"pci_passthrough:alias": "a100:2", "hw:cpu_policy": "dedicated",
                                                "quota:disk_read_iops_sec": "1000"}) == []


def test_flavor_problems_name_each_difference() -> None:
    problems = pf.flavor_problems(GPU, 8, 4096, 100, {"pci_passthrough:alias": "a100"})
    assert problems == [
        "8 vCPUs (plan: 4)",
        "4096 MB RAM (plan: 8192)",
        "100 GB ephemeral disk (plan: 0)",
        "pci_passthrough:alias 'a100': alias 'a100' has no count (write a100:N), so every boot with it fails "
        "(plan: 'a100:2')",
        "hw:cpu_policy=None (plan: 'dedicated')",
    ]
    assert pf.flavor_problems(GPU, 4, 8192, 0, {"hw:cpu_policy": "dedicated"}) == [
        "pci_passthrough:alias None (plan: 'a100:2')"
    ]


# --------------------------------------------------------------------------- errors: one line each


def _response(status: int) -> requests.Response:
    r = requests.Response()
    r.status_code = status
    r.url = "http://cloud/v2.1/os-quota-sets/p"
    return r


def _raised_from(outer: Exception, inner: Exception) -> Exception:
    try:
        try:
            raise inner
        except Exception as e:
            raise outer from e
    except Exception as e:
        return e


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ks.Unauthorized(), "cloud 'c': authentication refused (HTTP 401)"),
        (ks.ConnectTimeout("timed out"), "cloud 'c': the identity endpoint http://id/v3 did not answer within 3 s"),
        (ks.ConnectFailure("refused"), "cloud 'c': cannot reach the identity endpoint http://id/v3"),
        (ks.DiscoveryFailure("no versions"), "cloud 'c': no identity API found at http://id/v3"),
        (ks.MissingRequiredOptions([]), "cloud 'c': incomplete auth settings in clouds.yaml"),
        (_raised_from(sdk.SDKException("wrapped"), ks.Unauthorized()), "cloud 'c': authentication refused (HTTP 401)"),
        (sdk.HttpException("nope", response=_response(403)), "cloud 'c': the credentials may not authenticate"),
        (ValueError("odd\nsecond line"), "cloud 'c': could not authenticate: ValueError: odd"),
    ],
)
def test_connection_failures_read_as_one_line_with_a_remedy(error: Exception, expected: str) -> None:
    message = str(osconnect.describe("c", error, timeout=3, auth_url="http://id/v3"))
    assert message.startswith(expected) and "\n" not in message


def test_failures_after_authentication_name_what_was_being_done() -> None:
    message = str(osconnect.describe("c", ks.ConnectTimeout("x"), doing="list the project's servers", timeout=5))
    assert message == ("cloud 'c': the cloud did not answer within 5 s while trying to list the project's servers; "
                       "check auth_url, the network path to it (VPN, firewall), or raise --timeout")


@pytest.mark.parametrize(
    ("error", "detail", "remedy"),
    [
        (sdk.HttpException("no", response=_response(403)), "the credentials may not read volume types (HTTP 403)",
         "ask the cloud admins for a role that may read volume types"),
        (_raised_from(sdk.SDKException("wrapped"), ks.ConnectTimeout("slow")),
         "no answer within 4 s while reading volume types", "raise --timeout"),
        (ks.ConnectFailure("refused"), "cannot reach the service while reading volume types (connection failed)",
         "catalog endpoint is reachable"),
        (sdk.EndpointNotFound("no volumev3"), "the service catalog has no endpoint to read volume types",
         "region_name"),
        (sdk.HttpException("boom", response=_response(500)), "HTTP 500 while reading volume types: boom",
         "check the service's health"),
    ],
)
def test_a_failing_api_call_fails_its_check_with_reason_and_remedy(error: Exception, detail: str, remedy: str) -> None:
    got_detail, got_remedy = pf.failure("volume types", error, timeout=4)
    assert got_detail == detail and remedy in got_remedy and "\n" not in got_detail


def _clouds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "clouds.yaml"
    path.write_text(
        "clouds:\n  closed:\n    auth:\n      auth_url: http://127.0.0.1:9/v3\n      username: u\n"
        "      password: p\n      project_name: p\n      user_domain_name: Default\n"
        "      project_domain_name: Default\n    identity_api_version: 3\n"
    )
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(path))
    return path


def test_a_missing_clouds_yaml_entry_names_the_file_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _clouds(tmp_path, monkeypatch)
    with pytest.raises(osconnect.CloudError) as e:
        osconnect.connect("nowhere")
    assert str(e.value).startswith(f"cloud 'nowhere': not found in clouds.yaml (read {path})")
    assert e.value.exit_code == 1


def test_a_closed_port_fails_fast_with_the_endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Real openstacksdk and keystoneauth against 127.0.0.1:9, where nothing listens."""
    _clouds(tmp_path, monkeypatch)
    start = time.monotonic()
    with pytest.raises(osconnect.CloudError) as e:
        osconnect.connect("closed", timeout=3)
    assert time.monotonic() - start < 15
    assert "cannot reach the identity endpoint http://127.0.0.1:9/v3" in str(e.value)


# --------------------------------------------------------------------------- dynamic inventory


def _servers_from_plan(report: preview.Preview) -> list[inv.FoundServer]:
    """Servers as Nova would list them: the metadata the plan assigns, the port's fixed IP on the site
    network, a floating IP, and an address on another network listed first."""
    ips = {e["name"]: e["fixed_ip"] for e in report.run.stack_outputs["inventory"]}
    net = inv.site_network(report.plan)
    out = []
    for r in report.run.by_type("openstack:compute/instance:Instance"):
        name = r.inputs["name"]
        addresses = {
            "aaa-other": [{"addr": "172.16.0.9", "version": 4, "OS-EXT-IPS:type": "fixed"}],
            net: [{"addr": "fd00::9", "version": 6, "OS-EXT-IPS:type": "fixed"},
                  {"addr": ips[name], "version": 4, "OS-EXT-IPS:type": "fixed"},
                  {"addr": "192.0.2.7", "version": 4, "OS-EXT-IPS:type": "floating"}],
        }
        out.append(inv.FoundServer(name, dict(r.inputs["metadata"]), addresses))
    return out


# ---- the oracle: what each node is, read from the environment's pools here (names `<prefix>-NN` from
# `count`, or the `nodes` given), and what the node itself registers with (its cloud-init node.json)


def _pool_members(report: preview.Preview) -> dict[str, tuple[str, Any]]:
    """node name -> (pool name, pool), from the environment as written."""
    out: dict[str, tuple[str, Any]] = {}
    for name, pool in report.env.node_pools.items():
        names = pool.nodes if pool.nodes is not None else [
            f"{pool.name_prefix or name}-{i:02d}" for i in range(1, (pool.count or 0) + 1)]
        out.update({n: (name, pool) for n in names})
    return out


def _node_json(report: preview.Preview, node: str) -> dict[str, Any]:
    from ruamel.yaml import YAML

    doc = YAML(typ="safe", pure=True).load(report.artifacts[f"cloud-init/{node}.yaml"])
    (content,) = [f["content"] for f in doc["write_files"] if f["path"] == "/etc/aiinfn/node.json"]
    return dict(json.loads(content))


def _oracle_tags(report: preview.Preview) -> dict[str, dict[str, str]]:
    out = {}
    for node, (pool_name, pool) in _pool_members(report).items():
        acc = pool.accelerators
        mig = _node_json(report, node)["labels"]["nvidia.com/mig.config"] if pool.mig else None
        out[node] = {"aiinfn:site": report.env.site.name, "aiinfn:pool": pool_name, "aiinfn:role": pool.role.value,
                     "aiinfn:accelerators": f"{acc.model}:{acc.per_node}" if acc else "none",
                     "aiinfn:mig-config": mig or "none"}
    return out


def _oracle_groups(report: preview.Preview) -> dict[str, list[str]]:
    """role_<role>, pool_<pool>, accel_<model> (lower case, `-` as `_`), k8s_cluster (servers, agents,
    GPU and FPGA nodes), in node order; sts_wire for pools that mount shared buckets."""
    groups: dict[str, list[str]] = {}
    s3 = report.env.storage.s3
    for node, (pool_name, pool) in _pool_members(report).items():
        keys = [f"role_{pool.role.value}", f"pool_{pool_name}"]
        if pool.accelerators:
            keys.append(f"accel_{pool.accelerators.model}")
        if pool.role.value in ("server", "agent", "gpu", "fpga"):
            keys.append("k8s_cluster")
        if s3 is not None and any(pool_name in m.pools for m in s3.node_mounts):
            keys.append("sts_wire")
        for k in keys:
            groups.setdefault(k.lower().replace("-", "_"), []).append(node)
    return groups


@pytest.mark.parametrize("env", ["cnaf", "recas", "example"])
def test_expected_tags_are_what_the_stacks_assign(env: str) -> None:
    report = preview.build(env)
    registered = {r.inputs["name"]: r.inputs["metadata"] for r in report.run.by_type(
        "openstack:compute/instance:Instance")}
    assert registered == _oracle_tags(report)
    assert {n.name: inv.expected_tags(report.plan, n) for n in report.plan.nodes} == registered


def test_dynamic_inventory_equals_the_planned_one(cnaf: preview.Preview) -> None:
    """Each host's address is its fixed IPv4 on the site network (not the other network's, the IPv6 or
    the floating one Nova also lists); what it is comes from the environment's pools; its labels and
    taints are those the node registers with (cloud-init's node.json)."""
    servers = _servers_from_plan(cnaf)
    found = inv.build(cnaf.plan, servers)
    net = inv.site_network(cnaf.plan)
    assert found.groups == _oracle_groups(cnaf) == found.tag_groups
    members = _pool_members(cnaf)
    assert set(found.hosts) == set(members)
    for server in servers:
        (site_v4,) = [a["addr"] for a in server.addresses[net]
                      if a["version"] == 4 and a["OS-EXT-IPS:type"] == "fixed"]
        pool_name, pool = members[server.name]
        node = _node_json(cnaf, server.name)
        got = plain(found.hosts[server.name])
        assert got["ansible_host"] == site_v4
        assert (got["aiinfn_pool"], got["aiinfn_role"]) == (pool_name, pool.role.value)
        assert (got["aiinfn_accelerator"], got["aiinfn_accelerator_count"]) == (
            (pool.accelerators.model, pool.accelerators.per_node) if pool.accelerators else (None, 0))
        assert got["aiinfn_node_labels"] == node["labels"] and got["aiinfn_node_taints"] == node["taints"]
        # MIG GPUs name their mig-parted entry; other GPUs carry only the label that disables MIG
        assert got["aiinfn_mig_config"] == (node["labels"]["nvidia.com/mig.config"] if pool.mig else None)
    assert found.yaml() == cnaf.artifacts["ansible/inventory.yaml"]  # the live servers give the planned file
    assert found.notes() == []


def _ansible_inventory(source: Path) -> Any:
    """What Ansible itself makes of an inventory source (ansible-inventory --list --export)."""
    bindir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}",
           "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true", "ANSIBLE_INVENTORY_ANY_UNPARSED_IS_FAILED": "true",
           "ANSIBLE_LOCALHOST_WARNING": "false", "ANSIBLE_NOCOLOR": "true"}
    res = subprocess.run([str(bindir / "ansible-inventory"), "-i", str(source), "--list", "--export"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


def test_ansible_list_is_the_yaml_inventory(cnaf: preview.Preview, tmp_path: Path) -> None:
    """Ansible reads the script's --list JSON as it reads the planned YAML inventory: same groups, group
    variables and host variables."""
    found = inv.build(cnaf.plan, _servers_from_plan(cnaf))
    script = tmp_path / "list.py"
    listing = json.dumps(json.dumps(found.ansible_list()))
    script.write_text(f"#!{sys.executable}\nimport sys\nsys.stdout.write({listing})\n")
    script.chmod(0o755)
    planned = tmp_path / "inventory.yaml"
    planned.write_text(cnaf.artifacts["ansible/inventory.yaml"])
    from_script, from_yaml = _ansible_inventory(script), _ansible_inventory(planned)
    assert from_script == from_yaml
    read = plain(from_yaml)  # strings come back as Ansible's unsafe markers
    assert read["all"]["vars"]["aiinfn_site"] == "cnaf" and read["all"]["vars"]["aiinfn_domain"] == cnaf.env.site.domain
    assert {g: read[g]["hosts"] for g in _oracle_groups(cnaf)} == _oracle_groups(cnaf)
    assert read["_meta"]["hostvars"]["gpu-t4-01"]["aiinfn_accelerator"] == "T4"
    assert plain(found.host("gpu-a100-01"))["aiinfn_mig_config"] == "aiinfn-a100-80gb-1g.10gbx7"
    assert found.host("not-a-node") == {}


def test_grouping_from_tags_alone_is_the_plans(cnaf: preview.Preview, recas: preview.Preview) -> None:
    for report in (cnaf, recas):
        found = {s.name: s.metadata for s in _servers_from_plan(report)}
        tags = {n.name: found[n.name] for n in report.plan.nodes}  # in the plan's order, as build() passes them
        assert inv.groups_from_tags(tags) == _oracle_groups(report) == inventory_groups(report.plan)


def test_fixed_ip_prefers_the_site_network() -> None:
    addresses = {"a": [{"addr": "10.0.0.1", "version": 4}], "b": [{"addr": "10.1.0.1", "version": 4}]}
    assert inv.fixed_ip(addresses, "b") == "10.1.0.1"
    assert inv.fixed_ip(addresses, "missing") == "10.0.0.1"
    assert inv.fixed_ip({"b": [{"addr": "192.0.2.1", "version": 4, "OS-EXT-IPS:type": "floating"}]}) is None


def test_strays_drift_duplicates_and_missing_nodes_are_reported_not_guessed(cnaf: preview.Preview) -> None:
    servers = [s for s in _servers_from_plan(cnaf) if s.name != "gpu-t4-02"]
    servers.append(inv.FoundServer("gpu-t4-99", {"aiinfn:site": "cnaf"}))
    drifted = next(s for s in servers if s.name == "k8s-agent-01")
    servers[servers.index(drifted)] = inv.FoundServer(drifted.name, {**drifted.metadata, "aiinfn:role": "gpu"},
                                                      drifted.addresses, status="SHUTOFF")
    twin = next(s for s in servers if s.name == "nfs-01")
    servers.append(twin)
    found = inv.build(cnaf.plan, servers)
    assert found.missing == ["gpu-t4-02"] and found.unplanned == ["gpu-t4-99"] and found.duplicates == ["nfs-01"]
    assert found.drift == {"k8s-agent-01": ["aiinfn:role='gpu', plan 'agent'"]}
    for name in ("gpu-t4-99", "gpu-t4-02", "k8s-agent-01", "nfs-01"):
        assert name not in found.hosts and all(name not in members for members in found.groups.values())
    assert found.tag_groups == found.groups
    assert len(found.notes()) == 4 and all("\n" not in n for n in found.notes())


def test_servers_without_an_address_or_not_active_are_listed_with_a_note(cnaf: preview.Preview) -> None:
    servers = _servers_from_plan(cnaf)
    first = servers[0]
    servers[0] = inv.FoundServer(first.name, first.metadata, {}, status="ERROR")
    found = inv.build(cnaf.plan, servers)
    assert first.name in found.hosts and "ansible_host" not in found.hosts[first.name]
    assert found.notes() == [f"server {first.name} is ERROR, not ACTIVE",
                             f"server {first.name} has no fixed IPv4 address: no ansible_host"]
