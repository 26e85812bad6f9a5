"""The monitoring rules and dashboards, checked by the real Prometheus tools (Debian's promtool 2.42).

* ``promtool check rules`` on every rule the shipped sites generate, and on every dashboard panel's
  query (each written as a recording rule: promtool parses it as Prometheus would);
* ``promtool test rules``: input series in the exporters' real metric and label names
  (kube-state-metrics' ``kube_pod_container_resource_requests{resource="nvidia_com_gpu"}``,
  ``kube_pod_labels``, ``kube_pod_info``, ``kube_pod_status_phase``, ``kube_node_labels``,
  ``kube_namespace_labels``, with the target labels the kube-prometheus-stack scrape adds; the
  backup role's textfile metric as node-exporter serves it), evaluated by promtool's rule engine:
  a project's pod holding one GPU for 2 h gives 2 GPU-hours to that project, a notebook is charged to
  the project its user chose (never to the hub's or the users' namespace), a pending pod gives nothing,
  MIG slices count per profile (single and mixed strategy), an event's notebooks are charged to the
  event, a project cannot charge another by labelling its pods, the backup alert fires after 26 h
  without success and not before.

CI installs promtool (scripts/install-monitoring-test-deps.sh); a machine without it fails here, naming
the script, instead of skipping.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from aiinfn.config.loader import list_environments, load
from aiinfn.planning import make_plan
from aiinfn.planning.labels import ACCELERATOR_LABEL, BATCH_OWNER_LABEL, EVENT_LABEL, MIG_PROFILE_LABEL, PROJECT_LABEL
from aiinfn.services import kueue, monitoring, site_bundles
from aiinfn.services.bundle import Manifest, Release

SITES = list_environments(kind="site")
KSM = {"job": "kube-state-metrics", "instance": "10.42.3.7:8080", "endpoint": "http", "service": "ksm"}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed: run scripts/install-monitoring-test-deps.sh (as root)")
    return path


def rule_groups(site: str) -> list[dict[str, Any]]:
    plan = make_plan(load(site))
    return [g for b in site_bundles(plan) for i in b.items if isinstance(i, Manifest)
            and i.kind == "PrometheusRule" for g in i.manifest["spec"]["groups"]]


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("site", SITES)
def test_promtool_accepts_every_generated_rule(site: str, tmp_path: Path) -> None:
    groups = rule_groups(site)
    assert {r.get("record") or r.get("alert") for g in groups for r in g["rules"]} >= {
        monitoring.ALLOCATED, monitoring.HOURLY, "PlatformBackupTooOld", "PlatformBackupMetricMissing",
        "PlatformVmExporterDown"}
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": groups}))
    res = run(["check", "rules", "rules.yml"], tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"SUCCESS: {sum(len(g['rules']) for g in groups)} rules found" in res.stdout


def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    exprs = monitoring.dashboard_exprs()
    assert len(exprs) >= 12
    rules = [{"record": f"aiinfn:dashboard_query_{i}", "expr": e} for i, (_, _, e) in enumerate(exprs)]
    (tmp_path / "panels.yml").write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}))
    res = run(["check", "rules", "panels.yml"], tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    # and promtool does refuse a broken query (the check has teeth)
    broken = [{"record": "aiinfn:broken", "expr": exprs[0][2] + " by ("}]
    (tmp_path / "broken.yml").write_text(yaml.safe_dump({"groups": [{"name": "broken", "rules": broken}]}))
    assert run(["check", "rules", "broken.yml"], tmp_path).returncode != 0


def test_dashboards_read_one_datasource_variable_and_recorded_series() -> None:
    recorded = {r["record"] for r in monitoring.accounting_rules()["spec"]["groups"][0]["rules"]} | {
        monitoring.HOURLY}
    for name, board in monitoring.dashboards("cnaf").items():
        (var,) = board["templating"]["list"]
        assert (var["type"], var["query"], var["name"]) == ("datasource", "prometheus", "datasource"), name
        assert var["current"] == {"text": monitoring.datasource_name("cnaf"),
                                  "value": monitoring.datasource_uid("cnaf")}
        for panel in board["panels"]:
            assert panel["datasource"] == monitoring.DATASOURCE_REF
            assert all(t["datasource"] == monitoring.DATASOURCE_REF for t in panel["targets"])
    used = {m for _, _, e in monitoring.dashboard_exprs() for m in re.findall(r"aiinfn:[a-z_:0-9]+", e)}
    assert used and used <= recorded, used - recorded
    # Kueue exports the quota panel's series only with enableClusterQueueResources (config v1beta2)
    assert any("kueue_cluster_queue_resource_usage" in e for _, _, e in monitoring.dashboard_exprs())
    assert kueue.manager_config()["metrics"]["enableClusterQueueResources"] is True
    assert kueue.manager_config()["apiVersion"] == "config.kueue.x-k8s.io/v1beta2"


@pytest.mark.parametrize("site", SITES)
def test_kube_state_metrics_exports_every_label_the_rules_and_dashboards_read(site: str) -> None:
    """Each ``label_*`` a rule or a panel reads off a ``kube_*_labels`` series is in the allowlist of that
    object kind (kube-state-metrics drops every other label)."""
    plan = make_plan(load(site))
    (release,) = [r for b in site_bundles(plan) for r in b.releases if isinstance(r, Release)
                  and r.chart == "kube-prometheus-stack"]
    allow: dict[str, set[str]] = {}
    for entry in release.values["kube-state-metrics"]["metricLabelsAllowlist"]:
        kind, _, keys = entry.partition("=")
        allow[kind] = {monitoring.ksm_label(k) for k in keys.strip("[]").split(",")}
    exprs = [r["expr"] for g in rule_groups(site) for r in g["rules"]] + [e for _, _, e in monitoring.dashboard_exprs()]
    used = {m for e in exprs for m in re.findall(r"label_[a-z0-9_]+", e)} - {"label_replace", "label_join"}
    node_keys = {monitoring.ksm_label(k) for k in (ACCELERATOR_LABEL, MIG_PROFILE_LABEL, monitoring.GPU_PRODUCT_LABEL)}
    pod_keys = {monitoring.ksm_label(k) for k in (PROJECT_LABEL, EVENT_LABEL, BATCH_OWNER_LABEL,
                                                  monitoring.NOTEBOOK_USER_LABEL)}
    namespace_keys = {m for e in exprs for m in re.findall(r"kube_namespace_labels\{(label_[a-z0-9_]+)", e)}
    assert used == node_keys | pod_keys, used ^ (node_keys | pod_keys)  # nothing read that is not classified here
    assert node_keys <= allow["nodes"], node_keys - allow["nodes"]
    assert pod_keys <= allow["pods"], pod_keys - allow["pods"]
    assert namespace_keys == {monitoring.POD_PROJECT, monitoring.POD_EVENT} <= allow["namespaces"]
    assert monitoring.ksm_label(monitoring.GPU_PRODUCT_LABEL) in allow["nodes"]


# --------------------------------------------------------------------------- promtool test rules


def series(metric: str, labels: dict[str, str], values: str, scrape: dict[str, str] | None = None) -> dict[str, str]:
    """An input series as the scrape stores it: the exporter's labels plus its target's."""
    all_labels = {**(scrape or {}), **labels}
    text = ", ".join(f'{k}="{v}"' for k, v in sorted(all_labels.items()))
    return {"series": f"{metric}{{{text}}}", "values": values}


def node(name: str, accelerator: str, mig: str = "", product: str = "") -> dict[str, str]:
    labels = {"node": name, monitoring.ACC: accelerator, monitoring.ksm_label("aiinfn.infn.it/pool"): name[:-3]}
    if mig:
        labels[monitoring.MIG] = mig
    if product:
        labels[monitoring.ksm_label(monitoring.GPU_PRODUCT_LABEL)] = product
    # kube_node_labels has no namespace/pod of its own: the scrape's target labels stay on it
    return series("kube_node_labels", labels, "1x300", {**KSM, "namespace": "monitoring", "pod": "ksm-0"})


def namespace_labels(ns: str, **labels: str) -> dict[str, str]:
    keys = {"project": monitoring.POD_PROJECT, "event": monitoring.POD_EVENT}
    return series("kube_namespace_labels", {"namespace": ns, **{keys[k]: v for k, v in labels.items()}}, "1x300", KSM)


def pod(ns: str, name: str, node_name: str, resource: str, units: int, running: str, *,
        labels: dict[str, str] | None = None, phase_after: str = "Succeeded") -> list[dict[str, str]]:
    """A pod's kube-state-metrics series: its request (one container), info, phase and labels. ``running``
    is the Running phase's values (1 while running), the other phase its complement."""
    uid = f"uid-{name}"
    ident = {"namespace": ns, "pod": name, "uid": uid}
    other = " ".join(str(1 - int(tok[0])) + tok[1:] for tok in running.split(" "))
    return [
        series("kube_pod_container_resource_requests", {**ident, "container": "main", "node": node_name,
                                                        "resource": resource, "unit": "integer"},
               f"{units}x300", KSM),
        series("kube_pod_info", {**ident, "node": node_name, "host_ip": "10.200.0.30", "pod_ip": "10.42.7.9",
                                 "created_by_kind": "Job", "created_by_name": name, "priority_class": "",
                                 "host_network": "false"}, "1x300", KSM),
        series("kube_pod_status_phase", {**ident, "phase": "Running"}, running, KSM),
        series("kube_pod_status_phase", {**ident, "phase": phase_after}, other, KSM),
        series("kube_pod_labels", {**ident, **(labels or {})}, "1x300", KSM),
    ]


