"""The aiinfn Pulumi program: environment -> Infra (-> Cluster -> Overlay -> Event).

The only place that reads Pulumi config. Everything below receives validated models.
"""

import pulumi
from infra import Infra, InfraArgs
from overlay import Overlay, OverlayArgs

from aiinfn.config import load
from aiinfn.config.secrets import secret_refs
from aiinfn.planning import make_plan, monitoring

config = pulumi.Config("aiinfn")
environment = load(config.require("environment"))
plan = make_plan(environment)

infra = Infra(environment.site.name, InfraArgs(plan=plan))

# The overlay needs the bootstrapped cluster: it is built once its kubeconfig is in the stack's
# secrets (`pulumi config set --secret aiinfn:kubeconfig < kubeconfig.yaml`, after bootstrap).
kubeconfig = config.get_secret("kubeconfig")
if kubeconfig is not None:
    Overlay(
        f"{environment.site.name}-overlay",
        OverlayArgs(
            plan=plan,
            kubeconfig=kubeconfig,
            nfs_server=infra.nfs_server,
            secrets={name: config.require_secret(name) for name in sorted(set(secret_refs(environment).values()))},
            addresses={n: infra.nodes[n].fixed_ip for n in monitoring.scraped_nodes(plan)},
        ),
    )

pulumi.export("environment", environment.name)
pulumi.export("inventory", infra.inventory)
pulumi.export("endpoints", infra.endpoints)
pulumi.export("network", {"network_id": infra.network.network_id, "subnet_id": infra.network.subnet_id})
pulumi.export("rke2_token", infra.rke2_token)
