"""Environment strings are data, never code, wherever they land (issue 10).

Three layers, each tested against the real consumer where one runs here:

* **Validation.** An injection corpus: every field whose value reaches a shell, cloud-init, Ansible or
  Jinja2 is given hostile values (a YAML break-out adding ``bootcmd``, an Ansible ``lookup('pipe', ...)``,
  shell command substitution, NUL, a Unicode line separator, a bidirectional override, a huge string).
  Each is either refused with one line naming the field (exit code 2), or it loads and is rendered inert:
  the cloud-init documents and the inventory parse (PyYAML, the parser of cloud-init and Ansible) to
  exactly the template's keys, the value reads back as the literal text, and every string that could hold
  a template is tagged ``!unsafe``.
* **Rendering, validation bypassed** (``model_copy``, no validator runs): the same hostile values in every
  field that reaches cloud-init or the inventory. Debian's ``cloud-init schema --config-file`` accepts each
  document, whose keys are the template's; ``ansible-inventory`` reads the values literally.
* **Ansible, for real** (ansible-playbook on localhost, connection local: no host needed): a field holding
  ``{{ lookup('pipe', 'touch .../PWNED') }}`` creates no file, through the rendered YAML inventory and
  through the dynamic inventory's JSON (run by Ansible's script plugin), and reaches the play as that
  literal string, mapped onto the roles' inputs by playbooks/group_vars/all.yml (whose own expressions keep
  working); a passphrase ``{{ 7*7 }}`` handed to ``run_playbook`` reaches a task as ``{{ 7*7 }}``, from a
  0600 file, never on ansible-playbook's command line.

Keys are generated with ``ssh-keygen`` (openssh-client, installed by ``make deps-debian``). What does not
run here: the nodes themselves (cloud-init is only the schema checker), so "inert on a node" means "reads
back as the literal value in the document the node receives".
"""

from __future__ import annotations

import copy
import ipaddress
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from aiinfn.ansible import runner
from aiinfn.config import models, validate
from aiinfn.config.loader import layer, load
from aiinfn.config.models import Environment
from aiinfn.config.paths import format_path
from aiinfn.errors import ConfigError
from aiinfn.openstack import inventory as dyninv
from aiinfn.planning import labels as platform_labels
from aiinfn.planning import make_plan
from aiinfn.render import (
    UNSAFE_MARKER,
    ansible_inventory,
    cloud_init,
    needs_unsafe,
    plain,
    read_inventory,
    to_unsafe_yaml,
    to_yaml,
)
from aiinfn.render.artifacts import site_artifacts
from aiinfn.services import site_bundles

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "corpus"
BIN = Path(sys.executable).parent
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBjygPwno6xIZsG0LPS0RRRpkCmshAsvHKW9WdarCwhF corpus-ops@example.org"

#: What a rich site adds to the corpus fixture, so that every field that reaches a sink has a value.
RICH: dict[str, Any] = {
    "extends": str(CORPUS / "valid-site.yaml"),
    "description": "a site with every field that reaches a shell, cloud-init, Ansible or Jinja2",
    "site": {"ntp_servers": ["ntp.example.org", "192.0.2.123"], "region": "RegionOne"},
    "flavors": {"cpu-8c": {"extra_specs": {"hw:cpu_policy": "dedicated"}}},
    "iam": {"scopes": ["openid", "profile", "email", "groups"]},
    "kubernetes": {"tls_sans": ["api.corpus.example.org"], "cluster_domain": "cluster.local"},
    "node_pools": {
        "agent": {"labels": {"example.org/rack": "r1"}, "taints": [{"key": "example.org/maintenance", "value": "no"}],
                  "data_volumes": [{"name": "cache", "size_gb": 10, "mount_path": "/var/cache/aiinfn"}]},
    },
    "storage": {
        "nfs": {"size_gb": 500, "export_path": "/export/platform"},
        "backup": {"size_gb": 1000, "passphrase_secret": "borg-passphrase", "schedule": "*-*-* 02:30:00",
                   "check_schedule": "Sun *-*-* 05:00:00"},
        "s3": {"endpoint": "https://s3.example.org", "region": "us-east-1", "mount_path": "/s3",
               "sts_role": "IAMaccess", "client_id": "corpus-stswire", "client_secret": "stswire-client-secret",
               "node_mounts": [{"name": "datasets", "bucket": "datasets", "mount_path": "/data/datasets",
                                "pools": ["a100"]}]},
    },
    "bootstrap": {"artifact_source": "https://artifacts.example.org/aiinfn",
                  "admin_users": [{"name": "operator", "ssh_keys": [KEY]}]},
    "services": {"tls": {"acme_email": "ops@corpus.example.org"},
                 "harbor": {"hostname": "harbor.corpus.example.org", "admin_password_secret": "harbor-admin"},
                 "jupyterhub": {"default_image": "harbor.corpus.example.org/ai/notebook:2026"}},
}

#: Hostile values: what a tenant, an event organiser or a careless copy-paste could put in a field.
PAYLOADS = {
    "yaml-bootcmd": "x\nbootcmd: [[sh, -c, 'touch /tmp/PWNED']]",
    "yaml-list-item": "x\n  - ssh_pwauth: true",
    "yaml-flow": "x\", ssh_pwauth: true, y: \"",
    "ansible-lookup": "{{ lookup('pipe', 'touch /tmp/PWNED') }}",
    "jinja-statement": "{% for x in range(9) %}x{% endfor %}",
    "shell-substitution": "$(touch /tmp/PWNED)",
    "shell-chain": "a; touch /tmp/PWNED #",
    "nul": "a\x00b",
    "line-separator": "a\u2028ssh_pwauth: true",
    "bidi-override": "admin\u202egpj.exe",
    "huge": "a" * 20_000,
}


