"""Shared test configuration: paths, hypothesis profiles."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

ROOT = Path(__file__).resolve().parents[1]
#: Upstream schemas and configs, read in place (never copied into the project).
SHARED = ROOT.parent / "shared"
# Processes the tests start (the CLI, the stack programs, Ansible's inventory script) import this checkout's
# code too, whichever checkout runs the tests (pyproject's pythonpath covers this process only).
os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), *filter(None, [os.environ.get("PYTHONPATH")])])

# Fuzz budgets: CI (CI=true) runs at least 2,000 examples per property; AIINFN_FUZZ_EXAMPLES overrides.
settings.register_profile(
    "ci", max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "dev", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
if os.environ.get("AIINFN_FUZZ_EXAMPLES"):
    settings.register_profile(
        "custom",
        max_examples=int(os.environ["AIINFN_FUZZ_EXAMPLES"]),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    settings.load_profile("custom")
else:
    settings.load_profile("ci" if os.environ.get("CI") else "dev")


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


@pytest.fixture(scope="session")
def shared() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"../shared is missing next to the checkout ({SHARED}): CI provides it there")
    return SHARED