HOURS = f"sum_over_time({monitoring.ALLOCATED}[5h]) * {monitoring.RECORD_INTERVAL_SECONDS} / 3600"


def accounting_test() -> dict[str, Any]:
    u = monitoring.POD_USER
    owner = monitoring.POD_OWNER
    inputs = [
        node("gpu-t4-01", "T4", product="Tesla-T4"),
        node("gpu-a100-01", "A100-80GB", mig="1g.10gb", product="NVIDIA-A100-SXM4-80GB"),
        node("gpu-a30-01", "A30"),  # mixed strategy: no profile label, the profile is in the resource name
        node("k8s-agent-01", ""),
        namespace_labels("lhc-ml", project="lhc-ml"),
        namespace_labels("theory", project="theory"),
        namespace_labels("event-school", event="school"),
        namespace_labels("jupyterhub-users"),
        namespace_labels("jupyterhub"),
        # a batch Job of lhc-ml holding one T4 for exactly 2 h (120 evaluations), then Succeeded; it also
        # claims theory's label, which a project's own namespace never believes
        *pod("lhc-ml", "batch-alice-1", "gpu-t4-01", "nvidia_com_gpu", 1, "1x119 0x180",
             labels={owner: "alice", monitoring.POD_PROJECT: "theory"}),
        # bob's notebook in the users' namespace: he chose theory at spawn; one A100 slice for 1 h
        *pod("jupyterhub-users", "jupyter-bob", "gpu-a100-01", "nvidia_com_gpu", 1, "1x59 0x240",
             labels={u: "bob", monitoring.POD_PROJECT: "theory"}),
        # carol's pod never runs: it waits (Pending) with a GPU request and no node
        *pod("lhc-ml", "batch-carol-1", "", "nvidia_com_gpu", 1, "0x300", labels={owner: "carol"},
             phase_after="Pending"),
        # an event's participant: notebook in the users' namespace, labelled with the event; 2 A100 slices, 30 min
        *pod("jupyterhub-users", "jupyter-dave", "gpu-a100-01", "nvidia_com_gpu", 2, "1x29 0x270",
             labels={u: "dave", monitoring.POD_EVENT: "school"}),
        # a pod of the event's own namespace (a tutor's job): charged to the event by its namespace
        *pod("event-school", "tutor-job", "gpu-t4-01", "nvidia_com_gpu", 1, "1x59 0x240", labels={owner: "erin"}),
        # mixed strategy on the A30: two 2g.12gb slices for 3 h in theory
        *pod("theory", "batch-frank-1", "gpu-a30-01", "nvidia_com_mig_2g_12gb", 2, "1x179 0x120",
             labels={owner: "frank"}),
        # a platform pod (the GPU Operator's validator) requesting a GPU for 10 min: charged to no project
        *pod("gpu-operator", "nvidia-cuda-validator", "gpu-t4-01", "nvidia_com_gpu", 1, "1x9 0x290"),
    ]

    def sample(project: str, user: str, kind: str, value: float) -> dict[str, Any]:
        acc, _, mig = kind.partition("/")
        labels = {"project": project, "user": user, "kind": kind, "accelerator": acc, "mig_profile": mig}
        labels = {k: v for k, v in labels.items() if v}  # Prometheus drops empty labels
        return {"labels": "{" + ", ".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}", "value": value}

    return {
        "interval": "1m",
        "input_series": inputs,
        "promql_expr_test": [
            {"expr": HOURS, "eval_time": "5h", "exp_samples": [
                sample("lhc-ml", "alice", "T4", 2),
                sample("theory", "bob", "A100-80GB/1g.10gb", 1),
                sample("event/school", "dave", "A100-80GB/1g.10gb", 1),
                sample("event/school", "erin", "T4", 1),
                sample("theory", "frank", "A30/2g.12gb", 6),
                sample(monitoring.NO_PROJECT, "", "T4", 10 / 60),
            ]},
            # a project's pod holding one GPU for 2 h: 2 GPU-hours to that project, none to another
            {"expr": f'sum by (project) (sum_over_time({monitoring.ALLOCATED}{{kind="T4"}}[5h])) / 60',
             "eval_time": "5h", "exp_samples": [
                 {"labels": '{project="lhc-ml"}', "value": 2},
                 {"labels": '{project="event/school"}', "value": 1},
                 {"labels": f'{{project="{monitoring.NO_PROJECT}"}}', "value": 10 / 60}]},
            # nothing is charged to the hub's or the users' namespace, and the pending pod gives nothing
            {"expr": f'count({monitoring.ALLOCATED}{{project=~"jupyterhub.*"}}) or vector(0)', "eval_time": "20m",
             "exp_samples": [{"labels": "{}", "value": 0}]},
            {"expr": f'count_over_time({monitoring.ALLOCATED}{{user="carol"}}[5h]) or vector(0)', "eval_time": "5h",
             "exp_samples": [{"labels": "{}", "value": 0}]},
            # MIG slices per profile while everything runs (t = 20 min): 1 + 2 A100 1g.10gb, 2 A30 2g.12gb
            {"expr": f'sum by (kind) ({monitoring.ALLOCATED}{{mig_profile!=""}})', "eval_time": "20m",
             "exp_samples": [{"labels": '{kind="A100-80GB/1g.10gb"}', "value": 3},
                             {"labels": '{kind="A30/2g.12gb"}', "value": 2}]},
        ],
    }


