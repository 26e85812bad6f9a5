"""Invariants of the infrastructure stack, for every shipped environment (Pulumi mock runtime).

See conftest.py for what the mock runtime does and does not show.
"""

from __future__ import annotations

import json
import re

import pytest

from aiinfn.catalogue import accelerators as cat
from aiinfn.config.loader import list_environments
from aiinfn.config.models import Role
from aiinfn.offline import SECRET, is_secret, unwrap
from aiinfn.preview import OFFLINE_SECRET, Preview

SHIPPED = list_environments(kind="site")

NOVA_ALIAS_RE = re.compile(r"^[A-Za-z0-9_-]+:[1-9][0-9]*(,[A-Za-z0-9_-]+:[1-9][0-9]*)*$")
INSTANCE = "openstack:compute/instance:Instance"
RULE = "openstack:networking/secGroupRule:SecGroupRule"


@pytest.fixture(params=SHIPPED)
def report(request: pytest.FixtureRequest, shipped_reports: dict[str, Preview]) -> Preview:
    return shipped_reports[request.param]


def test_components_follow_the_conventions(report: Preview) -> None:
    """Every component is typed aiinfn:<module>:<Type>, registers non-empty outputs, and its
    children carry its name as a prefix and point to it as parent."""
    regs = {r.urn: r for r in report.run.registrations}
    components = [r for r in regs.values() if not r.custom]
    assert components, "no components registered"
    for comp in components:
        assert re.match(r"^aiinfn:[a-z]+:[A-Z][A-Za-z]+$", comp.type), comp.type
        assert comp.registered_outputs, f"{comp.urn} registers no outputs"
    for r in regs.values():
        assert r.parent, f"{r.urn} has no parent"
        parent = regs.get(r.parent)
        if parent is not None:
            assert r.name.startswith(parent.name + "-"), f"{r.name} is not named after {parent.name}"
            assert r.urn.split("::")[2].startswith(parent.urn.split("::")[2] + "$")


def test_every_node_is_an_instance_with_its_plan_metadata(report: Preview) -> None:
    instances = {r.inputs["name"]: r for r in report.run.by_type(INSTANCE)}
    assert set(instances) == {n.name for n in report.plan.nodes}
    for node in report.plan.nodes:
        md = instances[node.name].inputs["metadata"]
        assert md["aiinfn:site"] == report.env.site.name
        assert md["aiinfn:pool"] == node.pool
        assert md["aiinfn:role"] == node.role.value
        expected = f"{node.accelerator}:{node.accelerator_count}" if node.accelerator else "none"
        assert md["aiinfn:accelerators"] == expected
        assert md["aiinfn:mig-config"] == (node.mig_config or "none")


def test_running_nodes_are_not_recreated_by_image_or_user_data_changes(report: Preview) -> None:
    for inst in report.run.by_type(INSTANCE):
        assert {"userData", "blockDevices", "imageId", "imageName"} <= set(inst.ignore_changes), inst.urn


def test_flavor_pci_alias_is_in_nova_alias_count_format(report: Preview) -> None:
    env = report.env
    flavors = report.run.by_type("openstack:compute/flavor:Flavor")
    if not env.site.manage_flavors:
        assert flavors == [], "a site that manages its own flavors must not get ours"
        return
    used = {p.flavor for p in env.node_pools.values()}
    assert {f.inputs["name"] for f in flavors} == used
    for f in flavors:
        spec = env.flavors[f.inputs["name"]]
        alias = f.inputs.get("extraSpecs", {}).get("pci_passthrough:alias")
        if not spec.accelerators:
            assert alias is None
            continue
        assert alias is not None and NOVA_ALIAS_RE.match(alias), alias
        for model, count in spec.accelerators.items():
            assert f"{env.site.alias_for(model)}:{count}" in alias.split(",")
        assert f.inputs["ram"] == spec.ram_gb * 1024 and f.inputs["vcpus"] == spec.vcpus


def test_stateful_volumes_are_protected_and_kept(report: Preview) -> None:
    vols = report.run.by_type("openstack:blockstorage/volume:Volume")
    stateful = [v for v in vols if v.inputs.get("metadata", {}).get("aiinfn:stateful") == "true"]
    expected = int(report.env.storage.nfs is not None) + int(report.env.storage.backup is not None)
    assert len(stateful) == expected
    for v in stateful:
        assert v.protect and v.retain_on_delete, v.urn
    # no node boot disk is a separate, deletable copy of the data
    for v in vols:
        if v not in stateful:
            assert not v.protect


