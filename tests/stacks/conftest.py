"""The shared Pulumi test harness: every stack test plans through it.

It runs the real program (stacks/__main__.py) under Pulumi's mock runtime via aiinfn.preview.build,
which records every RegisterResource request (parent, URN, options, dependencies, inputs) on a
recording MockMonitor. Gap, named once for every stack test: the mock runtime does not emulate
provider defaults, auto-naming, diffs or replacements, so tests assert on what the program asks the
engine for, not on what a provider would then do.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from aiinfn import preview
from aiinfn.config.loader import list_environments

SHIPPED = list_environments(kind="site")


def write_env(directory: Path, name: str, data: dict[str, Any]) -> Path:
    path = directory / f"{name}.yaml"
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    with path.open("w") as f:
        yaml.dump(data, f)
    return path


@pytest.fixture(scope="session")
def shipped_reports() -> dict[str, preview.Preview]:
    """One offline plan per shipped environment (built once per session)."""
    return {name: preview.build(name) for name in SHIPPED}


@pytest.fixture
def plan_variant(tmp_path: Path, root: Path) -> Callable[..., preview.Preview]:
    """Plan a shipped environment with overrides layered on top (through `extends`)."""

    def build(
        base: str, name: str, overrides: dict[str, Any], stack: str | None = None
    ) -> preview.Preview:
        data = {"extends": str(root / "environments" / f"{base}.yaml"), **overrides}
        path = write_env(tmp_path, name, data)
        return preview.build(path, stack=stack or base)

    return build
