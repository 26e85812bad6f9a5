"""Fuzzing: whatever an operator writes, only the project's own ConfigError escapes.

Valid environments (the shipped sites, the event over cnaf and the corpus fixture, their `extends`
chains merged) are mutated at random and loaded:

* as data: keys deleted, renamed (at random or by a typo) or added, values replaced by values of
  other types (whole numbers of any size and sign, floats with nan and infinities, text with
  unicode, emoji and the empty string, None, lists, mappings, booleans, dates), lists truncated or
  with an item repeated, values swapped between fields; then dumped to YAML;
* as text: the dumped YAML edited line by line (values replaced by raw YAML tokens such as an
  impossible date, a tag, an alias or an unclosed bracket; lines deleted, repeated, re-indented,
  tab-indented; the file cut short);
* as arbitrary text and bytes.

Either the result is a valid Environment, or a ConfigError with exit code 2 and one non-empty
line that names the file. Any other exception fails. The field path an error names exists in the
input it blames (every key of it, compared as text; only a missing required field may be absent, as
the last step). And when one file changes one field over the valid corpus fixture, any error names
that file, loaded directly or from a file that extends it.

A mutated input that loads must plan: a sample of them (deterministic: hypothesis derandomized, at
most ``PLAN_SAMPLE`` plans) goes through ``aiinfn.preview.build`` and ``preview.write``, which must
neither raise nor refuse what loading accepted.

.ci/run pins the CI budget (AIINFN_FUZZ_EXAMPLES=2000, checked below); without it 300 examples per
property run locally (profiles in tests/conftest.py).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import math
import re
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ruamel.yaml import YAML

from aiinfn import preview
from aiinfn.config.loader import layer, load
from aiinfn.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
SOURCES = [
    ROOT / "environments" / "cnaf.yaml",
    ROOT / "environments" / "recas.yaml",
    ROOT / "environments" / "events" / "hackathon-example.yaml",
    ROOT / "tests" / "corpus" / "valid-site.yaml",
]
BASES = [layer(p).data for p in SOURCES]
FUZZ = settings(suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([0, -1, 1, 7, 8, 17, 999, 1000, 2**31, 2**63, 10**30, -(10**30), 10**400, -(10**400)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 0.0, -0.0, 1e-300, 1e300, 0.5, 1.0000001]),
    st.text(max_size=40),
    st.text(alphabet=st.characters(codec="utf-8"), max_size=12),
    st.sampled_from(["", " ", "0.0.0.0/0", "10.0.0.0/8", "1g.10gb", "3g.30gb", "A100-80GB", "T4", "server", "gpu",
                     "-1", "999999999999", "🚀", "🚀🚀🚀", "é", "\u202e", "\x00", "a" * 300, "${HOME}", "{{ x }}", "~",
                     "null", "yes", "2026-13-40", "A100-80GB/1g.10gb", "../base.yaml", "nfs-01", "http://x",
                     "https://x", "cpu-8c", "S3cr3t!Value", "-----BEGIN RSA PRIVATE KEY-----\nx\n"]),
    st.dates(min_value=dt.date(1, 1, 1), max_value=dt.date(9999, 12, 31)),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=8,
)
#: Raw YAML written in place of a value: what `yaml.dump` never produces but a hand can.
RAW_TOKENS = [
    "2026-13-40", "2026-02-30", "2026-12-01 25:00:00", "2001-12-14t21:59:43.10-05:00", "0000-00-00",
    "!!float abc", "!!int abc", "!!int 0x", "!!bool maybe", "!!null x", "!!binary '%%%'", "!!timestamp 2026-13-01",
    "!!set {a, b}", "!!omap [a: 1, b: 2]", "!!omap {a: 1}", "!!map []", "!!seq {}", "!!str", "!foo x",
    "!!python/object:os.system x", "&a", "*a", "*nosuch", "&a [*a]", "&a {b: *a}", "{<<: 1}", "{<<: [1]}",
    "{", "[", "}", "]", "'", '"', "|", ">", "- x", "? x", "@x", "`x", "%x", "#", ": x", "a: b: c",
    "9" * 5000, "1" * 4400, "0x_", "0o9", "1_000", "0b101", "1e999", "-1e999", ".inf", "-.inf", ".nan", "~", "null",
    "yes", "no", "on", "off", "Y", "1:20", "0777", "''", '""', "[]", "{}", "[[[[[[", "{a: [}", "\t", "🚀", "\ufeff",
    "\x85", "\u2028", "\\", "\\x00", '"\\x00"', '"\\uD800"', '"\\q"', "'it''s'", "- - -", "---", "...",
]


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


def _typo(draw: Any, key: str) -> str:
    """A near miss of ``key``: one character dropped, doubled or changed case."""
    if not key:
        return "x"
    i = draw(st.integers(min_value=0, max_value=len(key) - 1))
    how = draw(st.sampled_from(["drop", "double", "upper"]))
    if how == "drop":
        return key[:i] + key[i + 1:] or "x"
    if how == "double":
        return key[:i] + key[i] + key[i:]
    return key[:i] + key[i].upper() + key[i + 1:]


def _mutate(data: dict[str, Any], draw: Any) -> dict[str, Any]:
    data = copy.deepcopy(data)
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        paths = [p for p in _paths(data) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, key = _get(data, path[:-1]), path[-1]
        op = draw(st.sampled_from(["delete", "replace", "replace", "add", "rename", "typo", "truncate", "duplicate",
                                   "swap"]))
        if op == "delete":
            del parent[key]
        elif op == "replace":
            parent[key] = draw(values)
        elif op == "add":
            target = parent[key] if isinstance(parent[key], dict) else parent
            if isinstance(target, dict):
                target[draw(st.one_of(st.text(min_size=1, max_size=15), st.integers(), st.none(), st.booleans()))] = (
                    draw(values)
                )
            else:
                target.insert(draw(st.integers(min_value=0, max_value=len(target))), draw(values))
        elif op in ("rename", "typo") and isinstance(parent, dict):
            new = draw(st.text(min_size=1, max_size=15)) if op == "rename" else _typo(draw, str(key))
            parent[new] = parent.pop(key)
        elif op == "truncate" and isinstance(parent[key], list):
            parent[key] = parent[key][: draw(st.integers(min_value=0, max_value=len(parent[key])))]
        elif op == "duplicate" and isinstance(parent[key], list) and parent[key]:
            items = parent[key]
            i = draw(st.integers(min_value=0, max_value=len(items) - 1))
            items.insert(draw(st.integers(min_value=0, max_value=len(items))), copy.deepcopy(items[i]))
        elif op == "swap":
            other = draw(st.sampled_from(paths))
            if other[: len(path)] != path and path[: len(other)] != other:
                oparent = _get(data, other[:-1])
                parent[key], oparent[other[-1]] = oparent[other[-1]], parent[key]
    return data


def _dump(data: Any) -> str:
    from io import StringIO

    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    out = StringIO()
    yaml.dump(data, out)
    return out.getvalue()


TEXTS = [_dump(b) for b in BASES]


def _mutate_text(text: str, draw: Any) -> str:
    lines = text.splitlines()
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        if not lines:
            break
        i = draw(st.integers(min_value=0, max_value=len(lines) - 1))
        line = lines[i]
        op = draw(st.sampled_from(["value", "value", "value", "delete", "repeat", "indent", "dedent", "tab", "insert",
                                   "cut"]))
        if op == "value":
            head = line.split(": ", 1)[0] if ": " in line else line.rstrip(":")
            if head.lstrip().startswith("- ") and ": " not in line:
                head = head[: len(head) - len(head.lstrip())] + "-"
            token = draw(st.one_of(st.sampled_from(RAW_TOKENS), st.text(max_size=20)))
            lines[i] = f"{head}: {token}" if ": " in line or line.endswith(":") else f"{head} {token}"
        elif op == "delete":
            del lines[i]
        elif op == "repeat":
            lines.insert(i, line)
        elif op == "indent":
            lines[i] = " " * draw(st.integers(min_value=1, max_value=4)) + line
        elif op == "dedent":
            lines[i] = line[draw(st.integers(min_value=1, max_value=4)):]
        elif op == "tab":
            lines[i] = "\t" + line.lstrip(" ")
        elif op == "insert":
            lines.insert(i, draw(st.one_of(st.sampled_from(RAW_TOKENS), st.text(max_size=30))))
        elif op == "cut":
            lines = [*lines[:i], line[: draw(st.integers(min_value=0, max_value=len(line)))]]
    return "\n".join(lines) + "\n"


#: A field path as errors write it: ``a.b[0]["odd key"].c`` (written here, not taken from the product).
PATH_PART = re.compile(r'\[(\d+)\]|\["((?:[^"\\]|\\.)*)"\]|\.?([^.\[\]]+)')


def _parts(path: str) -> list[str | int]:
    out: list[str | int] = []
    for m in PATH_PART.finditer(path):
        if m.group(1) is not None:
            out.append(int(m.group(1)))
        elif m.group(2) is not None:
            out.append(json.loads(f'"{m.group(2)}"'))
        else:
            out.append(m.group(3))
    return out


def _assert_path_in(err: ConfigError, data: Any) -> None:
    """Every step of the error's path is in ``data``; only a required field may be missing, last."""
    if err.path is None:
        return
    parts = _parts(err.path)
    node = data
    for i, part in enumerate(parts):
        if isinstance(node, dict):
            found = [k for k in node if str(k) == str(part)]
            if found:
                node = node[found[0]]
                continue
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
            continue
        # only the last step may be absent, and only when the error asks for it: the schema's own
        # "required field is missing", or a rule that names the field to set (a gpu pool's `accelerators`)
        last = i == len(parts) - 1
        asks = err.message.startswith("required field is missing") or f"{part}" in err.message
        assert last and asks, (
            f"{err.path!r} is not in the input it blames (no {part!r} at step {i}): {err}")
        return


