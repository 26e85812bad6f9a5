"""Integration tests against a real OpenStack control plane started on 127.0.0.1 (openstack_fixture.py).

The session starts the control plane with Popen (logs under /var/tmp/aiinfn-openstack/log) and always
stops it; a lock file keeps two test sessions on one machine from sharing it. Each session works in a
project of its own (``aiinfn-it-<random>``) with a member user, the way an operator's credentials look,
and removes it at the end; leftovers of a session that died are removed at the start of the next.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from aiinfn import preview
from aiinfn.openstack import preflight as pf
from aiinfn.openstack.connect import find

#: The control-plane fixture (tests/support/openstack: fixtures, not tests), importable by its module names.
SUPPORT = Path(__file__).resolve().parents[2] / "support" / "openstack"
if str(SUPPORT) not in sys.path:
    sys.path.insert(0, str(SUPPORT))

from openstack_fixture import ADMIN_CLOUD, ControlPlane, exclusive  # noqa: E402 - found through SUPPORT
from openstack_world import (  # noqa: E402 - found through SUPPORT
    ENV_FILE,
    PROJECT_PREFIX,
    World,
    connect,
    free_port,
    member_project,
    purge_project,
    silent_endpoint,
    write_clouds,
)

#: Fixture timings, shown at the end of the session.
TIMINGS: dict[str, float] = {}


def pytest_configure(config: pytest.Config) -> None:
    # openstacksdk warns about its own internals (deprecated in SDK 5/6): nothing the tests can change
    config.addinivalue_line("filterwarnings", "ignore::PendingDeprecationWarning:openstack.*")
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:openstack.*")


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if TIMINGS:
        shown = ", ".join(f"{k} {v:.1f} s" for k, v in TIMINGS.items())
        terminalreporter.write_line(f"openstack control plane: {shown}")


@pytest.fixture(scope="session")
def timings() -> dict[str, float]:
    """Where a test records how long something took (shown at the end of the session)."""
    return TIMINGS


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    with exclusive():
        cp = ControlPlane()
        try:
            cp.up()
            TIMINGS["first start" if cp.timings["fresh"] else "warm start"] = cp.timings["total"]
            yield cp
        finally:
            t = time.monotonic()
            cp.down()
            TIMINGS["stop"] = time.monotonic() - t


@pytest.fixture(scope="session")
def admin(control_plane: ControlPlane) -> Iterator[Any]:
    conn = connect(control_plane.clouds_yaml, ADMIN_CLOUD)
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def world(admin: Any, control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    project, user, name, password = member_project(admin, PROJECT_PREFIX)
    # the tests' admin acts inside the project too (quotas, servers on given hosts)
    ident = admin.identity
    ident.assign_project_role_to_user(project, find(ident.find_user, "admin"), find(ident.find_role, "admin"))
    clouds = tmp_path_factory.mktemp("openstack") / "clouds.yaml"
    report = preview.build(ENV_FILE)
    with silent_endpoint() as silent:
        closed = free_port()
        write_clouds(clouds, control_plane.clouds_yaml, name, name, password, closed, silent)
        w = World(admin, project, user, clouds, report, pf.needs(report), silent, closed)
        # the project's `default` security group exists from its first network call on: count it now
        member = w.member()
        list(member.network.security_groups())
        member.close()
        try:
            yield w
        finally:
            purge_project(admin, project)


@pytest.fixture(autouse=True)
def clouds_yaml(world: World, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test finds the session's clouds.yaml as an operator's tools would: OS_CLIENT_CONFIG_FILE."""
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(world.clouds_yaml))
    return world.clouds_yaml


@pytest.fixture
def prepared(world: World) -> World:
    """The cloud as the environment expects it, quotas exact: what each test then spoils one thing of."""
    world.prepare()
    return world
