"""aiinfn-tokens: a JupyterHub service that gives a caller its own current IAM access token.

Shipped to the hub as ``aiinfn_tokens.py`` and started by the hub as a managed service
(hub.services). ``GET <prefix>access-token`` with ``Authorization: token <JupyterHub token>``:

* the caller's token is checked by the hub itself (HubAuth, no cache): a token the hub does not know,
  or whose user the hub's auth refresh has just logged out, gets 401; a token without the scope
  ``access:services!service=aiinfn-tokens`` (notebooks' tokens have it) gets 403; a service's token 403;
* that request is also what makes the hub refresh the user's auth (``IamAuthenticator.refresh_user``:
  groups re-checked, access token renewed with the refresh token when it expires soon), so the auth
  state read next is the hub's own, current one;
* the answer is ``{"access_token", "expires_at", "user"}`` of the token's own user: there is no way to
  name another user. The refresh token never leaves the hub's pod.

The service's own token has only ``read:users:name`` and ``admin:auth_state`` (hub.loadRoles).
Standard library, tornado and jupyterhub only (the hub image's).
"""

from __future__ import annotations

import json
import os
import time
from typing import Any
from urllib.parse import quote, urlparse

from jupyterhub.services.auth import HubAuth
from tornado import httpclient, ioloop, web

#: The least remaining validity of a token handed out; the hub refreshes well before that.
MIN_VALIDITY_SECONDS = 60


class AccessTokenHandler(web.RequestHandler):
    def initialize(self, hub_auth: HubAuth) -> None:
        self.hub_auth = hub_auth

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.set_header("Content-Type", "application/json")
        reason = self._reason
        exc = kwargs.get("exc_info")
        if exc and isinstance(exc[1], web.HTTPError) and exc[1].log_message:
            reason = exc[1].log_message
        self.finish(json.dumps({"error": reason, "status": status_code}))

    async def _auth_state(self, name: str) -> dict[str, Any]:
        url = f"{self.hub_auth.api_url.rstrip('/')}/users/{quote(name, safe='')}"
        try:
            resp = await httpclient.AsyncHTTPClient().fetch(
                url, headers={"Authorization": f"token {self.hub_auth.api_token}"}
            )
        except httpclient.HTTPClientError as e:
            raise web.HTTPError(502, f"the hub did not give {name}'s auth state ({e.code})") from None
        state = json.loads(resp.body).get("auth_state")
        if not isinstance(state, dict):
            raise web.HTTPError(502, "the hub keeps no IAM tokens for this user: log in again")
        return state

    async def get(self) -> None:
        self.set_header("Cache-Control", "no-store")
        token = self.hub_auth.get_token(self, in_cookie=False)
        if not token:
            raise web.HTTPError(401, "no JupyterHub token (Authorization: token ...)")
        model = await self.hub_auth.user_for_token(token, use_cache=False, sync=False)
        if not model:
            raise web.HTTPError(401, "token not valid, or the login behind it has expired")
        if model.get("kind", "user") != "user":
            raise web.HTTPError(403, "only a user's token can get that user's access token")
        if not self.hub_auth.check_scopes(self.hub_auth.access_scopes, model):
            raise web.HTTPError(403, f"the token lacks {sorted(self.hub_auth.access_scopes)}")
        name = str(model["name"])
        state = await self._auth_state(name)
        access_token = state.get("access_token")
        expires_at = state.get("expires_at")
        if not access_token:
            raise web.HTTPError(503, "no access token yet: log in again")
        if expires_at is not None and float(expires_at) - time.time() < MIN_VALIDITY_SECONDS:
            raise web.HTTPError(503, "the access token is being renewed: retry in a few seconds")
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"access_token": access_token, "expires_at": expires_at, "user": name}))


def make_app(hub_auth: HubAuth | None = None) -> web.Application:
    auth = hub_auth or HubAuth(cache_max_age=0)
    prefix = os.environ.get("JUPYTERHUB_SERVICE_PREFIX", "/services/aiinfn-tokens/")
    return web.Application([(prefix.rstrip("/") + "/access-token", AccessTokenHandler, {"hub_auth": auth})])


def main() -> None:
    url = urlparse(os.environ["JUPYTERHUB_SERVICE_URL"])
    bind = os.environ.get("AIINFN_TOKENS_BIND", "")
    make_app().listen(url.port or 80, address=bind)
    ioloop.IOLoop.current().start()


if __name__ == "__main__":
    main()
