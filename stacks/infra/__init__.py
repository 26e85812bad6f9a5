"""Site infrastructure on OpenStack: network, security groups, flavors, nodes and stateful volumes."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_openstack as openstack
import pulumi_random as random

from aiinfn.config.models import Role
from aiinfn.planning import Plan

from .block import BlockCredential, BlockCredentialArgs
from .compute import Flavors, Node, NodeArgs
from .network import SiteNetwork, SiteNetworkArgs
from .security import SecurityGroups, SecurityGroupsArgs
from .storage import StatefulVolumes, StatefulVolumesArgs


@dataclass(frozen=True)
class InfraArgs:
    plan: Plan
    #: the federation manager's networks, when this site is a MultiKueue worker (its API port admits them)
    api_allow: tuple[ipaddress.IPv4Network, ...] = ()


class Infra(pulumi.ComponentResource):
    """Everything `pulumi up` creates on one site's OpenStack project."""

    inventory: pulumi.Output[list[dict[str, Any]]]
    endpoints: pulumi.Output[dict[str, Any]]
    rke2_token: pulumi.Output[str]
    rke2_agent_token: pulumi.Output[str]

    def __init__(self, name: str, args: InfraArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aiinfn:infra:Infra", name, None, opts)
        plan = args.plan
        env = plan.env
        child = pulumi.ResourceOptions(parent=self)

        self.network = SiteNetwork(f"{name}-network", SiteNetworkArgs(env=env), child)
        self.security = SecurityGroups(f"{name}-secgroups", SecurityGroupsArgs(env=env, api_allow=args.api_allow),
                                       child)
        self.flavors = Flavors(f"{name}-flavors", plan, child)

        keypair = None
        if env.site.ssh_public_key:
            keypair = openstack.compute.Keypair(
                f"{name}-keypair",
                name=f"aiinfn-{env.site.name}",
                public_key=env.site.ssh_public_key,
                opts=child,
            )
        servers = openstack.compute.ServerGroup(
            f"{name}-servers-antiaffinity",
            name=f"aiinfn-{env.site.name}-servers",
            policies="anti-affinity",
            opts=child,
        )
        # RKE2 join tokens, generated once per site, kept in state, handed to bootstrap as secrets: the
        # server token only to servers, the agent token (which can join agents, never servers) to the rest.
        token = random.RandomPassword(f"{name}-rke2-token", length=48, special=False, opts=child)
        self.rke2_token = pulumi.Output.secret(token.result)
        agent_token = random.RandomPassword(f"{name}-rke2-agent-token", length=48, special=False, opts=child)
        self.rke2_agent_token = pulumi.Output.secret(agent_token.result)

        image = openstack.images.get_image_output(name=env.site.image, most_recent=True)
        ingress_node = next((n.name for n in plan.nodes if n.ingress), None)
        self.nodes: dict[str, Node] = {}
        for node in plan.nodes:
            self.nodes[node.name] = Node(
                f"{name}-{node.name}",
                NodeArgs(
                    plan=plan,
                    node=node,
                    network_id=self.network.network_id,
                    subnet_id=self.network.subnet_id,
                    image_id=image.id,
                    flavor_id=self.flavors.ids[node.flavor],
                    security_group_ids=self.security.for_role(node.role, ingress=node.ingress),
                    keypair=keypair.name if keypair else None,
                    server_group_id=servers.id if node.role is Role.SERVER else None,
                    floating_ip_pool=env.site.external_network
                    if node.role in (Role.BASTION, Role.MONITORING) or node.name == ingress_node
                    else None,
                ),
                child,
            )

        self.volumes = StatefulVolumes(
            f"{name}-stateful",
            StatefulVolumesArgs(plan=plan, instances={n: i.instance_id for n, i in self.nodes.items()}),
            child,
        )

        # the Cinder CSI driver's application credential (its cloud.conf: a secret Output for the overlay only)
        self.block_cloud_conf: pulumi.Output[str] | None = None
        if env.storage.block is not None:
            self.block_credential = BlockCredential(f"{name}-block", BlockCredentialArgs(plan=plan), child)
            self.block_cloud_conf = self.block_credential.cloud_conf

        nfs_node = next((n.name for n in plan.nodes if n.role is Role.NFS), None)
        self.nfs_server: pulumi.Output[str] | None = self.nodes[nfs_node].fixed_ip if nfs_node else None

        self.inventory = pulumi.Output.all(*[n.inventory_entry for n in self.nodes.values()])
        fips = {n: i.floating_ip for n, i in self.nodes.items() if i.floating_ip is not None}
        bastion = next((n.name for n in plan.nodes if n.role is Role.BASTION), None)
        grafana = next((n.name for n in plan.nodes if n.role is Role.MONITORING), None)
        self.endpoints = pulumi.Output.from_input(
            {
                "bastion": fips.get(bastion) if bastion else None,
                "ingress": fips.get(ingress_node) if ingress_node else None,
                "ingress_hostname": env.network.ingress.hostname,
                "grafana": fips.get(grafana) if grafana else None,
                "domain": env.site.domain,
            }
        )
        self.register_outputs(
            {
                "inventory": self.inventory,
                "endpoints": self.endpoints,
                "rke2_token": self.rke2_token,
                "rke2_agent_token": self.rke2_agent_token,
            }
        )
