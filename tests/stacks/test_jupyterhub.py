"""JupyterHub: values valid for the pinned chart, settings accepted by the real authenticator and
spawner, profiles from the real accelerator inventory, secrets out of the values, database protected,
every pod of the namespace inside Pod Security ``restricted``, hub.extraConfig free of environment code.

The chart itself cannot run here (no API server): its values are merged with the chart's own
defaults (../shared/schemas/z2jh-4.4.0/values.yaml) and validated against the chart's JSON schema,
which is what `helm install` does first; the authenticator and spawner settings are given to the
real oauthenticator and jupyterhub-kubespawner classes. The hub itself runs in tests/services.
Gap: the chart's templates are not rendered here (no helm binary), so the chart's own pods are judged
by the security contexts their values give them.
"""

from __future__ import annotations

import ast
import copy
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from kubespawner import KubeSpawner
from oauthenticator.generic import GenericOAuthenticator
from ruamel.yaml import YAML
from traitlets.config import Config

from aiinfn.config.loader import list_environments
from aiinfn.offline import is_secret, unwrap
from aiinfn.preview import OFFLINE_SECRET, Preview
from aiinfn.services import jupyterhub

SUPPORT = Path(__file__).resolve().parents[1] / "support" / "hub"
if str(SUPPORT) not in sys.path:
    sys.path.insert(0, str(SUPPORT))

import pod_security  # noqa: E402 - found through SUPPORT, set just above

HUB_ENVS = list_environments(kind="site")


def _merge(a: Any, b: Any) -> Any:
    if isinstance(a, dict) and isinstance(b, dict):
        out = copy.deepcopy(a)
        for k, v in b.items():
            out[k] = _merge(out.get(k), v) if k in out else copy.deepcopy(v)
        return out
    return copy.deepcopy(b)


