"""Fixtures of the federated-learning tests: three SLURM facilities on test hosts, shared by the module.

Prefix ``fl`` and net 10.254.5 (AIINFN_FL_HOSTS_PREFIX / AIINFN_FL_HOSTS_NET to run beside another
session), never the host tests' ``ah``/10.254.0. Each facility is a real SLURM (tests/support/slurm)
reached over SSH from the hosts' hub namespace; a Harbor stand-in there answers the registry check. The
PBS/Flux test adds stand-ins of those queue managers' commands to two of the hosts
(tests/support/batch_standins), beside their SLURM.
A machine without the test-host tools fails these tests naming what is missing, never skips them.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SUPPORT = Path(__file__).resolve().parents[2] / "support"
for sub in ("hosts", "slurm"):
    if str(SUPPORT / sub) not in sys.path:
        sys.path.insert(0, str(SUPPORT / sub))

import fl_setup  # noqa: E402 - found through SUPPORT

PREFIX = os.environ.get("AIINFN_FL_HOSTS_PREFIX", "fl")
NET = os.environ.get("AIINFN_FL_HOSTS_NET", "10.254.5")
FACILITIES = ["bologna", "bari", "leonardo"]


def _check_machine() -> None:
    if os.geteuid() != 0:
        pytest.fail("the SLURM test facilities need root (network namespaces, systemd-nspawn)")
    missing = [t for t in ("ip", "socat", "systemd-nspawn", "ssh", "ssh-keyscan", "zstd")
               if not (shutil.which(t) or shutil.which(t, path="/usr/sbin:/sbin"))]
    if missing:
        pytest.fail(f"the test facilities need {', '.join(missing)}: run scripts/install-host-fixture-deps.sh")


@pytest.fixture(scope="module")
def facilities(tmp_path_factory: pytest.TempPathFactory) -> Iterator[fl_setup.Setup]:
    _check_machine()
    work = tmp_path_factory.mktemp("fl-work")
    setup = fl_setup.start(FACILITIES, work, prefix=PREFIX, net=NET)
    try:
        yield setup
    finally:
        setup.stop()
