"""Monitoring, accounting and backup alerting derived from the plan.

* kube-prometheus-stack keeps its TSDB for `services.monitoring.accounting_retention_days` (at least
  400 days) so the accounting series survive a year; its CRDs are installed and upgraded by the
  chart's own CRD upgrade job, so a chart upgrade never leaves old CRDs behind.
* Accounting (``accounting_rules``): every minute, the accelerator units that running pods request
  (kube-state-metrics' ``kube_pod_container_resource_requests``) are charged to a project and a user
  and recorded per accelerator kind as ``aiinfn:accelerator_allocated:by_project``. The project a pod
  is charged to, in this order: its namespace's project (a project's namespace: the pod's own label
  is not believed there, since the project's members write their pods' labels and could charge another
  project), its namespace's event (``event/<name>``), the pod's own ``aiinfn.infn.it/project`` label
  (set by the hub on notebooks in its users' namespace, where only the hub creates pods: the project
  the user chose at spawn), the pod's event label, else ``no.project``. The user is KubeSpawner's
  ``hub.jupyter.org/username`` label (notebooks) or the batch service's owner label (batch Jobs).
  Whole devices and MIG slices are told apart by the node's ``aiinfn.infn.it/mig-profile`` label
  (single strategy) or the ``mig-`` resource name (mixed). One sample a minute is one minute of use:
  ``aiinfn accounting`` turns samples into unit-hours (``aiinfn.accounting``).
* Backups: an alert when the platform filesystem's last good Borg backup (the timestamp the backup
  role writes for node-exporter's textfile collector) is older than `storage.backup.max_age_hours`,
  or missing; node-exporter runs on every VM outside the cluster (roles/node_exporter).
* Dashboards (``dashboards``): accelerator use per project, GPU use per node and model, Kueue queue
  state, the VMs outside the cluster. They are provisioned by Ansible into Grafana on the site's
  `monitoring` VM (roles/grafana), from these definitions (the inventory carries them): Grafana lives
  outside the cluster, so dashboards and the accounting reports survive it. The chart's own Grafana
  is off.
* Prometheus is reached from outside the cluster (Grafana, ``aiinfn accounting``) only through an
  Ingress with a certificate of the platform's issuer and basic auth: a generated password whose
  bcrypt hash ingress-nginx checks (``aiinfn-prometheus-basic-auth``) and, for the monitoring playbook
  to read through the first server's kubectl, the reader's credentials (``aiinfn-prometheus-reader``).
* Only the platform decides what is measured: Prometheus loads rules only from the monitoring
  namespace and monitors only from namespaces labelled as the platform's, so a project (which may
  create ConfigMaps and PrometheusRules in its own namespace) cannot forge accounting.
* Pod Security: ``restricted`` in the monitoring namespace (Prometheus, Alertmanager, the operator,
  kube-state-metrics and the CRD upgrade job run as non-root with the chart's seccomp and dropped
  capabilities); node-exporter, which needs the host's network, PID namespace and root filesystem,
  runs alone in ``monitoring-node-exporter`` at ``privileged``.
* Network: everything in the namespace may reach the API server; Prometheus may scrape nodes and
  pods (the scraped namespaces admit it on their metrics ports); the API server reaches the
  operator's webhook (10250); the ingress controller reaches Prometheus (9090) and cert-manager's
  HTTP-01 solver; nothing else comes in.
"""

from __future__ import annotations

import re
from typing import Any

from ..planning import Plan
from ..planning.labels import (
    ACCELERATOR_LABEL,
    BATCH_OWNER_LABEL,
    EVENT_LABEL,
    MIG_PROFILE_LABEL,
    NAMESPACE_NAME_LABEL,
    PLATFORM_LABEL,
    POOL_LABEL,
    PROJECT_LABEL,
)
from . import network, tls
from .bundle import Bundle, Generated, NodeAddress, RandomPassword, Release, Secret, manifests, namespace