def test_secrets_stay_secret(report: Preview) -> None:
    """The join tokens are secret outputs, the server token and the agent token differ (an agent node's
    token cannot join a server); no secret value reaches plan.json or the artifacts."""
    plains = []
    for key in ("rke2_token", "rke2_agent_token"):
        token = report.run.stack_outputs[key]
        assert is_secret(token)
        plain = unwrap(token)
        plains.append(plain)
        doc = json.dumps(report.document())
        assert plain not in doc and OFFLINE_SECRET not in doc
        assert report.document()["outputs"][key] == SECRET
        for text in report.artifacts.values():
            assert plain not in text and OFFLINE_SECRET not in text
    assert plains[0] != plains[1]


def test_only_http_and_https_reach_the_ingress_from_anywhere(report: Preview) -> None:
    rules = report.run.by_type(RULE)
    groups = {g.urn: g for g in report.run.by_type("openstack:networking/secGroup:SecGroup")}
    assert rules
    for r in rules:
        cidr = r.inputs.get("remoteIpPrefix")
        if cidr == "0.0.0.0/0":
            assert r.name.endswith(("-ingress-http", "-ingress-https")), r.name
            assert r.inputs["portRangeMin"] in (80, 443)
        elif cidr is not None and r.name.split("-secgroups-")[1].startswith("monitoring-"):
            # Grafana's HTTPS on the monitoring node, from services.monitoring.grafana.allow only
            grafana = report.env.services.monitoring.grafana
            assert grafana is not None and cidr in {str(c) for c in grafana.allow}, r.name
            assert (r.inputs["portRangeMin"], r.inputs["portRangeMax"]) == (3000, 3000), r.name  # GRAFANA_PORT
        elif cidr is not None:
            assert r.name.split("-secgroups-")[1].startswith("bastion-ssh-"), r.name
            assert r.inputs["portRangeMin"] == 22
            assert cidr in {str(c) for c in report.env.network.ssh_allow}
        else:
            assert r.inputs.get("remoteGroupId"), f"{r.name} opens to no group and no CIDR"
    assert len(groups) == 7 + (report.env.services.monitoring.grafana is not None)  # + monitoring


def test_etcd_and_rke2_ports_are_restricted_to_cluster_groups(report: Preview) -> None:
    by_name = {r.name.split("-secgroups-")[1]: r for r in report.run.by_type(RULE)}
    assert by_name["servers-etcd"].inputs["portRangeMin"] == 2379
    # the remote group of etcd is the servers group itself
    etcd = by_name["servers-etcd"].inputs
    assert etcd["remoteGroupId"] == etcd["securityGroupId"]
    for key in ("servers-supervisor", "servers-apiserver"):
        assert by_name[key].inputs["remoteGroupId"] != by_name[key].inputs["securityGroupId"]


def test_servers_are_spread_by_anti_affinity(report: Preview) -> None:
    (group,) = report.run.by_type("openstack:compute/serverGroup:ServerGroup")
    assert group.inputs["policies"] == "anti-affinity"
    for inst in report.run.by_type(INSTANCE):
        node = report.plan.node(inst.inputs["name"])
        hints = inst.inputs.get("schedulerHints")
        if node.role is Role.SERVER:
            assert hints and hints[0]["group"], inst.name
        else:
            assert not hints


def test_inventory_output_matches_the_plan(report: Preview) -> None:
    inv = {e["name"]: e for e in report.run.stack_outputs["inventory"]}
    assert set(inv) == {n.name for n in report.plan.nodes}
    for node in report.plan.nodes:
        e = inv[node.name]
        assert e["pool"] == node.pool and e["role"] == node.role.value
        assert e["accelerator"] == node.accelerator and e["mig_config"] == node.mig_config
        assert e["labels"] == node.labels
        assert e["fixed_ip"] and e["fixed_ip"] in {str(ip) for ip in report.env.network.cidr}


def test_capacity_counts_every_device_and_slice_once(report: Preview) -> None:
    """Units per model = whole devices, or the slices of every GPU's MIG layout."""
    expected: dict[str, int] = {}
    for n in report.plan.nodes:
        if n.accelerator:
            layouts = n.mig_layouts or (None,) * n.accelerator_count
            per_gpu = [len(layout) if layout is not None else 1 for layout in layouts]
            expected[n.accelerator] = expected.get(n.accelerator, 0) + sum(per_gpu)
    counted: dict[str, int] = {}
    for key, cap in report.plan.capacity.items():
        counted[cap.kind.model] = counted.get(cap.kind.model, 0) + cap.units
        model = cat.model(cap.kind.model)
        if cap.kind.profile:
            assert model.mig is not None and cap.kind.profile in model.mig.profiles, key
    assert counted == expected


APP_CREDENTIAL = "openstack:identity/applicationCredential:ApplicationCredential"


