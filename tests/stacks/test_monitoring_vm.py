"""Grafana on a VM of its own in the shipped sites (issue 15): the plan has the monitoring node, reachable from the
operators' networks on Grafana's port only, scraped by Prometheus like every VM outside the cluster; the inventory
carries what its playbook needs and no secret; `aiinfn bootstrap` asks for Grafana's IAM client secret."""

from __future__ import annotations

import pytest
from ruamel.yaml import YAML

from aiinfn.ansible import checks
from aiinfn.config.models import Role
from aiinfn.preview import Preview
from aiinfn.services import monitoring

SITES = ["cnaf", "recas"]
RULE = "openstack:networking/secGroupRule:SecGroupRule"


@pytest.fixture(params=SITES)
def report(request: pytest.FixtureRequest, shipped_reports: dict[str, Preview]) -> Preview:
    return shipped_reports[request.param]


def test_the_site_has_one_monitoring_vm_with_a_public_address(report: Preview) -> None:
    (node,) = [n for n in report.plan.nodes if n.role is Role.MONITORING]
    assert node.name == "monitoring-01" and not node.is_kubernetes_node
    instances = {r.inputs["name"] for r in report.run.by_type("openstack:compute/instance:Instance")}
    assert node.name in instances
    fips = {r.name for r in report.run.by_type("openstack:networking/floatingIp:FloatingIp")}
    assert f"{report.env.site.name}-{node.name}-fip" in fips
    assert report.run.stack_outputs["endpoints"]["grafana"]
    # Prometheus scrapes its node-exporter like the NFS, backup and bastion VMs'
    assert node.name in monitoring.scraped_nodes(report.plan)


def test_only_the_allowed_networks_reach_grafana_and_only_on_its_port(report: Preview) -> None:
    site = report.env.site.name
    grafana = report.env.services.monitoring.grafana
    assert grafana is not None and grafana.allow
    port = next(r for r in report.run.by_type("openstack:networking/port:Port")
                if r.name == f"{site}-monitoring-01-port")
    groups = sorted(g.rsplit("-", 1)[0] for g in port.inputs["securityGroupIds"])
    assert groups == [f"{site}-secgroups-internal-ssh", f"{site}-secgroups-monitoring"]
    rules = [r for r in report.run.by_type(RULE) if r.name.startswith(f"{site}-secgroups-monitoring-")]
    from_cidrs = {r.inputs["remoteIpPrefix"]: (r.inputs["portRangeMin"], r.inputs["portRangeMax"])
                  for r in rules if r.inputs.get("remoteIpPrefix")}
    assert from_cidrs == {str(c): (monitoring.GRAFANA_PORT, monitoring.GRAFANA_PORT) for c in grafana.allow}
    others = [r for r in rules if not r.inputs.get("remoteIpPrefix")]
    assert [(r.inputs["portRangeMin"], r.inputs["remoteGroupId"].rsplit("-", 1)[0]) for r in others] == [
        (monitoring.NODE_EXPORTER_PORT, f"{site}-secgroups-cluster")]


def test_the_inventory_carries_grafanas_settings_and_no_secret(report: Preview) -> None:
    text = report.artifacts["ansible/inventory.yaml"]
    inv = YAML(typ="safe", pure=True)
    inv.constructor.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))
    settings = inv.load(text)["all"]["vars"]["aiinfn_monitoring"]
    site = report.env.site.name
    assert settings["prometheus"]["url"] == monitoring.prometheus_url(report.plan)
    assert settings["prometheus"]["uid"] == monitoring.datasource_uid(site)
    assert settings["iam"]["client_id"] == report.env.services.monitoring.grafana.client_id  # type: ignore[union-attr]
    assert settings["iam"]["admin_groups"] == sorted(report.env.iam.admin_groups)
    assert settings["iam"]["viewer_groups"], "nobody but admins could log in"
    assert settings["dashboards"] == monitoring.dashboards(site)
    # the client secret and the reader's password are never in it: where to read the password, not its value
    assert "client_secret" not in str(settings)
    assert settings["prometheus"]["secret"] == {"namespace": monitoring.NAMESPACE, "name": monitoring.READER_SECRET,
                                                "key": "password"}


def test_bootstrap_asks_for_grafanas_client_secret_by_the_name_the_environment_gives(report: Preview) -> None:
    grafana = report.env.services.monitoring.grafana
    assert grafana is not None
    needs = {n.variable: n.name for n in checks.secrets_needed(report.env, "site")}
    assert needs["grafana_iam_client_secret"] == grafana.client_secret
    with pytest.raises(checks.BootstrapError) as e:
        checks.resolve_secrets(checks.secrets_needed(report.env, "site"),
                               environ={}, stack_lookup=lambda n: None if n == grafana.client_secret else "x" * 20)
    assert grafana.client_secret in str(e.value) and "\n" not in str(e.value)
    assert "grafana_iam_client_secret" not in {n.variable for n in checks.secrets_needed(report.env, "mig")}
