"""Fixtures of the tests on real local hosts (hostlib.py): the image, and a factory of running hosts.

CI installs what the hosts need (scripts/install-host-fixture-deps.sh, run by `make test`); a machine without
it fails these tests with the missing tool named, rather than skipping them.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import hostlib
import image
import pytest

# ansible-runner starts ansible-playbook by name: the virtualenv's bin directory must be on PATH
os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")

TOOLS = ("ip", "socat", "systemd-nspawn", "debootstrap", "zstd", "ssh")


def _check_machine() -> None:
    if os.geteuid() != 0:
        pytest.fail("the test hosts need root (network namespaces, overlay mounts, systemd-nspawn)")
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.fail(f"the test hosts need {', '.join(missing)}: run scripts/install-host-fixture-deps.sh")


@pytest.fixture(scope="session")
def host_image() -> Path:
    _check_machine()
    return image.lower()


@pytest.fixture
def test_hosts(host_image: Path) -> Iterator[Callable[..., hostlib.Hosts]]:
    """``test_hosts(["a", "b"])`` starts real hosts; they are stopped when the test ends, pass or fail."""
    started: list[hostlib.Hosts] = []

    def start(names: list[str], **kw: str) -> hostlib.Hosts:
        h = hostlib.start_hosts(names, **kw)
        started.append(h)
        return h

    yield start
    for h in started:
        h.stop()
