"""Strict structural-schema validation: a custom resource checked the way kube-apiserver would take it.

No API server runs on these machines, and plain JSON-schema validation of a CRD's ``openAPIV3Schema``
lets a misspelled field through (the Kueue CRDs never say ``additionalProperties: false``: the API
server *prunes* unknown fields instead, and with strict field validation, which ``kubectl`` and
server-side apply use, refuses them). ``problems(obj, schema)`` does what the API server does with a
request for a structural schema, in its order:

1. **Pruning, as an error.** Under ``properties`` a field that is not listed is unknown, unless the
   schema says ``x-kubernetes-preserve-unknown-fields: true``; ``additionalProperties`` (a schema or
   ``true``) makes the object a map whose values are checked against it. At the root and in
   ``x-kubernetes-embedded-resource`` objects, ``apiVersion``, ``kind`` and ``metadata`` are always
   known, and ``metadata`` is an ObjectMeta (its field names, label and annotation maps of strings, a
   DNS-1123 subdomain name, label keys and values as Kubernetes validates them).
2. **Types**: ``object``, ``array``, ``string``, ``integer``, ``number``, ``boolean``; ``null`` only
   where ``nullable: true``; ``x-kubernetes-int-or-string`` takes a whole number or a string.
3. **Defaulting**: ``default`` values are filled in where a field is absent (the API server defaults
   before it validates, and CEL rules see the defaulted object).
4. **Value validations** (``enum``, ``pattern``, bounds, lengths, ``required``, ``anyOf``/``oneOf``/
   ``allOf``/``not``, ...) by jsonschema's Draft 4 validator, which is the OpenAPI v3 dialect; list
   uniqueness for ``x-kubernetes-list-type: set`` and ``map`` (by ``x-kubernetes-list-map-keys``).
5. **CEL rules** (``x-kubernetes-validations``) evaluated with ``self`` bound to the defaulted node,
   with a CEL implementation from PyPI (``common-expression-language``). Transition rules (those that
   read ``oldSelf``) are create-time no-ops, as on the API server.

Gaps, named: admission webhooks (Kueue's own validate its objects further), cel-go's compile-time type
checking and cost budget, Kubernetes' CEL extension libraries (a rule that needs one is reported as a
problem, never passed), and ``format`` values other than the integer ranges.

``key_paths`` and ``unknown_keys`` serve Helm values checked against a chart's own ``values.yaml``
(tests/artifacts/test_chart_values.py).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
from ruamel.yaml import YAML

#: ObjectMeta's fields (Kubernetes 1.33, meta/v1): any other key under metadata is unknown.
OBJECT_META = {
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels", "annotations",
    "ownerReferences", "finalizers", "managedFields",
}
#: Fields an object always has, whatever its schema says (the API server handles them itself).
TYPE_META = {"apiVersion", "kind", "metadata"}
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}


class SchemaProblems(AssertionError):
    """An object the API server would refuse; ``problems`` lists each reason with its field path."""

    def __init__(self, what: str, problems: list[str]) -> None:
        super().__init__(f"{what}: " + "; ".join(problems))
        self.problems = problems


# --------------------------------------------------------------------------- CRDs


def crd_schemas(folder: Path) -> dict[tuple[str, str], dict[str, Any]]:
    """``(apiVersion, kind) -> openAPIV3Schema`` of every served version of every CRD in ``folder``."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for f in sorted(folder.glob("*.yaml")):
        for crd in YAML(typ="safe", pure=True).load_all(f.read_text()):
            if not crd or crd.get("kind") != "CustomResourceDefinition":
                continue
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for v in crd["spec"]["versions"]:
                if v.get("served"):
                    out[(f"{group}/{v['name']}", kind)] = v["schema"]["openAPIV3Schema"]
    return out


def assert_valid(obj: Mapping[str, Any], schema: Mapping[str, Any], what: str = "") -> None:
    found = problems(obj, schema)
    if found:
        meta = obj.get("metadata") or {}
        raise SchemaProblems(what or f"{obj.get('kind')} {meta.get('name')!r}", found)


def problems(obj: Mapping[str, Any], schema: Mapping[str, Any]) -> list[str]:
    """Every reason the API server would refuse ``obj`` (an empty list: it would take it as written)."""
    out: list[str] = []
    defaulted = _default(copy.deepcopy(dict(obj)), schema)
    _structure(defaulted, schema, "", out, root=True)
    if not out:  # values are only worth checking once the shape is right
        validator = jsonschema.Draft4Validator(_for_jsonschema(schema))
        for e in sorted(validator.iter_errors(defaulted), key=lambda e: list(e.absolute_path)):
            out.append(f"{_path(e.absolute_path) or '<root>'}: {e.message}")
        _rules(defaulted, schema, "", out)
    return out