def backup_tests() -> list[dict[str, Any]]:
    metric = series(monitoring.BACKUP_METRIC, {"repository": "nfs-01", "node": "nfs-01", "aiinfn_site": "cnaf"},
                    "0x2000", {"job": monitoring.VM_JOB, "instance": "10.200.0.20:9100"})
    renewed = {**metric, "values": "0x599 36000x1400"}  # a good backup at 10 h
    alert = {"exp_labels": {"severity": "critical"}, "exp_annotations": {
        "summary": "The platform filesystem's last good backup is older than 26 hours",
        "runbook": "docs/operations.md#restore-a-backup"}}

    def at(t: str, firing: bool) -> dict[str, Any]:
        return {"eval_time": t, "alertname": "PlatformBackupTooOld", "exp_alerts": [alert] if firing else []}

    return [
        # last success at 0: quiet until 26 h, pending for its 10 minutes, then firing
        {"interval": "1m", "input_series": [metric],
         "alert_rule_test": [at("25h59m", False), at("26h", False), at("26h9m", False), at("26h11m", True),
                             at("30h", True),
                             {"eval_time": "30h", "alertname": "PlatformBackupMetricMissing", "exp_alerts": []}]},
        # a good backup at 10 h: 26 h after the first is only 16 h after the last
        {"interval": "1m", "input_series": [renewed], "alert_rule_test": [at("26h11m", False), at("33h", False)]},
        # no metric at all (no node-exporter): the missing-metric alert after its hour
        {"interval": "1m", "input_series": [series("up", {"node": "nfs-01"}, "1x200",
                                                   {"job": monitoring.VM_JOB, "instance": "10.200.0.20:9100"})],
         "alert_rule_test": [
             {"eval_time": "59m", "alertname": "PlatformBackupMetricMissing", "exp_alerts": []},
             {"eval_time": "61m", "alertname": "PlatformBackupMetricMissing", "exp_alerts": [{
                 "exp_labels": {"severity": "critical"},
                 "exp_annotations": {"summary": "No Borg backup timestamp is reported by the NFS node"}}]}]},
    ]


