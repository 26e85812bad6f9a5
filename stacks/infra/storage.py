"""Stateful volumes: the platform filesystem's data and the Borg repository.

Both are `protect=True` (Pulumi refuses to delete or replace them) and `retain_on_delete=True`
(even a forced removal from the stack leaves the volume in Cinder). They are separate from the
nodes' boot disks, so a node can be rebuilt without touching the data.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_openstack as openstack

from aiinfn.config.models import Role
from aiinfn.planning import Plan


@dataclass(frozen=True)
class StatefulVolumesArgs:
    plan: Plan
    instances: dict[str, pulumi.Output[str]]


class StatefulVolumes(pulumi.ComponentResource):
    def __init__(self, name: str, args: StatefulVolumesArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aiinfn:infra:StatefulVolumes", name, None, opts)
        env = args.plan.env
        keep = pulumi.ResourceOptions(parent=self, protect=True, retain_on_delete=True)
        child = pulumi.ResourceOptions(parent=self)
        outputs: dict[str, pulumi.Output[str]] = {}

        def holder(role: Role) -> str:
            return next(n.name for n in args.plan.nodes if n.role is role)

        wanted: list[tuple[str, Role, int, str | None, str]] = []
        if env.storage.nfs is not None:
            s = env.storage.nfs
            wanted.append(("nfs-data", Role.NFS, s.size_gb, s.volume_type, s.export_path))
        if env.storage.backup is not None:
            b = env.storage.backup
            wanted.append(("borg-repo", Role.BACKUP, b.size_gb, b.volume_type, "/srv/borg"))

        for key, role, size, vtype, mount in wanted:
            node = holder(role)
            vol = openstack.blockstorage.Volume(
                f"{name}-{key}",
                name=f"aiinfn-{env.site.name}-{key}",
                size=size,
                volume_type=vtype or env.site.volume_type,
                availability_zone=env.site.availability_zone,
                description=f"aiinfn {env.site.name} {key} (stateful: protected)",
                metadata={"aiinfn:site": env.site.name, "aiinfn:stateful": "true", "aiinfn:mount": mount},
                opts=keep,
            )
            openstack.compute.VolumeAttach(
                f"{name}-{key}-attach", instance_id=args.instances[node], volume_id=vol.id, opts=child
            )
            outputs[key] = vol.id
        self.register_outputs({"volumes": outputs})