def _assert_clean(path: Path, data: Any = None) -> None:
    """Load ``path``: it is valid, or one clean ConfigError; with ``data`` (what the file holds), the
    path that error names is in it."""
    try:
        load(path)
    except ConfigError as e:
        text = str(e)
        assert e.exit_code == 2
        assert len(text.splitlines()) == 1 and "\n" not in text and "\r" not in text, repr(text)
        assert e.file and text.startswith(e.file + ": "), text
        assert e.message.strip(), repr(text)
        if data is not None and Path(e.file).resolve() == path.resolve():
            _assert_path_in(e, data)


def _parsed(text: str) -> Any:
    """What plain YAML makes of ``text`` (None when it is no mapping, or no YAML the loader would read)."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data = YAML(typ="safe", pure=True).load(text)
    except Exception:
        return None
    return data if isinstance(data, dict) else None


@FUZZ
@given(st.sampled_from(range(len(BASES))), st.data())
def test_mutated_environments_fail_only_with_config_errors(tmp_path: Path, which: int, data: st.DataObject) -> None:
    mutated = _mutate(BASES[which], data.draw)
    try:
        text = _dump(mutated)
    except Exception:  # a value YAML itself cannot represent: not an environment anyone can write
        return
    path = tmp_path / "mutated.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    # what the file holds: ruamel writes some characters ('\x85' in a single-quoted key) that read back otherwise
    held = _parsed(text)
    _assert_clean(path, held if held is not None else mutated)


@FUZZ
@given(st.sampled_from(range(len(TEXTS))), st.data())
@pytest.mark.filterwarnings("ignore::ruamel.yaml.error.ReusedAnchorWarning")
@pytest.mark.filterwarnings("ignore::ruamel.yaml.error.MantissaNoDotYAML1_1Warning")
def test_hand_edited_yaml_fails_only_with_config_errors(tmp_path: Path, which: int, data: st.DataObject) -> None:
    text = _mutate_text(TEXTS[which], data.draw)
    path = tmp_path / "edited.yaml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    _assert_clean(path, _parsed(text))


@FUZZ
@given(st.one_of(st.binary(max_size=400), st.text(max_size=400).map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_arbitrary_bytes_fail_only_with_config_errors(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "random.yaml"
    path.write_bytes(content)
    _assert_clean(path)


#: How many mutated inputs that load are planned per run (each plan takes about a second).
PLAN_SAMPLE = 8


def test_mutated_environments_that_load_also_plan(tmp_path: Path) -> None:
    """What loading accepts, planning and writing take: no traceback, no late refusal."""
    planned: list[str] = []
    loaded = 0

    @settings(max_examples=150, derandomize=True, deadline=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
    @given(st.sampled_from(range(len(BASES))), st.data())
    def plan_if_it_loads(which: int, data: st.DataObject) -> None:
        nonlocal loaded
        mutated = _mutate(BASES[which], data.draw)
        try:
            text = _dump(mutated)
        except Exception:
            return
        path = tmp_path / f"loadable-{which}.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            load(path)
        except ConfigError:
            return
        loaded += 1
        if len(planned) >= PLAN_SAMPLE:
            return
        try:
            report = preview.build(path)
            preview.write(report, tmp_path / "build")
        except ConfigError as e:
            pytest.fail(f"loaded, then refused by planning: {e}\n{text}")
        json.dumps(report.document())
        planned.append(report.stack)

    plan_if_it_loads()
    assert len(planned) == PLAN_SAMPLE, f"only {len(planned)} of {loaded} loadable inputs planned"


def test_ci_pins_the_fuzz_budget(root: Path) -> None:
    """.ci/run sets the examples per property itself (whatever CI's environment holds), then runs
    exactly the README's test command."""
    lines = [ln.strip() for ln in (root / ".ci" / "run").read_text().splitlines()
             if ln.strip() and not ln.lstrip().startswith("#")]
    pinned = [int(m.group(1)) for ln in lines if (m := re.fullmatch(r"export AIINFN_FUZZ_EXAMPLES=(\d+)", ln))]
    assert pinned and pinned[-1] >= 2000, lines
    assert lines[-1] == "make test" and lines.index(f"export AIINFN_FUZZ_EXAMPLES={pinned[-1]}") < len(lines) - 1


VALID_SITE = SOURCES[-1]
LEAVES = [p for p in _paths(BASES[-1]) if p and not isinstance(_get(BASES[-1], p), dict | list)]
#: Values an operator plausibly writes in a leaf: another leaf's value, or a near miss.
PLAUSIBLE = sorted({repr(_get(BASES[-1], p)): _get(BASES[-1], p) for p in LEAVES}.items())
plausible = st.one_of(
    st.sampled_from([v for _, v in PLAUSIBLE]),
    st.sampled_from([0, 1, 2, 3, -1, None, True, 0.6, "10.42.0.0/16", "10.43.0.0/24", "10.0.0.0/8", "A30", "T4",
                     "2g.20gb", "3g.40gb", "gpu", "fpga", "agent", "server", "nfs", "backup", "bastion", "mixed"]),
)


def _overlay(data: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """The smallest file that sets ``path`` to ``value`` over ``data``: lists are replaced whole, so
    a change inside a list writes the whole list."""
    changed = copy.deepcopy(data)
    _get(changed, path[:-1])[path[-1]] = value
    cut = next((i for i, x in enumerate(path) if isinstance(x, int)), len(path))
    out: dict[str, Any] = {}
    node = out
    for k in path[: cut - 1]:
        node = node.setdefault(k, {})
    node[path[cut - 1]] = _get(changed, path[:cut])
    return out


@FUZZ
@given(st.sampled_from(LEAVES), st.one_of(plausible, values))
def test_a_mistake_is_blamed_on_the_file_that_makes_it(tmp_path: Path, leaf: tuple[Any, ...], value: Any) -> None:
    """valid-site.yaml <- middle.yaml (one change) <- top.yaml (a harmless description).

    The fixture is valid, so if anything fails, the middle file made the mistake: loading either
    file must name it, never the fixture under it nor the file over it.
    """
    middle, top = tmp_path / "middle.yaml", tmp_path / "top.yaml"
    try:
        middle.write_text(_dump({"extends": str(VALID_SITE), **_overlay(BASES[-1], leaf, value)}))
    except Exception:  # a value YAML itself cannot represent
        return
    top.write_text("extends: middle.yaml\ndescription: a harmless change\n")
    for path in (middle, top):
        try:
            load(path)
        except ConfigError as e:
            assert e.file is not None and Path(e.file).resolve() == middle.resolve(), f"{path.name}: {e}"


@pytest.mark.parametrize(
    "value",
    [math.nan, math.inf, -math.inf, 2**80, -(2**80), 10**400, True, "", [], {}, None],
    ids=lambda v: repr(v)[:12],
)
def test_extreme_values_in_every_numeric_field(tmp_path: Path, value: Any) -> None:
    """Every integer or float field of the corpus site, set to an extreme value, fails cleanly."""
    base = BASES[-1]
    for path in _paths(base):
        if not path or not isinstance(_get(base, path), int | float) or isinstance(_get(base, path), bool):
            continue
        mutated = copy.deepcopy(base)
        _get(mutated, path[:-1])[path[-1]] = value
        target = tmp_path / "extreme.yaml"
        target.write_text(_dump(mutated))
        _assert_clean(target)


def test_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    """Nine levels of nine aliases expand to 387 million values: refused, not walked."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines) + "\n")
    start = time.monotonic()
    with pytest.raises(ConfigError) as caught:
        load(path)
    assert time.monotonic() - start < 10
    assert "\n" not in str(caught.value)


def test_the_path_check_has_teeth() -> None:
    data = {"node_pools": {"a100": {"mig": ["1g.10gb"]}}, 0: {"x": 1}, "odd.key": {}}
    _assert_path_in(ConfigError("bad", path="node_pools.a100.mig[0]"), data)
    _assert_path_in(ConfigError("unknown field '0'", path="0"), data)
    _assert_path_in(ConfigError("bad", path='["odd.key"]'), data)
    _assert_path_in(ConfigError("required field is missing", path="node_pools.a100.flavor"), data)
    _assert_path_in(ConfigError("a `gpu` pool needs `accelerators`", path="node_pools.a100.accelerators"), data)
    for wrong in ("node_pools.a30.mig", "node_pools.a100.mig[1]", "node_pools.a100.flavor"):
        with pytest.raises(AssertionError, match="is not in the input it blames"):
            _assert_path_in(ConfigError("bad value", path=wrong), data)
