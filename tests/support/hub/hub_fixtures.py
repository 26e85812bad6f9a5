"""The real-JupyterHub harness: pytest fixtures for any test folder.

Use from a conftest.py::

    SUPPORT = Path(__file__).resolve().parents[1] / "support" / "hub"
    sys.path.insert(0, str(SUPPORT))
    from hub_fixtures import areas, hub, hub_factory, iam, kube, site_hub_values  # noqa: E402,F401

API (modules of tests/support/hub, importable by name once SUPPORT is on sys.path):

* ``iam`` (module fixture) -> ``hub_iam.Iam``: the INDIGO IAM stand-in (oidc-provider-mock with IAM's
  ``/authorize``, ``/token``, ``/userinfo``, refresh tokens only for ``offline_access``, access tokens
  of ``IAM_TOKEN_SECONDS``). ``iam.add_user(username, groups) -> IamUser`` (``.sub``), ``set_groups``,
  ``rename``, ``revoke``.
* ``site_hub_values(name="cnaf", overrides=None)`` -> the z2jh values the overlay deploys for a shipped
  site (``overrides`` layered on its environment through ``extends``).
* ``hub_factory(values, **kw)`` -> ``hub_harness.Hub``, started against ``iam`` and stopped at the end
  of the module (``auth_refresh_age=`` compresses time; ``cluster_secrets=`` fills hub.extraEnv's
  secretKeyRefs; the IAM client secret is filled by default).
* ``hub`` (module fixture): the cnaf site's hub, ``auth_refresh_age`` ``HUB_REFRESH_AGE`` seconds.
* ``kube`` (module fixture) -> ``hub_kube.Kube``: the stand-in Kubernetes API every hub of the module
  reads (registrations, nodes, ClusterQueues, Workloads; Kueue holding a pod: ``hold``, ``admit``).
* ``areas`` (module fixture) -> ``Areas``: the real provisioner (aiinfn/hub/provisioner.py) serving a
  real directory (``.root``) with only CAP_SETUID and CAP_SETGID, which every hub of the module calls.
* ``Hub``: ``.url`` (public, through the proxy), ``login(sub, iam.url) -> (session, callback response)``,
  ``api(session, method, path)`` (cookie + XSRF), ``token_api(token, ...)``, ``new_token(session,
  user, scopes)``, ``spawn(session, user, form)`` (the spawn form, waits), ``pods()`` / ``pvcs()``
  (manifests the spawner sent, by name), ``service_urls`` (hub-managed services' local addresses),
  ``chart_secrets``, ``log()``, ``files()``, ``start_seconds``.
* ``hub_spawner.RecordingKubeSpawner``: KubeSpawner with its Kubernetes calls recorded (the hub loads it).
* ``hub_sts.running_sts(iam_url)``: an STS AssumeRoleWithWebIdentity stand-in checking tokens at IAM.
* ``pod_security.violations(pod_spec)``: Pod Security ``restricted`` rules (1.33), one line per breach.

A missing dependency (configurable-http-proxy, root for the mount namespace, ../shared) fails the
test with the install hint; nothing is skipped.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hub_harness
import hub_iam
import hub_kube
import pytest
import requests
from ruamel.yaml import YAML

from aiinfn.config.loader import load_site
from aiinfn.hub import identity
from aiinfn.planning import make_plan
from aiinfn.services import site_bundles
from aiinfn.services.jupyterhub import (
    OAUTH_SECRET,
    OAUTH_SECRET_KEY,
    PROVISIONER_TOKEN_KEY,
    PROVISIONER_TOKEN_SECRET,
)

ROOT = Path(__file__).resolve().parents[3]
#: Access tokens of the stand-in live this long (shorter than the hub's refresh margin, so every auth
#: refresh renews them; longer than aiinfn-tokens' minimum validity).
IAM_TOKEN_SECONDS = 120
#: The hub re-checks a user's IAM session this often in tests (300 s in production).
HUB_REFRESH_AGE = 2
CLIENT_SECRET = "harness-client-secret-7f3c"
PROVISIONER_TOKEN = "harness-provisioner-token-91ab"
PROVISIONER = ROOT / "src" / "aiinfn" / "hub" / "provisioner.py"


@dataclass
class Areas:
    """The real provisioner serving ``root`` (the platform areas) at ``url``."""

    root: Path
    url: str
    process: subprocess.Popen[bytes]

    def log(self) -> str:
        return (self.root.parent / "provisioner.log").read_text(errors="replace")


def hub_values_for(name: str = "cnaf", overrides: dict[str, Any] | None = None,
                   tmp: Path | None = None) -> dict[str, Any]:
    ref: str | Path = name
    if overrides:
        assert tmp is not None, "overrides need a directory for the layered environment"
        path = tmp / f"{name}-variant.yaml"
        yaml = YAML(typ="safe", pure=True)
        with path.open("w") as f:
            yaml.dump({"extends": str(ROOT / "environments" / f"{name}.yaml"), **overrides}, f)
        ref = path
    plan = make_plan(load_site(ref))
    (release,) = [r for b in site_bundles(plan) for r in b.releases if r.chart == "jupyterhub"]
    return copy.deepcopy(dict(release.values))


@pytest.fixture(scope="module")
def site_hub_values(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("hub-envs")
    return lambda name="cnaf", overrides=None: hub_values_for(name, overrides, tmp)


@pytest.fixture(scope="module")
def iam() -> Iterator[hub_iam.Iam]:
    with hub_iam.running_iam(token_seconds=IAM_TOKEN_SECONDS) as provider:
        yield provider


@pytest.fixture(scope="module")
def kube() -> Iterator[hub_kube.Kube]:
    with hub_kube.running_kube() as k:
        yield k


@pytest.fixture(scope="module")
def areas() -> Iterator[Areas]:
    """The provisioner as its pod runs it: root with only CAP_SETUID/CAP_SETGID (setpriv), the system
    Python (its children run as the users and must be able to execute it), a world-traversable tree."""
    if shutil.which("setpriv") is None:
        pytest.fail("setpriv is missing (util-linux): the provisioner runs with CAP_SETUID/CAP_SETGID only")
    base = Path(tempfile.mkdtemp(prefix="aiinfn-areas-", dir="/tmp"))
    base.chmod(0o755)
    root, program = base / "areas", base / "provisioner.py"
    root.mkdir()
    os.chown(root, identity.AREAS_UID, identity.AREAS_UID)
    shutil.copy(PROVISIONER, program)
    program.chmod(0o644)
    port = hub_harness.free_port()
    env = {"AIINFN_AREAS": str(root), "AIINFN_PROVISIONER_TOKEN": PROVISIONER_TOKEN, "PATH": "/usr/bin:/bin",
           "AIINFN_PROVISIONER_BIND": "127.0.0.1", "AIINFN_PROVISIONER_PORT": str(port)}
    with (base / "provisioner.log").open("wb") as log:
        proc = subprocess.Popen(["setpriv", "--bounding-set=-all,+setuid,+setgid", "--inh-caps=-all",
                                 "/usr/bin/python3", str(program), "serve"], env=env, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while True:
        try:
            if requests.get(f"{url}/health", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail("the provisioner did not start: " + (base / "provisioner.log").read_text())
        time.sleep(0.1)
    try:
        yield Areas(root, url, proc)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def hub_factory(iam: hub_iam.Iam, kube: hub_kube.Kube, areas: Areas,
                tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Any]]:
    started: list[hub_harness.Hub] = []

    def start(values: dict[str, Any], *, auth_refresh_age: int | None = HUB_REFRESH_AGE,
              cluster_secrets: dict[tuple[str, str], str] | None = None) -> hub_harness.Hub:
        secrets = {(OAUTH_SECRET, OAUTH_SECRET_KEY): CLIENT_SECRET,
                   (PROVISIONER_TOKEN_SECRET, PROVISIONER_TOKEN_KEY): PROVISIONER_TOKEN, **(cluster_secrets or {})}
        try:
            h = hub_harness.start_hub(values, iam.url, tmp_path_factory.mktemp("hub"), secrets,
                                      auth_refresh_age=auth_refresh_age, kube_url=kube.url,
                                      env={"AIINFN_PROVISIONER_URL": areas.url})
        except hub_harness.HarnessError as e:
            pytest.fail(f"the hub harness could not start: {e}")
        started.append(h)
        return h

    yield start
    for h in started:
        h.stop()


@pytest.fixture(scope="module")
def hub(hub_factory: Callable[..., hub_harness.Hub],
        site_hub_values: Callable[..., dict[str, Any]]) -> hub_harness.Hub:
    """The cnaf site's hub; ``AIINFN_HUB_VALUES=<file.json>`` runs the same tests over other values
    (an older plan, say, to show what a fix changed)."""
    other = os.environ.get("AIINFN_HUB_VALUES")
    return hub_factory(json.loads(Path(other).read_text()) if other else site_hub_values("cnaf"))
