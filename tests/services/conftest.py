"""Tests of the platform's services against real parts started here (the hub harness: tests/support/hub)."""

from __future__ import annotations

import sys
from pathlib import Path

#: The hub harness (tests/support/hub: fixtures, not tests), importable by its module names.
SUPPORT = Path(__file__).resolve().parents[1] / "support" / "hub"
if str(SUPPORT) not in sys.path:
    sys.path.insert(0, str(SUPPORT))

from hub_fixtures import areas, hub, hub_factory, iam, kube, site_hub_values  # noqa: E402,F401 - fixtures, through SUPPORT