@pytest.fixture(scope="module")
def chart(shared: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    folder = shared / "schemas" / "z2jh-4.4.0"
    yaml = YAML(typ="safe", pure=True)
    return yaml.load((folder / "values.yaml").read_text()), yaml.load((folder / "values.schema.yaml").read_text())


@pytest.fixture(params=HUB_ENVS)
def hub(request: pytest.FixtureRequest, shipped_reports: dict[str, Preview]) -> tuple[Preview, dict[str, Any]]:
    report = shipped_reports[request.param]
    if report.env.services.jupyterhub is None or report.env.storage.nfs is None:
        pytest.fail(f"{request.param} ships no JupyterHub: every shipped site should")
    (release,) = [r for r in report.run.by_type("kubernetes:helm.sh/v3:Release") if r.inputs["name"] == "jupyterhub"]
    return report, release.inputs["values"]


def test_values_merged_with_chart_defaults_are_valid(hub: Any, chart: Any) -> None:
    _, values = hub
    defaults, schema = chart
    jsonschema.validate(_merge(defaults, values), schema)


def test_the_chart_schema_has_teeth(hub: Any, chart: Any) -> None:
    _, values = hub
    defaults, schema = chart
    broken = _merge(values, {"hub": {"db": {"type": "sqlite-on-a-floppy"}}})
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(_merge(defaults, broken), schema)


def _hub_module() -> Any:
    """The shipped hub module (aiinfn/hub/authenticator.py) imported as the hub imports it."""
    if "aiinfn_hub" not in sys.modules:
        path = Path(jupyterhub.__file__).parents[1] / "hub" / "authenticator.py"
        spec = importlib.util.spec_from_file_location("aiinfn_hub", path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules["aiinfn_hub"] = module
        spec.loader.exec_module(module)
    return sys.modules["aiinfn_hub"]


def test_authenticator_settings_are_real_traits(hub: Any) -> None:
    report, values = hub
    config = values["hub"]["config"]
    iam_auth = _hub_module().IamAuthenticator
    assert config["JupyterHub"]["authenticator_class"] == "aiinfn_hub.IamAuthenticator"
    for section, cls in (("GenericOAuthenticator", GenericOAuthenticator), ("IamAuthenticator", iam_auth),
                         ("Authenticator", iam_auth)):
        unknown = set(config[section]) - set(cls.class_traits(config=True))
        assert not unknown, f"not {section} settings: {unknown}"
    auth = iam_auth(config=Config({k: config[k] for k in ("GenericOAuthenticator", "IamAuthenticator",
                                                          "Authenticator")}))
    assert auth.client_id == report.env.iam.client_id
    assert auth.username_claim == "preferred_username"
    assert set(auth.admin_groups) == set(report.env.iam.admin_groups)
    assert set(report.env.iam.user_groups) <= set(auth.allowed_groups)
    assert auth.token_url.startswith(report.env.iam.issuer.rstrip("/"))
    # INDIGO IAM issues a refresh token only for offline_access; the hub keeps it in its auth state
    assert "offline_access" in auth.scope and auth.enable_auth_state and auth.refresh_pre_spawn
    assert auth.refresh_margin_seconds > auth.auth_refresh_age + 60


def test_hub_programs_are_shipped_as_the_projects_files(hub: Any) -> None:
    report, values = hub
    files = values["hub"]["extraFiles"]
    root = Path(jupyterhub.__file__).parents[1] / "hub"
    assert files["aiinfn_hub"]["stringData"] == (root / "authenticator.py").read_text()
    assert files["aiinfn_tokens"]["stringData"] == (root / "tokens.py").read_text()
    for name, module in jupyterhub.HUB_MODULES.items():
        assert files[module]["stringData"] == (root / f"{name}.py").read_text()
        assert files[module]["mountPath"] == f"/usr/local/etc/jupyterhub/{module}.py"
    assert files["aiinfn_hub"]["mountPath"] == "/usr/local/etc/jupyterhub/aiinfn_hub.py"
    service = values["hub"]["services"][jupyterhub.TOKENS_SERVICE]
    assert service["command"][-1] == files["aiinfn_tokens"]["mountPath"]
    roles = values["hub"]["loadRoles"]
    assert set(roles[jupyterhub.TOKENS_SERVICE]["scopes"]) == {"read:users:name", "admin:auth_state"}
    # the notebooks' files come from a ConfigMap of their own namespace (the chart's Secret is elsewhere)
    (cm,) = [r for r in report.run.by_type("kubernetes:core/v1:ConfigMap")
             if r.inputs["metadata"]["name"] == jupyterhub.FILES_CONFIGMAP]
    assert cm.inputs["metadata"]["namespace"] == jupyterhub.USERS_NAMESPACE
    assert cm.inputs["data"]["aiinfn-token"] == (root / "notebook.py").read_text()
    assert cm.inputs["data"]["aiinfn-env"] == (root / "envs.py").read_text()
    (volume,) = [v for v in values["singleuser"]["storage"]["extraVolumes"] if v["name"] == "files"]
    assert volume["configMap"]["name"] == jupyterhub.FILES_CONFIGMAP
    modes = {i["key"]: i.get("mode") for i in volume["configMap"]["items"]}
    assert modes["aiinfn-token"] == 0o755 and modes["aiinfn-env"] == 0o755
    assert not values["singleuser"].get("extraFiles"), "no singleuser Secret: it exists only in the hub's namespace"


def test_profiles_cover_every_kind_with_real_spawner_settings(hub: Any) -> None:
    report, values = hub
    profiles = values["singleuser"]["profileList"]
    slugs = {p["slug"] for p in profiles}
    assert slugs == {jupyterhub.CPU_PROFILE} | {jupyterhub.profile_slug(k) for k in report.plan.capacity}
    traits = set(KubeSpawner.class_traits(config=True))
    for p in profiles:
        assert set(p["kubespawner_override"]) <= traits, p["slug"]
        # As KubeSpawner applies an override: set_trait, which type-checks each value. (A full
        # KubeSpawner cannot start here: it needs a Kubernetes API server.)
        spawner = KubeSpawner.__new__(KubeSpawner)
        for key, value in p["kubespawner_override"].items():
            spawner.set_trait(key, value)
        if p["slug"] != jupyterhub.CPU_PROFILE:
            kind = next(c.kind for k, c in report.plan.capacity.items() if jupyterhub.profile_slug(k) == p["slug"])
            assert spawner.extra_resource_limits == {kind.resource: "1"}
            assert spawner.node_selector == kind.node_labels


def test_reserved_accelerators_are_shown_only_to_their_group(shipped_reports: dict[str, Preview]) -> None:
    """The settings the hub filters profiles by (the real filter runs in tests/services/test_hub.py)."""
    report = shipped_reports["cnaf"]
    settings = jupyterhub.hub_settings(report.plan)
    assert settings["profiles"]["v70"] == ["ai-infn/fpga"]
    assert settings["profiles"]["a100-80gb-1g-10gb"] is None and settings["profiles"]["cpu"] is None
    assert "ai-infn/users" in settings["site_groups"]
    assert settings["kinds"]["T4"] == {"slug": "t4", "resource": "nvidia.com/gpu", "flavor": "t4",
                                       "node_labels": {"aiinfn.infn.it/accelerator": "T4"}}


def test_no_secret_in_the_values_and_the_secret_is_a_pulumi_secret(hub: Any) -> None:
    report, values = hub
    assert OFFLINE_SECRET not in json.dumps(values)
    env = values["hub"]["extraEnv"]["OAUTH_CLIENT_SECRET"]["valueFrom"]["secretKeyRef"]
    (secret,) = [r for r in report.run.by_type("kubernetes:core/v1:Secret")
                 if r.inputs["metadata"]["name"] == env["name"]]
    data = secret.inputs["stringData"]
    assert is_secret(data) or is_secret(data[env["key"]])
    assert env["key"] in unwrap(data)


def test_hub_database_is_on_a_protected_claim(hub: Any) -> None:
    report, values = hub
    (pvc,) = [r for r in report.run.by_type("kubernetes:core/v1:PersistentVolumeClaim")
              if r.inputs["metadata"]["name"] == jupyterhub.HUB_DB_CLAIM]
    assert pvc.protect and pvc.retain_on_delete
    assert values["hub"]["db"]["url"].startswith(f"sqlite:///{jupyterhub.HUB_DB_MOUNT}/")
    mounts = {m["name"]: m["mountPath"] for m in values["hub"]["extraVolumeMounts"]}
    claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in values["hub"]["extraVolumes"]}
    assert any(claims[n] == jupyterhub.HUB_DB_CLAIM and mounts[n] == jupyterhub.HUB_DB_MOUNT for n in claims)


def test_homes_on_nfs_tmp_an_emptydir_culling_and_placeholders(hub: Any) -> None:
    """Homes are subPaths of the platform areas' claim in the notebooks' namespace (aiinfn_spawner)."""
    report, values = hub
    su = values["singleuser"]
    assert su["storage"]["type"] == "none"
    (pv,) = [r for r in report.run.by_type("kubernetes:core/v1:PersistentVolume")
             if r.inputs["metadata"]["name"] == "aiinfn-areas-users"]
    assert pv.inputs["spec"]["persistentVolumeReclaimPolicy"] == "Retain"
    assert pv.inputs["spec"]["nfs"]["path"] == f"{report.env.storage.nfs.export_path}/areas"
    assert pv.inputs["spec"]["claimRef"] == {"namespace": jupyterhub.USERS_NAMESPACE, "name": jupyterhub.AREAS_CLAIM}
    assert jupyterhub.hub_settings(report.plan)["areas"]["claim"] == jupyterhub.AREAS_CLAIM
    assert {"name": "tmp", "mountPath": "/tmp"} in su["storage"]["extraVolumeMounts"]
    (tmp,) = [v for v in su["storage"]["extraVolumes"] if v["name"] == "tmp"]
    assert tmp == {"name": "tmp", "emptyDir": {"sizeLimit": f"{report.env.services.jupyterhub.tmp_size_gb}Gi"}}
    assert values["cull"]["enabled"] and values["cull"]["timeout"] == report.env.services.jupyterhub.cull_idle_seconds
    expected = report.env.services.jupyterhub.user_placeholders
    assert values["scheduling"]["userPlaceholder"]["replicas"] == expected


def test_the_values_written_to_build_are_the_deployed_ones(hub: Any) -> None:
    report, values = hub
    written = YAML(typ="safe", pure=True).load(report.artifacts["k8s/values/jupyterhub.yaml"])
    assert written == values


def test_notebooks_reach_s3_through_the_api_with_no_secret(hub: Any) -> None:
    """No client secret, token, FUSE device, privilege or shell hook in a notebook: S3 through the AWS
    SDK with STS credentials from the user's access token (aiinfn-token s3-credentials)."""
    report, values = hub
    s3 = report.env.storage.s3
    su = values["singleuser"]
    env = su["extraEnv"]
    assert all(isinstance(v, str) for v in env.values()), "every notebook variable is a plain value"
    assert not {k for k in env if "SECRET" in k or ("TOKEN" in k and k != "AIINFN_TOKEN_URL")}
    assert env["AWS_ENDPOINT_URL"] == s3.endpoint and env["AWS_REGION"] == s3.region
    assert env["AIINFN_TOKEN_URL"] == jupyterhub.tokens_url()
    assert jupyterhub.notebook_files(report.plan)["aws-config"]["stringData"] == jupyterhub.aws_config()
    assert not su.get("lifecycleHooks")
    volumes = su["storage"]["extraVolumes"]
    assert not [v for v in volumes if "hostPath" in v]
    secrets = {r.inputs["metadata"]["name"] for r in report.run.by_type("kubernetes:core/v1:Secret")}
    assert "aiinfn-stswire-client" not in secrets
    assert OFFLINE_SECRET not in json.dumps(values)


def test_sts_role_and_region_reach_notebooks_as_values(plan_variant: Any, tmp_path: Path) -> None:
    """Shell and template characters in the S3 fields are refused with one line naming the field; and
    were one to get through (validation bypassed), it reaches the notebook as an environment value,
    never as code."""
    from aiinfn.errors import ConfigError

    payload = "IAMaccess\"; $(touch /tmp/pwned) '{username}"
    for field, value in (("region", "it-bo'; id"), ("sts_role", payload), ("mount_path", "/s3;reboot")):
        with pytest.raises(ConfigError) as e:
            plan_variant("cnaf", f"cnaf-bad-{field}", {"storage": {"s3": {
                "endpoint": "https://rgw.example.org", field: value}}})
        assert f"storage.s3.{field}" in str(e.value) and "\n" not in str(e.value)
    report = plan_variant("cnaf", "cnaf-radosgw", {"storage": {"s3": {
        "endpoint": "https://rgw.example.org", "region": "it-bo", "sts_role": "IAMaccess",
        "user_bucket_prefix": "ai-infn"}}})
    s3 = report.plan.env.storage.s3
    hostile = s3.model_construct(**{**dict(s3), "region": "it-bo'; id", "sts_role": payload})
    storage = report.plan.env.storage
    storage = storage.model_construct(**{**dict(storage), "s3": hostile})
    env_model = report.plan.env.model_construct(**{**dict(report.plan.env), "storage": storage})
    plan = type(report.plan)(**{**vars(report.plan), "env": env_model})
    values = jupyterhub.values(plan, "platform-nfs")
    env = values["singleuser"]["extraEnv"]
    assert env["AIINFN_S3_ROLE"] == payload and env["AWS_REGION"] == "it-bo'; id"
    assert jupyterhub.hub_settings(report.plan)["bucket_prefix"] == "ai-infn-"


def test_extra_config_is_data_only(hub: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the settings hold, hub.extraConfig is the same three statements and hands them over
    unchanged: one JSON literal, never text pasted into code."""
    report, _ = hub
    hostile = {
        "profiles": {"x\'\'\'\"\n); import os; os.system('id') #": ["a'b\"c\\\n{}", "${IFS}`id`"]},
        "bucket_prefix": "\"); __import__('os').system('id'); (\"",
    }
    monkeypatch.setattr(jupyterhub, "hub_settings", lambda plan: hostile)
    code = jupyterhub.extra_config(report.plan)
    tree = ast.parse(code)
    assert [type(n).__name__ for n in tree.body] == ["Import", "Import", "Expr"]
    call = tree.body[2].value
    assert isinstance(call, ast.Call) and ast.unparse(call.func) == "aiinfn_hub.configure"
    (literal,) = [n for n in ast.walk(call) if isinstance(n, ast.Constant)]
    assert json.loads(literal.value) == hostile
    seen: list[Any] = []
    fake = type(sys)("aiinfn_hub")
    fake.configure = lambda c, settings: seen.append(settings)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "aiinfn_hub", fake)
    exec(compile(code, "extraConfig", "exec"), {"c": Config()})
    assert seen == [hostile]


def test_the_hub_namespace_is_restricted_and_every_chart_pod_fits(hub: Any, chart: Any) -> None:
    report, values = hub
    (ns,) = [r for r in report.run.by_type("kubernetes:core/v1:Namespace")
             if r.inputs["metadata"]["name"] == jupyterhub.NAMESPACE]
    assert ns.inputs["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    defaults, _ = chart
    merged = _merge(defaults, values)
    assert merged["singleuser"]["cloudMetadata"]["blockWithIptables"] is False
    hub_pod = {"securityContext": merged["hub"]["podSecurityContext"],
               "containers": [{"name": "hub", "securityContext": merged["hub"]["containerSecurityContext"]}]}
    pods = {"hub": hub_pod}
    for name, ctx in (("proxy", merged["proxy"]["chp"]["containerSecurityContext"]),
                      ("user-scheduler", merged["scheduling"]["userScheduler"]["containerSecurityContext"]),
                      ("user-placeholder", merged["scheduling"]["userPlaceholder"]["containerSecurityContext"]),
                      ("image-puller", merged["prePuller"]["containerSecurityContext"]),
                      ("image-awaiter", merged["prePuller"]["hook"]["containerSecurityContext"]),
                      ("pause", merged["prePuller"]["pause"]["containerSecurityContext"])):
        pods[name] = {"containers": [{"name": name, "securityContext": ctx}]}
    spawner = merged["hub"]["config"]["KubeSpawner"]
    pods["notebook"] = {"securityContext": spawner["pod_security_context"],
                        "containers": [{"name": "notebook", "securityContext": spawner["container_security_context"]}],
                        "volumes": [{"name": v["name"], **{k: x for k, x in v.items() if k != "name"}}
                                    for v in merged["singleuser"]["storage"]["extraVolumes"]]}
    for name, pod in pods.items():
        assert pod_security.violations(pod) == [], name
    kube = KubeSpawner.__new__(KubeSpawner)
    kube.set_trait("container_security_context", spawner["container_security_context"])
    kube.set_trait("pod_security_context", spawner["pod_security_context"])


def test_the_restricted_check_has_teeth() -> None:
    bad = {"containers": [{"name": "x", "securityContext": {"capabilities": {"add": ["SYS_ADMIN"]}}}],
           "volumes": [{"name": "fuse", "hostPath": {"path": "/dev/fuse"}}]}
    found = pod_security.violations(bad)
    assert any("hostPath" in f for f in found) and any("SYS_ADMIN" in f for f in found)
    assert any("runAsNonRoot" in f for f in found) and any("seccomp" in f for f in found)


def test_notebooks_have_a_namespace_of_their_own_under_kueue(hub: Any) -> None:
    """Kueue manages jupyterhub-users (the interactive queue's namespace), never the hub's namespace;
    the hub spawns there with a Role limited to what KubeSpawner needs, and reads cluster-wide only
    nodes and ClusterQueues."""
    report, values = hub
    namespaces = {r.inputs["metadata"]["name"]: r.inputs["metadata"]["labels"]
                  for r in report.run.by_type("kubernetes:core/v1:Namespace")}
    users = namespaces[jupyterhub.USERS_NAMESPACE]
    assert users["pod-security.kubernetes.io/enforce"] == "restricted"
    assert users["kueue.x-k8s.io/managed"] == "true" and users["aiinfn.infn.it/interactive"] == "true"
    assert "kueue.x-k8s.io/managed" not in namespaces[jupyterhub.NAMESPACE]
    assert "aiinfn.infn.it/interactive" not in namespaces[jupyterhub.NAMESPACE]
    assert values["hub"]["config"]["KubeSpawner"]["namespace"] == jupyterhub.USERS_NAMESPACE
    assert values["hub"]["config"]["JupyterHub"]["hub_connect_url"] == "http://hub.jupyterhub.svc:8081"
    (lq,) = [r for r in report.run.by_type("kubernetes:kueue.x-k8s.io/v1beta2:LocalQueue")
             if r.inputs["metadata"]["name"] == "interactive"]
    assert lq.inputs["metadata"]["namespace"] == jupyterhub.USERS_NAMESPACE
    roles = {(r.inputs["metadata"]["name"], r.inputs["metadata"].get("namespace")): r.inputs["rules"]
             for r in [*report.run.by_type("kubernetes:rbac.authorization.k8s.io/v1:Role"),
                       *report.run.by_type("kubernetes:rbac.authorization.k8s.io/v1:ClusterRole")]}
    spawner = roles[("aiinfn-hub-spawner", jupyterhub.USERS_NAMESPACE)]
    assert {(g, r, tuple(v)) for rule in spawner for g in rule["apiGroups"] for r in rule["resources"]
            for v in [rule["verbs"]]} == {
        ("", "pods", ("get", "list", "watch", "create", "delete")),
        ("", "persistentvolumeclaims", ("get", "list", "watch", "create", "delete")),
        ("", "secrets", ("get", "list", "watch", "create", "delete")),
        ("", "services", ("get", "list", "watch", "create", "delete")),
        ("", "events", ("get", "list", "watch")),
        ("kueue.x-k8s.io", "workloads", ("get", "list", "watch")),
    }
    assert roles[("aiinfn-hub-registrations", jupyterhub.NAMESPACE)] == [
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get", "list", "watch"]}]
    cluster_wide = roles[("aiinfn-hub-availability", None)]
    assert all(rule["verbs"] == ["get", "list", "watch"] for rule in cluster_wide)
    assert {r for rule in cluster_wide for r in rule["resources"]} == {"nodes", "clusterqueues"}


def test_the_provisioner_keeps_only_setuid_and_setgid_and_no_api_token(hub: Any) -> None:
    report, values = hub
    namespaces = {r.inputs["metadata"]["name"]: r.inputs["metadata"]["labels"]
                  for r in report.run.by_type("kubernetes:core/v1:Namespace")}
    assert namespaces[jupyterhub.PROVISIONER_NAMESPACE]["pod-security.kubernetes.io/enforce"] == "baseline"
    (dep,) = [r for r in report.run.by_type("kubernetes:apps/v1:Deployment")
              if r.inputs["metadata"]["name"] == "aiinfn-provisioner"]
    spec = dep.inputs["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is False
    (c,) = spec["containers"]
    sc = c["securityContext"]
    assert sc["capabilities"] == {"drop": ["ALL"], "add": ["SETUID", "SETGID"]}
    assert sc["allowPrivilegeEscalation"] is False and sc["readOnlyRootFilesystem"] is True
    assert pod_security.violations(spec) != [], "baseline, not restricted: it keeps two capabilities"
    (cm,) = [r for r in report.run.by_type("kubernetes:core/v1:ConfigMap")
             if r.inputs["metadata"]["name"] == "aiinfn-provisioner"]
    root = Path(jupyterhub.__file__).parents[1] / "hub"
    assert cm.inputs["data"]["provisioner.py"] == (root / "provisioner.py").read_text()
    token = values["hub"]["extraEnv"]["AIINFN_PROVISIONER_TOKEN"]["valueFrom"]["secretKeyRef"]
    secrets = [r for r in report.run.by_type("kubernetes:core/v1:Secret")
               if r.inputs["metadata"]["name"] == token["name"]]
    assert {s.inputs["metadata"]["namespace"] for s in secrets} == {jupyterhub.NAMESPACE,
                                                                   jupyterhub.PROVISIONER_NAMESPACE}
    assert all(is_secret(s.inputs["stringData"]) or is_secret(s.inputs["stringData"][token["key"]])
               for s in secrets)
