"""Deterministic text for generated documents: YAML and JSON with stable key order.

Every document aiinfn writes (artifacts, ConfigMap payloads, plan.json) goes through here, so that the
same inputs give byte-identical files.
"""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

from ruamel.yaml import YAML


def yaml_dump(data: Any) -> str:
    """Block-style YAML, mappings in the order they were built (builders build them in a fixed order)."""
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # type: ignore[assignment]
    buf = StringIO()
    yaml.dump(data, buf)
    return buf.getvalue()


def yaml_documents(docs: list[Any]) -> str:
    """Several YAML documents in one stream."""
    return "---\n".join(yaml_dump(d) for d in docs)


def json_dump(data: Any, indent: int | None = 2) -> str:
    """JSON with sorted keys (what two runs on the same inputs agree on byte for byte)."""
    return json.dumps(data, indent=indent, sort_keys=True, ensure_ascii=False)
