"""Monitoring, accounting and backup alerting derived from the plan.

* kube-prometheus-stack keeps its TSDB for `services.monitoring.accounting_retention_days` (at least
  400 days) so the accounting series survive a year; its CRDs are installed and upgraded by the
  chart's own CRD upgrade job, so a chart upgrade never leaves old CRDs behind.
* Accounting: recording rules turn the extended-resource requests of running pods into
  accelerator units allocated per project namespace and accelerator kind (whole devices and MIG
  slices are told apart by the node's `aiinfn.infn.it/mig-profile` label, or by the `mig-` resource
  name under the mixed strategy), and then into hours.
* Backups: an alert when the platform filesystem's last good Borg backup (the timestamp the backup
  role writes for node-exporter's textfile collector) is older than `storage.backup.max_age_hours`,
  or missing.
* Dashboards (Grafana, provisioned from ConfigMaps): accelerator use per project, GPU use per node
  and model, Kueue queue state.
* Only the platform decides what is measured: Prometheus loads rules only from the monitoring
  namespace and monitors only from namespaces labelled as the platform's, and Grafana's sidecar
  loads dashboards only from the monitoring namespace, so a project (which may create ConfigMaps)
  cannot forge accounting.
* Pod Security: ``restricted`` in the monitoring namespace (Prometheus, Alertmanager, the operator,
  kube-state-metrics, Grafana and the CRD upgrade job run as non-root with the chart's seccomp and
  dropped capabilities); node-exporter, which needs the host's network, PID namespace and root
  filesystem, runs alone in ``monitoring-node-exporter`` at ``privileged``.
* Network: everything in the namespace may reach the API server; Prometheus may scrape nodes and
  pods (the scraped namespaces admit it on their metrics ports); the API server reaches the
  operator's webhook (10250); nothing else comes in.
"""

from __future__ import annotations

import json
import re
from typing import Any

from ..config.models import Role
from ..planning import Plan
from ..planning.labels import (
    ACCELERATOR_LABEL,
    MIG_PROFILE_LABEL,
    NAMESPACE_NAME_LABEL,
    PLATFORM_LABEL,
    POOL_LABEL,
    PROJECT_LABEL,
)
from . import network
from .bundle import Bundle, Generated, NodeAddress, RandomPassword, Release, Secret, manifests, namespace

NAMESPACE = network.MONITORING
#: node-exporter's own namespace: the only monitoring pods that need the host.
NODE_EXPORTER_NAMESPACE = "monitoring-node-exporter"
OPERATOR_WEBHOOK_PORT = 10250
RELEASE = "kube-prometheus-stack"
BACKUP_METRIC = "aiinfn_borg_last_success_timestamp_seconds"
ACCELERATOR_RESOURCES = 'nvidia_com_gpu|nvidia_com_mig_.*|amd_com_.*'
NODE_EXPORTER_PORT = 9100
GRAFANA_ADMIN_SECRET = "aiinfn-grafana-admin"
RULE_LABELS = {"release": "kube-prometheus-stack"}


def only_monitoring() -> dict[str, Any]:
    """A namespace selector that selects the monitoring namespace only."""
    return {"matchLabels": {NAMESPACE_NAME_LABEL: NAMESPACE}}


def platform_namespaces() -> dict[str, Any]:
    """A namespace selector of the platform's own namespaces."""
    return {"matchLabels": {PLATFORM_LABEL: "true"}}


def values(plan: Plan, storage_class: str | None, exporter_targets: list[NodeAddress]) -> dict[str, Any]:
    mon = plan.env.services.monitoring
    prom_spec: dict[str, Any] = {
        "ruleNamespaceSelector": only_monitoring(),
        "serviceMonitorNamespaceSelector": platform_namespaces(),
        "podMonitorNamespaceSelector": platform_namespaces(),
        "probeNamespaceSelector": only_monitoring(),
        "scrapeConfigNamespaceSelector": only_monitoring(),
        "retention": f"{mon.accounting_retention_days}d",
        "retentionSize": f"{max(int(mon.storage_gb * 0.9), 1)}GB",
        "ruleSelectorNilUsesHelmValues": False,
        "serviceMonitorSelectorNilUsesHelmValues": False,
        "podMonitorSelectorNilUsesHelmValues": False,
        "additionalScrapeConfigs": [
            {
                "job_name": "aiinfn-storage-nodes",
                "static_configs": [{"targets": exporter_targets, "labels": {"aiinfn_site": plan.env.site.name}}],
            }
        ]
        if exporter_targets
        else [],
    }
    if storage_class:
        prom_spec["storageSpec"] = {
            "volumeClaimTemplate": {
                "spec": {
                    "storageClassName": storage_class,
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": f"{mon.storage_gb}Gi"}},
                }
            }
        }
    return {
        "crds": {"enabled": True, "upgradeJob": {"enabled": True}},
        "prometheus": {"prometheusSpec": prom_spec},
        "alertmanager": {"alertmanagerSpec": {"alertmanagerConfigNamespaceSelector": only_monitoring()}},
        "prometheus-node-exporter": {"namespaceOverride": NODE_EXPORTER_NAMESPACE},
        "kube-state-metrics": {
            "metricLabelsAllowlist": [
                f"nodes=[{MIG_PROFILE_LABEL},{ACCELERATOR_LABEL},{POOL_LABEL}]",
                f"namespaces=[{PROJECT_LABEL}]",
            ]
        },
        "grafana": {
            "sidecar": {"dashboards": {"enabled": True, "label": "grafana_dashboard", "searchNamespace": NAMESPACE}},
            "admin": {
                "existingSecret": GRAFANA_ADMIN_SECRET,
                "userKey": "admin-user",
                "passwordKey": "admin-password",
            },
        },
    }


