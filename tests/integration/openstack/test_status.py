"""`aiinfn status` against a real OpenStack: the plan's servers booted as `pulumi up` would boot them, then
spoiled by hand (one deleted, one retagged, one rebuilt with another flavor, a stray added); the listing
through openstacksdk names exactly those, and the command prints them as JSON with exit 1.

Gaps named: stack outputs need the pulumi CLI (absent here: the command says so and goes on), node readiness
needs a cluster (no API server here: tests/unit/test_status_report.py parses kubectl's JSON instead).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from openstack_world import ENV_FILE, MEMBER_CLOUD, World, boot_plan, delete_servers, wait_active

from aiinfn.openstack.connect import find
from aiinfn.stages import status as st

pytestmark = pytest.mark.integration

GONE = "gpu-a100-02"
RETAGGED = "k8s-agent-01"
REBUILT = "nfs-01"
STRAY = "hand-made-01"


@pytest.fixture(scope="module")
def spoiled(world: World) -> Iterator[dict[str, Any]]:
    world.prepare()
    world.set_quotas({"instances": 50, "cores": 200, "ram": 512000, "ports": 100})
    conn = world.member()
    extra: list[Any] = []
    try:
        with boot_plan(conn, world.report) as booted:
            by_name = booted["servers"]  # name -> server (wait_active)
            site = world.report.env.site.name
            delete_servers(conn, [by_name[GONE]])
            conn.compute.set_server_metadata(by_name[RETAGGED], **{"aiinfn:pool": "hand-picked"})
            rebuilt = by_name[REBUILT]
            small = find(conn.compute.find_flavor, "it.cpu-1c-2g")
            delete_servers(conn, [rebuilt])
            net = {"uuid": booted["network"].id}
            extra.append(conn.compute.create_server(name=REBUILT, flavor_id=small.id, image_id=booted["image"].id,
                                                    networks=[net], metadata=dict(rebuilt.metadata)))
            extra.append(conn.compute.create_server(name=STRAY, flavor_id=small.id, image_id=booted["image"].id,
                                                    networks=[net], metadata={"aiinfn:site": site}))
            extra.append(conn.compute.create_server(name="elsewhere-01", flavor_id=small.id,
                                                    image_id=booted["image"].id, networks=[net],
                                                    metadata={"aiinfn:site": "another-site"}))
            wait_active(conn, extra)
            try:
                yield {"conn": conn, "booted": booted}
            finally:
                delete_servers(conn, extra)
    finally:
        world.admin.compute.revert_quota_set(world.project.id)
        conn.close()


def test_live_servers_against_the_plan_name_missing_strays_and_drift(world: World, spoiled: dict[str, Any]) -> None:
    plan = world.report.plan
    servers = st.live_servers(spoiled["conn"], plan.env.site.name)
    assert "elsewhere-01" not in {s.name for s in servers}  # another site's server is not this site's stray
    report = st.compare(plan, servers)
    assert report.missing == [GONE]
    assert report.strays == [STRAY]
    assert report.duplicates == []
    node = plan.node(RETAGGED)
    assert report.drift == {
        RETAGGED: [f"aiinfn:pool 'hand-picked', plan {node.pool!r}"],
        REBUILT: [f"flavor 'it.cpu-1c-2g', plan {plan.node(REBUILT).flavor!r}"],
    }
    assert sorted(report.ok) == sorted(n.name for n in plan.nodes if n.name not in (GONE, RETAGGED, REBUILT))


def test_status_command_prints_the_report_and_exits_1(world: World, spoiled: dict[str, Any]) -> None:
    env = {**os.environ, "OS_CLIENT_CONFIG_FILE": str(world.clouds_yaml),
           "PATH": f"{os.path.dirname(sys.executable)}{os.pathsep}/usr/bin:/bin"}
    res = subprocess.run([sys.executable, "-m", "aiinfn.cli", "status", str(ENV_FILE), "--cloud", MEMBER_CLOUD,
                          "-o", "json"], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 1, res.stderr
    doc = json.loads(res.stdout)
    assert doc["servers"]["missing"] == [GONE] and doc["servers"]["strays"] == [STRAY]
    assert set(doc["servers"]["drift"]) == {RETAGGED, REBUILT}
    assert "pulumi CLI is not installed" in doc["outputs_unavailable"]
    assert doc["nodes"] is None and "no kubeconfig" in doc["nodes_unavailable"]
