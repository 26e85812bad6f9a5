"""Connections to a site's OpenStack, with bounded time and one clear line for every failure.

``connect`` authenticates at once (a wrong password or an unreachable endpoint is found before any
check runs), with every request bounded by ``timeout`` seconds and no retries, so the worst case is a
few times ``timeout`` rather than minutes. ``describe`` turns any keystoneauth or openstacksdk
exception into a ``CloudError`` whose message names the cloud, what failed and what to do.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from ..errors import AiinfnError

#: Seconds any single request may take. With no connection or status-code retries an unreachable
#: endpoint fails within about this time (the SDK's default would retry for minutes).
DEFAULT_TIMEOUT = 10.0


class CloudError(AiinfnError):
    """The cloud could not be used: names the cloud, what failed and what to do."""

    exit_code = 1


def connect(cloud: str, *, timeout: float = DEFAULT_TIMEOUT) -> Any:
    """An authenticated openstacksdk Connection to clouds.yaml entry ``cloud``, or CloudError."""
    import openstack

    quiet()
    try:
        conn = openstack.connect(
            cloud=cloud,
            api_timeout=timeout,
            connect_retries=0,
            status_code_retries=0,
        )
    except Exception as e:  # the config loader raises SDK and keystoneauth errors alike
        raise describe(cloud, e, timeout=timeout) from None
    try:
        conn.authorize()
    except Exception as e:
        raise describe(cloud, e, timeout=timeout, auth_url=auth_url_of(conn)) from None
    return conn


def find(method: Callable[..., Any], name: str, **query: Any) -> Any:
    """``method(name)`` of an SDK proxy (``conn.compute.find_flavor`` ...), or None when nothing has the name.

    The SDK's own ``ignore_missing=True`` default is deprecated (it becomes False in openstacksdk 6).
    """
    from openstack import exceptions as sdk

    try:
        return method(name, ignore_missing=False, **query)
    except sdk.NotFoundException:
        return None


def quiet() -> None:
    """keystoneauth and the SDK log their own retries and deprecations: our one line says it all."""
    import logging
    import warnings

    for logger in ("keystoneauth", "openstack", "stevedore", "urllib3"):
        logging.getLogger(logger).setLevel(logging.CRITICAL)
    warnings.filterwarnings("ignore", module=r"(openstack|keystoneauth1)(\..*)?$")


@contextlib.contextmanager
def calling(cloud: str, what: str, *, timeout: float | None = None) -> Iterator[None]:
    """Run API calls; any failure becomes one CloudError line naming ``what`` was being done."""
    try:
        yield
    except AiinfnError:
        raise
    except Exception as e:
        raise describe(cloud, e, doing=what, timeout=timeout) from None


def describe(
    cloud: str,
    error: BaseException,
    *,
    doing: str = "authenticate",
    timeout: float | None = None,
    auth_url: str | None = None,
) -> CloudError:
    """The one-line CloudError for ``error``, raised while trying to ``doing`` on ``cloud``."""
    from keystoneauth1 import exceptions as ks
    from openstack import exceptions as sdk

    where = f"cloud {cloud!r}"
    inner = keystone_cause(error)
    authenticating = doing == "authenticate"
    if inner is None and isinstance(error, sdk.ConfigException):
        return CloudError(f"{where}: not found in clouds.yaml ({clouds_files()}); add the entry, or point "
                          "OS_CLIENT_CONFIG_FILE at the clouds.yaml that has it")
    status = http_status(error)
    if status == 401 or isinstance(inner, ks.Unauthorized):
        return CloudError(f"{where}: authentication refused (HTTP 401): check the user, password or application "
                          "credential, and the project, in clouds.yaml")
    if status == 403 or isinstance(inner, ks.Forbidden):
        return CloudError(f"{where}: the credentials may not {doing} (HTTP 403): ask the cloud admins for the role, "
                          "or use credentials that have it")
    endpoint = auth_url or (auth_url_of_cloud(cloud) if authenticating else None)
    target = f"the identity endpoint {endpoint}" if authenticating else "the cloud"
    if isinstance(inner, ks.ConnectTimeout):
        limit = f"within {timeout:g} s" if timeout else "in time"
        return CloudError(f"{where}: {target} did not answer {limit} while trying to {doing}; check auth_url, "
                          "the network path to it (VPN, firewall), or raise --timeout")
    if isinstance(inner, ks.SSLError):
        return CloudError(f"{where}: TLS with {target} failed ({first_line(inner)}); check cacert in clouds.yaml")
    if isinstance(inner, ks.ConnectFailure | ks.UnknownConnectionError):
        return CloudError(f"{where}: cannot reach {target} (connection failed) while trying to {doing}; check "
                          "auth_url and the network path to it")
    if isinstance(inner, ks.DiscoveryFailure):
        return CloudError(f"{where}: no identity API found at {endpoint or '?'} ({first_line(inner)}); check "
                          "auth_url (it usually ends in /v3)")
    if isinstance(inner, ks.MissingRequiredOptions | ks.MissingAuthPlugin | ks.NoMatchingPlugin):
        return CloudError(f"{where}: incomplete auth settings in clouds.yaml ({first_line(inner)})")
    if isinstance(inner, ks.EndpointNotFound) or isinstance(error, sdk.EndpointNotFound):
        return CloudError(f"{where}: the service catalog has no endpoint needed to {doing} "
                          f"({first_line(inner or error)}); check region_name in clouds.yaml")
    if status is not None:
        return CloudError(f"{where}: could not {doing}: HTTP {status} {first_line(error)}")
    return CloudError(f"{where}: could not {doing}: {type(inner or error).__name__}: {first_line(inner or error)}")


def http_status(error: BaseException) -> int | None:
    """The HTTP status of an SDK or keystoneauth error, if it has one."""
    for e in chain(error):
        code = getattr(e, "status_code", None) or getattr(e, "http_status", None)
        if isinstance(code, int):
            return code
    return None


def chain(error: BaseException) -> Iterator[BaseException]:
    seen: list[BaseException] = []
    cur: BaseException | None = error
    while cur is not None and cur not in seen:
        seen.append(cur)
        yield cur
        cur = cur.__cause__ or cur.__context__


def keystone_cause(error: BaseException) -> Any:
    """The keystoneauth exception in ``error``'s chain (the SDK wraps them), or None."""
    from keystoneauth1 import exceptions as ks

    return next((e for e in chain(error) if isinstance(e, ks.ClientException)), None)


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:300] if text else type(e).__name__


def auth_url_of(conn: Any) -> str:
    try:
        return str(conn.config.config.get("auth", {}).get("auth_url") or "?")
    except Exception:  # only enriches a message
        return "?"


def auth_url_of_cloud(cloud: str) -> str:
    try:
        import openstack.config

        region = openstack.config.OpenStackConfig().get_one(cloud=cloud)
        return str(region.config.get("auth", {}).get("auth_url") or "?")
    except Exception:  # only enriches a message
        return "?"


def clouds_files() -> str:
    """Which clouds.yaml openstacksdk read, for the 'not found' message."""
    try:
        import openstack.config

        name = openstack.config.OpenStackConfig().config_filename
    except Exception:  # a broken file: the SDK's own error names it elsewhere
        name = None
    return f"read {name}" if name else "no clouds.yaml found"