NAMESPACE = network.MONITORING
#: node-exporter's own namespace: the only monitoring pods that need the host.
NODE_EXPORTER_NAMESPACE = "monitoring-node-exporter"
OPERATOR_WEBHOOK_PORT = 10250
PROMETHEUS_PORT = 9090
RELEASE = "kube-prometheus-stack"
BACKUP_METRIC = "aiinfn_borg_last_success_timestamp_seconds"
ACCELERATOR_RESOURCES = 'nvidia_com_gpu|nvidia_com_mig_.*|amd_com_.*'
NODE_EXPORTER_PORT = 9100
#: The scrape job of node-exporter on the VMs outside the cluster (NFS, backup, bastion, monitoring).
VM_JOB = "aiinfn-vms"
RULE_LABELS = {"release": "kube-prometheus-stack"}
#: GPU Feature Discovery's product label (``NVIDIA-A100-SXM4-80GB``): the dashboards show it beside ours.
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
#: KubeSpawner's label of a notebook pod: its user's hub name (escaped as a label value).
NOTEBOOK_USER_LABEL = "hub.jupyter.org/username"

#: How often the accounting rules are evaluated: one sample of ``ALLOCATED`` is this many seconds of use.
RECORD_INTERVAL_SECONDS = 60
#: Accelerator units allocated, by project, user and kind (labels ``project``, ``user``, ``accelerator``,
#: ``mig_profile`` (empty for whole devices), ``kind``).
ALLOCATED = "aiinfn:accelerator_allocated:by_project"
#: Unit-hours of the hour before each sample (one sample an hour), same labels: the dashboards' daily sums.
HOURLY = "aiinfn:accelerator_hours:by_project:1h"
#: Label value of use no project is charged for (never a project's name: those are DNS labels, without dots).
NO_PROJECT = "no.project"
#: Prefix of the ``project`` label of use charged to an event.
EVENT_PREFIX = "event/"
#: Range selectors of exactly (t - span, t]: Prometheus 2 includes both ends of a range, so a range one
#: millisecond short of the span never counts a sample twice in adjacent windows.
HOUR_RANGE = "59m59s999ms"

#: The Prometheus Ingress: basic-auth user of remote readers (Grafana, `aiinfn accounting`), the Secret
#: ingress-nginx checks (key ``auth``: an htpasswd line), the Secret holding the reader's credentials.
READER_USER = "aiinfn-reader"
BASIC_AUTH_SECRET = "aiinfn-prometheus-basic-auth"
READER_SECRET = "aiinfn-prometheus-reader"
READER_PASSWORD = "prometheus-reader-password"
#: The Secret of the Ingress's certificate (cert-manager writes it).
PROMETHEUS_TLS_SECRET = "aiinfn-prometheus-tls"
#: Grafana's HTTPS port on the monitoring VM: above 1024, so Grafana needs no capability (the grafana.grafana
#: collection's own setcap for a port below 1024 reports a change at every run).
GRAFANA_PORT = 3000


def only_monitoring() -> dict[str, Any]:
    """A namespace selector that selects the monitoring namespace only."""
    return {"matchLabels": {NAMESPACE_NAME_LABEL: NAMESPACE}}


def platform_namespaces() -> dict[str, Any]:
    """A namespace selector of the platform's own namespaces."""
    return {"matchLabels": {PLATFORM_LABEL: "true"}}


def prometheus_host(plan: Plan) -> str:
    """Prometheus' public name (its Ingress)."""
    return plan.env.services.monitoring.prometheus_hostname or f"prometheus.{plan.env.site.domain}"


def prometheus_url(plan: Plan) -> str:
    return f"https://{prometheus_host(plan)}"


def grafana_host(plan: Plan) -> str:
    g = plan.env.services.monitoring.grafana
    return (g.hostname if g and g.hostname else None) or f"grafana.{plan.env.site.domain}"


def datasource_name(site: str) -> str:
    """The Grafana datasource of ``site``'s Prometheus."""
    return f"Prometheus {site}"


def datasource_uid(site: str) -> str:
    return f"prometheus-{site}"