def test_the_block_storage_credential_is_restricted_and_stays_secret(report: Preview) -> None:
    """A site with storage.block gets one application credential for the Cinder CSI driver: restricted (it
    cannot mint credentials or trusts), only the roles storage.block names (never admin), its secret a
    secret input; the cloud.conf built from it is in no output, no plan.json and no artifact. A site without
    it gets none."""
    creds = report.run.by_type(APP_CREDENTIAL)
    block = report.env.storage.block
    if block is None:
        assert creds == []
        return
    (cred,) = creds
    assert cred.inputs["unrestricted"] is False
    assert cred.inputs["roles"] == block.credential_roles and "admin" not in cred.inputs["roles"]
    assert cred.inputs.get("expiresAt") == (f"{block.credential_expires_at.isoformat()}T00:00:00Z"
                                            if block.credential_expires_at else None)
    assert is_secret(cred.inputs["secret"]) and "secret" in cred.additional_secret_outputs
    plain = unwrap(cred.inputs["secret"])
    assert plain and len(plain) >= 32
    doc = json.dumps(report.document())
    outputs = json.dumps({k: unwrap(v) for k, v in report.run.stack_outputs.items()})
    assert plain not in doc and "application-credential-secret" not in doc
    assert plain not in outputs and "application-credential" not in outputs
    for name, text in report.artifacts.items():
        assert plain not in text and "application-credential-secret=" not in text, name


def test_a_site_that_adds_block_storage_gets_a_restricted_expiring_credential(plan_variant) -> None:  # type: ignore[no-untyped-def]
    """cnaf with storage.block (and an expiry): the credential is made, restricted, with the date as Keystone
    takes it, and the driver's Secret holds it only as a secret value."""
    from aiinfn.services import cinder_csi

    report = plan_variant("cnaf", "cnaf-block", {"storage": {"block": {
        "auth_url": "https://keystone.cnaf.example:5000/v3", "credential_expires_at": "2027-06-30"}}})
    (cred,) = report.run.by_type(APP_CREDENTIAL)
    assert cred.inputs["expiresAt"] == "2027-06-30T00:00:00Z" and cred.inputs["unrestricted"] is False
    assert cred.inputs["roles"] == ["member"]
    (secret,) = [s for s in report.run.by_type("kubernetes:core/v1:Secret")
                 if s.inputs["metadata"]["name"] == cinder_csi.SECRET]
    assert is_secret(secret.inputs["stringData"])
    conf = unwrap(secret.inputs["stringData"])[cinder_csi.SECRET_FILE]
    assert f"application-credential-secret={unwrap(cred.inputs['secret'])}\n" in conf
    assert "auth-url=https://keystone.cnaf.example:5000/v3\n" in conf


def _cloud_conf(report: Preview) -> str:
    from aiinfn.services import cinder_csi

    (secret,) = [s for s in report.run.by_type("kubernetes:core/v1:Secret")
                 if s.inputs["metadata"]["name"] == cinder_csi.SECRET]
    assert is_secret(secret.inputs["stringData"])
    return str(unwrap(secret.inputs["stringData"])[cinder_csi.SECRET_FILE])


def test_without_auth_url_the_driver_uses_the_regions_public_keystone_from_the_catalog(
        shipped_reports: dict[str, Preview]) -> None:
    """The shipped sites name no Keystone URL: the infrastructure stack asks Keystone for its own token's scope
    (getAuthScope, in the site's region) and the driver's cloud.conf gets that region's public identity
    endpoint, never an internal or admin one; the URL too stays inside the secret."""
    from aiinfn.offline.runtime import OFFLINE_KEYSTONE

    for name in ("cnaf", "recas"):
        report = shipped_reports[name]
        assert report.env.storage.block is not None and report.env.storage.block.auth_url is None, name
        asked = [a for t, a in report.run.invokes if t == "openstack:identity/getAuthScope:getAuthScope"]
        assert [a.get("region") for a in asked] == [report.env.site.region], name
        conf = _cloud_conf(report)
        assert f"auth-url={OFFLINE_KEYSTONE}\n" in conf and f"region={report.env.site.region}\n" in conf, name
        assert "internal" not in conf and "admin" not in conf, name
        assert OFFLINE_KEYSTONE not in json.dumps(report.document()), name


def test_an_auth_url_overrides_the_catalog(plan_variant) -> None:  # type: ignore[no-untyped-def]
    """A site whose nodes reach Keystone elsewhere sets storage.block.auth_url: the catalog is not read."""
    report = plan_variant("cnaf", "cnaf-keystone", {"storage": {"block": {"auth_url": "https://10.1.2.3:5000/v3"}}})
    assert "auth-url=https://10.1.2.3:5000/v3\n" in _cloud_conf(report)
    assert not [t for t, _ in report.run.invokes if t == "openstack:identity/getAuthScope:getAuthScope"]