class Key:
    """A mapping key in a field path: the payload replaces the key itself."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<key {self.name}>"


#: Every field whose value reaches a shell (the roles' tasks, the notebooks' hooks), cloud-init, Ansible
#: (the inventory) or Jinja2 (the templates). A path; a Key stands for a mapping key.
FIELDS: list[tuple[Any, ...]] = [
    ("name",), ("description",),
    ("site", "name"), ("site", "cloud"), ("site", "region"), ("site", "availability_zone"), ("site", "image"),
    ("site", "external_network"), ("site", "domain"), ("site", "ntp_servers", 0), ("site", "ssh_public_key"),
    ("network", "existing_network"),
    ("kubernetes", "cluster_domain"), ("kubernetes", "tls_sans", 0),
    ("node_pools", Key("agent")), ("node_pools", "agent", "name_prefix"), ("node_pools", "a100", "nodes", 0),
    ("node_pools", "agent", "labels", Key("example.org/rack")), ("node_pools", "agent", "labels", "example.org/rack"),
    ("node_pools", "agent", "taints", 0, "key"), ("node_pools", "agent", "taints", 0, "value"),
    ("node_pools", "agent", "reserved_for"), ("node_pools", "agent", "data_volumes", 0, "mount_path"),
    ("node_pools", "a100", "mig", 0),
    ("flavors", Key("cpu-8c")), ("flavors", "cpu-8c", "extra_specs", "hw:cpu_policy"),
    ("storage", "nfs", "export_path"), ("storage", "backup", "schedule"), ("storage", "backup", "check_schedule"),
    ("storage", "s3", "endpoint"), ("storage", "s3", "region"), ("storage", "s3", "mount_path"),
    ("storage", "s3", "sts_role"), ("storage", "s3", "client_id"),
    ("storage", "s3", "node_mounts", 0, "name"), ("storage", "s3", "node_mounts", 0, "bucket"),
    ("storage", "s3", "node_mounts", 0, "mount_path"),
    ("bootstrap", "artifact_source"), ("bootstrap", "admin_users", 0, "name"),
    ("bootstrap", "admin_users", 0, "ssh_keys", 0),
    ("iam", "issuer"), ("iam", "client_id"), ("iam", "username_claim"), ("iam", "groups_claim"),
    ("iam", "scopes", 0), ("iam", "user_groups", 0), ("projects", "alpha", "iam_group"),
    ("services", "harbor", "hostname"), ("services", "jupyterhub", "default_image"),
    ("services", "tls", "acme_email"),
]


# --------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def rich(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rich") / "rich.yaml"
    path.write_text(json.dumps(RICH))  # JSON is YAML
    return path


@pytest.fixture(scope="module")
def rich_env(rich: Path) -> Environment:
    env = load(rich)
    assert isinstance(env, Environment)
    return env


def _set(data: Any, path: tuple[Any, ...], value: Any) -> None:
    """Set ``value`` at ``path`` in plain data (a Key renames that mapping key)."""
    *parents, last = path
    node = data
    for p in parents:
        node = node[p]
    if isinstance(last, Key):
        node[value] = node.pop(last.name)
    elif isinstance(node, list) and last >= len(node):
        node.append(value)
    else:
        node[last] = value


def _overlay(rich: Path, tmp_path: Path, path: tuple[Any, ...], value: Any) -> Path:
    """A file over the rich site changing one field: its whole top-level section written out (lists are
    replaced, mappings merged)."""
    merged = layer(rich).data
    section = copy.deepcopy(merged.get(path[0], {})) if len(path) > 1 else None
    doc: dict[str, Any] = {"extends": str(rich)}
    if section is None:
        doc[path[0]] = value
    else:
        _set(section, path[1:], value)
        doc[path[0]] = section
    if path[0] == "node_pools" and isinstance(path[1], Key):  # a renamed pool: every reference follows it
        doc["storage"] = copy.deepcopy(merged["storage"])
    # beside the rich site: a file may extend only files of the checkout or of its own directory tree
    out = rich.parent / f"{tmp_path.name}.yaml"
    out.write_text(json.dumps(doc))
    return out


def _expected_path(path: tuple[Any, ...], value: str) -> str:
    parts = [value if isinstance(p, Key) else p for p in path]
    return format_path(tuple(parts))


def bypass(model: Any, path: tuple[Any, ...], value: Any) -> Any:
    """``model`` with ``value`` at ``path``, no validator run (``model_copy``): what rendering gets when
    validation is wrong or skipped."""
    if not path:
        return value
    head, *rest = path
    if isinstance(model, BaseModel):
        return model.model_copy(update={head: bypass(getattr(model, head), tuple(rest), value)})
    if isinstance(model, dict):
        return {**model, head: bypass(model[head], tuple(rest), value)}
    if isinstance(model, list):
        out = list(model)
        out[head] = bypass(model[head], tuple(rest), value)
        return out
    raise TypeError(f"cannot descend into {type(model).__name__} at {head!r}")


def _shape(doc: Any, depth: int = 0) -> Any:
    """A document's structure: mapping keys and item counts, every scalar replaced by its type."""
    if isinstance(doc, dict):
        return {str(k): _shape(v, depth + 1) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_shape(v, depth + 1) for v in doc]
    return type(doc).__name__


def _strings(doc: Any) -> Iterator[str]:
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(doc, list):
        for v in doc:
            yield from _strings(v)
    elif isinstance(doc, str):
        yield doc


def _unmarked_templates(doc: Any) -> list[str]:
    """Strings of an inventory read with markers that are not marked unsafe yet could be templates."""
    out: list[str] = []
    if isinstance(doc, dict):
        if set(doc) == {UNSAFE_MARKER}:
            return []
        for v in doc.values():
            out += _unmarked_templates(v)
    elif isinstance(doc, list):
        for v in doc:
            out += _unmarked_templates(v)
    elif isinstance(doc, str) and needs_unsafe(doc):
        out.append(doc)
    return out


def _addresses(env: Environment) -> dict[str, str]:
    hosts = list(ipaddress.IPv4Network(env.network.cidr).hosts())
    return {n.name: str(hosts[10 + i]) for i, n in enumerate(make_plan(env).nodes)}


#: Fields that reach no rendered artifact (only plan.json, written by json.dumps, and the OpenStack API):
#: accepted free text stays there.
NOT_RENDERED = {("description",), ("flavors", "cpu-8c", "extra_specs", "hw:cpu_policy")}


