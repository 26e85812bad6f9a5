"""The Cinder CSI driver's OpenStack credential: an application credential of the site's project.

Made by the user running the stack, so it acts in that user's project only, with at most the roles
``storage.block.credential_roles`` names (Keystone refuses roles the creator does not hold), and:

* its Keystone URL ``storage.block.auth_url``, else the public identity endpoint of ``site.region`` in the
  Keystone catalog of the stack's own token (``cinder_csi.catalog_auth_url``: none there is one error naming
  ``storage.block.auth_url``);
* restricted (``unrestricted`` false): it cannot create or delete application credentials or trusts,
  so whoever reads it cannot mint a longer-lived one;
* expiring at ``storage.block.credential_expires_at`` when the site sets it (changing the date replaces
  the credential: docs/operations.md says how to roll the driver);
* its secret generated here (RandomPassword) and kept only in the stack's encrypted state: ``cloud_conf``
  is a secret Output the overlay writes into the driver's Secret (services.cinder_csi), never exported.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_openstack as openstack
import pulumi_random as random

from aiinfn.errors import AiinfnError
from aiinfn.planning import Plan
from aiinfn.services import cinder_csi


def _catalog_url(catalogs: Any, region: str) -> str:
    try:
        return cinder_csi.catalog_auth_url(list(catalogs or ()), region)
    except ValueError as e:
        raise AiinfnError(str(e)) from None


@dataclass(frozen=True)
class BlockCredentialArgs:
    plan: Plan


class BlockCredential(pulumi.ComponentResource):
    cloud_conf: pulumi.Output[str]

    def __init__(self, name: str, args: BlockCredentialArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aiinfn:infra:BlockCredential", name, None, opts)
        env = args.plan.env
        block = env.storage.block
        assert block is not None
        child = pulumi.ResourceOptions(parent=self)
        secret = random.RandomPassword(f"{name}-secret", length=48, special=False, opts=child)
        credential = openstack.identity.ApplicationCredential(
            f"{name}-credential",
            **cinder_csi.credential_request(args.plan),
            secret=secret.result,
            region=env.site.region,
            opts=child,  # the SDK keeps its `secret` output secret
        )
        region = env.site.region
        if block.auth_url is not None:
            auth_url: pulumi.Output[str] = pulumi.Output.from_input(block.auth_url)
        else:  # the region's public identity endpoint in the catalog of the stack's own token
            scope = openstack.identity.get_auth_scope_output(name=f"{name}-scope", region=region,
                                                             opts=pulumi.InvokeOutputOptions(parent=self))
            auth_url = scope.service_catalogs.apply(lambda c: _catalog_url(c, region))
        self.cloud_conf = pulumi.Output.secret(pulumi.Output.all(auth_url, credential.id, secret.result).apply(
            lambda v: cinder_csi.cloud_conf(str(v[0]), region, str(v[1]), str(v[2]))))
        self.register_outputs({"credential_id": credential.id, "roles": list(block.credential_roles)})
