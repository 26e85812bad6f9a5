"""Monitoring, accounting, backup alerting, TLS, JuiceFS and Harbor in the overlay.

Pulumi mock runtime (see conftest.py). No Prometheus runs here: the rules are checked for what an
operator relies on (the alert's threshold, the series the dashboards read), not evaluated.
"""

from __future__ import annotations

import json
import re
from typing import Any

import kubernetes_validate
import pytest
from ruamel.yaml import YAML

from aiinfn import versions
from aiinfn.config.loader import list_environments
from aiinfn.offline import is_secret, redact
from aiinfn.preview import OFFLINE_SECRET, Preview
from aiinfn.services import harbor, juicefs, monitoring, tls

SHIPPED = list_environments(kind="site")


@pytest.fixture(params=SHIPPED)
def report(request: pytest.FixtureRequest, shipped_reports: dict[str, Preview]) -> Preview:
    return shipped_reports[request.param]


def _release(report: Preview, name: str) -> Any:
    hits = [r for r in report.run.by_type("kubernetes:helm.sh/v3:Release") if r.inputs["name"] == name]
    return hits[0] if hits else None


def _objects(report: Preview, kind: str) -> list[dict[str, Any]]:
    return [redact(r.inputs) for r in report.run.registrations if r.type.endswith(f":{kind}")]


def test_prometheus_keeps_accounting_data_for_400_days(report: Preview) -> None:
    values = _release(report, "kube-prometheus-stack").inputs["values"]
    spec = values["prometheus"]["prometheusSpec"]
    days = int(spec["retention"].removesuffix("d"))
    assert days >= 400 and days == report.env.services.monitoring.accounting_retention_days
    assert values["crds"]["upgradeJob"]["enabled"] is True  # CRDs follow chart upgrades
    targets = [t for c in spec["additionalScrapeConfigs"] for sc in c["static_configs"] for t in sc["targets"]]
    inventory = {e["name"]: e["fixed_ip"] for e in report.run.stack_outputs["inventory"]}
    assert targets == [f"{inventory[n]}:9100" for n in monitoring.scraped_nodes(report.plan)]


def test_backup_alert_fires_after_the_configured_age(report: Preview) -> None:
    rules = {o["metadata"]["name"]: o for o in _objects(report, "PrometheusRule")}
    backup = report.env.storage.backup
    if backup is None:
        assert "aiinfn-backup" not in rules
        return
    alerts = {r["alert"]: r for g in rules["aiinfn-backup"]["spec"]["groups"] for r in g["rules"]}
    too_old = alerts["PlatformBackupTooOld"]
    assert monitoring.BACKUP_METRIC in too_old["expr"]
    assert too_old["expr"].endswith(f"> {backup.max_age_hours * 3600}")
    assert "absent(" in alerts["PlatformBackupMetricMissing"]["expr"]


