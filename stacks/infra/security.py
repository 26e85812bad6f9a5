"""Least-privilege security groups.

Inside the cluster, rules name a remote *group*, never a CIDR, so only members talk: kubelet,
the CNI overlay and node ports among cluster nodes; RKE2's supervisor and API from cluster nodes to
the servers; etcd only among servers; NFS only from cluster nodes; Borg's SSH only from the NFS
node to the backup node; SSH to every node only from the bastion, and to the bastion only from
`network.ssh_allow` (empty by default: nothing); Grafana's HTTPS on the monitoring node only from
`services.monitoring.grafana.allow` (the operators' and project coordinators' networks). Prometheus
(a pod on a cluster node) scrapes node-exporter on every VM outside the cluster (NFS, backup,
bastion, monitoring) on 9100. Grafana reads Prometheus through the ingress nodes' HTTPS (TLS and
basic auth at the Ingress), which needs no rule of its own. The one rule open to 0.0.0.0/0 is HTTP(S)
on ingress nodes. Egress keeps Neutron's default (allow all).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import pulumi
import pulumi_openstack as openstack

from aiinfn.config.models import Environment, Role
from aiinfn.services.monitoring import GRAFANA_PORT

ANYWHERE = "0.0.0.0/0"


@dataclass(frozen=True)
class Rule:
    key: str
    protocol: str
    port_min: int | None
    port_max: int | None
    remote_group: str | None = None
    remote_cidr: str | None = None


#: group -> rules; `remote_group` names another group of this table.
def rule_table(env: Environment, api_allow: tuple[ipaddress.IPv4Network, ...] = ()) -> dict[str, list[Rule]]:
    """``api_allow``: the networks a federation's manager reaches this worker's Kubernetes API from."""
    rules: dict[str, list[Rule]] = {
        "cluster": [
            Rule("kubelet", "tcp", 10250, 10250, remote_group="cluster"),
            Rule("vxlan", "udp", 8472, 8472, remote_group="cluster"),
            Rule("cni-health", "tcp", 9099, 9099, remote_group="cluster"),
            Rule("nodeports", "tcp", 30000, 32767, remote_group="cluster"),
            Rule("node-exporter", "tcp", 9100, 9100, remote_group="cluster"),
            Rule("icmp", "icmp", None, None, remote_group="cluster"),
        ],
        "servers": [
            Rule("supervisor", "tcp", 9345, 9345, remote_group="cluster"),
            Rule("apiserver", "tcp", 6443, 6443, remote_group="cluster"),
            Rule("apiserver-bastion", "tcp", 6443, 6443, remote_group="bastion"),
            *(Rule(f"apiserver-federation-{str(c).replace('/', '_')}", "tcp", 6443, 6443, remote_cidr=str(c))
              for c in api_allow),
            Rule("etcd", "tcp", 2379, 2381, remote_group="servers"),
        ],
        "ingress": [
            Rule("http", "tcp", 80, 80, remote_cidr=ANYWHERE),
            Rule("https", "tcp", 443, 443, remote_cidr=ANYWHERE),
        ],
        "bastion": [
            *(Rule(f"ssh-{str(c).replace('/', '_')}", "tcp", 22, 22, remote_cidr=str(c))
              for c in env.network.ssh_allow),
            Rule("node-exporter", "tcp", 9100, 9100, remote_group="cluster"),
        ],
        "internal-ssh": [Rule("ssh-from-bastion", "tcp", 22, 22, remote_group="bastion")],
        "nfs": [
            Rule("nfs", "tcp", 2049, 2049, remote_group="cluster"),
            Rule("node-exporter", "tcp", 9100, 9100, remote_group="cluster"),
        ],
        "backup": [
            Rule("borg-ssh", "tcp", 22, 22, remote_group="nfs"),
            Rule("node-exporter", "tcp", 9100, 9100, remote_group="cluster"),
        ],
    }
    grafana = env.services.monitoring.grafana
    if grafana is not None:
        rules["monitoring"] = [
            *(Rule(f"grafana-{str(c).replace('/', '_')}", "tcp", GRAFANA_PORT, GRAFANA_PORT,
                   remote_cidr=str(c)) for c in grafana.allow),
            Rule("node-exporter", "tcp", 9100, 9100, remote_group="cluster"),
        ]
    return rules


def groups_for_role(role: Role, ingress: bool) -> list[str]:
    """Names (keys of rule_table) of the groups a node of ``role`` is a member of."""
    if role is Role.BASTION:
        return ["bastion"]
    groups = ["internal-ssh"]
    if role in (Role.SERVER, Role.AGENT, Role.GPU, Role.FPGA):
        groups.append("cluster")
    if role is Role.SERVER:
        groups.append("servers")
    if role is Role.NFS:
        groups.append("nfs")
    if role is Role.BACKUP:
        groups.append("backup")
    if role is Role.MONITORING:
        groups.append("monitoring")
    if ingress:
        groups.append("ingress")
    return groups


@dataclass(frozen=True)
class SecurityGroupsArgs:
    env: Environment
    #: the federation manager's networks, when this site is a MultiKueue worker (stacks/scopes.py)
    api_allow: tuple[ipaddress.IPv4Network, ...] = ()


class SecurityGroups(pulumi.ComponentResource):
    def __init__(self, name: str, args: SecurityGroupsArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("aiinfn:infra:SecurityGroups", name, None, opts)
        site = args.env.site.name
        child = pulumi.ResourceOptions(parent=self)
        table = rule_table(args.env, args.api_allow)
        self.groups: dict[str, openstack.networking.SecGroup] = {
            g: openstack.networking.SecGroup(
                f"{name}-{g}",
                name=f"aiinfn-{site}-{g}",
                description=f"aiinfn {site}: {g}",
                tags=[f"aiinfn:site={site}"],
                opts=child,
            )
            for g in table
        }
        for g, rules in table.items():
            for r in rules:
                openstack.networking.SecGroupRule(
                    f"{name}-{g}-{r.key}",
                    direction="ingress",
                    ethertype="IPv4",
                    protocol=r.protocol,
                    port_range_min=r.port_min,
                    port_range_max=r.port_max,
                    remote_group_id=self.groups[r.remote_group].id if r.remote_group else None,
                    remote_ip_prefix=r.remote_cidr,
                    security_group_id=self.groups[g].id,
                    description=f"aiinfn {r.key}",
                    opts=child,
                )
        self.register_outputs({g: sg.id for g, sg in self.groups.items()})

    def for_role(self, role: Role, ingress: bool = False) -> list[pulumi.Output[str]]:
        return [self.groups[g].id for g in groups_for_role(role, ingress)]