def scraped_nodes(plan: Plan) -> list[str]:
    """Nodes outside the cluster whose node-exporter Prometheus scrapes (NFS, backup)."""
    return [n.name for n in plan.nodes if n.role in (Role.NFS, Role.BACKUP)]


def exporter_targets(plan: Plan) -> list[NodeAddress]:
    """node-exporter of every scraped node, at its fixed IP."""
    return [NodeAddress(n, NODE_EXPORTER_PORT) for n in scraped_nodes(plan)]


def ksm_label(key: str) -> str:
    """The name kube-state-metrics gives a Kubernetes label in ``kube_*_labels``
    (``aiinfn.infn.it/mig-profile`` -> ``label_aiinfn_infn_it_mig_profile``)."""
    return "label_" + re.sub(r"[^A-Za-z0-9_]", "_", key)


ACC = ksm_label(ACCELERATOR_LABEL)
MIG = ksm_label(MIG_PROFILE_LABEL)


def _node_join(expr: str) -> str:
    return (
        f"({expr}) * on (namespace, pod) group_left (node) max by (namespace, pod, node) (kube_pod_info)"
    )


def accounting_rules() -> dict[str, Any]:
    running = 'max by (namespace, pod) (kube_pod_status_phase{phase="Running"}) == 1'
    requests = f'kube_pod_container_resource_requests{{resource=~"{ACCELERATOR_RESOURCES}"}}'
    allocated = (
        f"sum by (namespace, resource, {ACC}, {MIG}) ("
        f"({_node_join(requests)}) * on (namespace, pod) group_left () ({running})"
        f" * on (node) group_left ({ACC}, {MIG})"
        f" max by (node, {ACC}, {MIG}) (kube_node_labels))"
    )
    return _rule_set(
        "aiinfn-accounting",
        [
            {"record": "aiinfn:accelerator_allocated:by_project", "expr": allocated},
            {
                "record": "aiinfn:accelerator_hours:by_project:1h",
                "expr": "sum_over_time(aiinfn:accelerator_allocated:by_project[1h:1m]) / 60",
            },
        ],
        interval="1m",
    )


def _rule_set(name: str, rules: list[dict[str, Any]], interval: str | None = None) -> dict[str, Any]:
    """A PrometheusRule with one group of the same name, picked up by kube-prometheus-stack."""
    group: dict[str, Any] = {"name": name, **({"interval": interval} if interval else {}), "rules": rules}
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": RULE_LABELS},
        "spec": {"groups": [group]},
    }


def backup_rules(plan: Plan) -> dict[str, Any] | None:
    backup = plan.env.storage.backup
    if backup is None:
        return None
    max_age = backup.max_age_hours * 3600
    return _rule_set(
        "aiinfn-backup",
        [
            {
                "alert": "PlatformBackupTooOld",
                "expr": f"time() - max({BACKUP_METRIC}) > {max_age}",
                "for": "10m",
                "labels": {"severity": "critical"},
                "annotations": {
                    "summary": f"The platform filesystem's last good backup is older than {backup.max_age_hours} hours",
                    "runbook": "docs/operations.md#restore-a-backup",
                },
            },
            {
                "alert": "PlatformBackupMetricMissing",
                "expr": f"absent({BACKUP_METRIC})",
                "for": "1h",
                "labels": {"severity": "critical"},
                "annotations": {"summary": "No Borg backup timestamp is reported by the NFS node"},
            },
        ],
    )


def _panel(title: str, expr: str, legend: str, unit: str, y: int) -> dict[str, Any]:
    return {
        "type": "timeseries",
        "title": title,
        "gridPos": {"h": 9, "w": 24, "x": 0, "y": y},
        "datasource": {"type": "prometheus", "uid": "prometheus"},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [{"expr": expr, "legendFormat": legend, "refId": "A"}],
    }