def _path(parts: Any) -> str:
    text = ""
    for p in parts:
        text += f"[{p}]" if isinstance(p, int) else (f".{p}" if text else str(p))
    return text


def _join(path: str, key: Any) -> str:
    return f"{path}[{key}]" if isinstance(key, int) else (f"{path}.{key}" if path else str(key))


def _type_ok(value: Any, schema: Mapping[str, Any]) -> str | None:
    """Why ``value`` is not of the schema's type (None when it is)."""
    if value is None:
        return None if schema.get("nullable") else "null is not allowed here (nullable is not set)"
    if schema.get("x-kubernetes-int-or-string"):
        ok = (isinstance(value, int) and not isinstance(value, bool)) or isinstance(value, str)
        return None if ok else f"{type(value).__name__} where a whole number or a string is expected"
    typ = schema.get("type")
    checks = {
        "object": lambda v: isinstance(v, Mapping),
        "array": lambda v: isinstance(v, list),
        "string": lambda v: isinstance(v, str),
        "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
        "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
        "boolean": lambda v: isinstance(v, bool),
    }
    if typ is None or checks[typ](value):
        if typ == "integer" and schema.get("format") in INT_RANGES:
            low, high = INT_RANGES[schema["format"]]
            if not low <= value <= high:
                return f"{value} is out of the {schema['format']} range"
        return None
    return f"{type(value).__name__} where {typ} is expected"


def _structure(value: Any, schema: Mapping[str, Any], path: str, out: list[str], root: bool = False) -> None:
    why = _type_ok(value, schema)
    if why:
        out.append(f"{path or '<root>'}: {why}")
        return
    if value is None:
        return
    if isinstance(value, Mapping):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        preserve = bool(schema.get("x-kubernetes-preserve-unknown-fields"))
        meta_known = root or bool(schema.get("x-kubernetes-embedded-resource"))
        for key, item in value.items():
            here = _join(path, key)
            if not isinstance(key, str):
                out.append(f"{here}: a field name must be a string")
            elif meta_known and key == "metadata":
                _object_meta(item, props.get("metadata", {}) if props else {}, here, out, root)
            elif props is not None and key in props:
                _structure(item, props[key], here, out)
            elif isinstance(extra, Mapping):
                _structure(item, extra, here, out)
            elif extra is True or preserve or (meta_known and key in TYPE_META):
                continue
            elif props is None and schema.get("type") != "object":
                continue  # a schema that says nothing of its shape (inside anyOf branches)
            else:
                known = sorted(props or {})
                out.append(f"{here}: unknown field {key!r} (known here: {', '.join(known) or 'none'})")
    elif isinstance(value, list):
        items = schema.get("items")
        if isinstance(items, Mapping):
            for i, item in enumerate(value):
                _structure(item, items, _join(path, i), out)
        _list_type(value, schema, path, out)


def _list_type(value: list[Any], schema: Mapping[str, Any], path: str, out: list[str]) -> None:
    kind = schema.get("x-kubernetes-list-type")
    if kind == "set":
        seen: list[Any] = []
        for i, item in enumerate(value):
            if item in seen:
                out.append(f"{_join(path, i)}: duplicate value {item!r} in a set")
            seen.append(item)
    elif kind == "map":
        keys = schema.get("x-kubernetes-list-map-keys") or []
        seen_keys: set[tuple[Any, ...]] = set()
        for i, item in enumerate(value):
            if not isinstance(item, Mapping):
                continue
            missing = [k for k in keys if k not in item and "default" not in
                       ((schema.get("items") or {}).get("properties") or {}).get(k, {})]
            if missing:
                out.append(f"{_join(path, i)}: map-list item without its key {', '.join(missing)}")
                continue
            key = tuple(repr(item.get(k)) for k in keys)
            if key in seen_keys:
                out.append(f"{_join(path, i)}: duplicate entry with {dict(zip(keys, key, strict=True))}")
            seen_keys.add(key)


