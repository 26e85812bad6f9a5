"""The generated hub, for real: login through IAM, groups, identity, tokens, the notebook's pod.

One hub per module (the cnaf site's values, merged onto the chart's defaults and run by the chart's
own jupyterhub_config.py; tests/support/hub), one IAM stand-in, distinct users per test. Gaps, named
once: no Kubernetes API server (the spawner's create/delete calls are recorded, the pod reported
running, a stand-in answers for the notebook); IAM is oidc-provider-mock with IAM's paths and refresh
rule; time is compressed (auth refresh every HUB_REFRESH_AGE s, access tokens of IAM_TOKEN_SECONDS).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import hub_sts
import pod_security
import pytest
import requests
from hub_fixtures import CLIENT_SECRET, HUB_REFRESH_AGE

from aiinfn.config.loader import load_site
from aiinfn.planning import make_plan
from aiinfn.services import jupyterhub

pytestmark = pytest.mark.integration

USERS = "ai-infn/users"
ADMINS = "ai-infn/admins"


def _login(hub: Any, iam: Any, name: str, groups: list[str]) -> tuple[Any, requests.Session, requests.Response]:
    user = iam.add_user(name, groups)
    session, r = hub.login(user.sub, iam.url)
    return user, session, r


def _admin(hub: Any, iam: Any) -> requests.Session:
    if not hasattr(hub, "_admin_session"):
        _, s, r = _login(hub, iam, "ops-admin", [ADMINS])
        assert r.status_code == 302, r.text
        hub._admin_session = s
    return hub._admin_session  # type: ignore[no-any-return]


def _auth_state(hub: Any, iam: Any, name: str) -> dict[str, Any]:
    model = hub.api(_admin(hub, iam), "GET", f"/users/{name}").json()
    return dict(model["auth_state"])


def _server_token(hub: Any, name: str) -> str:
    (pod,) = [p for n, p in hub.pods().items() if p["metadata"]["annotations"].get("hub.jupyter.org/username") == name]
    (nb,) = [c for c in pod["spec"]["containers"] if c["name"] == "notebook"]
    return next(e["value"] for e in nb["env"] if e["name"] == "JUPYTERHUB_API_TOKEN")


def _tokens(hub: Any, token: str | None) -> requests.Response:
    url = hub.service_urls[jupyterhub.TOKENS_SERVICE] + f"/services/{jupyterhub.TOKENS_SERVICE}/access-token"
    headers = {"Authorization": f"token {token}"} if token else {}
    return requests.get(url, headers=headers, timeout=30)


# --------------------------------------------------------------------------- login and groups


def test_the_hub_starts_quickly_with_the_charts_own_config(hub: Any) -> None:
    log = hub.log()
    assert "Loading extra config: aiinfn" in log and "Using Authenticator: aiinfn_hub.IamAuthenticator" in log
    assert hub.start_seconds < 60
    print(f"hub and proxy up in {hub.start_seconds:.2f} s")


def test_allowed_group_logs_in_and_others_get_403(hub: Any, iam: Any) -> None:
    _, session, r = _login(hub, iam, "alba", [USERS])
    assert r.status_code == 302 and "/hub/" in r.headers["location"]
    assert hub.api(session, "GET", "/user").json()["name"] == "alba"
    _, _, refused = _login(hub, iam, "mallory", ["some/other-group"])
    assert refused.status_code == 403


def test_admin_group_is_admin_and_users_are_not(hub: Any, iam: Any) -> None:
    _, s_admin, r = _login(hub, iam, "adele", [ADMINS])
    assert r.status_code == 302
    assert hub.api(s_admin, "GET", "/user").json()["admin"] is True
    _, s_user, _ = _login(hub, iam, "ugo", [USERS])
    assert hub.api(s_user, "GET", "/user").json()["admin"] is False


def test_a_user_removed_from_the_groups_is_locked_out_at_the_next_refresh(hub: Any, iam: Any) -> None:
    user, session, r = _login(hub, iam, "bruno", [USERS])
    assert r.status_code == 302
    token = hub.new_token(session, "bruno")
    assert hub.token_api(token, "GET", "/user").status_code == 200
    iam.set_groups(user, ["some/other-group"])
    time.sleep(HUB_REFRESH_AGE + 1)
    # the browser session is dropped: the hub sends the user to log in again ...
    home = session.get(f"{hub.url}/hub/home", allow_redirects=False, timeout=20)
    assert home.status_code == 302 and "/hub/login" in home.headers["location"]
    # ... where IAM still knows them, but the hub refuses them
    _, again = hub.login(user.sub, iam.url)
    assert again.status_code == 403
    # and their API tokens stop working with the session
    assert hub.token_api(token, "GET", "/user").status_code == 403


def test_a_revoked_iam_session_logs_the_user_out(hub: Any, iam: Any) -> None:
    user, session, r = _login(hub, iam, "renata", [USERS])
    assert r.status_code == 302
    iam.revoke(user)
    time.sleep(HUB_REFRESH_AGE + 1)
    home = session.get(f"{hub.url}/hub/home", allow_redirects=False, timeout=20)
    assert home.status_code == 302 and "/hub/login" in home.headers["location"]


# --------------------------------------------------------------------------- identity


def test_the_username_is_bound_to_the_first_iam_account(hub: Any, iam: Any) -> None:
    carla, _, r = _login(hub, iam, "carla", [USERS])
    assert r.status_code == 302
    # another IAM account that calls itself carla (a freed or reused IAM username) is refused
    _, _, impostor = _login(hub, iam, "carla", [USERS])
    assert impostor.status_code == 403
    # carla renamed in IAM keeps her hub user (and so her home)
    iam.rename(carla, "carla-rossi")
    session, again = hub.login(carla.sub, iam.url)
    assert again.status_code == 302
    assert hub.api(session, "GET", "/user").json()["name"] == "carla"
    users = {u["name"] for u in hub.api(_admin(hub, iam), "GET", "/users").json()}
    assert "carla-rossi" not in users


# --------------------------------------------------------------------------- tokens


def test_offline_access_is_asked_and_the_refresh_token_stays_encrypted_in_the_hub(hub: Any, iam: Any) -> None:
    s = requests.Session()
    authorize = s.get(f"{hub.url}/hub/oauth_login", allow_redirects=False, timeout=20).headers["location"]
    assert "offline_access" in hub.authorize_query(authorize)["scope"][0].split()
    _login(hub, iam, "dario", [USERS])
    state = _auth_state(hub, iam, "dario")
    assert state["refresh_token"] and state["access_token"]
    db = next(p for p in hub.files() if p.name == "jupyterhub.sqlite")
    raw = db.read_bytes()
    assert state["refresh_token"].encode() not in raw and state["access_token"].encode() not in raw
    with sqlite3.connect(db) as con:
        (blob,) = con.execute("SELECT encrypted_auth_state FROM users WHERE name = 'dario'").fetchone()
    assert blob and b"refresh_token" not in blob


def test_profiles_are_filtered_and_a_posted_hidden_profile_is_refused(hub: Any, iam: Any) -> None:
    _, session, _ = _login(hub, iam, "elena", [USERS])
    form = session.get(f"{hub.url}/hub/spawn/elena", timeout=20).text
    assert 'value="cpu"' in form and 'value="a100-80gb-1g-10gb"' in form
    assert 'value="v70"' not in form
    _, fpga_session, _ = _login(hub, iam, "fabio", [USERS, "ai-infn/fpga"])
    assert 'value="v70"' in fpga_session.get(f"{hub.url}/hub/spawn/fabio", timeout=20).text
    model = hub.spawn(session, "elena", {"profile": "v70"})
    assert not model["servers"], model
    assert not [p for p in hub.pods().values() if p["metadata"]["annotations"]["hub.jupyter.org/username"] == "elena"]


def test_the_notebook_pod_is_restricted_and_carries_no_secret(hub: Any, iam: Any) -> None:
    _, session, _ = _login(hub, iam, "gina", [USERS])
    model = hub.spawn(session, "gina", {"profile": "cpu"})
    assert model["servers"][""]["ready"], model
    (pod,) = [p for p in hub.pods().values() if p["metadata"]["annotations"]["hub.jupyter.org/username"] == "gina"]
    spec = pod["spec"]
    assert pod_security.violations(spec) == []
    assert not spec.get("initContainers"), "no init container (the chart's iptables one is privileged)"
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["tmp"]["emptyDir"]["sizeLimit"].endswith("Gi")
    (nb,) = [c for c in spec["containers"] if c["name"] == "notebook"]
    mounts = {m["mountPath"]: m["name"] for m in nb["volumeMounts"]}
    assert mounts["/tmp"] == "tmp" and mounts[jupyterhub.TOKEN_COMMAND] == "files"
    state = _auth_state(hub, iam, "gina")
    text = json.dumps(pod)
    for secret in (state["refresh_token"], state["access_token"], CLIENT_SECRET, *hub.chart_secrets.values()):
        assert secret not in text
    names = {e["name"] for e in nb["env"]}
    assert not {n for n in names if "SECRET" in n or n in ("ACCESS_TOKEN", "REFRESH_TOKEN")}
    assert not nb.get("lifecycle"), "no postStart hook: nothing from the environment runs as shell"
    home = next(m for m in nb["volumeMounts"] if m["mountPath"] == "/home/jovyan")
    assert home["subPath"] == "home/gina", "the home is the user's own directory of the platform areas"


def test_a_notebook_gets_its_own_users_access_token_only(hub: Any, iam: Any) -> None:
    users = {}
    for name in ("hana", "ivo"):
        _, session, _ = _login(hub, iam, name, [USERS])
        assert hub.spawn(session, name, {"profile": "cpu"})["servers"][""]["ready"]
        users[name] = session
    answers = {}
    for name in users:
        r = _tokens(hub, _server_token(hub, name))
        assert r.status_code == 200, r.text
        answers[name] = r.json()
        assert answers[name]["user"] == name
        # the token is the user's own at IAM
        who = requests.get(f"{iam.url}/userinfo", timeout=10,
                           headers={"Authorization": f"Bearer {answers[name]['access_token']}"}).json()
        assert who["preferred_username"] == name
    assert answers["hana"]["access_token"] != answers["ivo"]["access_token"]
    assert "refresh_token" not in json.dumps(answers)
    assert _tokens(hub, None).status_code == 401
    assert _tokens(hub, "not-a-token").status_code == 401
    narrow = hub.new_token(users["hana"], "hana", scopes=["read:users:name!user=hana"])
    assert _tokens(hub, narrow).status_code == 403


def test_the_access_token_is_renewed_by_the_hub_before_it_expires(hub: Any, iam: Any) -> None:
    _, session, _ = _login(hub, iam, "lara", [USERS])
    assert hub.spawn(session, "lara", {"profile": "cpu"})["servers"][""]["ready"]
    token = _server_token(hub, "lara")
    first = _tokens(hub, token).json()
    before = _auth_state(hub, iam, "lara")
    time.sleep(HUB_REFRESH_AGE + 1)
    second = _tokens(hub, token).json()
    assert second["access_token"] != first["access_token"] and second["expires_at"] > first["expires_at"]
    after = _auth_state(hub, iam, "lara")
    assert after["access_token"] == second["access_token"], "the refreshed tokens are the hub's auth state"
    assert after["refresh_token"] == before["refresh_token"]


def test_s3_credentials_through_the_aws_sdk(hub: Any, iam: Any, tmp_path: Path) -> None:
    """boto3's core (botocore) runs the notebook's credential_process; the STS stand-in checks the
    user's access token at IAM and records the request."""
    import botocore.session

    _, session, _ = _login(hub, iam, "marta", [USERS])
    assert hub.spawn(session, "marta", {"profile": "cpu"})["servers"][""]["ready"]
    (pod,) = [p for p in hub.pods().values() if p["metadata"]["annotations"]["hub.jupyter.org/username"] == "marta"]
    (nb,) = [c for c in pod["spec"]["containers"] if c["name"] == "notebook"]
    env = {e["name"]: e["value"] for e in nb["env"] if "value" in e}
    assert env["AWS_CONFIG_FILE"] == jupyterhub.AWS_CONFIG and env["AIINFN_S3_BUCKET"] == "marta"
    files = jupyterhub.notebook_files(make_plan(load_site("cnaf")))
    command = tmp_path / "aiinfn-token"
    command.write_text(files["aiinfn-token"]["stringData"])
    command.chmod(0o755)
    shipped = files["aws-config"]["stringData"]
    assert f"credential_process = {jupyterhub.TOKEN_COMMAND} s3-credentials" in shipped
    (tmp_path / "config").write_text(shipped.replace(jupyterhub.TOKEN_COMMAND, f"{sys.executable} {command}"))
    with hub_sts.running_sts(iam.url) as sts:
        notebook_env = {
            **{k: v for k, v in env.items()},
            "AIINFN_TOKEN_URL": hub.service_urls[jupyterhub.TOKENS_SERVICE]
            + f"/services/{jupyterhub.TOKENS_SERVICE}/access-token",
            "AWS_ENDPOINT_URL": sts.url, "AWS_CONFIG_FILE": str(tmp_path / "config"),
            "AIINFN_S3_ROLE": "IAMaccess", "PATH": os.environ["PATH"],
        }
        old = dict(os.environ)
        os.environ.clear()
        os.environ.update(notebook_env)
        try:
            creds = botocore.session.Session().get_credentials().get_frozen_credentials()
        finally:
            os.environ.clear()
            os.environ.update(old)
        (issued,) = sts.issued
        assert creds.access_key == issued["AccessKeyId"] and creds.token == issued["SessionToken"]
        (req,) = sts.requests
        assert req["RoleArn"] == "arn:aws:iam:::role/IAMaccess" and req["RoleSessionName"] == "marta"
        assert issued["sub"] == next(u.sub for u in iam.users.values() if u.username == "marta")
        # a refused token is one line on stderr and a non-zero exit, never a traceback
        bad = subprocess.run([sys.executable, str(command), "s3-credentials"], capture_output=True, text=True,
                             env={**notebook_env, "JUPYTERHUB_API_TOKEN": "nope"}, timeout=60, check=False)
        assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "401" in bad.stderr
