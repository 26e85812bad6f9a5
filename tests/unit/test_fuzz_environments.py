"""Fuzzing: whatever an operator writes, only the project's own ConfigError escapes.

Valid environments (the shipped sites and the corpus fixture, their `extends` chains merged) are
mutated at random (keys deleted, renamed or added, values replaced by values of other types, lists
truncated or duplicated, values swapped between fields) and loaded. Either the result is a valid
Environment, or a ConfigError with exit code 2 and one line. CI (CI=true) runs at least 2,000
examples per property (tests/conftest.py); AIINFN_FUZZ_EXAMPLES overrides.
"""

from __future__ import annotations

import copy
import datetime as dt
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from aiinfn.config import load
from aiinfn.config.loader import layer
from aiinfn.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [ROOT / "environments" / "cnaf.yaml", ROOT / "environments" / "recas.yaml",
           ROOT / "environments" / "events" / "hackathon-example.yaml", ROOT / "tests" / "corpus" / "valid-site.yaml"]
BASES = [layer(p).data for p in SOURCES]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(["", "0.0.0.0/0", "10.0.0.0/8", "1g.10gb", "A100-80GB", "T4", "server", "gpu", "-1",
                     "999999999999", "🚀", "a" * 300, "${HOME}", "{{ x }}", "~", "null", "yes", "2026-13-40",
                     "A100-80GB/1g.10gb", "../base.yaml", "nfs-01"]),
    st.dates(min_value=dt.date(1, 1, 1), max_value=dt.date(9999, 12, 31)),
)
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=12), inner, max_size=4)),
                      max_leaves=8)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out.extend(_paths(v, (*prefix, k)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.extend(_paths(v, (*prefix, i)))
    return out


def _get(node: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        node = node[p]
    return node


def _mutate(data: dict[str, Any], draw: Any) -> dict[str, Any]:
    data = copy.deepcopy(data)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        paths = [p for p in _paths(data) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, key = _get(data, path[:-1]), path[-1]
        op = draw(st.sampled_from(["delete", "replace", "add", "rename", "truncate", "duplicate", "swap"]))
        if op == "delete":
            del parent[key]
        elif op == "replace":
            parent[key] = draw(values)
        elif op == "add" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=15))] = draw(values)
        elif op == "rename" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=15))] = parent.pop(key)
        elif op == "truncate" and isinstance(parent[key], list):
            parent[key] = parent[key][: draw(st.integers(min_value=0, max_value=len(parent[key])))]
        elif op == "duplicate" and isinstance(parent[key], list) and parent[key]:
            parent[key] = parent[key] + parent[key][:1]
        elif op == "swap":
            other = draw(st.sampled_from(paths))
            if other[: len(path)] != path and path[: len(other)] != other:
                oparent = _get(data, other[:-1])
                parent[key], oparent[other[-1]] = oparent[other[-1]], parent[key]
    return data


def _dump(data: Any, path: Path) -> None:
    yaml = YAML(typ="safe", pure=True)
    with path.open("w") as f:
        yaml.dump(data, f)


def _assert_clean(path: Path) -> None:
    try:
        load(path)
    except ConfigError as e:
        assert e.exit_code == 2
        assert "\n" not in str(e) and str(e).strip(), repr(str(e))


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.integers(min_value=0, max_value=len(BASES) - 1), st.data())
def test_mutated_environments_fail_only_with_config_errors(tmp_path: Path, which: int, data: st.DataObject) -> None:
    mutated = _mutate(BASES[which], data.draw)
    path = tmp_path / "mutated.yaml"
    try:
        _dump(mutated, path)
    except Exception:  # a value YAML itself cannot represent: not an environment anyone can write
        return
    _assert_clean(path)


@settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=400), st.text(max_size=400).map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_arbitrary_bytes_fail_only_with_config_errors(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "random.yaml"
    path.write_bytes(content)
    _assert_clean(path)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 2**80, -(2**80), "", [], {}, None])
def test_extreme_values_in_every_numeric_field(tmp_path: Path, value: Any) -> None:
    """Every integer or float field of the corpus site, set to an extreme value, fails cleanly."""
    base = BASES[-1]
    for path in _paths(base):
        if not path or not isinstance(_get(base, path), int | float) or isinstance(_get(base, path), bool):
            continue
        mutated = copy.deepcopy(base)
        _get(mutated, path[:-1])[path[-1]] = value
        target = tmp_path / "extreme.yaml"
        _dump(mutated, target)
        _assert_clean(target)