def _object_meta(meta: Any, schema: Mapping[str, Any], path: str, out: list[str], root: bool) -> None:
    if not isinstance(meta, Mapping):
        out.append(f"{path}: {type(meta).__name__} where ObjectMeta is expected")
        return
    for key, value in meta.items():
        here = _join(path, key)
        if key not in OBJECT_META:
            out.append(f"{here}: unknown field {key!r} of ObjectMeta")
        elif key in ("labels", "annotations"):
            if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
                out.append(f"{here}: must map strings to strings")
                continue
            for k, v in value.items():
                if not _qualified_name(str(k)):
                    out.append(f"{_join(here, k)}: {k!r} is not a qualified name")
                if key == "labels" and (len(v) > 63 or not LABEL_VALUE.match(v)):
                    out.append(f"{_join(here, k)}: {v!r} is not a valid label value")
        elif key in ("name", "namespace", "generateName") and not isinstance(value, str):
            out.append(f"{here}: {type(value).__name__} where a string is expected")
    name = meta.get("name")
    if root and isinstance(name, str) and (len(name) > 253 or not DNS1123_SUBDOMAIN.match(name)):
        out.append(f"{_join(path, 'name')}: {name!r} is not a DNS-1123 subdomain")
    # a CRD may narrow metadata further (name length, pattern): its own value validations apply below
    if schema.get("properties"):
        for key, sub in schema["properties"].items():
            if key in meta:
                _structure(meta[key], sub, _join(path, key), out)


def _qualified_name(key: str) -> bool:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix)):
        return False
    return 0 < len(name) <= 63 and bool(LABEL_NAME.match(name))


def _default(value: Any, schema: Mapping[str, Any]) -> Any:
    """``value`` with the schema's defaults filled in where a field is absent (in place; returned)."""
    if isinstance(value, dict):
        props = schema.get("properties") or {}
        for key, sub in props.items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
        for key, item in value.items():
            sub = props.get(key)
            if sub is None and isinstance(schema.get("additionalProperties"), Mapping):
                sub = schema["additionalProperties"]
            if sub is not None:
                _default(item, sub)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for item in value:
            _default(item, schema["items"])
    return value


def _for_jsonschema(schema: Any) -> Any:
    """The schema without the OpenAPI-only keys Draft 4 would misread (``nullable`` is handled above)."""
    if isinstance(schema, Mapping):
        return {k: _for_jsonschema(v) for k, v in schema.items()
                if k not in ("nullable", "x-kubernetes-validations", "default", "format")}
    if isinstance(schema, list):
        return [_for_jsonschema(v) for v in schema]
    return schema


def _rules(value: Any, schema: Mapping[str, Any], path: str, out: list[str]) -> None:
    import cel

    for rule in schema.get("x-kubernetes-validations") or []:
        expr = rule["rule"]
        if "oldSelf" in expr:
            continue  # a transition rule: nothing to compare with on create
        ctx = cel.Context()
        ctx.add_variable("self", _plain(value))
        try:
            result = cel.evaluate(expr, ctx)
        except Exception as e:  # a rule this interpreter cannot run is a problem, never a pass
            out.append(f"{path or '<root>'}: rule {expr!r} could not be evaluated ({type(e).__name__}: {e})")
            continue
        if result is not True:
            out.append(f"{path or '<root>'}: {rule.get('message') or 'failed rule'} (rule {expr!r})")
    if isinstance(value, Mapping):
        props = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        for key, item in value.items():
            sub = props.get(key) if key in props else (extra if isinstance(extra, Mapping) else None)
            if sub is not None and item is not None:
                _rules(item, sub, _join(path, key), out)
    elif isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        for i, item in enumerate(value):
            _rules(item, schema["items"], _join(path, i), out)


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


# --------------------------------------------------------------------------- Helm values


def key_paths(values: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every ``(dotted key path, value)`` of a values mapping, depth first; lists are leaves."""
    if isinstance(values, Mapping):
        for k, v in values.items():
            here = f"{prefix}.{k}" if prefix else str(k)
            yield here, v
            yield from key_paths(v, here)


def merge_values(defaults: Any, ours: Any) -> Any:
    """Helm's coalescing of user values over a chart's defaults: mappings merge key by key, anything
    else replaces, and a null removes the default."""
    if isinstance(defaults, Mapping) and isinstance(ours, Mapping):
        out = dict(defaults)
        for k, v in ours.items():
            if v is None:
                out.pop(k, None)
            else:
                out[k] = merge_values(defaults.get(k), v)
        return out
    return copy.deepcopy(ours)
