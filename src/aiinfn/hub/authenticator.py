"""INDIGO IAM login for the platform's hub (shipped to the hub as ``aiinfn_hub.py``).

``IamAuthenticator`` is OAuthenticator's GenericOAuthenticator (its settings stay in the
``GenericOAuthenticator`` section of hub.config) with four changes:

* **Stable identity.** The hub username is the lowercased ``preferred_username``, bound to the IAM
  account's ``sub`` the first time that account logs in (a small sqlite table on the hub's database
  claim). A name bound to one ``sub`` is refused to every other ``sub`` (a freed or reused IAM
  username cannot take over someone's home); an account renamed in IAM keeps its hub name.
* **Groups re-checked at every auth refresh.** OAuthenticator's own ``refresh_user`` updates the
  groups but never asks whether the user may still log in; here a refresh that finds the user outside
  the allowed groups (or the IAM session gone) returns False, so the hub drops the session and the
  next login is refused.
* **Access tokens refreshed before they expire.** The refresh token (``offline_access``) stays in the
  hub's encrypted auth state; when the access token expires within ``refresh_margin_seconds`` the
  refresh uses it, and the new tokens are saved as the hub's auth state (the ``aiinfn-tokens`` service
  only reads them).
* ``expires_at`` (absolute time) is kept beside the tokens.
* **Events.** Members of an event's groups (its registration ConfigMap, read by ``aiinfn_cluster``)
  may log in on the days of its window (``starts`` to ``ends`` inclusive, UTC) and are refused before
  and after (a session open at the end is dropped at the next auth refresh). The event's tutors
  (``admin_groups``) get, during the window, a role whose scopes are filtered to the participants'
  group (``TUTOR_SCOPES``: the admin page, start, stop and open their servers): JupyterHub's roles are
  managed by this authenticator (``manage_roles``), so the role is given and taken away at each login
  and auth refresh.

``configure(c, settings)`` (called by hub.extraConfig) filters the profile list per user and tells
each notebook which bucket is its user's. No token, refresh token or client secret is ever put into a
notebook's environment or spec.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from inspect import isawaitable
from typing import TYPE_CHECKING, Any

from oauthenticator.generic import GenericOAuthenticator
from tornado import web
from tornado.httpclient import HTTPClientError
from traitlets import Integer, List, Unicode

if TYPE_CHECKING:
    from aiinfn.hub import cluster, spawner
    from aiinfn.hub.identity import Identities
else:
    try:  # shipped beside this module in the hub
        import aiinfn_cluster as cluster
        import aiinfn_spawner as spawner
        from aiinfn_identity import Identities
    except ImportError:  # the project's own tests import the package
        from aiinfn.hub import cluster, spawner
        from aiinfn.hub.identity import Identities

#: What a tutor of an event may do with the event's participants (JupyterHub 5 scopes filtered to the
#: participants' group): see them on the admin page, start, stop and open their servers. Not: delete
#: them, change their groups or admin status, read their auth state, or touch anyone else.
TUTOR_SCOPES = ("list:users", "read:users", "read:users:activity", "admin:servers", "servers",
                "access:servers", "read:servers")


class IamAuthenticator(GenericOAuthenticator):
    """GenericOAuthenticator for INDIGO IAM: stable identity, groups re-checked at refresh, tokens
    refreshed before they expire (see the module docstring)."""

    identity_db = Unicode(
        "/srv/jupyterhub/aiinfn-db/identities.sqlite",
        config=True,
        help="sqlite file binding hub usernames to IAM subjects (on the hub's database claim)",
    )
    refresh_margin_seconds = Integer(
        900,
        config=True,
        help="refresh the access token when it expires within this many seconds "
        "(at least auth_refresh_age plus the validity a caller of aiinfn-tokens needs)",
    )

    base_roles: Any = List(
        config=True, help="roles (load_roles entries) every user keeps when roles are managed: set by configure"
    )

    _identities: Identities | None = None

    @property
    def identities(self) -> Identities:
        if self._identities is None:
            self._identities = Identities(self.identity_db)
        return self._identities

    # ----------------------------------------------------------------- identity

    def user_info_to_username(self, user_info: Mapping[str, Any]) -> str:
        sub = user_info.get("sub")
        if not sub or not isinstance(sub, str):
            raise web.HTTPError(403, "IAM returned no subject (sub) for this account")
        bound = self.identities.name_for(sub)
        if bound is not None:
            return bound
        name = self.normalize_username(str(super().user_info_to_username(user_info)))
        owner = self.identities.sub_for(name)
        if owner is not None and owner != sub:
            self.log.warning("refused login: username %s is bound to another IAM account", name)
            raise web.HTTPError(
                403,
                f"the username {name!r} belongs to another IAM account on this platform: "
                "ask the platform's administrators",
            )
        return name

    async def open_events(self, auth_model: Mapping[str, Any]) -> list[Any]:
        """The registered events whose window is open today and whose groups hold this user."""
        groups = set(auth_model.get("groups") or [])
        if not groups:
            return []
        try:
            regs = await spawner.shared_cluster().registrations(self.log)
        except Exception as e:  # no API: the site's own users still log in
            self.log.warning("event registrations unreadable (%s): no event logins now", e)
            return []
        day = cluster.today()
        name = str(auth_model.get("name") or "")
        # a participant seated at another site of the event (a roster's assignments) has nothing here
        return [r for r in regs if r.open_on(day) and r.profiles_for(name, groups)]

    async def _token_to_auth_model(self, token_info: dict[str, Any]) -> dict[str, Any]:
        model: dict[str, Any] = await super()._token_to_auth_model(token_info)
        if self.manage_roles:
            roles: list[dict[str, Any]] = [dict(r) for r in self.base_roles] or [{"name": "user"}]
            if model.get("admin"):
                roles.append({"name": "admin"})
            groups = set(model.get("groups") or [])
            for reg in await self.open_events(model):
                if groups & set(reg.admin_groups) and reg.participants:
                    roles.append({
                        "name": f"event-{reg.event}-tutors",
                        "description": f"tutors of {reg.event}: its participants' servers",
                        "scopes": ["admin-ui", *(f"{s}!group={reg.participants}" for s in TUTOR_SCOPES)],
                    })
            model["roles"] = roles
        return model

    async def check_allowed(self, username: str, auth_model: dict[str, Any] | None) -> bool:
        allowed = bool(await super().check_allowed(username, auth_model))
        if not allowed and auth_model is not None:
            allowed = bool(await self.open_events(auth_model))
        if not allowed or auth_model is None:
            return allowed
        user_info = (auth_model.get("auth_state") or {}).get(self.user_auth_state_key) or {}
        sub = user_info.get("sub")
        if not sub or not self.identities.bind(str(sub), username):
            self.log.warning("refused login: username %s could not be bound to its IAM account", username)
            return False
        return True

    # ----------------------------------------------------------------- tokens

    def build_auth_state_dict(self, token_info: dict[str, Any], user_info: dict[str, Any]) -> dict[str, Any]:
        state: dict[str, Any] = super().build_auth_state_dict(token_info, user_info)
        expires_in = token_info.get("expires_in")
        try:
            state["expires_at"] = time.time() + float(expires_in) if expires_in is not None else None
        except (TypeError, ValueError):
            state["expires_at"] = None
        return state

    async def _refreshed_tokens(self, refresh_token: str, name: str) -> dict[str, Any] | None:
        try:
            params = self.build_refresh_token_request_params(refresh_token)
            info: dict[str, Any] = await self.get_token_info(None, params)
        except Exception as e:  # IAM refused the refresh token (revoked, expired, client changed)
            self.log.info("refresh token of %s refused (%s): login required", name, e)
            return None
        if not info.get("refresh_token"):  # IAM may keep the same refresh token
            info["refresh_token"] = refresh_token
        return info

    async def refresh_user(self, user: Any, handler: Any = None, **kwargs: Any) -> bool | dict[str, Any]:
        """The user's auth model with fresh tokens, or False (log in again) when IAM no longer knows
        the session or the user is no longer in an allowed group."""
        if not self.enable_auth_state:
            return True
        auth_state = await user.get_auth_state()
        if not auth_state or not auth_state.get("token_response"):
            return False
        token_info = dict(auth_state["token_response"])
        refresh_token = auth_state.get("refresh_token")
        refreshed = False
        expires_at = auth_state.get("expires_at") or 0
        if refresh_token and float(expires_at) - time.time() < self.refresh_margin_seconds:
            new = await self._refreshed_tokens(refresh_token, user.name)
            if new is None:
                return False
            token_info, refreshed = new, True
        try:
            model: dict[str, Any] = await self._token_to_auth_model(token_info)
        except HTTPClientError as e:
            if not (400 <= e.code < 500) or refreshed or not refresh_token:
                self.log.info("auth refresh of %s failed (%s): login required", user.name, e)
                return False
            new = await self._refreshed_tokens(refresh_token, user.name)
            if new is None:
                return False
            try:
                model = await self._token_to_auth_model(new)
            except Exception as e2:
                self.log.info("auth refresh of %s failed (%s): login required", user.name, e2)
                return False
        except web.HTTPError as e:
            self.log.info("auth refresh of %s refused (%s): login required", user.name, e.log_message)
            return False
        if model["name"] != user.name:
            self.log.warning("auth refresh of %s returned identity %s: login required", user.name, model["name"])
            return False
        not_blocked = self.check_blocked_users(user.name, model)
        if isawaitable(not_blocked):
            not_blocked = await not_blocked
        if not_blocked is False:
            return False
        if not await self.check_allowed(user.name, model):
            self.log.warning("%s is no longer in an allowed group: login required", user.name)
            return False
        return model


def configure(c: Any, settings: Mapping[str, Any]) -> None:
    """Apply the platform's hub settings (hub.extraConfig passes them as one JSON literal).

    ``settings`` (services.jupyterhub.hub_settings): ``profiles`` (profile slug -> IAM groups that may
    use it, None for every user of the site), ``site_groups``, ``kinds``, ``projects``, ``sizing``,
    ``custom_images``, ``areas``, ``bucket_prefix`` (a user's bucket is ``<prefix><username>``; None:
    no S3) and the rest ``aiinfn_spawner`` reads. The provisioner's address and token come from the
    hub's environment (``AIINFN_PROVISIONER_URL``, ``AIINFN_PROVISIONER_TOKEN`` from a Secret).
    """
    import os

    merged = dict(settings)
    merged["profile_list"] = list(c.KubeSpawner.profile_list or [])
    merged["provisioner_url"] = os.environ.get("AIINFN_PROVISIONER_URL", "")
    merged["provisioner_token"] = os.environ.get("AIINFN_PROVISIONER_TOKEN", "")
    merged["hub_namespace"] = os.environ.get("POD_NAMESPACE", "jupyterhub")
    if os.environ.get("AIINFN_CLUSTER_CACHE_SECONDS"):
        merged["cache_seconds"] = float(os.environ["AIINFN_CLUSTER_CACHE_SECONDS"])
    spawner.configure(merged)

    def profile_list(s: Any) -> Any:
        return s.profiles_for_user()

    c.KubeSpawner.profile_list = profile_list
    # roles are managed by the authenticator (event tutors): every user keeps the chart's `user` role
    c.IamAuthenticator.base_roles = [
        {k: v for k, v in r.items() if k in ("name", "description", "scopes")}
        for r in (c.JupyterHub.load_roles or []) if r.get("name") == "user"
    ]

    prefix = settings.get("bucket_prefix")
    if prefix is not None:
        bucket_prefix = str(prefix)

        def pre_spawn(s: Any) -> None:
            s.environment["AIINFN_S3_BUCKET"] = bucket_prefix + s.user.name

        c.Spawner.pre_spawn_hook = pre_spawn
