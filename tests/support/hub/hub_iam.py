"""A local INDIGO IAM stand-in: oidc-provider-mock (PyPI) serving IAM's paths, IAM's refresh rule and
IAM-shaped users.

* Paths as INDIGO IAM serves them: ``/authorize``, ``/token``, ``/userinfo`` (and the mock's own
  ``/oauth2/...`` ones, ``/.well-known/openid-configuration``, ``/jwks``).
* A refresh token only for ``offline_access`` (INDIGO IAM's rule; the mock alone issues one always);
  client credentials accepted in the body of a refresh request, as IAM accepts them.
* Users: ``sub`` an opaque UUID, ``preferred_username``, ``name``, ``email``, ``organisation_name``
  and ``groups`` as IAM's userinfo gives them (a list of group names such as ``ai-infn/users``).
  ``set_groups`` and ``revoke`` change a user while the hub runs: the next userinfo call sees it.
* Access tokens live ``token_seconds`` (IAM's default is an hour; tests shorten it).

Gap: the mock issues opaque access tokens (IAM's are JWTs); nothing here reads a token's contents.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import flask
import requests
import werkzeug.serving
from authlib.oauth2.rfc6750 import BearerTokenGenerator
from oidc_provider_mock import _app, _storage, init_app

OFFLINE = "offline_access"
#: Scopes the stand-in grants (the mock knows only OpenID's standard ones; IAM also has these two).
_storage.Client.SCOPES_SUPPORTED = (*_storage.Client.SCOPES_SUPPORTED, "groups", OFFLINE)
#: IAM accepts the client's credentials in the body of a refresh request too (the mock only in a header).
_app.RefreshTokenGrant.TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]


@dataclass
class IamUser:
    username: str
    groups: list[str]
    sub: str = field(default_factory=lambda: str(uuid.uuid4()))

    def claims(self) -> dict[str, Any]:
        return {
            "preferred_username": self.username,
            "name": self.username.title(),
            "email": f"{self.username}@example.org",
            "email_verified": True,
            "organisation_name": "ai-infn",
            "groups": list(self.groups),
        }


def _app(token_seconds: int) -> flask.Flask:
    app = flask.Flask("iam-standin")
    app.secret_key = uuid.uuid4().bytes
    # a refreshed access token lives as long as the first one (the mock would give it an hour)
    BearerTokenGenerator.GRANT_TYPES_EXPIRES_IN = {**BearerTokenGenerator.GRANT_TYPES_EXPIRES_IN,
                                                   "refresh_token": token_seconds}
    init_app(app, access_token_max_age=timedelta(seconds=token_seconds))
    views = app.view_functions
    app.add_url_rule("/authorize", "iam-authorize", views["oidc-provider-mock.authorize"], methods=["GET", "POST"])
    app.add_url_rule("/token", "iam-token", views["oidc-provider-mock.issue_token"], methods=["POST"])

    @app.after_request
    def offline_access_only(resp: flask.Response) -> flask.Response:
        """INDIGO IAM issues a refresh token only when ``offline_access`` was granted."""
        if flask.request.path not in ("/token", "/oauth2/token") or resp.status_code != 200:
            return resp
        if flask.request.form.get("grant_type") != "authorization_code":
            return resp
        body = resp.get_json()
        if isinstance(body, dict) and "refresh_token" in body and OFFLINE not in str(body.get("scope", "")).split():
            flask.g.oidc_provider_mock_storage.remove_refresh_token(body.pop("refresh_token"))
            resp.set_data(flask.json.dumps(body))
        return resp

    return app


class Iam:
    """The running stand-in: ``url`` is the issuer (``http://127.0.0.1:<port>``)."""

    def __init__(self, server: werkzeug.serving.BaseWSGIServer) -> None:
        self.server = server
        self.url = f"http://127.0.0.1:{server.server_port}"
        self.users: dict[str, IamUser] = {}

    def add_user(self, username: str, groups: list[str], sub: str | None = None) -> IamUser:
        user = IamUser(username, list(groups), **({"sub": sub} if sub else {}))
        self._put(user)
        self.users[user.sub] = user
        return user

    def set_groups(self, user: IamUser, groups: list[str]) -> None:
        user.groups = list(groups)
        self._put(user)

    def rename(self, user: IamUser, username: str) -> None:
        user.username = username
        self._put(user)

    def revoke(self, user: IamUser) -> None:
        """Revoke every access and refresh token of ``user`` (an IAM admin ending the sessions)."""
        requests.post(f"{self.url}/users/{user.sub}/revoke-tokens", timeout=10).raise_for_status()

    def _put(self, user: IamUser) -> None:
        requests.put(f"{self.url}/users/{user.sub}", json=user.claims(), timeout=10).raise_for_status()


@contextmanager
def running_iam(token_seconds: int = 3600) -> Iterator[Iam]:
    """Start the stand-in on a free port of 127.0.0.1 (a thread of this process) and stop it after."""
    server = werkzeug.serving.make_server("127.0.0.1", 0, _app(token_seconds), threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield Iam(server)
    finally:
        server.shutdown()
        thread.join(timeout=10)
