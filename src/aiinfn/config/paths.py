"""Field paths as operators read them in error messages: ``node_pools.a100.mig[0]``."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

PathT = tuple[str | int, ...]

PLAIN_KEY_RE = re.compile(r"^[A-Za-z0-9_/:+-]+$")


def format_path(loc: PathT) -> str:
    """``("node_pools", "a100", "mig", 0)`` -> ``node_pools.a100.mig[0]``; odd keys are quoted."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif PLAIN_KEY_RE.match(str(part)):
            out += ("." if out else "") + str(part)
        else:
            out += f"[{json.dumps(str(part))}]"
    return out


def parse_path(p: str) -> Iterator[str | int]:
    """The inverse of ``format_path``."""
    for part in re.finditer(r'([^.\[\]"]+)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]', p):
        if part.group(2) is not None:
            yield int(part.group(2))
        elif part.group(3) is not None:
            yield json.loads(part.group(3))
        else:
            yield part.group(1)