def test_promtool_test_rules_charges_the_right_project_and_alerts_on_stale_backups(tmp_path: Path) -> None:
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": rule_groups("cnaf")}))
    tests = {"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": [accounting_test(), *backup_tests()]}
    (tmp_path / "tests.yml").write_text(yaml.safe_dump(tests, sort_keys=False))
    res = run(["test", "rules", "tests.yml"], tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SUCCESS" in res.stdout


def test_the_hourly_series_sums_to_the_same_unit_hours(tmp_path: Path) -> None:
    """The hourly group (interval 1 h) over a minute series: its samples add up to the unit-minutes / 60 of
    the minutes series, each minute counted once (promtool evaluates every group at the test's
    evaluation_interval, so the minute series is given as input here and the hourly group alone is
    evaluated, every hour, as Prometheus evaluates it)."""
    (hourly,) = [g for g in rule_groups("cnaf") if g["name"] == "aiinfn-accounting-hourly"]
    assert hourly["interval"] == "1h"
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": [hourly]}))
    # lhc-ml: 2 units for 150 minutes (t = 0 .. 149), theory: 1 unit for 61 minutes from t = 59
    inputs = [series(monitoring.ALLOCATED, {"project": "lhc-ml", "kind": "T4", "accelerator": "T4"}, "2x149"),
              series(monitoring.ALLOCATED, {"project": "theory", "kind": "T4", "accelerator": "T4"},
                     "_x58 1x60")]
    test = {"interval": "1m", "input_series": inputs, "promql_expr_test": [
        {"expr": f"sum by (project) (sum_over_time({monitoring.HOURLY}[5h]))", "eval_time": "5h",
         "exp_samples": [{"labels": '{project="lhc-ml"}', "value": 5}, {"labels": '{project="theory"}',
                                                                           "value": 61 / 60}]}]}
    (tmp_path / "tests.yml").write_text(yaml.safe_dump({"rule_files": ["rules.yml"], "evaluation_interval": "1h",
                                                        "tests": [test]}, sort_keys=False))
    res = run(["test", "rules", "tests.yml"], tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr


def test_promtool_test_rules_has_teeth(tmp_path: Path) -> None:
    """The same test with the notebook charged to the hub's namespace instead of bob's project fails."""
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": rule_groups("cnaf")}))
    wrong = accounting_test()
    wrong["promql_expr_test"] = [{"expr": HOURS, "eval_time": "5h", "exp_samples": [
        {"labels": '{accelerator="A100-80GB", kind="A100-80GB/1g.10gb", mig_profile="1g.10gb", '
                   'project="jupyterhub-users", user="bob"}', "value": 1}]}]
    (tmp_path / "tests.yml").write_text(yaml.safe_dump({"rule_files": ["rules.yml"], "evaluation_interval": "1m",
                                                        "tests": [wrong]}, sort_keys=False))
    res = run(["test", "rules", "tests.yml"], tmp_path)
    assert res.returncode != 0 and 'project="theory"' in res.stdout + res.stderr