def assert_inert(env: Environment, benign: Environment, payload: str | None) -> None:
    """Rendered, ``env`` has the documents of ``benign``: every cloud-init document and the inventory parse
    to the template's keys, the payload reads back as the literal text, and no inventory string that could
    be templated is left without its !unsafe tag."""
    plan, ref = make_plan(env), make_plan(benign)
    ref_doc = yaml.safe_load(cloud_init(ref, ref.nodes[0]))
    for node in plan.nodes:
        doc = yaml.safe_load(cloud_init(plan, node))
        assert set(doc) == set(ref_doc), (node.name, sorted(set(doc) ^ set(ref_doc)))
        assert set(doc["users"][0]) == set(ref_doc["users"][0])
        assert doc["ssh_pwauth"] is False and "bootcmd" not in doc
        assert doc["hostname"] == node.name
        facts = json.loads(doc["write_files"][0]["content"])
        assert facts["labels"] == node.labels
    text = ansible_inventory(plan, _addresses(env))
    inv, ref_inv = yaml.load(text, Loader=_AnsibleLikeLoader), read_inventory(
        ansible_inventory(ref, _addresses(benign)), markers=False)
    assert set(inv) == {"all"} and set(inv["all"]) == set(ref_inv["all"])
    assert set(inv["all"]["vars"]) == set(ref_inv["all"]["vars"])
    some = next(iter(ref_inv["all"]["hosts"].values()))
    for name, hv in inv["all"]["hosts"].items():
        assert set(hv) - {"aiinfn_data_device", "aiinfn_sts_wire_mounts"} == set(some) - {
            "aiinfn_data_device", "aiinfn_sts_wire_mounts"}, name
    marked = read_inventory(text)
    assert _unmarked_templates(marked) == []
    if payload is not None:
        # every artifact the plan writes parses (the overlay's objects and values too), and the value reads back
        # as the literal text somewhere in them: carried as data, not dropped nor interpreted
        everything: list[str] = []
        for body in site_artifacts(plan, site_bundles(plan), _addresses(env)).values():
            for doc in yaml.load_all(body, Loader=_AnsibleLikeLoader):
                everything.extend(_strings(doc))
        assert any(payload in s for s in everything), "the payload vanished instead of reading back literally"


class _AnsibleLikeLoader(yaml.SafeLoader):
    """PyYAML's safe loader (Ansible's parser) with Ansible's !unsafe tag read as the text it tags."""


_AnsibleLikeLoader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def _one_line(err: ConfigError) -> str:
    text = str(err)
    assert err.exit_code == 2
    assert len(text.splitlines()) == 1 and not any(c in text for c in "\x00\r\n\u2028\u2029\x85"), repr(text)
    assert len(text) < 1000, text[:200]
    return text


# --------------------------------------------------------------------------- the injection corpus


@pytest.mark.parametrize("payload", sorted(PAYLOADS))
@pytest.mark.parametrize("field", FIELDS, ids=[".".join(str(p) for p in f) for f in FIELDS])
def test_a_hostile_value_is_refused_in_one_line_or_rendered_inert(
    field: tuple[Any, ...], payload: str, rich: Path, rich_env: Environment, tmp_path: Path
) -> None:
    value = PAYLOADS[payload]
    site = _overlay(rich, tmp_path, field, value)
    try:
        env = load(site)
    except ConfigError as e:
        text = _one_line(e)
        assert e.file is not None and Path(e.file).resolve() == site.resolve(), text
        if e.path is None:  # YAML itself refuses a mapping key longer than 1024 characters
            assert isinstance(field[-1], Key) and "YAML syntax error" in text, text
            return
        assert e.path == _expected_path(field, value), text
        return
    assert isinstance(env, Environment)
    assert_inert(env, rich_env, None if field in NOT_RENDERED else value)


def test_control_and_template_characters_are_named_escaped() -> None:
    cases = {
        "a\nb": "a line break ('\\n')", "a\x00b": "a NUL byte ('\\x00')", "a\tb": "a tab ('\\t')",
        "a\rb": "a carriage return ('\\r')", "a\u2028b": "a line separator ('\\u2028')",
        "a\u202eb": "the invisible character U+202E ('\\u202e')", "a\x1bb": "an escape character ('\\x1b')",
        "{{ x }}": "the template delimiter '{{'", "{% if %}": "the template delimiter '{%'",
        "{# c #}": "the template delimiter '{#'",
    }
    for value, named in cases.items():
        with pytest.raises(ValueError) as caught:
            models.plain_text(value)
        assert named in str(caught.value), (value, str(caught.value))
        assert "\n" not in str(caught.value) and "\x00" not in str(caught.value)


@pytest.mark.parametrize(("kind", "value"), [
    (models.IMAGE_REF, "harbor.example.org:5000/ai-infn/notebook:2026.1@sha256:" + "a" * 64),
    (models.IMAGE_REF, "registry.example.org/ns/sub/img@sha256:" + "0123456789abcdef" * 4),
    (models.IMAGE_REF, "quay.io/jupyter/scipy-notebook:2025-01-13"),
    (models.IMAGE_REF, "ubuntu"),
    (models.OIDC_CLAIM, "preferred_username"), (models.OIDC_CLAIM, "wlcg.groups"),
    (models.OIDC_CLAIM, "https://example.org/claims/groups"),
    (models.OPENSTACK_NAME, "Ubuntu 24.04 (Noble) x86_64"), (models.OPENSTACK_NAME, "__DEFAULT__"),
    (models.FLAVOR_NAME, "it.cpu-1c-2g"), (models.EXTRA_SPEC_KEY, "aggregate_instance_extra_specs:gpu"),
    (models.ABSOLUTE_PATH, "/export/platform"), (models.ABSOLUTE_PATH, "/data/datasets-2026/v1.2"),
    (models.STS_ROLE, "arn:aws:iam::123456789012:role/S3Access"), (models.CLIENT_ID, "a1b2c3d4-e5f6-4711-8899"),
    (models.ON_CALENDAR, "Mon..Fri *-*-* 02:30:00"), (models.ACCELERATOR_KIND, "A100-80GB/1g.10gb+me"),
    (models.EMAIL, "ai-infn-ops@lists.infn.it"), (models.BUCKET, "ai-infn.datasets-2026"),
])
def test_legitimate_values_keep_working(kind: models.TextKind, value: str) -> None:
    assert kind(value) == value


@pytest.mark.parametrize("value", ["ntp.example.org", "192.0.2.1", "2001:db8::123"])
def test_ntp_servers_are_hostnames_or_addresses(value: str) -> None:
    assert models._ntp_server(value) == value


@pytest.mark.parametrize(("value", "named"), [
    ("ntp.example.org iburst", "' '"), ("ntp.example.org;reboot", "';'"), ("NTP.EXAMPLE.ORG", "'N'"),
    ("$(id)", "'$'"),
])
def test_ntp_servers_refuse_anything_else(value: str, named: str) -> None:
    with pytest.raises(ValueError) as caught:
        models._ntp_server(value)
    assert "is not an NTP server" in str(caught.value) and named in str(caught.value)


