"""Every rendered artifact checked by the tool that consumes it.

cloud-init user data: Debian's cloud-init, `cloud-init schema --config-file` (installed by
scripts/install-debian-deps.sh). Ansible inventory: the real `ansible-inventory` from the ansible
package. mig-parted config: parsed and checked against the catalogue (mig-parted itself is a Go
binary that cannot be installed here; its stock configs are the oracle in tests/unit).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jinja2
import pytest
from jinja2 import nodes
from ruamel.yaml import YAML

from aiinfn import preview, versions
from aiinfn.catalogue import accelerators as cat
from aiinfn.catalogue import mig
from aiinfn.config.loader import list_environments
from aiinfn.planning.labels import MIG_CONFIG_LABEL
from aiinfn.render import UNSAFE_MARKER, needs_unsafe, plain, templates_dir

SHIPPED = list_environments(kind="site")
#: The filters a template may pass interpolated values through (render.to_yaml, render.to_unsafe_yaml), and the
#: one it must use for a mapping's value (after ": ").
QUOTING_FILTERS = {"cloud-init/node.yaml.j2": ({"yaml"}, "yaml"),
                   "ansible/inventory.yaml.j2": ({"yaml", "unsafe"}, "unsafe")}


def _strings(value: Any) -> Iterator[tuple[bool, str]]:
    """(marked unsafe?, text) for every string value in an ``ansible-inventory --list`` document."""
    if isinstance(value, dict):
        if set(value) == {UNSAFE_MARKER}:
            yield True, value[UNSAFE_MARKER]
            return
        for v in value.values():
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
    elif isinstance(value, str):
        yield False, value


@pytest.fixture(scope="module", params=SHIPPED)
def built(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, preview.Preview]:
    report = preview.build(request.param)
    out = preview.write(report, tmp_path_factory.mktemp("build"))
    return out, report


def test_every_user_data_document_is_valid_cloud_config(built: tuple[Path, preview.Preview]) -> None:
    out, report = built
    cloud_init = shutil.which("cloud-init")
    assert cloud_init, "cloud-init is not installed: scripts/install-debian-deps.sh installs it"
    files = sorted((out / "cloud-init").glob("*.yaml"))
    assert [f.stem for f in files] == sorted(n.name for n in report.plan.nodes)
    for f in files:
        res = subprocess.run([cloud_init, "schema", "--config-file", str(f)], capture_output=True, text=True)
        assert res.returncode == 0, f"{f.name}: {res.stdout}{res.stderr}"
        assert "Valid cloud-config" in res.stdout


def test_user_data_is_what_the_instances_receive(built: tuple[Path, preview.Preview]) -> None:
    out, report = built
    for inst in report.run.by_type("openstack:compute/instance:Instance"):
        name = inst.inputs["name"]
        assert inst.inputs["userData"] == (out / "cloud-init" / f"{name}.yaml").read_text()


def test_ansible_inventory_parses_with_the_real_ansible(built: tuple[Path, preview.Preview]) -> None:
    out, report = built
    exe = Path(sys.executable).parent / "ansible-inventory"
    env = {**os.environ, "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true", "ANSIBLE_HOME": str(out / ".ansible")}
    res = subprocess.run(
        [str(exe), "-i", str(out / "ansible" / "inventory.yaml"), "--list"],
        capture_output=True, text=True, env=env, check=False,
    )
    assert res.returncode == 0, res.stderr
    listed = json.loads(res.stdout)
    # every string Ansible read from the inventory is unsafe (it never templates it), at any depth; the only
    # unmarked ones read as numbers, booleans or null unquoted (Ansible would retype them: see needs_unsafe)
    strings = list(_strings(listed["_meta"]["hostvars"]))
    assert sum(marked for marked, _ in strings) > len(strings) // 2
    unmarked = [s for marked, s in strings if not marked]
    assert all(not needs_unsafe(s) and "{" not in s for s in unmarked), unmarked[:5]
    inv = plain(listed)
    hostvars = inv["_meta"]["hostvars"]
    assert set(hostvars) == {n.name for n in report.plan.nodes}
    ips = {e["name"]: e["fixed_ip"] for e in report.run.stack_outputs["inventory"]}
    for n in report.plan.nodes:
        hv = hostvars[n.name]
        assert hv["ansible_host"] == ips[n.name]
        assert hv["aiinfn_role"] == n.role.value and hv["aiinfn_pool"] == n.pool
        assert hv["aiinfn_node_labels"] == n.labels
        assert n.name in inv[f"role_{n.role.value}"]["hosts"]
    cluster = set(inv["k8s_cluster"]["hosts"])
    assert cluster == {n.name for n in report.plan.nodes if n.is_kubernetes_node}
    # the site-wide variables the playbooks read arrive intact through Ansible's own parser
    site = next(iter(hostvars.values()))
    assert site["aiinfn_rke2_version"] == versions.RKE2
    assert site["aiinfn_first_server"] in inv["role_server"]["hosts"]
    assert site["aiinfn_nfs"]["server"] in inv["role_nfs"]["hosts"]
    assert site["aiinfn_backup"]["server"] in inv["role_backup"]["hosts"]
    mig_parted = YAML(typ="safe").load((out / "mig-parted" / "config.yaml").read_text())
    assert site["aiinfn_mig_parted_config"] == mig_parted
    for name in {n.mig_config for n in report.plan.nodes if n.mig_config}:
        assert name in mig_parted["mig-configs"]


def test_mig_parted_config_holds_every_node_layout(built: tuple[Path, preview.Preview]) -> None:
    out, report = built
    doc = YAML(typ="safe", pure=True).load((out / "mig-parted" / "config.yaml").read_text())
    assert doc["version"] == "v1"
    configs = doc["mig-configs"]
    for n in report.plan.nodes:
        if n.accelerator is None or cat.model(n.accelerator).device_class is not cat.DeviceClass.GPU:
            continue
        label = n.labels[MIG_CONFIG_LABEL]
        assert label in configs, f"{n.name} is labelled {label} but the config has no such entry"
        if n.mig_config is None:
            continue
        model = cat.model(n.accelerator)
        for entry in configs[label]:
            assert f"0x{model.device_ids[0].upper()}10DE" in entry["device-filter"]
            if entry["mig-enabled"]:
                layout = mig.expand(entry["mig-devices"])
                mig.validate(model, layout)
                assert sorted(layout) == sorted(n.mig_layouts[0] or ())


def test_plan_json_has_the_documented_shape(built: tuple[Path, preview.Preview]) -> None:
    out, report = built
    doc = json.loads((out / "plan.json").read_text())
    for key in ("environment", "resources", "summary", "outputs", "capacity", "versions", "artifacts"):
        assert key in doc
    assert doc["environment"]["name"] == report.env.name
    assert doc["summary"]["resources"] == len(doc["resources"]) == len(report.run.registrations)
    for r in doc["resources"]:
        assert {"urn", "type", "name", "parent", "inputs", "protect", "retain_on_delete", "depends_on"} <= set(r)
    urns = [r["urn"] for r in doc["resources"]]
    assert len(urns) == len(set(urns))
    for rel in doc["artifacts"]:
        assert (out / rel).is_file()


@pytest.mark.parametrize("template", sorted(QUOTING_FILTERS))
def test_every_interpolation_goes_through_the_quoting_filter(template: str) -> None:
    """No value reaches cloud-init or Ansible raw: every ``{{ ... }}`` of the template ends in a quoting filter
    (a quoted, escaped YAML node), and every value of a mapping in the inventory in ``unsafe`` (tagged !unsafe).
    A new raw interpolation fails here."""
    allowed, for_values = QUOTING_FILTERS[template]
    tree = jinja2.Environment().parse((templates_dir() / template).read_text())
    checked = 0
    for out in tree.find_all(nodes.Output):
        before = ""
        for child in out.nodes:
            if isinstance(child, nodes.TemplateData):
                before = child.data
                continue
            where = f"{template} line {child.lineno}"
            assert isinstance(child, nodes.Filter) and child.name in allowed, f"{where}: unquoted interpolation"
            if before.endswith(": "):
                assert child.name == for_values, f"{where}: a value without the `{for_values}` filter"
            before = ""
            checked += 1
    assert checked >= 8, template
