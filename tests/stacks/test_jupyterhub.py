"""JupyterHub: values valid for the pinned chart, settings accepted by the real authenticator and
spawner, profiles from the real accelerator inventory, secrets out of the values, database protected.

The chart itself cannot run here (no API server): its values are merged with the chart's own
defaults (../shared/schemas/z2jh-4.4.0/values.yaml) and validated against the chart's JSON schema,
which is what `helm install` does first; the authenticator and spawner settings are given to the
real oauthenticator and jupyterhub-kubespawner classes.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace
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


def test_authenticator_settings_are_real_traits(hub: Any) -> None:
    report, values = hub
    settings = values["hub"]["config"]["GenericOAuthenticator"]
    traits = GenericOAuthenticator.class_traits(config=True)
    unknown = set(settings) - set(traits)
    assert not unknown, f"not GenericOAuthenticator settings: {unknown}"
    auth = GenericOAuthenticator(config=Config({"GenericOAuthenticator": settings}))
    assert auth.client_id == report.env.iam.client_id
    assert auth.username_claim == "preferred_username"
    assert set(auth.admin_groups) == set(report.env.iam.admin_groups)
    assert set(report.env.iam.user_groups) <= set(auth.allowed_groups)
    assert auth.token_url.startswith(report.env.iam.issuer.rstrip("/"))


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


def _visible(values: dict[str, Any], groups: set[str]) -> set[str]:
    """Run the hub's own profile filter (hub.extraConfig) for a user in `groups`."""
    c = Config()
    c.KubeSpawner.profile_list = values["singleuser"]["profileList"]
    exec(compile(values["hub"]["extraConfig"]["aiinfn-profiles"], "extraConfig", "exec"), {"c": c})
    user = SimpleNamespace(groups=[SimpleNamespace(name=g) for g in groups])
    return {p["slug"] for p in c.KubeSpawner.profile_list(SimpleNamespace(user=user))}


def test_reserved_accelerators_are_shown_only_to_their_group(shipped_reports: dict[str, Preview]) -> None:
    report = shipped_reports["cnaf"]
    (release,) = [r for r in report.run.by_type("kubernetes:helm.sh/v3:Release") if r.inputs["name"] == "jupyterhub"]
    values = release.inputs["values"]
    everyone = _visible(values, {"ai-infn/users"})
    fpga = _visible(values, {"ai-infn/users", "ai-infn/fpga"})
    assert "v70" not in everyone and "v70" in fpga
    assert "a100-80gb-1g-10gb" in everyone and "cpu" in everyone


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


def test_homes_on_nfs_tmp_on_scratch_culling_and_placeholders(hub: Any) -> None:
    report, values = hub
    su = values["singleuser"]
    assert su["storage"]["dynamic"]["storageClass"] == report.env.storage.nfs.storage_class
    assert {"name": "scratch", "mountPath": "/tmp"} in su["storage"]["extraVolumeMounts"]
    assert values["cull"]["enabled"] and values["cull"]["timeout"] == report.env.services.jupyterhub.cull_idle_seconds
    expected = report.env.services.jupyterhub.user_placeholders
    assert values["scheduling"]["userPlaceholder"]["replicas"] == expected


def test_the_values_written_to_build_are_the_deployed_ones(hub: Any) -> None:
    report, values = hub
    written = YAML(typ="safe", pure=True).load(report.artifacts["k8s/values/jupyterhub.yaml"])
    assert written == values


def test_users_bucket_is_mounted_with_sts_wire(hub: Any) -> None:
    """The hub passes the user's IAM tokens from its encrypted auth state to the notebook, whose
    postStart hook mounts the user's bucket with sts-wire (syntax checked by the real /bin/sh)."""
    import subprocess

    report, values = hub
    s3 = report.env.storage.s3
    assert s3 is not None and s3.client_id is not None
    assert values["hub"]["config"]["Authenticator"]["enable_auth_state"] is True
    crypt = values["hub"]["extraEnv"]["JUPYTERHUB_CRYPT_KEY"]["valueFrom"]["secretKeyRef"]
    secrets = report.run.by_type("kubernetes:core/v1:Secret")
    (key,) = [r for r in secrets if r.inputs["metadata"]["name"] == crypt["name"]]
    assert is_secret(key.inputs["stringData"]) and len(unwrap(key.inputs["stringData"])[crypt["key"]]) == 64
    # the hook, run as the hub runs extraConfig, fills the notebook's environment
    c = Config()
    exec(compile(values["hub"]["extraConfig"]["aiinfn-tokens"], "extraConfig", "exec"), {"c": c})
    spawner = SimpleNamespace(environment={}, user=SimpleNamespace(name="alice"))
    c.Spawner.auth_state_hook(spawner, {"access_token": "at", "refresh_token": "rt"})
    bucket = f"{s3.user_bucket_prefix}-alice" if s3.user_bucket_prefix else "alice"
    assert spawner.environment == {"ACCESS_TOKEN": "at", "REFRESH_TOKEN": "rt", "AIINFN_S3_BUCKET": bucket}
    env = values["singleuser"]["extraEnv"]
    assert env["IAM_CLIENT_ID"] == s3.client_id and "valueFrom" in env["IAM_CLIENT_SECRET"]
    script = values["singleuser"]["lifecycleHooks"]["postStart"]["exec"]["command"][-1]
    assert subprocess.run(["/bin/sh", "-n", "-c", script], check=False).returncode == 0
    assert f'"{s3.mount_path}/$AIINFN_S3_BUCKET"' in script and "sts-wire" in script
    mounts = {m["mountPath"] for m in values["singleuser"]["storage"]["extraVolumeMounts"]}
    assert "/dev/fuse" in mounts
    ctx = values["hub"]["config"]["KubeSpawner"]["container_security_context"]
    assert ctx["capabilities"] == {"add": ["SYS_ADMIN"], "drop": ["ALL"]} and ctx["allowPrivilegeEscalation"] is False
    spawner_traits = KubeSpawner.__new__(KubeSpawner)
    spawner_traits.set_trait("container_security_context", ctx)
