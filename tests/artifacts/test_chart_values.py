"""The Helm values of every chart the plans install, checked against the chart itself at the pinned version.

Helm takes any key: a misspelled one is silently ignored and the chart installs with its default (a
hub without its authenticator settings, a Prometheus without our retention). So every release of
every shipped site's bundles is checked, per chart, against what the chart at its pinned version
(``versions.CHARTS``) knows:

* where the chart ships a values schema and ../shared holds it, by that schema (JSON schema, over our
  values merged onto the chart's defaults as Helm coalesces them): zero-to-jupyterhub 4.4.0, and
  interLink (``interlink-chart-<version>``, for when a service installs it);
* otherwise, every key path of our values must be a key path of the chart's own values.yaml at the
  pinned tag, or lie below a key the chart leaves open (an empty mapping or a null default, such as
  ``nodeSelector: {}``); the lists of key paths, with the repository, path and tag they come from, are
  in tests/artifacts/chart_keys/ (written by chart_keys/extract.py from the charts' repositories; a
  subchart's keys under the key its parent passes on). cert-manager ships a values.schema.json that
  ../shared does not hold: its key paths are in the list too.

Gaps, named: keys a chart reads in its templates without listing them in values.yaml would be refused
here (none is used today), and the types of the values are checked only where a schema exists.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from ruamel.yaml import YAML

from aiinfn import services, versions
from aiinfn.config.loader import list_environments, load
from aiinfn.planning import make_plan
from aiinfn.services.bundle import Release, resolve

SUPPORT = Path(__file__).resolve().parents[1] / "support"
if str(SUPPORT) not in sys.path:
    sys.path.insert(0, str(SUPPORT))

import schemas  # noqa: E402 - found through SUPPORT

KEYS = Path(__file__).resolve().parent / "chart_keys"
SITES = list_environments(kind="site")
#: chart -> the schema ../shared holds for it: (folder, schema file, defaults file or None)
SHARED_SCHEMAS = {
    "jupyterhub": ("z2jh-{version}", "values.schema.yaml", "values.yaml"),
    "interlink": ("interlink-chart-{version}", "values.schema.json", "values.yaml"),
}
#: Where each chart's keys were read (the header of its key file must say so, at the pinned tag).
KEY_SOURCES = {
    "kueue": ("kubernetes-sigs/kueue", "charts/kueue/values.yaml", "v{version}"),
    "gpu-operator": ("NVIDIA/gpu-operator", "deployments/gpu-operator/values.yaml", "{version}"),  # v25.10.0
    "harbor": ("goharbor/harbor-helm", "values.yaml", "v{version}"),
    "kube-prometheus-stack": ("prometheus-community/helm-charts", "charts/kube-prometheus-stack/values.yaml",
                              "kube-prometheus-stack-{version}"),
    "juicefs-csi-driver": ("juicedata/charts", "charts/juicefs-csi-driver/values.yaml",
                           "helm-chart-juicefs-csi-driver-{version}"),
    "nfs-subdir-external-provisioner": ("kubernetes-sigs/nfs-subdir-external-provisioner",
                                        "charts/nfs-subdir-external-provisioner/values.yaml",
                                        "nfs-subdir-external-provisioner-{version}"),
    "cert-manager": ("cert-manager/cert-manager", "deploy/charts/cert-manager/values.yaml", "{version}"),
    "openstack-cinder-csi": ("kubernetes/cloud-provider-openstack", "charts/cinder-csi-plugin/values.yaml",
                             "openstack-cinder-csi-{version}"),
}


def _releases() -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """chart -> (site, values with every node address filled in) of every release the sites install."""
    out: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for site in SITES:
        for bundle in services.site_bundles(make_plan(load(site))):
            for item in bundle.items:
                if isinstance(item, Release):
                    values = resolve(item.values, {}, missing="192.0.2.10")
                    out.setdefault(item.chart, []).append((site, values))
    return out


RELEASES = _releases()


def read_keys(path: Path) -> tuple[list[str], dict[tuple[str, ...], str]]:
    header, keys = [], {}
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            header.append(line)
        elif line.strip():
            kind, *parts = line.split("\t")
            keys[tuple(parts)] = kind
    return header, keys


def unknown_keys(values: Any, keys: dict[tuple[str, ...], str], prefix: tuple[str, ...] = ()) -> list[str]:
    """Key paths of ``values`` the chart does not know (below an open key, anything goes)."""
    out: list[str] = []
    if not isinstance(values, dict):
        return out
    for k, v in values.items():
        here = (*prefix, str(k))
        kind = keys.get(here)
        if kind is None:
            near = sorted(p[-1] for p in keys if p[:-1] == prefix)
            out.append(f"{'.'.join(here)}: not a key of the chart (keys here: {', '.join(near[:12])}...)")
        elif kind == "map":
            out.extend(unknown_keys(v, keys, here))
        elif kind in ("scalar", "list") and isinstance(v, dict):
            out.append(f"{'.'.join(here)}: a mapping where the chart has a {kind}")
    return out


def key_file(chart: str) -> Path:
    return KEYS / f"{chart}-{versions.chart_version(chart)}.txt"


def shared_schema(shared: Path, chart: str) -> tuple[Any, Any]:
    folder, schema_file, defaults_file = SHARED_SCHEMAS[chart]
    base = shared / "schemas" / folder.format(version=versions.chart_version(chart))
    pinned = versions.chart_version(chart)
    assert base.is_dir(), f"{chart} {pinned}: no schema in {base} (pin the version ../shared holds)"
    yaml = YAML(typ="safe", pure=True)
    text = (base / schema_file).read_text()
    schema = json.loads(text) if schema_file.endswith(".json") else yaml.load(text)
    defaults = yaml.load((base / defaults_file).read_text()) if defaults_file else {}
    return schema, defaults


def problems_of(chart: str, values: dict[str, Any], shared: Path) -> list[str]:
    if chart in SHARED_SCHEMAS:
        schema, defaults = shared_schema(shared, chart)
        merged = schemas.merge_values(defaults, values)
        validator = jsonschema.validators.validator_for(schema)(schema)
        errors = validator.iter_errors(merged)
        return [f"{'.'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors]
    _, keys = read_keys(key_file(chart))
    return unknown_keys(values, keys)


# --------------------------------------------------------------------------- every chart, every site


def test_every_chart_the_plans_install_is_checked(shared: Path) -> None:
    assert {"jupyterhub", "kueue", "gpu-operator", "kube-prometheus-stack", "cert-manager"} <= set(RELEASES)
    for chart in RELEASES:
        assert chart in SHARED_SCHEMAS or chart in KEY_SOURCES, f"{chart}: no schema and no key list: add one"
        if chart in SHARED_SCHEMAS:
            shared_schema(shared, chart)
            continue
        path = key_file(chart)
        assert path.is_file(), f"{chart}: no key list for the pinned {versions.chart_version(chart)} ({path.name})"
        header, keys = read_keys(path)
        repository, values_path, tag = KEY_SOURCES[chart]
        tag = tag.format(version=versions.chart_version(chart))
        assert f"# source: {repository} {values_path} at tag {tag}" in header, header
        assert len(keys) >= 20 and any(len(p) > 1 for p in keys)


@pytest.mark.parametrize("chart", sorted(RELEASES))
def test_values_are_what_the_chart_knows(chart: str, shared: Path) -> None:
    for site, values in RELEASES[chart]:
        found = problems_of(chart, values, shared)
        assert found == [], f"{chart} at {site}: {found}"


# --------------------------------------------------------------------------- a misspelled key fails


def _misspell_deepest(values: dict[str, Any], keys: dict[tuple[str, ...], str]) -> tuple[dict[str, Any], str]:
    """``values`` with the last key of its deepest checked path misspelled (a letter doubled): a path
    whose parents are all mappings the chart lists key by key."""
    checked = [p for p, _ in _paths(values) if all(keys.get(p[:i]) == "map" for i in range(1, len(p)))]
    deepest = max(checked, key=len)
    out = copy.deepcopy(values)
    node = out
    for k in deepest[:-1]:
        node = node[k]
    last = deepest[-1]
    node[last[0] + last] = node.pop(last)
    return out, ".".join(deepest)


def _paths(values: Any, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    out: list[tuple[tuple[str, ...], Any]] = []
    if isinstance(values, dict):
        for k, v in values.items():
            out.append(((*prefix, k), v))
            out.extend(_paths(v, (*prefix, k)))
    return out


@pytest.mark.parametrize("chart", sorted(RELEASES))
def test_a_misspelled_key_is_refused(chart: str, shared: Path) -> None:
    _, values = RELEASES[chart][0]
    if chart in SHARED_SCHEMAS:  # the schema forbids unknown keys where the chart's own keys are closed
        spoiled = copy.deepcopy(values)
        top = next(iter(spoiled))
        spoiled[top + "x"] = spoiled.pop(top)
        what = top
    else:
        spoiled, what = _misspell_deepest(values, read_keys(key_file(chart))[1])
    assert problems_of(chart, spoiled, shared), f"{chart}: misspelling {what} went unnoticed"


@pytest.mark.parametrize(("chart", "path"), [
    ("jupyterhub", ("hub", "networkPolicy", "ingress")),
    ("jupyterhub", ("singleuser", "profileList")),
    ("jupyterhub", ("cull", "timeout")),
    ("kube-prometheus-stack", ("prometheus", "prometheusSpec", "retention")),
    ("kube-prometheus-stack", ("grafana", "enabled")),
    ("kube-prometheus-stack", ("prometheus", "prometheusSpec", "ruleNamespaceSelector")),
    ("gpu-operator", ("migManager", "config", "name")),
    ("harbor", ("persistence", "imageChartStorage", "s3", "bucket")),
    ("openstack-cinder-csi", ("secret", "name")),
    ("openstack-cinder-csi", ("storageClass", "enabled")),
    ("openstack-cinder-csi", ("csi", "plugin", "image", "tag")),
])
def test_a_typo_in_a_key_we_rely_on_is_refused(chart: str, path: tuple[str, ...], shared: Path) -> None:
    site, values = RELEASES[chart][0]
    spoiled = copy.deepcopy(values)
    node = spoiled
    for k in path[:-1]:
        node = node[k]
    assert path[-1] in node, f"{chart} at {site} no longer sets {'.'.join(path)}: update this list"
    node[path[-1][:-1] + path[-1][-1].upper()] = node.pop(path[-1])  # `retention` -> `retentioN`
    assert problems_of(chart, spoiled, shared), f"{chart}: a typo in {'.'.join(path)} went unnoticed"