def dashboards() -> dict[str, dict[str, Any]]:
    """Grafana dashboard JSON models by file name."""

    def board(uid: str, title: str, panels: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "uid": uid,
            "title": title,
            "tags": ["aiinfn"],
            "schemaVersion": 39,
            "time": {"from": "now-7d", "to": "now"},
            "panels": panels,
        }

    return {
        "aiinfn-projects.json": board("aiinfn-projects", "AI_INFN: accelerators per project", [
            _panel("Accelerator units allocated", f"sum by (namespace, {MIG}, resource) "
                   "(aiinfn:accelerator_allocated:by_project)", "{{namespace}} {{" + MIG + "}}",
                   "short", 0),
            _panel("Accelerator hours per day", "sum by (namespace) (sum_over_time("
                   "aiinfn:accelerator_hours:by_project:1h[1d:1h]))", "{{namespace}}", "h", 9),
        ]),
        "aiinfn-gpus.json": board("aiinfn-gpus", "AI_INFN: GPU use per node and model", [
            _panel("GPU utilisation", "avg by (Hostname, modelName, GPU_I_PROFILE) (DCGM_FI_DEV_GPU_UTIL)",
                   "{{Hostname}} {{modelName}} {{GPU_I_PROFILE}}", "percent", 0),
            _panel("GPU memory used", "sum by (Hostname, modelName) (DCGM_FI_DEV_FB_USED)",
                   "{{Hostname}} {{modelName}}", "decmbytes", 9),
        ]),
        "aiinfn-queues.json": board("aiinfn-queues", "AI_INFN: Kueue queues", [
            _panel("Pending workloads", "sum by (cluster_queue) (kueue_pending_workloads)", "{{cluster_queue}}",
                   "short", 0),
            _panel("Admitted workloads", "sum by (cluster_queue) (kueue_admitted_active_workloads)",
                   "{{cluster_queue}}", "short", 9),
            _panel("Quota used", "sum by (cluster_queue, flavor, resource) (kueue_cluster_queue_resource_usage)",
                   "{{cluster_queue}} {{flavor}} {{resource}}", "short", 18),
        ]),
    }


def dashboard_configmaps() -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": name.removesuffix(".json"),
                "namespace": NAMESPACE,
                "labels": {"grafana_dashboard": "1"},
            },
            "data": {name: json.dumps(board, indent=2, sort_keys=True)},
        }
        for name, board in dashboards().items()
    ]


def objects(plan: Plan) -> list[dict[str, Any]]:
    """Recording and alerting rules, then the dashboards."""
    rules = [accounting_rules()]
    backup = backup_rules(plan)
    if backup is not None:
        rules.append(backup)
    return [*rules, *dashboard_configmaps()]


def network_policies(plan: Plan) -> list[dict[str, Any]]:
    ranges = network.Ranges.of(plan)
    return [
        *network.baseline(NAMESPACE),
        network.allow_apiserver(NAMESPACE, ranges),
        network.allow_from_apiserver(NAMESPACE, ranges, [OPERATOR_WEBHOOK_PORT]),
        network.policy("allow-scrape", NAMESPACE, pods=network.PROMETHEUS_PODS, egress=[
            {"to": [network.block(ranges.nodes), network.block(ranges.pods)]},
        ]),
        # node-exporter runs on the host network, where no NetworkPolicy applies: nothing else runs here
        *network.baseline(NODE_EXPORTER_NAMESPACE, same_namespace=False),
    ]


def bundle(plan: Plan, storage_class: str | None) -> Bundle:
    """kube-prometheus-stack (its CRDs with it), Grafana's generated admin password, rules and dashboards."""
    platform = {PLATFORM_LABEL: "true"}
    return Bundle(
        "monitoring",
        (
            namespace(NAMESPACE, "restricted", platform),
            namespace(NODE_EXPORTER_NAMESPACE, "privileged", platform),  # node-exporter reads the host
            *manifests(*network_policies(plan)),
            RandomPassword("grafana-admin-password", length=32, special=False),
            Secret(GRAFANA_ADMIN_SECRET, (f"ns-{NAMESPACE}",), name=GRAFANA_ADMIN_SECRET, namespace=NAMESPACE,
                   data={"admin-user": "admin", "admin-password": Generated("grafana-admin-password")}),
            Release(RELEASE, (f"ns-{NAMESPACE}", f"ns-{NODE_EXPORTER_NAMESPACE}", GRAFANA_ADMIN_SECRET),
                    chart="kube-prometheus-stack",
                    namespace=NAMESPACE, values=values(plan, storage_class, exporter_targets(plan)),
                    crd_groups=("monitoring.coreos.com",)),
            *manifests(*objects(plan), after=(RELEASE,)),
        ),
    )