def ingress_values(plan: Plan) -> dict[str, Any]:
    """The chart's Prometheus Ingress: TLS from the platform's issuer, basic auth checked by ingress-nginx."""
    host = prometheus_host(plan)
    return {
        "enabled": True,
        "ingressClassName": tls.INGRESS_CLASS,
        "annotations": {
            **tls.ingress_annotations(),
            "nginx.ingress.kubernetes.io/auth-type": "basic",
            "nginx.ingress.kubernetes.io/auth-secret": BASIC_AUTH_SECRET,
            "nginx.ingress.kubernetes.io/auth-realm": "aiinfn prometheus",
        },
        "hosts": [host],
        "paths": ["/"],
        "tls": [{"secretName": PROMETHEUS_TLS_SECRET, "hosts": [host]}],
    }


def ksm_allowlist() -> list[str]:
    """kube-state-metrics' label allowlist: every Kubernetes label the rules and dashboards read."""
    return [
        f"nodes=[{MIG_PROFILE_LABEL},{ACCELERATOR_LABEL},{POOL_LABEL},{GPU_PRODUCT_LABEL}]",
        f"pods=[{PROJECT_LABEL},{EVENT_LABEL},{NOTEBOOK_USER_LABEL},{BATCH_OWNER_LABEL}]",
        f"namespaces=[{PROJECT_LABEL},{EVENT_LABEL}]",
    ]


