"""Flavors and node instances (port, boot volume, instance, data volumes, floating IP)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_openstack as openstack

from aiinfn.catalogue.accelerators import pci_alias_spec
from aiinfn.planning import Node as PlannedNode
from aiinfn.planning import Plan
from aiinfn.planning.nodes import server_metadata, site_tags
from aiinfn.render import cloud_init, node_facts

#: Changing these on a running node must not recreate it: image and user data only apply to new
#: nodes (roll them deliberately, node by node, with remove-node/add-node).
IMMUTABLE_AFTER_BOOT = ["userData", "blockDevices", "imageId", "imageName"]


def flavor_extra_specs(plan: Plan, flavor_name: str) -> dict[str, str]:
    flavor = plan.env.flavors[flavor_name]
    specs = dict(flavor.extra_specs)
    alias = pci_alias_spec(plan.env.pci_aliases(flavor_name))
    if alias:
        specs["pci_passthrough:alias"] = alias
    return specs


class Flavors(pulumi.ComponentResource):
    """Flavors the pools use: created with their PCI alias when the site lets us, else looked up."""

    def __init__(self, name: str, plan: Plan, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aiinfn:infra:Flavors", name, None, opts)
        env = plan.env
        used = list(dict.fromkeys(p.flavor for p in env.node_pools.values()))
        self.ids: dict[str, pulumi.Output[str]] = {}
        for key in used:
            f = env.flavors[key]
            if env.site.manage_flavors:
                res = openstack.compute.Flavor(
                    f"{name}-{key}",
                    name=key,
                    vcpus=f.vcpus,
                    ram=f.ram_gb * 1024,
                    disk=f.disk_gb,
                    ephemeral=f.ephemeral_gb,
                    is_public=True,
                    extra_specs=flavor_extra_specs(plan, key),
                    opts=pulumi.ResourceOptions(parent=self),
                )
                self.ids[key] = res.id
            else:
                self.ids[key] = openstack.compute.get_flavor_output(name=key).id
        self.register_outputs({"flavors": self.ids})


@dataclass(frozen=True)
class NodeArgs:
    plan: Plan
    node: PlannedNode
    network_id: pulumi.Input[str]
    subnet_id: pulumi.Input[str]
    image_id: pulumi.Input[str]
    flavor_id: pulumi.Input[str]
    security_group_ids: list[pulumi.Output[str]]
    keypair: pulumi.Input[str] | None = None
    server_group_id: pulumi.Input[str] | None = None
    floating_ip_pool: str | None = None


class Node(pulumi.ComponentResource):
    """One VM: its port, instance (boot volume from the image), data volumes and floating IP."""

    instance_id: pulumi.Output[str]
    fixed_ip: pulumi.Output[str]
    floating_ip: pulumi.Output[str] | None
    inventory_entry: pulumi.Output[dict[str, Any]]

    def __init__(self, name: str, args: NodeArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aiinfn:infra:Node", name, None, opts)
        plan, node = args.plan, args.node
        env = plan.env
        pool = env.node_pools[node.pool]
        flavor = env.flavors[node.flavor]
        child = pulumi.ResourceOptions(parent=self)

        port = openstack.networking.Port(
            f"{name}-port",
            name=node.name,
            network_id=args.network_id,
            fixed_ips=[openstack.networking.PortFixedIpArgs(subnet_id=args.subnet_id)],
            security_group_ids=args.security_group_ids,
            admin_state_up=True,
            tags=site_tags(env, node=node.name),
            opts=child,
        )
        volume_type = pool.volume_type or env.site.volume_type
        instance = openstack.compute.Instance(
            f"{name}-vm",
            name=node.name,
            flavor_id=args.flavor_id,
            availability_zone=env.site.availability_zone,
            key_pair=args.keypair,
            networks=[openstack.compute.InstanceNetworkArgs(port=port.id)],
            block_devices=[
                openstack.compute.InstanceBlockDeviceArgs(
                    uuid=args.image_id,
                    source_type="image",
                    destination_type="volume",
                    volume_size=pool.boot_volume_gb or max(flavor.disk_gb, 20),
                    volume_type=volume_type,
                    boot_index=0,
                    delete_on_termination=True,
                )
            ],
            user_data=cloud_init(plan, node),
            metadata=server_metadata(env, node),
            scheduler_hints=[openstack.compute.InstanceSchedulerHintArgs(group=args.server_group_id)]
            if args.server_group_id is not None
            else None,
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=IMMUTABLE_AFTER_BOOT),
        )

        for vol in pool.data_volumes:
            v = openstack.blockstorage.Volume(
                f"{name}-{vol.name}",
                name=f"{node.name}-{vol.name}",
                size=vol.size_gb,
                volume_type=vol.volume_type or volume_type,
                availability_zone=env.site.availability_zone,
                metadata={"aiinfn:node": node.name, "aiinfn:mount": vol.mount_path},
                opts=child,
            )
            openstack.compute.VolumeAttach(
                f"{name}-{vol.name}-attach", instance_id=instance.id, volume_id=v.id, opts=child
            )

        self.floating_ip = None
        if args.floating_ip_pool:
            fip = openstack.networking.FloatingIp(
                f"{name}-fip",
                pool=args.floating_ip_pool,
                description=f"aiinfn {env.site.name} {node.name}",
                tags=site_tags(env),
                opts=child,
            )
            openstack.networking.FloatingIpAssociate(
                f"{name}-fip-assoc", floating_ip=fip.address, port_id=port.id, opts=child
            )
            self.floating_ip = fip.address

        self.instance_id = instance.id
        self.fixed_ip = port.all_fixed_ips.apply(lambda ips: ips[0] if ips else "")
        facts = {**node_facts(plan, node), "kubernetes": node.is_kubernetes_node}
        self.inventory_entry = pulumi.Output.all(self.fixed_ip, self.floating_ip).apply(
            lambda ips: {**facts, "fixed_ip": ips[0], "floating_ip": ips[1]}
        )
        self.register_outputs(
            {"instance_id": self.instance_id, "fixed_ip": self.fixed_ip, "floating_ip": self.floating_ip}
        )