@pytest.mark.parametrize(("kind", "value", "named"), [
    (models.IMAGE_REF, "img:1$(id)", "'$'"), (models.IMAGE_REF, "img:tag with space", "' '"),
    (models.ABSOLUTE_PATH, "/s3;id", "';'"), (models.ABSOLUTE_PATH, "relative/path", None),
    (models.ABSOLUTE_PATH, "/a/../b", None), (models.REGION, "us-east-1`id`", "'`'"),
    (models.CLOUD_NAME, "cnaf|id", "'|'"), (models.STS_ROLE, "role'x", '"\'"'),
    (models.OIDC_CLAIM, "groups&", "'&'"), (models.BUCKET, "Bucket", "'B'"),
])
def test_typed_fields_refuse_shell_metacharacters(kind: models.TextKind, value: str, named: str | None) -> None:
    with pytest.raises(ValueError) as caught:
        kind(value)
    assert f"is not {kind.kind}" in str(caught.value)
    if named is not None:
        assert f"{named} is not allowed" in str(caught.value), str(caught.value)


def test_the_kinds_refuse_what_every_field_refuses() -> None:
    """Every typed kind runs the shared rule first: no kind lets a template or a control character through,
    even one whose characters would allow it."""
    for kind in [v for v in vars(models).values() if isinstance(v, models.TextKind)]:
        for bad in ("{{ x }}", "a\nb", "a\x00b", "x" * 5000):
            with pytest.raises(ValueError):
                kind(bad)


# --------------------------------------------------------------------------- SSH keys


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Public keys of each type, made by the real ssh-keygen (private halves thrown away)."""
    exe = shutil.which("ssh-keygen")
    assert exe, "ssh-keygen is missing: `make deps-debian` installs openssh-client"
    d = tmp_path_factory.mktemp("keys")
    out = {}
    for name, args in {"ed25519": ["-t", "ed25519"], "rsa3072": ["-t", "rsa", "-b", "3072"],
                       "rsa1024": ["-t", "rsa", "-b", "1024"], "ecdsa256": ["-t", "ecdsa", "-b", "256"],
                       "ecdsa384": ["-t", "ecdsa", "-b", "384"], "ecdsa521": ["-t", "ecdsa", "-b", "521"]}.items():
        subprocess.run([exe, "-q", *args, "-N", "", "-C", f"{name}@example.org", "-f", str(d / name)], check=True,
                       stdin=subprocess.DEVNULL, capture_output=True)
        out[name] = (d / f"{name}.pub").read_text().strip()
        (d / name).unlink()
    return out


@pytest.mark.parametrize("name", ["ed25519", "rsa3072", "ecdsa256", "ecdsa384", "ecdsa521"])
def test_every_key_ssh_keygen_makes_is_accepted(keys: dict[str, str], name: str) -> None:
    assert models.ssh_public_key(keys[name]) == keys[name]
    assert models.ssh_public_key(keys[name].rsplit(" ", 1)[0]) is not None  # the comment is optional


def _broken_keys(keys: dict[str, str]) -> dict[str, tuple[str, str]]:
    ed = keys["ed25519"]
    typ, data, comment = ed.split(" ", 2)
    import base64

    blob = base64.b64decode(data)
    return {
        "free text": ("root", "write the whole line of the .pub file"),
        "dsa": ("ssh-dss " + data, "key type 'ssh-dss' is not accepted"),
        "options": ('no-pty,command="sh" ' + ed, "authorized_keys options"),
        "bad base64": (f"{typ} {data[:-3]}!!! {comment}", "its base64 part does not decode"),
        "truncated": (f"{typ} {base64.b64encode(blob[:-8]).decode()}", "the key data ends early"),
        "trailing bytes": (f"{typ} {base64.b64encode(blob + b'xx').decode()}", "bytes after the key"),
        "type mismatch": (f"ssh-rsa {data}", "the key data is of type 'ssh-ed25519', not 'ssh-rsa'"),
        "weak rsa": (keys["rsa1024"], "a 1024-bit RSA key is too weak"),
        "two keys": (ed + "\n" + keys["ecdsa256"], "holds a line break ('\\n')"),
        "template comment": (f"{typ} {data} {{{{ lookup('pipe', 'id') }}}}", "template delimiter '{{'"),
        "huge": (f"{typ} {data} {'x' * 5000}", "at most 4096"),
    }


def test_broken_keys_are_refused_with_the_reason(keys: dict[str, str]) -> None:
    for case, (value, reason) in _broken_keys(keys).items():
        with pytest.raises(ValueError) as caught:
            models.ssh_public_key(value)
        msg = str(caught.value)
        assert msg.startswith("is not an OpenSSH public key") and reason in msg, (case, msg)
        assert "\n" not in msg


def test_a_site_without_any_key_says_what_to_add(rich: Path, tmp_path: Path) -> None:
    site = _overlay(rich, tmp_path, ("site", "ssh_public_key"), None)
    with pytest.raises(ConfigError) as caught:
        load(site)
    text = _one_line(caught.value)
    assert caught.value.path == "site.ssh_public_key"
    assert "set site.ssh_public_key to the operators' OpenSSH public key" in text
    assert "bootstrap.admin_users' keys are installed by Ansible" in text  # the site has admin users


# --------------------------------------------------------------------------- ssh_allow


def _with_ssh_allow(env: Environment, nets: list[ipaddress.IPv4Network]) -> Environment:
    out = bypass(env, ("network", "ssh_allow"), nets)
    assert isinstance(out, Environment)
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32)), max_size=6))
def test_ssh_allow_never_opens_more_than_a_slash_8(rich_env: Environment, raw: list[tuple[int, int]]) -> None:
    """Whatever the list, an accepted one covers at most 2**24 addresses, holds no prefix shorter than /8 and
    no address of the cluster's own networks: 0.0.0.0/0 cannot be written in pieces."""
    nets = [ipaddress.IPv4Network((addr, plen), strict=False) for addr, plen in raw]
    env = _with_ssh_allow(rich_env, nets)
    try:
        validate._check_ssh_allow(env)
    except ConfigError as e:
        _one_line(e)
        assert e.path is not None and e.path.startswith("network.ssh_allow[")
        return
    covered = sum(n.num_addresses for n in ipaddress.collapse_addresses(nets)) if nets else 0
    assert covered <= 2**24
    assert all(n.prefixlen >= 8 for n in nets)
    own = [env.network.cidr, env.network.pod_cidr, env.network.service_cidr]
    assert not any(n.overlaps(o) for n in nets for o in own)


