"""Write the key paths of a Helm chart's own values.yaml (and values.schema.json) at a pinned tag.

Run by hand, never in CI (it reads a git checkout of the chart's repository, which CI does not have):

    python tests/artifacts/chart_keys/extract.py --git <repo.git> --repository <owner/name> \\
        --ref <tag> --values <path/values.yaml> [--schema <path/values.schema.json>] \\
        [--subchart <key>=<repo.git>|<owner/name>|<tag>|<path/values.yaml>] ... \
        [--template-key <dotted.key>=<templates/file>] [--open <dotted.key>=<templates/file>] \
        > <chart>-<version>.txt

Only facts are written, never the file: one line per key path, ``<kind>\\t<key>\\t<key>...``, where kind
is ``map`` (a mapping with keys of its own), ``free`` (an empty mapping or a null: the chart takes any
keys below it), ``list`` or ``scalar``. A subchart's keys are written under the key its parent chart
passes them on (``grafana``, ``kube-state-metrics``). ``--template-key`` adds a key the chart's
templates read although its values.yaml only shows it in a comment, ``--open`` marks a mapping the
templates write out whole (``toYaml``: any key is passed on); each is checked against the template it
names at the tag and listed in the header. The header names every source: repository, path and tag.
tests/artifacts/test_chart_values.py reads these files.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

from ruamel.yaml import YAML


def show(git: str, ref: str, path: str) -> str:
    return subprocess.run(["git", "-C", git, "show", f"{ref}:{path}"], check=True, capture_output=True,
                          text=True).stdout


def kind(value: Any) -> str:
    if isinstance(value, dict):
        return "map" if value else "free"
    if value is None:
        return "free"
    return "list" if isinstance(value, list) else "scalar"


def values_paths(values: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], str]]:
    if isinstance(values, dict):
        for k, v in values.items():
            here = (*prefix, str(k))
            yield here, kind(v)
            yield from values_paths(v, here)


def schema_paths(
    schema: dict[str, Any], node: Any, prefix: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], str]]:
    """Key paths a JSON schema declares (``properties``, through local ``$ref``s)."""
    seen = 0
    while isinstance(node, dict) and "$ref" in node and seen < 50:
        ref = node["$ref"].removeprefix("#/").split("/")
        node = schema
        for part in ref:
            node = node[part]
        seen += 1
    if not isinstance(node, dict):
        return
    props = node.get("properties")
    if props:
        for k, sub in props.items():
            here = (*prefix, k)
            resolved = sub
            while isinstance(resolved, dict) and "$ref" in resolved:
                target = schema
                for part in resolved["$ref"].removeprefix("#/").split("/"):
                    target = target[part]
                resolved = target
            typ = resolved.get("type") if isinstance(resolved, dict) else None
            if isinstance(resolved, dict) and resolved.get("properties"):
                yield here, "map"
            elif typ == "object" or (isinstance(resolved, dict) and resolved.get("additionalProperties")):
                yield here, "free"
            elif typ == "array":
                yield here, "list"
            else:
                yield here, "scalar" if typ else "free"
            yield from schema_paths(schema, sub, here)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--git", required=True)
    p.add_argument("--repository", required=True)
    p.add_argument("--ref", required=True)
    p.add_argument("--values", required=True)
    p.add_argument("--schema")
    p.add_argument("--subchart", action="append", default=[])
    p.add_argument("--template-key", action="append", default=[])
    p.add_argument("--open", action="append", default=[])
    a = p.parse_args(argv)
    paths: dict[tuple[str, ...], str] = {}
    header = [f"# source: {a.repository} {a.values} at tag {a.ref}"]
    for path, k in values_paths(YAML(typ="safe", pure=True).load(show(a.git, a.ref, a.values))):
        paths[path] = k
    if a.schema:
        header.append(f"# source: {a.repository} {a.schema} at tag {a.ref}")
        schema = json.loads(show(a.git, a.ref, a.schema))
        for path, k in schema_paths(schema, schema):
            if paths.get(path) in (None, "free") or k == "map":
                paths[path] = k if paths.get(path) != "map" else "map"
    for spec in a.subchart:
        key, rest = spec.split("=", 1)
        git, repository, ref, values = rest.split("|")
        header.append(f"# source: {repository} {values} at tag {ref} (subchart, under {key})")
        if paths.get((key,)) in (None, "free", "scalar"):
            paths[(key,)] = "map"
        for path, k in values_paths(YAML(typ="safe", pure=True).load(show(git, ref, values)), (key,)):
            if path not in paths or paths[path] == "free":
                paths[path] = k
    for spec, kind_ in [(x, "scalar") for x in a.template_key] + [(x, "free") for x in a.open]:
        dotted, template = spec.split("=", 1)
        key = tuple(dotted.split("."))
        text = show(a.git, a.ref, template)
        assert key[-1] in text and (kind_ != "free" or "toYaml" in text), f"{template} does not read {dotted}"
        what = "read by" if kind_ == "scalar" else "written out whole (toYaml) by"
        header.append(f"# template: {dotted} {what} {template} at tag {a.ref}")
        paths[key] = kind_
    header.append("# the key paths of the chart's values (facts, not the file): <kind>\\t<key>...; written by "
                  "tests/artifacts/chart_keys/extract.py")
    out = [*header, *("\t".join((k, *path)) for path, k in sorted(paths.items()))]
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
