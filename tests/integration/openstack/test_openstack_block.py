"""The Cinder CSI driver's application credential, against the real local Keystone and Cinder.

The session's member user (an operator's credentials) makes the application credential the infrastructure
stack would (``cinder_csi.credential_request``: the same name, roles, restriction and expiry), then the
driver's side: the cloud.conf the overlay would write (``cinder_csi.cloud_conf``) is read back as the driver
reads it (``[Global]`` keys) and used to authenticate and to create and delete a volume in the project. And
what it must not do: mint another application credential (it is restricted), or see another project's
volume. Gap, named: the CSI driver itself (a Go program talking to a kubelet) does not run here; its
calls are made with openstacksdk, with the values of its cloud.conf. The Keystone URL is the fixture's
plain-http one (the environment's field takes https only; the catalog test below lifts that check only).

A site without ``storage.block.auth_url`` gets the URL from its own token's catalog
(``cinder_csi.catalog_auth_url`` over getAuthScope's items): here the same function is fed the catalog of the
member's token as openstacksdk reads it, in pulumi_openstack's types, and the credential authenticates
against the URL it returns.
"""

from __future__ import annotations

import configparser
import datetime as dt
import secrets
import sys
from pathlib import Path
from typing import Any

import pytest

from aiinfn.config.loader import load
from aiinfn.config.models import BlockStorage
from aiinfn.planning import make_plan
from aiinfn.services import cinder_csi

SUPPORT = Path(__file__).resolve().parents[2] / "support" / "openstack"
if str(SUPPORT) not in sys.path:
    sys.path.insert(0, str(SUPPORT))

from openstack_fixture import KEYSTONE, REGION  # noqa: E402 - found through SUPPORT
from openstack_world import ENV_FILE, World  # noqa: E402 - found through SUPPORT

pytestmark = pytest.mark.integration


def _plan_with_block() -> Any:
    env = load(ENV_FILE)
    expires = dt.date.today() + dt.timedelta(days=2)
    block = BlockStorage(auth_url="https://keystone.invalid/v3", credential_expires_at=expires)
    return make_plan(env.model_copy(update={"storage": env.storage.model_copy(update={"block": block})}))


def _driver_connection(conf_text: str) -> Any:
    """A connection made only from cloud.conf's [Global] values, as the driver authenticates."""
    from keystoneauth1 import session
    from keystoneauth1.identity import v3
    from openstack import connection

    conf = configparser.ConfigParser()
    conf.read_string(conf_text)
    g = conf["Global"]
    auth = v3.ApplicationCredential(auth_url=g["auth-url"], application_credential_id=g["application-credential-id"],
                                    application_credential_secret=g["application-credential-secret"])
    return connection.Connection(session=session.Session(auth=auth), region_name=g["region"])


def test_the_csi_credential_manages_volumes_of_its_project_only(world: World) -> None:
    from openstack import exceptions

    plan = _plan_with_block()
    request = cinder_csi.credential_request(plan)
    assert request["unrestricted"] is False and request["roles"] == ["member"] and request["expires_at"]
    member = world.member()
    other = None
    driver = None
    cred = None
    try:
        secret = secrets.token_hex(24)  # as the stack's RandomPassword: letters and digits only
        cred = member.identity.create_application_credential(
            user=world.user.id, secret=secret, name=request["name"], description=request["description"],
            roles=[{"name": r} for r in request["roles"]], unrestricted=request["unrestricted"],
            expires_at=request["expires_at"].removesuffix("Z"))
        assert cred.unrestricted is False and [r["name"] for r in cred.roles] == ["member"]
        conf = cinder_csi.cloud_conf(KEYSTONE, REGION, cred.id, secret)

        driver = _driver_connection(conf)
        assert driver.current_project_id == world.project.id  # scoped to the site's project, nothing else
        vol = driver.block_storage.create_volume(name="aiinfn-it-csi", size=1)
        driver.block_storage.wait_for_status(vol, status="available", interval=0.5, wait=60)
        driver.block_storage.delete_volume(vol)
        driver.block_storage.wait_for_delete(vol, interval=0.5, wait=60)

        # restricted: it cannot make another credential (which could outlive or outrank it)
        with pytest.raises(exceptions.HttpException) as refused:
            driver.identity.create_application_credential(user=world.user.id, name="aiinfn-it-escalate",
                                                          secret=secrets.token_hex(24))
        assert refused.value.status_code == 403
        # another project's volume is invisible to it
        other = world.admin.block_storage.create_volume(name="aiinfn-it-other", size=1)
        with pytest.raises(exceptions.NotFoundException):
            driver.block_storage.get_volume(other.id)
    finally:
        if other is not None:
            world.admin.block_storage.wait_for_status(other, status="available", interval=0.5, wait=60)
            world.admin.block_storage.delete_volume(other)
        if driver is not None:
            driver.close()
        if cred is not None:
            member.identity.delete_application_credential(world.user.id, cred.id)
        member.close()


def _as_auth_scope_items(catalog: list[dict[str, Any]]) -> list[Any]:
    """openstacksdk's token catalog in the types pulumi_openstack's getAuthScope returns (what the stack reads)."""
    from pulumi_openstack.identity import outputs as ident

    return [ident.GetAuthScopeServiceCatalogResult(
        id=str(c.get("id", "")), name=str(c.get("name", "")), type=str(c["type"]),
        endpoints=[ident.GetAuthScopeServiceCatalogEndpointResult(
            id=str(e.get("id", "")), interface=str(e["interface"]), region=str(e.get("region") or ""),
            region_id=str(e.get("region_id") or ""), url=str(e["url"])) for e in c.get("endpoints", [])])
        for c in catalog]


def test_the_catalogs_keystone_is_the_one_the_credential_authenticates_against(world: World) -> None:
    plan = _plan_with_block()
    request = cinder_csi.credential_request(plan)
    member = world.member()
    cred = None
    driver = None
    try:
        access = member.session.auth.get_access(member.session)
        items = _as_auth_scope_items(list(access.service_catalog.catalog))
        url = cinder_csi.catalog_auth_url(items, REGION, https_only=False)  # the fixture's Keystone is plain http
        assert url.rstrip("/") == KEYSTONE.rstrip("/")
        secret = secrets.token_hex(24)
        cred = member.identity.create_application_credential(
            user=world.user.id, secret=secret, name=request["name"] + "-catalog", roles=[{"name": "member"}],
            unrestricted=False, expires_at=request["expires_at"].removesuffix("Z"))
        driver = _driver_connection(cinder_csi.cloud_conf(url, REGION, cred.id, secret))
        assert driver.current_project_id == world.project.id
        assert driver.block_storage.get_endpoint()  # Cinder found through that Keystone's catalog
        with pytest.raises(ValueError, match=r"storage\.block\.auth_url"):
            cinder_csi.catalog_auth_url(items, "RegionNowhere", https_only=False)
    finally:
        if driver is not None:
            driver.close()
        if cred is not None:
            member.identity.delete_application_credential(world.user.id, cred.id)
        member.close()