def test_accounting_series_feed_the_dashboards(report: Preview) -> None:
    rules = {o["metadata"]["name"]: o for o in _objects(report, "PrometheusRule")}
    recorded = {r["record"] for g in rules["aiinfn-accounting"]["spec"]["groups"] for r in g["rules"]}
    assert {"aiinfn:accelerator_allocated:by_project", "aiinfn:accelerator_hours:by_project:1h"} <= recorded
    # Grafana runs on the monitoring VM: no dashboard ConfigMap in the cluster, the definitions reach the
    # VM through the inventory (render.site_vars aiinfn_monitoring)
    assert not [cm for cm in _objects(report, "ConfigMap")
                if cm["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
    boards = json.loads(json.dumps(monitoring.dashboards(report.env.site.name)))
    assert set(boards) == {"aiinfn-projects.json", "aiinfn-gpus.json", "aiinfn-queues.json", "aiinfn-vms.json"}
    used = {m for b in boards.values() for p in b["panels"] for t in p["targets"]
            for m in re.findall(r"aiinfn:[a-z_:0-9]+", t["expr"])}
    assert used and used <= recorded, used - recorded
    for cm in [c for c in _objects(report, "ConfigMap") if c["metadata"]["namespace"] == monitoring.NAMESPACE]:
        kubernetes_validate.validate(cm, versions.KUBERNETES, strict=True)


def test_certificates_come_from_the_sites_issuer(report: Preview) -> None:
    (issuer,) = _objects(report, "ClusterIssuer")
    assert issuer["metadata"]["name"] == tls.CLUSTER_ISSUER
    if report.env.services.tls.acme_email:
        assert issuer["spec"]["acme"]["email"] == report.env.services.tls.acme_email
    else:
        assert issuer["spec"] == {"selfSigned": {}}
    hub = _release(report, "jupyterhub")
    if hub is not None:
        annotations = hub.inputs["values"]["ingress"]["annotations"]
        assert annotations["cert-manager.io/cluster-issuer"] == issuer["metadata"]["name"]


def test_juicefs_storage_class_and_secret(report: Preview) -> None:
    jfs = report.env.storage.juicefs
    classes = [o for o in _objects(report, "StorageClass") if o["provisioner"] == "csi.juicefs.com"]
    if jfs is None or not jfs.enabled:
        assert classes == []
        return
    (sc,) = classes
    kubernetes_validate.validate(sc, versions.KUBERNETES, strict=True)
    assert sc["metadata"]["name"] == jfs.storage_class and sc["reclaimPolicy"] == "Retain"
    (secret,) = [r for r in report.run.by_type("kubernetes:core/v1:Secret")
                 if r.inputs["metadata"]["name"] == juicefs.SECRET]
    assert is_secret(secret.inputs["stringData"])


def test_harbor_stores_in_s3_without_redirects_and_keeps_its_database(report: Preview) -> None:
    release = _release(report, "harbor")
    if report.env.services.harbor is None:
        assert release is None
        return
    values = release.inputs["values"]
    assert OFFLINE_SECRET not in json.dumps(values)
    assert values["externalURL"].startswith("https://")
    if report.env.services.harbor.s3_bucket:
        storage = values["persistence"]["imageChartStorage"]
        assert storage["type"] == "s3" and storage["disableredirect"] is True
        assert storage["s3"]["existingSecret"] == harbor.S3_SECRET
    assert values["persistence"]["persistentVolumeClaim"]["database"]["existingClaim"] == harbor.DB_CLAIM
    (pvc,) = [r for r in report.run.by_type("kubernetes:core/v1:PersistentVolumeClaim")
              if r.inputs["metadata"]["name"] == harbor.DB_CLAIM]
    assert pvc.protect and pvc.retain_on_delete
    assert release.inputs["version"] == versions.CHARTS["harbor"][2]


def test_every_kubernetes_secret_holds_only_pulumi_secrets(report: Preview) -> None:
    for s in report.run.by_type("kubernetes:core/v1:Secret"):
        assert is_secret(s.inputs["stringData"]), s.name
        # what the cluster returns stays secret too (as the SDK's own Secret class asks)
        assert {"data", "stringData"} <= set(s.additional_secret_outputs), s.name
    doc = json.dumps(report.document())
    assert OFFLINE_SECRET not in doc
    for name, text in report.artifacts.items():
        assert OFFLINE_SECRET not in text, name
    YAML(typ="safe", pure=True).load(report.artifacts["k8s/values/kueue.yaml"])


def test_harbor_setup_job_runs_the_tested_program_with_least_access(report: Preview) -> None:
    from importlib import resources

    if report.env.services.harbor is None:
        assert not [r for r in report.run.registrations if r.type == "kubernetes:batch/v1:Job"]
        return
    objs = harbor.setup_objects()
    for obj in objs:
        kubernetes_validate.validate(obj, versions.KUBERNETES, strict=True)
    by_kind = {o["kind"]: o for o in objs}
    program = resources.files("aiinfn.jobs").joinpath("harbor_setup.py").read_text()
    assert by_kind["ConfigMap"]["data"]["harbor_setup.py"] == program
    # it reads and updates only the robot's Secret; a create cannot be limited by name (RBAC), and
    # it never lists, watches or deletes Secrets
    assert by_kind["Role"]["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [harbor.ROBOT_SECRET],
         "verbs": ["get", "update"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
    ]
    container = by_kind["Job"]["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert "HARBOR_ADMIN_PASSWORD" not in env  # a file of its own Secret mount, never an environment value
    admin = [v for v in by_kind["Job"]["spec"]["template"]["spec"]["volumes"] if v["name"] == "admin"]
    assert admin[0]["secret"]["secretName"] == harbor.ADMIN_SECRET
    assert env["HARBOR_PROJECTS"]["value"] == "environments,apptainer"
    registered = [r for r in report.run.registrations if r.type == "kubernetes:batch/v1:Job"]
    assert [redact(r.inputs)["metadata"]["name"] for r in registered] == [by_kind["Job"]["metadata"]["name"]]


def _claim(report: Preview, name: str) -> Any:
    hits = [r for r in report.run.by_type("kubernetes:core/v1:PersistentVolumeClaim")
            if r.inputs["metadata"]["name"] == name]
    return hits[0] if hits else None


def _waits_for(report: Preview, reg: Any, target: str) -> bool:
    """Whether ``reg`` depends on the resource with URN ``target``, directly or through others."""
    regs = {r.urn: r for r in report.run.registrations}
    seen: set[str] = set()
    todo = list(reg.depends_on)
    while todo:
        urn = todo.pop()
        if urn == target:
            return True
        if urn not in seen and urn in regs:
            seen.add(urn)
            todo.extend(regs[urn].depends_on)
    return False


def test_databases_live_on_block_storage_when_the_site_has_it(report: Preview) -> None:
    """With storage.block: the Cinder CSI release (pinned chart and image, our Secret, no chart StorageClass),
    a StorageClass that keeps volumes (Retain), can grow them and binds where the pod runs, with the site's
    volume type and zone; the hub's and Harbor's database claims on it, protected and kept, each created
    after the class (itself after the driver); Harbor's redis, Trivy and job logs and Prometheus' TSDB on it
    too. Without it: no driver, and the databases stay on the platform filesystem."""
    from aiinfn.services import cinder_csi, jupyterhub

    block = report.env.storage.block
    release = _release(report, cinder_csi.RELEASE)
    hub_db, harbor_db = _claim(report, jupyterhub.HUB_DB_CLAIM), _claim(report, harbor.DB_CLAIM)
    classes = [r for r in report.run.by_type("kubernetes:storage.k8s.io/v1:StorageClass")
               if r.inputs["provisioner"] == cinder_csi.PROVISIONER]
    if block is None:
        assert release is None and classes == []
        nfs = report.env.storage.nfs
        for claim in (hub_db, harbor_db):
            assert claim is None or claim.inputs["spec"]["storageClassName"] == (nfs.storage_class if nfs else None)
        return
    assert release.inputs["version"] == versions.CHARTS[cinder_csi.RELEASE][2]
    values = release.inputs["values"]
    assert values["secret"] == {"enabled": True, "create": False, "hostMount": False, "name": cinder_csi.SECRET,
                                "filename": "cloud.conf"}
    assert values["storageClass"] == {"enabled": False}
    assert values["csi"]["plugin"]["image"]["tag"] == versions.CINDER_CSI
    (sc,) = classes
    obj = redact(sc.inputs)
    kubernetes_validate.validate(obj, versions.KUBERNETES, strict=True)
    assert obj["metadata"]["name"] == block.storage_class
    assert (obj["reclaimPolicy"], obj["allowVolumeExpansion"], obj["volumeBindingMode"]) == (
        "Retain", True, "WaitForFirstConsumer")
    site = report.env.site
    assert obj["parameters"]["availability"] == (block.availability_zone or site.availability_zone)
    assert obj["parameters"].get("type") == (block.volume_type or site.volume_type)
    assert not obj.get("metadata", {}).get("annotations")  # never the default class: homes stay on NFS
    assert _waits_for(report, sc, release.urn)
    for claim in (hub_db, harbor_db):
        if claim is None:
            continue
        assert claim.inputs["spec"]["storageClassName"] == block.storage_class, claim.name
        assert claim.protect and claim.retain_on_delete, claim.name
        assert _waits_for(report, claim, sc.urn), f"{claim.name} does not wait for the block StorageClass"
    harbor_release = _release(report, "harbor")
    if harbor_release is not None:
        pvcs = harbor_release.inputs["values"]["persistence"]["persistentVolumeClaim"]
        assert pvcs["redis"]["storageClass"] == pvcs["trivy"]["storageClass"] == block.storage_class
        assert pvcs["jobservice"]["jobLog"]["storageClass"] == block.storage_class
    prom = _release(report, "kube-prometheus-stack")
    spec = prom.inputs["values"]["prometheus"]["prometheusSpec"]
    assert spec["storageSpec"]["volumeClaimTemplate"]["spec"]["storageClassName"] == block.storage_class
    assert _waits_for(report, prom, sc.urn)


def test_moving_a_site_to_block_storage_replaces_no_claim_silently(plan_variant, shipped_reports) -> None:  # type: ignore[no-untyped-def]
    """Adding storage.block to a running site changes the databases' claims' storageClassName, which Kubernetes
    cannot change in place: the claims keep their URNs (the same resources, so the engine plans a replacement)
    and stay protected, so `aiinfn diff` shows their replacement with the note that `pulumi up` refuses it,
    instead of deleting the data (docs/operations.md says how to move the data). The mock runtime does not
    compute replacements: aiinfn.diff's rules (the provider's) do, over the two plans."""
    from aiinfn import diff
    from aiinfn.services import jupyterhub

    before = plan_variant("cnaf", "cnaf", {"storage": {"block": None}})  # the databases still on NFS
    after = shipped_reports["cnaf"]
    assert after.env.storage.block is not None
    changed = {r.urn: r for r in diff.diff(before.document(), after.document()).resources}
    for name in (jupyterhub.HUB_DB_CLAIM, harbor.DB_CLAIM):
        old, new = _claim(before, name), _claim(after, name)
        if old is None:
            continue
        assert new.urn == old.urn, name
        assert old.inputs["spec"]["storageClassName"] != new.inputs["spec"]["storageClassName"]
        assert new.protect and new.retain_on_delete, name
        shown = changed[new.urn]
        assert shown.action == "replace", (name, shown.action)
        assert any("spec.storageClassName" in str(r.document()) for r in shown.reasons), name
        assert any("protected" in n and "refuses" in n for n in shown.notes), shown.notes


def test_the_volume_provisioner_mounts_its_directory_never_the_export_root(report: Preview) -> None:
    """nfs-subdir-external-provisioner mounts <export>/volumes (which roles/nfs_server makes), never the export
    root: it cannot reach the homes and areas beside it (<export>/areas, mounted only through its own PV)."""
    from aiinfn.services import nfs

    release = _release(report, nfs.RELEASE)
    storage = report.env.storage.nfs
    if storage is None or release is None:
        return
    path = release.inputs["values"]["nfs"]["path"]
    assert path == f"{storage.export_path}/{nfs.VOLUMES_DIR}" and path.rstrip("/") != storage.export_path.rstrip("/")
    for pv in report.run.by_type("kubernetes:core/v1:PersistentVolume"):
        mounted = pv.inputs["spec"].get("nfs", {}).get("path")
        assert mounted is None or mounted.rstrip("/") != storage.export_path.rstrip("/"), pv.name