@pytest.mark.parametrize(("nets", "index", "message"), [
    (["0.0.0.0/1", "128.0.0.0/1"], 0, "wider than a /8"),
    (["0.0.0.0/0"], 0, "0.0.0.0/0 would open SSH to the whole internet"),
    ([f"{i}.0.0.0/8" for i in (11, 12)], 1, "covers 33554432 addresses"),
    ([f"{a}.{b}.0.0/16" for a in (20, 21) for b in range(200)], 256, "covers 16842752 addresses"),
    (["169.254.169.254/32"], 0, "link-local"),
    (["224.0.0.0/8"], 0, "multicast"),
    (["10.50.0.0/24"], 0, "overlaps network.cidr"),
])
def test_ssh_allow_names_the_entry(rich_env: Environment, nets: list[str], index: int, message: str) -> None:
    env = _with_ssh_allow(rich_env, [ipaddress.IPv4Network(n) for n in nets])
    with pytest.raises(ConfigError) as caught:
        validate._check_ssh_allow(env)
    assert caught.value.path == f"network.ssh_allow[{index}]" and message in str(caught.value), str(caught.value)


def test_operators_networks_are_accepted(rich_env: Environment) -> None:
    nets = ["131.154.0.0/16", "90.147.188.0/24", "192.0.2.7/32", "141.108.0.0/16", "193.206.0.0/15"]
    validate._check_ssh_allow(_with_ssh_allow(rich_env, [ipaddress.IPv4Network(n) for n in nets]))


# --------------------------------------------------------------------------- labels and taints


@pytest.mark.parametrize(("key", "refused"), [
    ("example.org/rack", None), ("rack", None), ("topology.kubernetes.io/zone", None),
    ("kubelet.kubernetes.io/x", None), ("eu.node.kubernetes.io/tier", None), ("nvidia.example.org/x", None),
    ("aiinfn.infn.it/pool", "which the platform sets itself"), ("nvidia.com/mig.config", "which the platform sets"),
    ("node-role.kubernetes.io/worker", "which the platform sets"), ("kubernetes.io/hostname", "platform sets"),
    ("node.kubernetes.io/instance-type", "platform sets"), ("k8s.io/x", "platform sets"),
    ("app.kubernetes.io/name", "the kubelet refuses"), ("node-restriction.kubernetes.io/x", "the kubelet refuses"),
    ("x.k8s.io/y", "the kubelet refuses"), ("kueue.x-k8s.io/queue-name", None),
])
def test_pool_labels_never_override_the_platform_nor_upset_the_kubelet(
    rich_env: Environment, key: str, refused: str | None
) -> None:
    env = bypass(rich_env, ("node_pools", "agent", "labels"), {key: "x"})
    if refused is None:
        validate._check_pool_keys("node_pools.agent", env.node_pools["agent"])
        return
    with pytest.raises(ConfigError) as caught:
        validate._check_pool_keys("node_pools.agent", env.node_pools["agent"])
    assert caught.value.path == format_path(("node_pools", "agent", "labels", key)) and refused in str(caught.value)


def test_the_kubelet_rule_is_the_pinned_kubernetes_list() -> None:
    """k8s.io/kubelet/pkg/apis/well_known_labels.go of Kubernetes 1.33: the keys the kubelet may self-set."""
    pinned = {
        "kubernetes.io/hostname", "topology.kubernetes.io/zone", "topology.kubernetes.io/region",
        "failure-domain.beta.kubernetes.io/zone", "failure-domain.beta.kubernetes.io/region",
        "beta.kubernetes.io/instance-type", "node.kubernetes.io/instance-type", "kubernetes.io/os",
        "kubernetes.io/arch", "beta.kubernetes.io/os", "beta.kubernetes.io/arch"}
    assert pinned == platform_labels.KUBELET_SELF_LABELS
    assert set(platform_labels.KUBELET_SELF_LABEL_NAMESPACES) == {"kubelet.kubernetes.io", "node.kubernetes.io"}


@pytest.mark.parametrize(("key", "refused"), [
    ("reserved", "use `reserved_for"), ("CriticalAddonsOnly", "scheduling taint"),
    ("aiinfn.infn.it/accelerator", "which the platform sets"), ("node.kubernetes.io/unschedulable", "platform sets"),
    ("example.org/maintenance", None),
])
def test_pool_taints_never_take_the_platforms(rich_env: Environment, key: str, refused: str | None) -> None:
    taint = models.Taint.model_construct(key=key, value="x", effect=models.TaintEffect.NO_SCHEDULE)
    env = bypass(rich_env, ("node_pools", "agent", "taints"), [taint])
    if refused is None:
        validate._check_pool_keys("node_pools.agent", env.node_pools["agent"])
        return
    with pytest.raises(ConfigError) as caught:
        validate._check_pool_keys("node_pools.agent", env.node_pools["agent"])
    assert caught.value.path == "node_pools.agent.taints[0].key" and refused in str(caught.value)


# --------------------------------------------------------------------------- extends and sites


SECRET_TEXT = "hunter2-never-shown"


@pytest.mark.parametrize(("name", "text"), [
    ("clouds.yaml", f"clouds:\n  cnaf:\n    auth: {{password: {SECRET_TEXT}}}\n"),
    ("kubeconfig.yaml", f"apiVersion: v1\nkind: Config\nusers: [{{name: {SECRET_TEXT}}}]\n"),
    ("broken.yaml", f"site:\n  name: \"{SECRET_TEXT}\n"),
    ("dupes.yaml", f"{SECRET_TEXT}: 1\n{SECRET_TEXT}: 2\n"),
    ("tagged.yaml", f"name: !!int {SECRET_TEXT}\n"),
    ("alias.yaml", f"name: *{SECRET_TEXT}\n"),
    ("escape.yaml", f'name: "\\q{SECRET_TEXT}"\n'),
])
def test_a_named_file_that_is_no_environment_is_never_quoted(tmp_path: Path, name: str, text: str) -> None:
    (tmp_path / name).write_text(text)
    site = tmp_path / "site.yaml"
    site.write_text(f"extends: {name}\nname: x\n")
    with pytest.raises(ConfigError) as caught:
        load(site)
    msg = _one_line(caught.value)
    assert SECRET_TEXT not in msg and "hunter2" not in msg, msg
    for word in ("clouds", "auth", "password", "apiVersion", "users"):
        assert word not in msg.split(": ", 2)[-1].replace(name, ""), msg


def test_extends_outside_the_checkout_and_the_files_directory_is_refused_unread(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "base.yaml").write_text(f"name: {SECRET_TEXT}\n")
    inner = tmp_path / "inner"
    inner.mkdir()
    site = inner / "site.yaml"
    for ref in ("../outside/base.yaml", str(outside / "base.yaml")):
        site.write_text(f"extends: {ref}\nname: x\n")
        with pytest.raises(ConfigError) as caught:
            load(site)
        msg = _one_line(caught.value)
        assert caught.value.path == "extends" and "outside where environments are read from" in msg
        assert SECRET_TEXT not in msg


