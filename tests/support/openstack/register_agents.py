"""Register one "Open vSwitch agent" per compute host with neutron-server, over its own RPC.

ML2's openvswitch mechanism driver binds a port only on a host with a live OVS agent whose bridge
mappings cover the network's physical network. No agent runs here: each is reported once, and
neutron.conf's agent_down_time keeps it alive. Ports still stay DOWN (nothing plugs them).
Usage: /usr/bin/python3 register_agents.py NEUTRON_CONF HOST...
"""

import eventlet

eventlet.monkey_patch()

import sys  # noqa: E402 - eventlet must patch first

import oslo_messaging  # noqa: E402
from neutron.agent import rpc as agent_rpc  # noqa: E402
from neutron.conf.agent import common as agent_conf  # noqa: E402
from neutron_lib import context  # noqa: E402
from neutron_lib import rpc as n_rpc  # noqa: E402
from neutron_lib.agent import topics  # noqa: E402
from oslo_config import cfg  # noqa: E402


def main() -> int:
    conf, hosts = sys.argv[1], sys.argv[2:]
    oslo_messaging.set_transport_defaults(control_exchange="neutron")  # neutron-server listens there
    agent_conf.register_agent_state_opts_helper(cfg.CONF)
    cfg.CONF(["--config-file", conf], project="neutron")
    n_rpc.init(cfg.CONF)
    api = agent_rpc.PluginReportStateAPI(topics.REPORTS)
    ctx = context.get_admin_context_without_session()
    for host in hosts:
        state = {
            "binary": "neutron-openvswitch-agent",
            "host": host,
            "topic": "N/A",
            "agent_type": "Open vSwitch agent",
            "start_flag": True,
            "configurations": {
                "bridge_mappings": {"physnet1": "br-eth1", "public": "br-ex"},
                "tunnel_types": [],
                "integration_bridge": "br-int",
                "datapath_type": "system",
                "ovs_hybrid_plug": False,
                "ovs_capabilities": {},
                "devices": 0,
                "l2_population": False,
            },
        }
        api.report_state(ctx, state, use_call=True)
        print(f"fake Open vSwitch agent registered for {host}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
