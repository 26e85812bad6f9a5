"""Fixtures of the tests on real local hosts (hostlib.py): the cached image and a factory of running hosts.

Hosts of one session use the prefix and net of AIINFN_TEST_HOSTS_PREFIX / AIINFN_TEST_HOSTS_NET (CI
default ``ah`` / 10.254.0); sessions running side by side on one machine must set different ones.

CI installs what the hosts need (scripts/install-host-fixture-deps.sh). A machine without it fails these
tests naming the missing tool instead of skipping them: a skipped integration test proves nothing.
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

#: The test-host machinery (tests/support/hosts: fixtures, not tests), importable by its module names.
SUPPORT = Path(__file__).resolve().parents[2] / "support" / "hosts"
if str(SUPPORT) not in sys.path:
    sys.path.insert(0, str(SUPPORT))

import hostlib  # noqa: E402 - found through SUPPORT, set just above
import image  # noqa: E402 - found through SUPPORT, set just above

# ansible-runner starts ansible-playbook by name: the virtualenv's bin directory must be on PATH
_BIN = str(Path(sys.executable).parent)
if _BIN not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = _BIN + os.pathsep + os.environ.get("PATH", "")

#: What starting hosts needs on this machine (debootstrap only while the image is not cached yet).
TOOLS = ("ip", "socat", "systemd-nspawn", "ssh", "ssh-keygen", "mount", "tar", "zstd")


def _check_machine() -> None:
    if os.geteuid() != 0:
        pytest.fail("the test hosts need root (network namespaces, overlay mounts, systemd-nspawn)")
    needed = list(TOOLS)
    if not image.image_path().exists():
        needed += ["debootstrap", "chroot"]
    missing = [t for t in needed if not (shutil.which(t) or shutil.which(t, path="/usr/sbin:/sbin"))]
    if missing:
        pytest.fail(f"the test hosts need {', '.join(missing)}: run scripts/install-host-fixture-deps.sh (as root)")
    if shutil.which("ansible-playbook") is None:
        pytest.fail("ansible-playbook is not on PATH: install the project with its dev extras into the venv")


@pytest.fixture(scope="session")
def host_image() -> Path:
    """The node image, unpacked as the hosts' shared lower directory (built once per package list)."""
    _check_machine()
    started = time.monotonic()
    lower = image.ensure_lower()
    took = time.monotonic() - started
    if took > 5:
        print(f"\ntest-host image ready in {took:.0f} s: {image.image_path()}", file=sys.stderr)
    return lower


@pytest.fixture
def test_hosts(host_image: Path) -> Iterator[Callable[..., hostlib.Hosts]]:
    """``test_hosts(["a", "b"])`` starts real hosts (keyword ``prefix``/``net`` optional); they are
    stopped when the test ends, pass or fail."""
    started: list[hostlib.Hosts] = []

    def start(names: list[str], **kw: str) -> hostlib.Hosts:
        hosts = hostlib.start_hosts(names, **kw)
        started.append(hosts)
        return hosts

    yield start
    errors = []
    for hosts in reversed(started):
        try:
            hosts.stop()
        except Exception as exc:  # stop the others all the same
            errors.append(exc)
    if errors:
        raise errors[0]