def test_a_symlink_is_judged_by_where_it_leads(tmp_path: Path) -> None:
    """A link beside the file, to a YAML file elsewhere (or to a file without .yaml), is refused as its target."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "secrets.yaml").write_text(f"name: {SECRET_TEXT}\n")
    (elsewhere / "shadow").write_text(f"root:{SECRET_TEXT}\n")
    here = tmp_path / "here"
    here.mkdir()
    (here / "base.yaml").symlink_to(elsewhere / "secrets.yaml")
    (here / "other.yaml").symlink_to(elsewhere / "shadow")
    for link, reason in (("base.yaml", "outside where environments are read from"),
                         ("other.yaml", "is not a .yaml or .yml file")):
        site = here / "site.yaml"
        site.write_text(f"extends: {link}\nname: x\n")
        with pytest.raises(ConfigError) as caught:
            load(site)
        assert reason in _one_line(caught.value) and SECRET_TEXT not in str(caught.value)


def test_extends_keeps_working_where_environments_live(tmp_path: Path) -> None:
    """The shipped layering (environments/), a file beside this one, and a checkout file from anywhere."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "mixin.yaml").write_text("description: from a mixin beside\n")
    site = tmp_path / "site.yaml"
    site.write_text(f"extends: [{ROOT / 'environments' / 'cnaf.yaml'}, sub/mixin.yaml]\nname: layered\n")
    env = load(site)
    assert env.name == "layered" and env.description == "from a mixin beside"
    assert load(CORPUS / "broken" / ".." / "valid-site.yaml").name == "corpus"


def test_an_events_site_path_follows_the_same_rule(tmp_path: Path) -> None:
    (tmp_path / "far").mkdir()
    (tmp_path / "far" / "clouds.yaml").write_text(f"clouds: {{x: {{auth: {{password: {SECRET_TEXT}}}}}}}\n")
    event = tmp_path / "event.yaml"
    event.write_text("kind: event\nname: ev\nsites: [far/clouds.yaml]\nparticipants: 5\niam_group: ev/users\n"
                     "starts: 2026-06-01\nends: 2026-06-02\nimage: harbor.example.org/ai/nb:1\n")
    with pytest.raises(ConfigError) as caught:
        load(event)
    msg = _one_line(caught.value)
    assert caught.value.path == "sites[0]" and "is not an environment file" in msg and SECRET_TEXT not in msg


# --------------------------------------------------------------------------- artifact sources


@pytest.mark.parametrize(("value", "ok"), [
    ("https://artifacts.example.org/aiinfn/", "https://artifacts.example.org/aiinfn"),
    ("/srv/aiinfn-artifacts/", "/srv/aiinfn-artifacts"),
    ("http://artifacts.example.org/aiinfn", None), ("ftp://x/y", None), ("artifacts", None),
    ("/srv/../etc", None), ("https://user:pw@artifacts.example.org/", None), ("file:///srv/a", None),
    ("/srv/a b", None), ("https://x.example.org/a?b=$(id)", None),
])
def test_artifact_sources_are_https_or_a_local_directory(value: str, ok: str | None) -> None:
    if ok is None:
        with pytest.raises(ValueError):
            models._artifact_source(value)
    else:
        assert models._artifact_source(value) == ok


# --------------------------------------------------------------------------- rendering, validation bypassed

#: Fields that reach cloud-init or the inventory, set with no validation at all.
BYPASSED: list[tuple[tuple[Any, ...], Any]] = [
    (("site", "name"), "{p}"), (("site", "domain"), "{p}"), (("site", "ntp_servers"), ["{p}", "ntp.example.org"]),
    (("site", "ssh_public_key"), "{p}"), (("kubernetes", "cluster_domain"), "{p}"),
    (("kubernetes", "tls_sans"), ["{p}"]), (("node_pools", "agent", "labels"), {"{p}": "{p}"}),
    (("bootstrap", "artifact_source"), "{p}"), (("storage", "backup", "schedule"), "{p}"),
    (("storage", "nfs", "export_path"), "{p}"), (("iam", "client_id"), "{p}"), (("iam", "username_claim"), "{p}"),
    (("services", "harbor", "hostname"), "{p}"),
]


def _fill(template: Any, payload: str) -> Any:
    if isinstance(template, str):
        return template.replace("{p}", payload)
    if isinstance(template, list):
        return [_fill(v, payload) for v in template]
    if isinstance(template, dict):
        return {_fill(k, payload): _fill(v, payload) for k, v in template.items()}
    return template


def _hostile(env: Environment, payload: str) -> Environment:
    out: Any = env
    for path, template in BYPASSED:
        out = bypass(out, path, _fill(template, payload))
    s3 = out.storage.s3
    out = bypass(out, ("storage", "s3"), s3.model_copy(update={"region": payload, "mount_path": payload}))
    users = [u.model_copy(update={"name": payload, "ssh_keys": [payload]}) for u in out.bootstrap.admin_users]
    out = bypass(out, ("bootstrap", "admin_users"), users)
    assert isinstance(out, Environment)
    return out


@pytest.mark.parametrize("payload", sorted(PAYLOADS))
def test_hostile_values_render_inert_even_without_validation(
    rich_env: Environment, payload: str, tmp_path: Path
) -> None:
    """With every validator bypassed, each cloud-init document keeps exactly the template's keys and passes
    Debian's cloud-init schema, and the inventory's values are the literal payload, tagged !unsafe."""
    value = PAYLOADS[payload]
    env = _hostile(rich_env, value)
    assert_inert(env, rich_env, value)
    plan = make_plan(env)
    exe = shutil.which("cloud-init")
    assert exe, "cloud-init is not installed: scripts/install-debian-deps.sh installs it"
    node = plan.node("gpu-a100-01")
    f = tmp_path / "user-data.yaml"
    f.write_text(cloud_init(plan, node), encoding="utf-8")
    res = subprocess.run([exe, "schema", "--config-file", str(f)], capture_output=True, text=True)
    assert res.returncode == 0 and "Valid cloud-config" in res.stdout, res.stdout + res.stderr
    doc = yaml.safe_load(f.read_text(encoding="utf-8"))
    assert doc["ntp"]["servers"][0] == value and doc["users"][0]["ssh_authorized_keys"] == [value]
    assert doc["fqdn"] == f"gpu-a100-01.{value}"
    inv = read_inventory(ansible_inventory(plan, _addresses(env)))
    site = inv["all"]["vars"]
    if needs_unsafe(value):
        assert site["aiinfn_site"] == {UNSAFE_MARKER: value}
        assert site["aiinfn_s3"]["region"] == {UNSAFE_MARKER: value}
        assert site["aiinfn_admin_users"][0]["ssh_keys"] == [{UNSAFE_MARKER: value}]


