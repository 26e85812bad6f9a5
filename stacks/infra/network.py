"""The site's private network: network, subnet and router to the external network, or an existing one."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_openstack as openstack

from aiinfn.config.models import Environment
from aiinfn.planning.nodes import site_tags


@dataclass(frozen=True)
class SiteNetworkArgs:
    env: Environment


class SiteNetwork(pulumi.ComponentResource):
    network_id: pulumi.Output[str]
    subnet_id: pulumi.Output[str]

    def __init__(self, name: str, args: SiteNetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aiinfn:infra:SiteNetwork", name, None, opts)
        env = args.env
        net = env.network
        child = pulumi.ResourceOptions(parent=self)
        external = openstack.networking.get_network_output(name=env.site.external_network, external=True)

        if net.existing_network:
            existing = openstack.networking.get_network_output(name=net.existing_network)
            subnet = openstack.networking.get_subnet_output(network_id=existing.id, cidr=str(net.cidr))
            self.network_id = existing.id
            self.subnet_id = subnet.id
            router_id: pulumi.Output[str] | None = None
        else:
            network = openstack.networking.Network(
                f"{name}-net",
                name=f"aiinfn-{env.site.name}",
                admin_state_up=True,
                mtu=net.mtu,
                tags=site_tags(env),
                opts=child,
            )
            subnet_res = openstack.networking.Subnet(
                f"{name}-subnet",
                name=f"aiinfn-{env.site.name}-nodes",
                network_id=network.id,
                cidr=str(net.cidr),
                ip_version=4,
                enable_dhcp=True,
                dns_nameservers=[str(a) for a in env.site.dns_nameservers],
                tags=site_tags(env),
                opts=child,
            )
            router = openstack.networking.Router(
                f"{name}-router",
                name=f"aiinfn-{env.site.name}",
                admin_state_up=True,
                external_network_id=external.id,
                tags=site_tags(env),
                opts=child,
            )
            openstack.networking.RouterInterface(
                f"{name}-router-if",
                router_id=router.id,
                subnet_id=subnet_res.id,
                opts=child,
            )
            self.network_id = network.id
            self.subnet_id = subnet_res.id
            router_id = router.id

        self.external_network_id = external.id
        self.register_outputs(
            {
                "network_id": self.network_id,
                "subnet_id": self.subnet_id,
                "router_id": router_id,
                "external_network_id": external.id,
            }
        )
