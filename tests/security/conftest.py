"""Tenant isolation, judged offline: admission policies (CEL), Pod Security, NetworkPolicies.

No Kubernetes API server runs on these machines (none is packaged anywhere reachable). The helpers
in tests/support/security stand in for the parts of one these tests need, each saying what it
models and what it does not: admission.py (ValidatingAdmissionPolicy with a CEL interpreter from
PyPI), pss.py (the Pod Security Standards of Kubernetes 1.33), netpol.py (NetworkPolicy allow rules).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

SUPPORT = Path(__file__).resolve().parents[1] / "support" / "security"
if str(SUPPORT) not in sys.path:
    sys.path.insert(0, str(SUPPORT))

@pytest.fixture(scope="session")
def shipped_reports() -> dict[str, Any]:
    """The offline plan of every shipped site (the Pulumi mock runtime harness, as tests/stacks)."""
    from aiinfn import preview
    from aiinfn.config.loader import list_environments

    return {name: preview.build(name) for name in list_environments(kind="site")}
