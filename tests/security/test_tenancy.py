"""The platform's settings that keep tenants apart: Kueue's managed namespaces, what Prometheus and
Grafana read, Harbor's internal credentials. Over the bundles every shipped site (and an event at
it) registers; the charts themselves cannot run here, so the values are checked against the pinned
charts' value names and the keys their templates read (cited per test).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from admission import selects
from ruamel.yaml import YAML

from aiinfn import versions
from aiinfn.config.loader import list_environments, load
from aiinfn.planning import make_plan
from aiinfn.planning.labels import NAMESPACE_NAME_LABEL, PLATFORM_LABEL
from aiinfn.services import event, harbor, kueue, monitoring, site_bundles
from aiinfn.services.bundle import Generated, Manifest, RandomPassword, Release, Secret

SITES = list_environments(kind="site")


def _namespaces(site: str) -> tuple[Any, dict[str, dict[str, str]]]:
    plan = make_plan(load(site))
    out = {}
    for b in site_bundles(plan):
        for i in b.items:
            if isinstance(i, Manifest) and i.kind == "Namespace":
                out[i.manifest["metadata"]["name"]] = {**i.manifest["metadata"]["labels"],
                                                       NAMESPACE_NAME_LABEL: i.manifest["metadata"]["name"]}
    for ev in (load(n) for n in list_environments(kind="event")):
        if site in ev.site_environments():
            ns = event.namespace(ev)
            out[ev.namespace] = {**ns["metadata"]["labels"], NAMESPACE_NAME_LABEL: ev.namespace}
    return plan, out


@pytest.mark.parametrize("site", SITES)
def test_kueue_manages_every_workload_of_the_tenants_and_nothing_of_the_platform(site: str) -> None:
    """Kueue 0.19 serves config.kueue.x-k8s.io/v1beta2; with manageJobsWithoutQueueName its pod
    integration holds back every pod of a selected namespace that no Kueue workload owns, so the
    selector must select the tenants' namespaces and none of the platform's (whose controllers'
    pods would never start)."""
    plan, namespaces = _namespaces(site)
    values = kueue.values()
    config = YAML(typ="safe", pure=True).load(values["managerConfig"]["controllerManagerConfigYaml"])
    assert config["apiVersion"] == "config.kueue.x-k8s.io/v1beta2" and versions.KUEUE == "0.19.2"
    assert config["manageJobsWithoutQueueName"] is True
    assert config["metrics"]["enableClusterQueueResources"] is True  # issue 15's per-queue resource metrics
    managed = {n for n, labels in namespaces.items() if selects(config["managedJobsNamespaceSelector"], labels)}
    tenants = {q.namespace for q in plan.quotas} | {n for n in namespaces if n.startswith("event-")}
    assert managed == tenants | {"jupyterhub-users"}  # notebooks are Kueue workloads (services.notebooks)
    assert {"batch/job", "pod"} <= set(config["integrations"]["frameworks"])


def _release(plan: Any, chart: str) -> Release:
    return next(r for b in site_bundles(plan) for r in b.releases if r.chart == chart)


@pytest.mark.parametrize("site", SITES)
def test_prometheus_and_grafana_read_only_what_the_platform_wrote(site: str) -> None:
    """kube-prometheus-stack 79.5.0: prometheus.prometheusSpec.{rule,serviceMonitor,podMonitor,probe,
    scrapeConfig}NamespaceSelector, alertmanager.alertmanagerSpec.alertmanagerConfigNamespaceSelector,
    grafana.sidecar.dashboards.searchNamespace, prometheus-node-exporter.namespaceOverride."""
    plan, namespaces = _namespaces(site)
    values = _release(plan, "kube-prometheus-stack").values
    spec = values["prometheus"]["prometheusSpec"]
    only_monitoring = {n for n, labels in namespaces.items() if selects(spec["ruleNamespaceSelector"], labels)}
    assert only_monitoring == {monitoring.NAMESPACE}
    for key in ("probeNamespaceSelector", "scrapeConfigNamespaceSelector"):
        assert {n for n, labels in namespaces.items() if selects(spec[key], labels)} == {monitoring.NAMESPACE}
    alert = values["alertmanager"]["alertmanagerSpec"]["alertmanagerConfigNamespaceSelector"]
    assert {n for n, labels in namespaces.items() if selects(alert, labels)} == {monitoring.NAMESPACE}
    tenants = {q.namespace for q in plan.quotas} | {n for n in namespaces if n.startswith("event-")}
    for key in ("serviceMonitorNamespaceSelector", "podMonitorNamespaceSelector"):
        scraped = {n for n, labels in namespaces.items() if selects(spec[key], labels)}
        assert not scraped & tenants and not selects(spec[key], {})  # never every namespace
        # every chart that ships a ServiceMonitor lives in a scraped namespace
        for b in site_bundles(plan):
            for r in b.releases:
                text = json.dumps(r.values, default=str).lower()
                if "servicemonitor" in text:
                    assert r.namespace in scraped, (r.chart, r.namespace)
    # no Grafana in the cluster (it runs on the monitoring VM): no sidecar reading dashboards from any namespace
    assert values["grafana"] == {"enabled": False}
    exporter_ns = values["prometheus-node-exporter"]["namespaceOverride"]
    assert namespaces[exporter_ns][PLATFORM_LABEL] == "true"
    assert namespaces[exporter_ns]["pod-security.kubernetes.io/enforce"] == "privileged"
    assert namespaces[monitoring.NAMESPACE]["pod-security.kubernetes.io/enforce"] == "restricted"


#: Harbor chart 1.19.0: value naming the Secret -> the key its templates read
#: (templates/core/core-dpl.yaml, jobservice/jobservice-dpl.yaml, registry/registry-dpl.yaml).
HARBOR_SECRET_VALUES = {
    ("existingSecretSecretKey",): "secretKey",
    ("core", "existingSecret"): "secret",
    ("core", "existingXsrfSecret"): "CSRF_KEY",
    ("jobservice", "existingSecret"): "JOBSERVICE_SECRET",
    ("registry", "existingSecret"): "REGISTRY_HTTP_SECRET",
}
#: Lengths the chart requires (values.yaml: "Must be a string of 16 chars"; the XSRF key 32).
LENGTHS = {"secretKey": 16, "secret": 16, "JOBSERVICE_SECRET": 16, "REGISTRY_HTTP_SECRET": 16, "CSRF_KEY": 32}
#: The chart's published defaults: a Harbor running with one of them has a known secret.
CHART_DEFAULTS = ("Harbor12345", "not-a-secure-key", "changeit", "harbor_registry_password")


def test_harbors_internal_credentials_are_generated_by_the_stack() -> None:
    plan = make_plan(load("cnaf"))
    bundle = next(b for b in site_bundles(plan) if b.service == "harbor")
    values = _release(plan, "harbor").values
    secrets = {s.name: s for s in bundle.secrets}
    randoms = {r.key: r for r in bundle.of(RandomPassword)}
    for path, key in HARBOR_SECRET_VALUES.items():
        node: Any = values
        for p in path:
            node = node[p]
        secret = secrets[node]
        value = secret.data[key]
        assert isinstance(value, Generated), (path, key)
        assert randoms[value.key].length == LENGTHS[key] and not randoms[value.key].special
    assert values["core"]["existingXsrfSecretKey"] == "CSRF_KEY"
    assert values["jobservice"]["existingSecretKey"] == "JOBSERVICE_SECRET"
    assert values["registry"]["existingSecretKey"] == "REGISTRY_HTTP_SECRET"
    text = json.dumps(values)
    for default in CHART_DEFAULTS:
        assert default not in text
    # the internal database: no existing-secret value in 1.19; an empty password makes the chart read
    # POSTGRES_PASSWORD from its Secret <release>-database (templates/_helpers.tpl, a lookup), which the
    # stack creates generated and marked as the release's, so Helm adopts it
    assert values["database"]["internal"]["password"] == ""
    db = secrets[f"{harbor.RELEASE}-database"]
    assert isinstance(db.data["POSTGRES_PASSWORD"], Generated)
    assert db.labels == {"app.kubernetes.io/managed-by": "Helm"}
    assert db.annotations == {"meta.helm.sh/release-name": harbor.RELEASE, "meta.helm.sh/release-namespace": "harbor"}
    # the registry's basic auth (registry.credentials.existingSecret, keys REGISTRY_PASSWD and
    # REGISTRY_HTPASSWD: templates/registry/registry-dpl.yaml, core/core-dpl.yaml): the password and
    # the htpasswd line of the same random password, user:bcrypt
    creds = secrets[values["registry"]["credentials"]["existingSecret"]].data
    user = values["registry"]["credentials"]["username"]
    assert creds["REGISTRY_PASSWD"] == Generated(creds["REGISTRY_PASSWD"].key)  # type: ignore[union-attr]
    assert creds["REGISTRY_HTPASSWD"] == Generated(creds["REGISTRY_PASSWD"].key, "bcrypt_hash",  # type: ignore[union-attr]
                                                   prefix=f"{user}:")
    # each generated credential is its own: no two values share a random item (but that pair)
    refs = [(v.key, v.output) for s in bundle.secrets for v in s.data.values() if isinstance(v, Generated)]
    assert len(refs) == len(set(refs)) and len({k for k, _ in refs}) == len(refs) - 1
    assert all(isinstance(s, Secret) and s.namespace == harbor.NAMESPACE for s in bundle.secrets)
