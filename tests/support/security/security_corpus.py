"""The attack corpus and the benign workloads of tests/security, and their expectation headers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

HERE = Path(__file__).resolve().parents[2] / "security"
CORPUS = sorted((HERE / "corpus").glob("*.yaml"))
BENIGN = sorted((HERE / "benign").glob("*.yaml"))


def load_manifest(path: Path) -> dict[str, Any]:
    doc = YAML(typ="safe", pure=True).load(path.read_text())
    assert isinstance(doc, dict), path
    return doc


def expectations(path: Path) -> dict[str, list[str]]:
    """The ``# key: value`` header lines of a corpus file (``refused-by``, ``pod-security``)."""
    out: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        key, sep, value = line[1:].strip().partition(": ")
        if sep and key in ("refused-by", "pod-security"):
            out.setdefault(key, []).append(value.strip())
    return out