def test_the_quoting_filters_round_trip_any_text() -> None:
    """``to_yaml``/``to_unsafe_yaml`` give back exactly the text through PyYAML, whatever it holds."""
    samples = [*PAYLOADS.values(), "", "~", "null", "0x20B510DE", "yes", "1e5", "-", "- x", ": x", "#x", "'", '"',
               "\\", "\ufeff", "\x85", "\udc80", "🚀", "\U0010fffe", "\x7f", "a\x1bb"]
    for s in samples:
        for render in (to_yaml, to_unsafe_yaml):
            doc = yaml.load(f"v: {render({'k': [s, {s: s}]})}\n", Loader=_AnsibleLikeLoader)
            assert doc == {"v": {"k": [s, {s: s}]}}, repr(s)
        assert ("!unsafe" in to_unsafe_yaml(s)) == needs_unsafe(s)
        assert "\n" not in to_yaml(s) and "\r" not in to_yaml(s)


def test_strings_left_untagged_are_the_ones_ansible_would_retype() -> None:
    """Ansible 2.19 reads ``!unsafe "0x1F"`` as 31 (it resolves a tagged scalar as if unquoted): the strings
    left untagged are exactly those PyYAML's resolver (Ansible's) or the stricter YAML 1.1 one reads as
    something else, and none of them can hold a template."""
    resolver = yaml.resolver.Resolver()
    for s in ["", "~", "null", "123", "0x20B510DE", "true", "on", "1.5", ".inf", "1:20", "2026-01-01", "0777",
              "abc", "{{ x }}", "cnaf", "10.200.0.0/22", "v1.33.5+rke2r1", "*-*-* 02:30:00", "all"]:
        pyyaml_text = resolver.resolve(yaml.ScalarNode, s, (True, False)) == "tag:yaml.org,2002:str"
        if pyyaml_text is False:
            assert needs_unsafe(s) is False, s
        if needs_unsafe(s) is False:
            assert "{" not in s and "%" not in s


# --------------------------------------------------------------------------- Ansible, for real


ROLE_INPUTS = """\
- name: The role inputs of playbooks/group_vars/all.yml as the roles receive them
  hosts: all
  gather_facts: false
  connection: local
  tasks:
    - name: Write them down
      ansible.builtin.copy:
        dest: "{{ out_dir }}/{{ inventory_hostname }}.json"
        mode: "0600"
        content: >-
          {{ {'site': aiinfn_site, 'ntp': common_ntp_servers, 'admin_users': common_admin_users,
              'labels': rke2_node_labels, 'taints': rke2_node_taints, 'oidc': rke2_oidc,
              'tls_sans': rke2_tls_sans, 'cluster_domain': rke2_cluster_domain,
              'rke2_artifacts': rke2_artifact_source, 'server_url': rke2_server_url,
              'mirror': rke2_registry_mirror, 'nfs_export': nfs_client_export,
              'sts_wire_mounts': sts_wire_mounts, 'backup': aiinfn_backup} | to_json }}
"""


def _lookup(tmp: Path, name: str) -> str:
    return "{{ lookup('pipe', 'touch " + str(tmp / f"PWNED-{name}") + "') }}"


def _armed(env: Environment, tmp: Path) -> tuple[Environment, dict[str, str]]:
    """``env`` with a command-running lookup (or arithmetic) in each field that reaches the roles."""
    p = {n: _lookup(tmp, n) for n in ("site", "ntp", "label", "taint", "artifacts", "region", "mount", "user", "key",
                                     "claim", "domain", "export", "schedule", "mirror")}
    p["math"] = "{{ 7*7 }}"
    out: Any = env
    for path, value in [
        (("site", "name"), p["site"]), (("site", "ntp_servers"), [p["ntp"], "{{ 6*6 }}"]),
        (("node_pools", "a100", "labels"), {"example.org/x": p["label"]}),
        (("bootstrap", "artifact_source"), p["artifacts"]), (("iam", "username_claim"), p["claim"]),
        (("kubernetes", "cluster_domain"), p["domain"]), (("storage", "nfs", "export_path"), p["export"]),
        (("storage", "backup", "schedule"), p["schedule"]), (("services", "harbor", "hostname"), p["mirror"]),
        (("kubernetes", "tls_sans"), [p["math"]]),
    ]:
        out = bypass(out, path, value)
    taint = models.Taint.model_construct(key="example.org/t", value=p["taint"], effect=models.TaintEffect.NO_SCHEDULE)
    out = bypass(out, ("node_pools", "a100", "taints"), [taint])
    s3 = out.storage.s3.model_copy(update={"region": p["region"], "mount_path": p["mount"]})
    out = bypass(out, ("storage", "s3"), s3)
    out = bypass(out, ("bootstrap", "admin_users"), [out.bootstrap.admin_users[0].model_copy(
        update={"name": p["user"], "ssh_keys": [p["key"]]})])
    return out, p


def _found(plan: Any, addresses: dict[str, str]) -> list[dyninv.FoundServer]:
    net = dyninv.site_network(plan)
    return [dyninv.FoundServer(n.name, dyninv.expected_tags(plan, n),
                               {net: [{"addr": addresses[n.name], "version": 4}]}) for n in plan.nodes]


