"""Connections to a site's OpenStack, with bounded time and one clear line for every failure."""

from __future__ import annotations

from typing import Any

from ..errors import AiinfnError

#: Seconds any single request may take; no retries on connection or status errors, so an
#: unreachable endpoint fails within about this time instead of minutes.
DEFAULT_TIMEOUT = 10.0


class CloudError(AiinfnError):
    """The cloud could not be used: names the cloud, what failed and what to do."""

    exit_code = 1


def connect(cloud: str, *, timeout: float = DEFAULT_TIMEOUT) -> Any:
    """An authenticated openstacksdk Connection to clouds.yaml entry ``cloud``, or CloudError."""
    import logging
    import warnings

    import openstack
    from keystoneauth1 import exceptions as ks
    from openstack import exceptions as sdk

    # keystoneauth and the SDK log their own retries and warnings: the one line below says it all
    for logger in ("keystoneauth", "openstack", "stevedore"):
        logging.getLogger(logger).setLevel(logging.CRITICAL)
    # ... and the SDK's deprecation notices about its own optional parts are not the operator's concern
    warnings.filterwarnings("ignore", module=r"openstack(\..*)?$")
    try:
        conn = openstack.connect(
            cloud=cloud,
            api_timeout=timeout,
            connect_retries=0,
            status_code_retries=0,
        )
        conn.authorize()
        return conn
    except sdk.SDKException as e:
        inner = _keystone_cause(e)
        if inner is None:
            if isinstance(e, sdk.ConfigException):
                raise CloudError(
                    f"cloud {cloud!r}: not in clouds.yaml ({str(e).splitlines()[0]}); add it, or point "
                    "OS_CLIENT_CONFIG_FILE at the file that has it"
                ) from None
            raise CloudError(f"cloud {cloud!r}: {type(e).__name__}: {_first_line(e)}") from None
        _raise_keystone(cloud, inner)
    except ks.ClientException as e:
        _raise_keystone(cloud, e)
    raise AssertionError("unreachable")  # pragma: no cover


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _keystone_cause(e: BaseException) -> Any:
    from keystoneauth1 import exceptions as ks

    seen: list[BaseException] = []
    cur: BaseException | None = e
    while cur is not None and cur not in seen:
        if isinstance(cur, ks.ClientException):
            return cur
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return None


def _raise_keystone(cloud: str, e: Any) -> None:
    from keystoneauth1 import exceptions as ks

    if isinstance(e, ks.Unauthorized):
        raise CloudError(
            f"cloud {cloud!r}: authentication refused: check the user, password or application credential "
            "in clouds.yaml"
        ) from None
    if isinstance(e, ks.ConnectFailure | ks.ConnectTimeout | ks.DiscoveryFailure | ks.SSLError):
        raise CloudError(
            f"cloud {cloud!r}: cannot reach the identity endpoint {_auth_url(cloud)} ({type(e).__name__}); "
            "check auth_url and the network path to it"
        ) from None
    if isinstance(e, ks.MissingRequiredOptions | ks.MissingAuthPlugin | ks.NoMatchingPlugin):
        raise CloudError(f"cloud {cloud!r}: incomplete auth settings in clouds.yaml ({_first_line(e)})") from None
    raise CloudError(f"cloud {cloud!r}: {type(e).__name__}: {_first_line(e)}") from None


def _auth_url(cloud: str) -> str:
    try:
        import openstack.config

        region = openstack.config.OpenStackConfig().get_one(cloud=cloud)
        return str(region.config.get("auth", {}).get("auth_url", "?"))
    except Exception:  # only used to enrich a message
        return "?"
