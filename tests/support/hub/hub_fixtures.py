"""The real-JupyterHub harness: pytest fixtures for any test folder.

Use from a conftest.py::

    SUPPORT = Path(__file__).resolve().parents[1] / "support" / "hub"
    sys.path.insert(0, str(SUPPORT))
    from hub_fixtures import hub, hub_factory, iam, site_hub_values  # noqa: E402,F401

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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hub_harness
import hub_iam
import pytest
from ruamel.yaml import YAML

from aiinfn.config.loader import load_site
from aiinfn.planning import make_plan
from aiinfn.services import site_bundles
from aiinfn.services.jupyterhub import OAUTH_SECRET, OAUTH_SECRET_KEY

ROOT = Path(__file__).resolve().parents[3]
#: Access tokens of the stand-in live this long (shorter than the hub's refresh margin, so every auth
#: refresh renews them; longer than aiinfn-tokens' minimum validity).
IAM_TOKEN_SECONDS = 120
#: The hub re-checks a user's IAM session this often in tests (300 s in production).
HUB_REFRESH_AGE = 2
CLIENT_SECRET = "harness-client-secret-7f3c"


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
def hub_factory(iam: hub_iam.Iam, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Any]]:
    started: list[hub_harness.Hub] = []

    def start(values: dict[str, Any], *, auth_refresh_age: int | None = HUB_REFRESH_AGE,
              cluster_secrets: dict[tuple[str, str], str] | None = None) -> hub_harness.Hub:
        secrets = {(OAUTH_SECRET, OAUTH_SECRET_KEY): CLIENT_SECRET, **(cluster_secrets or {})}
        try:
            h = hub_harness.start_hub(values, iam.url, tmp_path_factory.mktemp("hub"), secrets,
                                      auth_refresh_age=auth_refresh_age)
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
