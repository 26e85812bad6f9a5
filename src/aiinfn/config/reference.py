"""Generate the environment reference (docs/environment-reference.md) from the pydantic models.

`python -m aiinfn.config.reference > docs/environment-reference.md` regenerates it; a test fails
when the committed file differs, so the reference always describes the code.
"""

from __future__ import annotations

import enum
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from .models import Environment, Event, Federation, TextKind

_VALIDATED = {
    "_dns_label": "DNS label",
    "_hostname": "DNS name",
    "_secret_ref": "secret reference",
    "_iam_group": "IAM group",
    "_label_key": "label key",
    "_label_value": "label value",
    "_ipv4_network": "IPv4 CIDR",
    "_ipv4_address": "IPv4 address",
    "_https_url": "https URL",
    "_accel_model": "accelerator model",
    "_mig_layout": "MIG layout (list of profiles, or {profile: count})",
    "_ntp_server": "hostname or IP address",
    "_description": "one line of text",
    "plain_text": "one line of text",
    "_plain_before": "one line of text",
    "ssh_public_key": "OpenSSH public key",
    "_artifact_source": "https URL or absolute directory",
}


def _from_meta(meta: Any, fallback: str) -> str:
    for m in meta:
        fn = getattr(m, "func", None)
        if isinstance(fn, TextKind):
            return fn.kind.split(" ", 1)[1]  # "an image reference" -> "image reference"
        if fn is not None and getattr(fn, "__name__", None) in _VALIDATED:
            return _VALIDATED[fn.__name__]
    return fallback


def _type_name(t: Any) -> str:
    origin = typing.get_origin(t)
    args = typing.get_args(t)
    if origin is typing.Annotated:
        base, *meta = args
        return _from_meta(meta, _type_name(base))
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return " or ".join(_type_name(a) for a in inner) + (" (optional)" if len(inner) < len(args) else "")
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return f"map {_type_name(args[0])} -> {_type_name(args[1])}"
    if origin is typing.Literal:
        return " or ".join(f"`{a}`" for a in args)
    if isinstance(t, type) and issubclass(t, enum.Enum):
        return " or ".join(f"`{m.value}`" for m in t)
    if isinstance(t, type) and issubclass(t, BaseModel):
        return t.__name__
    return {"str": "text", "int": "integer", "float": "number", "bool": "boolean", "date": "date"}.get(
        getattr(t, "__name__", str(t)), getattr(t, "__name__", str(t))
    )


def _default(f: FieldInfo) -> str:
    if f.default is not PydanticUndefined:
        d = f.default
        if isinstance(d, BaseModel):
            return "(defaults)"
        if isinstance(d, enum.Enum):
            return f"`{d.value}`"
        return f"`{d}`" if d is not None else "-"
    if f.default_factory is not None:
        return "empty"
    return "**required**"


def _models_in(t: Any) -> list[type[BaseModel]]:
    out: list[type[BaseModel]] = []
    if isinstance(t, type) and issubclass(t, BaseModel):
        return [t]
    for a in typing.get_args(t):
        out.extend(_models_in(a))
    return out


def render() -> str:
    lines = [
        "# Environment reference",
        "",
        "Generated from `src/aiinfn/config/models.py` by `python -m aiinfn.config.reference`; do not edit.",
        "An environment is one YAML file under `environments/`; its `kind` says what it describes: a site",
        "(the default), an event (`kind: event`, which names the sites it runs on and holds only the",
        "event) or a federation (`kind: federation`). `extends:` names files (relative to this one) layered",
        "underneath: mappings merge key by key, lists and scalars are replaced. A file named by `extends:` (or",
        "by an event's or a federation's `sites:`) must be a `.yaml`/`.yml` environment file inside this",
        "checkout or in the directory of the file naming it (or below), symlinks resolved. Fields named",
        "`*_secret` hold the *name* of a Pulumi config secret, never a value.",
        "",
        "Every text value is one line of visible characters (no control or invisible characters, no `{{`,",
        "`{%` or `{#`: values are data, never templates), at most 255 characters (descriptions 1000); typed",
        "fields (names, hostnames, paths, URLs, image references ...) hold only the characters of their kind.",
        "",
    ]
    seen: set[type[BaseModel]] = set()
    for title, top in (("Site", Environment), ("Event", Event), ("Federation", Federation)):
        lines += [f"# {title} files", ""]
        _render_tree(top, lines, seen)
    return "\n".join(lines)


def _render_tree(top: type[BaseModel], lines: list[str], seen: set[type[BaseModel]]) -> None:
    queue: list[tuple[str, type[BaseModel]]] = [("", top)]
    while queue:
        path, model = queue.pop(0)
        if model in seen:
            continue
        seen.add(model)
        title = path or "(top level)"
        lines += [f"## `{title}` ({model.__name__})", ""]
        doc = (model.__doc__ or "").strip().splitlines()
        if doc:
            lines += [doc[0], ""]
        lines += ["| field | type | default | description |", "|---|---|---|---|"]
        for name, f in model.model_fields.items():
            desc = (f.description or "").replace("|", "\\|")
            typ = _type_name(f.annotation)
            if f.metadata:
                optional = " (optional)" if typ.endswith(" (optional)") else ""
                typ = _from_meta(f.metadata, typ.removesuffix(" (optional)")) + optional
            lines.append(f"| `{name}` | {typ} | {_default(f)} | {desc} |")
            for sub in _models_in(f.annotation):
                origin = typing.get_origin(typing.get_args(f.annotation)[0] if typing.get_args(f.annotation)
                                           else f.annotation)
                child = f"{path}.{name}" if path else name
                if typing.get_origin(f.annotation) is dict or origin is dict:
                    child += ".<name>"
                elif typing.get_origin(f.annotation) is list or origin is list:
                    child += "[]"
                queue.append((child, sub))
        lines.append("")


if __name__ == "__main__":  # pragma: no cover
    print(render(), end="")