@pytest.mark.parametrize("source", ["rendered-yaml", "dynamic-script"])
def test_ansible_never_templates_the_plans_values(rich_env: Environment, tmp_path: Path, source: str) -> None:
    env, p = _armed(rich_env, tmp_path)
    plan = make_plan(env)
    addresses = _addresses(env)
    if source == "rendered-yaml":
        inventory = tmp_path / "inventory.yaml"
        inventory.write_text(ansible_inventory(plan, addresses))
    else:  # the document inventory/openstack.py prints, served to Ansible's script plugin
        doc = dyninv.build(plan, _found(plan, addresses)).ansible_list()
        listing = tmp_path / "list.json"
        listing.write_text(json.dumps(doc))
        inventory = tmp_path / "inventory.py"
        inventory.write_text(f"#!{sys.executable}\nimport sys\nif sys.argv[1:] == ['--list']:\n"
                             f"    sys.stdout.write(open({str(listing)!r}).read())\nelse:\n    print('{{}}')\n")
        inventory.chmod(0o700)
    play_dir = tmp_path / "play"
    play_dir.mkdir()
    (play_dir / "group_vars").symlink_to(ROOT / "playbooks" / "group_vars")
    (play_dir / "inputs.yml").write_text(ROLE_INPUTS)
    out = tmp_path / "out"
    out.mkdir()
    env_vars = {**os.environ, **runner.ansible_env(), "ANSIBLE_HOME": str(tmp_path / ".ansible"),
                "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    res = subprocess.run(
        [str(BIN / "ansible-playbook"), "-i", str(inventory), str(play_dir / "inputs.yml"), "--limit", "gpu-a100-01",
         "-e", json.dumps({"out_dir": str(out), "ansible_python_interpreter": sys.executable})],
        capture_output=True, text=True, env=env_vars, cwd=tmp_path, timeout=300,
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    assert not list(tmp_path.glob("PWNED-*")), "a lookup in an environment value ran on the operator's machine"
    got = json.loads((out / "gpu-a100-01.json").read_text())
    assert got["site"] == p["site"]
    assert got["ntp"] == [p["ntp"], "{{ 6*6 }}"]
    assert got["admin_users"] == [{"name": p["user"], "ssh_keys": [p["key"]], "sudo": True}]
    assert got["labels"]["example.org/x"] == p["label"]
    assert {"key": "example.org/t", "value": p["taint"], "effect": "NoSchedule"} in got["taints"]
    assert got["oidc"]["username_claim"] == p["claim"] and got["tls_sans"] == [p["math"]]
    assert got["cluster_domain"] == p["domain"] and got["nfs_export"] == p["export"]
    assert got["backup"]["schedule"] == p["schedule"] and got["mirror"] == p["mirror"]
    # the playbooks' own expressions still work on these values: concatenation, hostvars, combine
    assert got["rke2_artifacts"] == p["artifacts"] + "/rke2"
    first = plan.nodes[0].name
    assert got["server_url"] == f"https://{addresses[first]}:9345"
    assert got["sts_wire_mounts"] == [{"name": "datasets", "bucket": "datasets", "mount_path": "/data/datasets",
                                       "endpoint": "https://s3.example.org", "region": p["region"],
                                       "role": "IAMaccess"}]


def test_the_dynamic_inventory_reads_as_the_rendered_one(rich_env: Environment, tmp_path: Path) -> None:
    """ansible-inventory --list of the script's JSON equals that of the rendered YAML, markers included."""
    env, _p = _armed(rich_env, tmp_path)
    plan = make_plan(env)
    addresses = _addresses(env)
    found = dyninv.build(plan, _found(plan, addresses))
    assert plain(found.ansible_list())["all"]["vars"]["aiinfn_site"] == env.site.name
    yaml_inv = tmp_path / "inventory.yaml"
    yaml_inv.write_text(found.yaml())
    listing = tmp_path / "list.json"
    listing.write_text(json.dumps(found.ansible_list()))
    script = tmp_path / "inventory.py"
    script.write_text(f"#!{sys.executable}\nimport sys\nif sys.argv[1:] == ['--list']:\n"
                      f"    sys.stdout.write(open({str(listing)!r}).read())\nelse:\n    print('{{}}')\n")
    script.chmod(0o700)
    env_vars = {**os.environ, "ANSIBLE_HOME": str(tmp_path / ".ansible"), "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true"}
    docs = []
    for source in (yaml_inv, script):
        res = subprocess.run([str(BIN / "ansible-inventory"), "-i", str(source), "--list"], capture_output=True,
                             text=True, env=env_vars, timeout=300)
        assert res.returncode == 0, res.stderr[-2000:]
        docs.append(json.loads(res.stdout))
    assert docs[0] == docs[1]
    assert not list(tmp_path.glob("PWNED-*"))


def test_secrets_reach_the_play_literally_from_a_private_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """run_playbook (what `aiinfn bootstrap` uses): a passphrase ``{{ 7*7 }}`` and a lookup reach the task as
    written; they travel in a 0600 env/extravars (every string !unsafe) in a 0700 directory removed after
    the run, never on ansible-playbook's command line."""
    import ansible_runner

    secret = "{{ 7*7 }}"
    lookup = _lookup(tmp_path, "secret")
    out = tmp_path / "secret.txt"
    playbook = tmp_path / "secret.yml"
    playbook.write_text(
        "- name: A role that uses a secret\n  hosts: all\n  gather_facts: false\n  tasks:\n"
        "    - name: Write it\n      ansible.builtin.copy:\n        dest: \"{{ out_file }}\"\n        mode: \"0600\"\n"
        "        content: \"{{ borgbackup_passphrase }}|{{ sts_wire_client_secret }}|{{ nested.a[0] }}\"\n")
    seen: dict[str, Any] = {}
    real_run = ansible_runner.run

    def spy(**kwargs: Any) -> Any:
        private = Path(kwargs["private_data_dir"])
        extravars = private / "env" / "extravars"
        seen["mode"] = extravars.stat().st_mode & 0o777
        seen["dir_mode"] = private.stat().st_mode & 0o777
        seen["text"] = extravars.read_text()
        seen["kwargs"] = {k: v for k, v in kwargs.items() if k != "event_handler"}
        seen["private"] = private
        r = real_run(**kwargs)
        seen["command"] = list(r.config.command)
        return r

    monkeypatch.setattr(ansible_runner, "run", spy)
    inventory = {"all": {"hosts": {"localhost": {"ansible_connection": "local",
                                                 "ansible_python_interpreter": sys.executable}}}}
    result = runner.run_playbook(playbook, inventory, extravars={
        "borgbackup_passphrase": secret, "sts_wire_client_secret": lookup, "nested": {"a": ["{{ 1+1 }}"]},
        "out_file": str(out)})
    assert result.ok, result.failures
    assert out.read_text() == f"{secret}|{lookup}|{{{{ 1+1 }}}}"
    assert not list(tmp_path.glob("PWNED-*"))
    assert seen["mode"] == 0o600 and seen["dir_mode"] == 0o700
    assert f'"borgbackup_passphrase": !unsafe "{secret}"' in seen["text"]
    assert "extravars" not in seen["kwargs"] and "cmdline" not in seen["kwargs"]
    command = " ".join(seen["command"])
    assert secret not in command and lookup not in command and "7*7" not in command
    assert f"@{seen['private'] / 'env' / 'extravars'}" in command
    assert not seen["private"].exists()


def test_an_extra_variable_that_is_no_variable_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(runner.ExtraVarsError) as caught:
        runner.run_playbook(tmp_path / "x.yml", {"all": {}}, extravars={"a b": "x"})
    assert "extra variable 'a b': not a variable name" in str(caught.value)
    assert caught.value.exit_code == 2