def values(plan: Plan, storage_class: str | None, exporter_targets: list[NodeAddress]) -> dict[str, Any]:
    mon = plan.env.services.monitoring
    site = plan.env.site.name
    by_node = {t.node: t for t in exporter_targets}
    prom_spec: dict[str, Any] = {
        "ruleNamespaceSelector": only_monitoring(),
        "serviceMonitorNamespaceSelector": platform_namespaces(),
        "podMonitorNamespaceSelector": platform_namespaces(),
        "probeNamespaceSelector": only_monitoring(),
        "scrapeConfigNamespaceSelector": only_monitoring(),
        "retention": f"{mon.accounting_retention_days}d",
        "retentionSize": f"{max(int(mon.storage_gb * 0.9), 1)}GB",
        "externalUrl": prometheus_url(plan),
        "ruleSelectorNilUsesHelmValues": False,
        "serviceMonitorSelectorNilUsesHelmValues": False,
        "podMonitorSelectorNilUsesHelmValues": False,
        "additionalScrapeConfigs": [
            {
                "job_name": VM_JOB,
                "static_configs": [
                    {"targets": [by_node[n]], "labels": {"aiinfn_site": site, "node": n}} for n in by_node
                ],
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
        "prometheus": {"prometheusSpec": prom_spec, "ingress": ingress_values(plan)},
        "alertmanager": {"alertmanagerSpec": {"alertmanagerConfigNamespaceSelector": only_monitoring()}},
        "prometheus-node-exporter": {"namespaceOverride": NODE_EXPORTER_NAMESPACE},
        "kube-state-metrics": {"metricLabelsAllowlist": ksm_allowlist()},
        # Grafana runs on the site's monitoring VM (roles/grafana), outside the cluster
        "grafana": {"enabled": False},
    }


def scraped_nodes(plan: Plan) -> list[str]:
    """VMs outside the cluster whose node-exporter Prometheus scrapes (NFS, backup, bastion, monitoring)."""
    return [n.name for n in plan.nodes if not n.is_kubernetes_node]


def exporter_targets(plan: Plan) -> list[NodeAddress]:
    """node-exporter of every scraped node, at its fixed IP."""
    return [NodeAddress(n, NODE_EXPORTER_PORT) for n in scraped_nodes(plan)]


def ksm_label(key: str) -> str:
    """The name kube-state-metrics gives a Kubernetes label in ``kube_*_labels``
    (``aiinfn.infn.it/mig-profile`` -> ``label_aiinfn_infn_it_mig_profile``)."""
    return "label_" + re.sub(r"[^A-Za-z0-9_]", "_", key)


ACC = ksm_label(ACCELERATOR_LABEL)
MIG = ksm_label(MIG_PROFILE_LABEL)
POD_PROJECT = ksm_label(PROJECT_LABEL)
POD_EVENT = ksm_label(EVENT_LABEL)
POD_USER = ksm_label(NOTEBOOK_USER_LABEL)
POD_OWNER = ksm_label(BATCH_OWNER_LABEL)
NOT_EMPTY = '!=""'

# --------------------------------------------------------------------------- accounting rules


def _pods(selector: str = "") -> str:
    """One series per pod with its ``user`` (the notebook's user, else the batch Job's owner) and its own
    project and event labels."""
    labels = f"kube_pod_labels{{{selector}}}" if selector else "kube_pod_labels"
    with_user = (f'label_replace(label_replace({labels}, "user", "$1", "{POD_OWNER}", "(.+)"),'
                 f' "user", "$1", "{POD_USER}", "(.+)")')
    return f"max by (namespace, pod, user, {POD_PROJECT}, {POD_EVENT}) ({with_user})"


def _namespaces(key: str, prefix: str) -> str:
    """``project`` of every namespace with label ``key`` (kube-state-metrics' name)."""
    return (f'label_replace(max by (namespace, {key}) (kube_namespace_labels{{{key}!=""}}),'
            f' "project", "{prefix}$1", "{key}", "(.+)")')


def charge_expr() -> str:
    """One series per pod, value 1, labels ``namespace``, ``pod``, ``project``, ``user``: who is charged."""
    branches = [
        f"{_pods()} * on (namespace) group_left (project) {_namespaces(POD_PROJECT, '')}",
        f"{_pods()} * on (namespace) group_left (project) {_namespaces(POD_EVENT, EVENT_PREFIX)}",
        f'label_replace({_pods(POD_PROJECT + NOT_EMPTY)}, "project", "$1", "{POD_PROJECT}", "(.+)")',
        f'label_replace({_pods(POD_EVENT + NOT_EMPTY)}, "project", "{EVENT_PREFIX}$1", "{POD_EVENT}", "(.+)")',
        f'label_replace({_pods()}, "project", "{NO_PROJECT}", "", "")',
    ]
    return "max by (namespace, pod, project, user) (\n  " + "\n  or on (namespace, pod) ".join(
        f"({b})" for b in branches) + "\n)"


def running_requests_expr() -> str:
    """Accelerator units each running pod requests, by pod, node and resource."""
    requests = f'kube_pod_container_resource_requests{{resource=~"{ACCELERATOR_RESOURCES}"}}'
    running = 'max by (namespace, pod) (kube_pod_status_phase{phase="Running"}) == 1'
    return (f"sum by (namespace, pod, node, resource) ({requests}"
            f" * on (namespace, pod) group_left (node) max by (namespace, pod, node) (kube_pod_info))"
            f" * on (namespace, pod) group_left () ({running})")


def node_kinds_expr() -> str:
    """One series per node: its accelerator model and (single strategy) MIG profile."""
    return (f'max by (node, accelerator, mig_profile) (label_replace(label_replace(kube_node_labels,'
            f' "accelerator", "$1", "{ACC}", "(.*)"), "mig_profile", "$1", "{MIG}", "(.*)"))')


def allocated_expr() -> str:
    joined = (f"({running_requests_expr()})\n  * on (namespace, pod) group_left (project, user) ({charge_expr()})"
              f"\n  * on (node) group_left (accelerator, mig_profile) {node_kinds_expr()}")
    # mixed strategy: the profile is in the resource name (nvidia.com/mig-1g.10gb, mig-1g.10gb.me)
    mixed = (f'label_replace(label_replace({joined},\n  "mig_profile", "$1.$2", "resource",'
             f' "nvidia_com_mig_([0-9]+g)_([0-9]+gb)"),\n  "mig_profile", "$1.$2.me", "resource",'
             f' "nvidia_com_mig_([0-9]+g)_([0-9]+gb)_me")')
    summed = f"sum by (project, user, accelerator, mig_profile) (\n{mixed}\n)"
    return (f'label_replace(label_join({summed}, "kind", "/", "accelerator", "mig_profile"),'
            f' "kind", "$1", "kind", "(.*)/")')


def accounting_rules() -> dict[str, Any]:
    return _rule_set("aiinfn-accounting", [
        {"name": "aiinfn-accounting", "interval": f"{RECORD_INTERVAL_SECONDS}s", "rules": [
            {"record": ALLOCATED, "expr": allocated_expr()},
        ]},
        {"name": "aiinfn-accounting-hourly", "interval": "1h", "rules": [
            {"record": HOURLY, "expr": f"sum_over_time({ALLOCATED}[{HOUR_RANGE}]) * {RECORD_INTERVAL_SECONDS} / 3600"},
        ]},
    ])


def _rule_set(name: str, groups: list[dict[str, Any]]) -> dict[str, Any]:
    """A PrometheusRule, picked up by kube-prometheus-stack."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": RULE_LABELS},
        "spec": {"groups": groups},
    }


def backup_rules(plan: Plan) -> dict[str, Any] | None:
    backup = plan.env.storage.backup
    if backup is None:
        return None
    max_age = backup.max_age_hours * 3600
    return _rule_set("aiinfn-backup", [{"name": "aiinfn-backup", "rules": [
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
    ]}])


def vm_rules(plan: Plan) -> dict[str, Any] | None:
    if not scraped_nodes(plan):
        return None
    return _rule_set("aiinfn-vms", [{"name": "aiinfn-vms", "rules": [
        {
            "alert": "PlatformVmExporterDown",
            "expr": f'up{{job="{VM_JOB}"}} == 0',
            "for": "15m",
            "labels": {"severity": "warning"},
            "annotations": {"summary": "node-exporter of {{ $labels.node }} (outside the cluster) is not scraped"},
        },
    ]}])


# --------------------------------------------------------------------------- dashboards

#: Every panel reads the datasource the dashboard's ``datasource`` variable names (a site's Prometheus).
DATASOURCE_REF = {"type": "prometheus", "uid": "${datasource}"}


def _panel(title: str, expr: str, legend: str, unit: str, y: int, interval: str = "",
           kind: str = "timeseries") -> dict[str, Any]:
    target: dict[str, Any] = {"expr": expr, "legendFormat": legend, "refId": "A",
                              "datasource": DATASOURCE_REF}
    if interval:
        target["interval"] = interval
    return {
        "type": kind,
        "title": title,
        "gridPos": {"h": 9, "w": 24, "x": 0, "y": y},
        "datasource": DATASOURCE_REF,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [target],
    }


def _legend(*labels: str) -> str:
    return " ".join("{{" + label + "}}" for label in labels)


def dashboards(site: str = "") -> dict[str, dict[str, Any]]:
    """Grafana dashboard JSON models by file name; the datasource variable defaults to ``site``'s Prometheus."""

    def board(uid: str, title: str, panels: list[dict[str, Any]]) -> dict[str, Any]:
        variable: dict[str, Any] = {"name": "datasource", "label": "site", "type": "datasource",
                                    "query": "prometheus", "refresh": 1, "hide": 0}
        if site:
            variable["current"] = {"text": datasource_name(site), "value": datasource_uid(site)}
        return {
            "uid": uid,
            "title": title,
            "tags": ["aiinfn"],
            "schemaVersion": 39,
            "editable": False,
            "time": {"from": "now-30d", "to": "now"},
            "templating": {"list": [variable]},
            "panels": panels,
        }

    slices = f'{ALLOCATED}{{mig_profile!=""}}'
    return {
        "aiinfn-projects.json": board("aiinfn-projects", "AI_INFN: accelerators per project", [
            _panel("Accelerator units allocated, by project and kind", f"sum by (project, kind) ({ALLOCATED})",
                   _legend("project", "kind"), "short", 0),
            _panel("Accelerator unit-hours per day, by project", f"sum by (project) (sum_over_time({HOURLY}[1d]))",
                   _legend("project"), "h", 9, interval="1d", kind="barchart"),
            _panel("MIG slice-hours per day, by profile", f'sum by (kind) (sum_over_time({HOURLY}{{mig_profile!=""}}'
                   "[1d]))", _legend("kind"), "h", 18, interval="1d", kind="barchart"),
            _panel("MIG slices allocated, by project and profile", f"sum by (project, kind) ({slices})",
                   _legend("project", "kind"), "short", 27),
        ]),
        "aiinfn-gpus.json": board("aiinfn-gpus", "AI_INFN: GPU use per node and model", [
            _panel("GPU utilisation (whole GPUs)", 'avg by (Hostname, modelName) (DCGM_FI_DEV_GPU_UTIL)',
                   _legend("Hostname", "modelName"), "percent", 0),
            _panel("Graphics engine activity (MIG instances)",
                   'avg by (Hostname, modelName, GPU_I_PROFILE) (DCGM_FI_PROF_GR_ENGINE_ACTIVE{GPU_I_PROFILE!=""})',
                   _legend("Hostname", "GPU_I_PROFILE"), "percentunit", 9),
            _panel("GPU memory used", "sum by (Hostname, modelName) (DCGM_FI_DEV_FB_USED)",
                   _legend("Hostname", "modelName"), "decmbytes", 18),
            _panel("Accelerators per node (kube-state-metrics)",
                   f'count by ({ACC}, {ksm_label(GPU_PRODUCT_LABEL)}) (kube_node_labels{{{ACC}!=""}})',
                   _legend(ACC, ksm_label(GPU_PRODUCT_LABEL)), "short", 27),
        ]),
        "aiinfn-queues.json": board("aiinfn-queues", "AI_INFN: Kueue queues", [
            _panel("Pending workloads", "sum by (cluster_queue) (kueue_pending_workloads)", _legend("cluster_queue"),
                   "short", 0),
            _panel("Admitted workloads", "sum by (cluster_queue) (kueue_admitted_active_workloads)",
                   _legend("cluster_queue"), "short", 9),
            _panel("Quota used", "sum by (cluster_queue, flavor, resource) (kueue_cluster_queue_resource_usage)",
                   _legend("cluster_queue", "flavor", "resource"), "short", 18),
        ]),
        "aiinfn-vms.json": board("aiinfn-vms", "AI_INFN: VMs outside the cluster", [
            _panel("Hours since the last good backup", f"(time() - max by (node) ({BACKUP_METRIC})) / 3600",
                   _legend("node"), "h", 0),
            _panel("node-exporter up", f'up{{job="{VM_JOB}"}}', _legend("node"), "short", 9),
            _panel("Free space", f'min by (node, mountpoint) (node_filesystem_avail_bytes{{job="{VM_JOB}",'
                   'fstype!~"tmpfs|overlay"})', _legend("node", "mountpoint"), "bytes", 18),
        ]),
    }


def dashboard_exprs(boards: dict[str, dict[str, Any]] | None = None) -> list[tuple[str, str, str]]:
    """(dashboard, panel title, PromQL) of every panel target."""
    boards = dashboards() if boards is None else boards
    return [(name, p["title"], t["expr"]) for name, b in sorted(boards.items()) for p in b["panels"]
            for t in p["targets"]]


def grafana_settings(plan: Plan) -> dict[str, Any] | None:
    """What the Grafana VM's playbook needs from the plan (the inventory's ``aiinfn_monitoring``): where this
    site's Prometheus is and how its reader's credentials are found in the cluster, the IAM login, the
    dashboards. No secret: the IAM client secret is an extra variable, the reader's password is read from the
    cluster."""
    env = plan.env
    g = env.services.monitoring.grafana
    if g is None:
        return None
    site = env.site.name
    viewers = sorted({q.iam_group for q in plan.quotas} | set(env.iam.user_groups) - set(env.iam.admin_groups))
    return {
        "hostname": grafana_host(plan),
        "port": GRAFANA_PORT,
        "prometheus": {
            "site": site,
            "name": datasource_name(site),
            "uid": datasource_uid(site),
            "url": prometheus_url(plan),
            "user": READER_USER,
            "secret": {"namespace": NAMESPACE, "name": READER_SECRET, "key": "password"},
            "tls_secret": {"namespace": NAMESPACE, "name": PROMETHEUS_TLS_SECRET},
            # a self-signed certificate (no ACME contact) is trusted as its own CA
            "self_signed": env.services.tls.acme_email is None,
        },
        "iam": {
            "issuer": env.iam.issuer,
            "client_id": g.client_id,
            "groups_claim": env.iam.groups_claim,
            "username_claim": env.iam.username_claim,
            "admin_groups": sorted(env.iam.admin_groups),
            "viewer_groups": viewers,
        },
        "dashboards": dashboards(site),
    }


def objects(plan: Plan) -> list[dict[str, Any]]:
    """Recording and alerting rules."""
    return [r for r in (accounting_rules(), backup_rules(plan), vm_rules(plan)) if r is not None]


def network_policies(plan: Plan) -> list[dict[str, Any]]:
    ranges = network.Ranges.of(plan)
    return [
        *network.baseline(NAMESPACE),
        network.allow_apiserver(NAMESPACE, ranges),
        network.allow_from_apiserver(NAMESPACE, ranges, [OPERATOR_WEBHOOK_PORT]),
        network.policy("allow-scrape", NAMESPACE, pods=network.PROMETHEUS_PODS, egress=[
            {"to": [network.block(ranges.nodes), network.block(ranges.pods)]},
        ]),
        # Grafana and `aiinfn accounting` through the Ingress (TLS, basic auth); its certificate by HTTP-01
        network.allow_from_ingress(NAMESPACE, ranges, [PROMETHEUS_PORT], network.PROMETHEUS_PODS),
        network.allow_acme_solver(NAMESPACE, ranges),
        # node-exporter runs on the host network, where no NetworkPolicy applies: nothing else runs here
        *network.baseline(NODE_EXPORTER_NAMESPACE, same_namespace=False),
    ]


def bundle(plan: Plan, storage_class: str | None, after: tuple[str, ...] = ()) -> Bundle:
    """kube-prometheus-stack (its CRDs with it), Prometheus' Ingress and its generated reader's credentials,
    the rules. ``storage_class``: the class of Prometheus' TSDB (the block class when the site has one:
    Prometheus does not support NFS), which ``after`` names."""
    platform = {PLATFORM_LABEL: "true"}
    ns = (f"ns-{NAMESPACE}",)
    return Bundle(
        "monitoring",
        (
            namespace(NAMESPACE, "restricted", platform),
            namespace(NODE_EXPORTER_NAMESPACE, "privileged", platform),  # node-exporter reads the host
            *manifests(*network_policies(plan)),
            RandomPassword(READER_PASSWORD, length=32, special=False),
            Secret(BASIC_AUTH_SECRET, ns, name=BASIC_AUTH_SECRET, namespace=NAMESPACE,
                   data={"auth": Generated(READER_PASSWORD, "bcrypt_hash", prefix=f"{READER_USER}:")}),
            Secret(READER_SECRET, ns, name=READER_SECRET, namespace=NAMESPACE,
                   data={"username": READER_USER, "password": Generated(READER_PASSWORD)}),
            Release(RELEASE, (*ns, f"ns-{NODE_EXPORTER_NAMESPACE}", BASIC_AUTH_SECRET, *after),
                    chart="kube-prometheus-stack",
                    namespace=NAMESPACE, values=values(plan, storage_class, exporter_targets(plan)),
                    crd_groups=("monitoring.coreos.com",)),
            *manifests(*objects(plan), after=(RELEASE,)),
        ),
    )
