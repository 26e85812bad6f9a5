"""`aiinfn diff`: what an operator reads before `pulumi up`, checked against plans of the real program.

Two offline plans of cnaf (as shipped, and with one more T4 node) and two of a temporary git checkout
(at a ref, and its working tree) back every test; the replacement rules are exercised by editing copies
of the shipped plan the way a changed environment or program would change it. The expectations are
computed from the URN naming scheme and the environment file, never from the diff code. Gap, as for
every offline plan: the mock runtime has no cloud, so provider defaults and drift are not part of any
diff.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from ruamel.yaml import YAML
from typer.testing import CliRunner

from aiinfn import diff, preview
from aiinfn.cli.diff import register
from aiinfn.errors import AiinfnError, ConfigError

Doc = dict[str, Any]
STACK = "cnaf"
NEW_NODE = "gpu-t4-03"
NODE_URN = f"urn:pulumi:{STACK}::aiinfn::aiinfn:infra:Infra$aiinfn:infra:Node"


def _yaml(path: Path) -> Any:
    return YAML(typ="safe", pure=True).load(path.read_text())


def _write_env(path: Path, data: dict[str, Any]) -> Path:
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    with path.open("w") as f:
        yaml.dump(data, f)
    return path


@pytest.fixture(scope="module")
def cnaf_yaml(root: Path) -> dict[str, Any]:
    data: dict[str, Any] = _yaml(root / "environments" / "cnaf.yaml")
    return data


@pytest.fixture(scope="module")
def base(root: Path) -> preview.Preview:
    """The shipped cnaf site, planned once."""
    return preview.build(root / "environments" / "cnaf.yaml")


@pytest.fixture(scope="module")
def grown_file(tmp_path_factory: pytest.TempPathFactory, root: Path, cnaf_yaml: dict[str, Any]) -> Path:
    """cnaf with its t4 pool at 3 nodes (and a third T4 host to hold the VM), layered with `extends`."""
    hosts = copy.deepcopy(cnaf_yaml["site"]["hosts"])
    for h in hosts:
        if h["name"] == "hv-t4":
            h["count"] = h.get("count", 1) + 1
    data = {"extends": str(root / "environments" / "cnaf.yaml"), "site": {"hosts": hosts},
            "node_pools": {"t4": {"count": cnaf_yaml["node_pools"]["t4"]["count"] + 1}}}
    return _write_env(tmp_path_factory.mktemp("envs") / "cnaf-t4-3.yaml", data)


@pytest.fixture(scope="module")
def grown(grown_file: Path) -> preview.Preview:
    return preview.build(grown_file, stack=STACK)


@pytest.fixture(scope="module")
def one_node(base: preview.Preview, grown: preview.Preview) -> diff.PlanDiff:
    return diff.diff(base.document(), grown.document())


def _by_action(d: diff.PlanDiff, action: str) -> set[str]:
    return {r.urn for r in d.resources if r.action == action}


def _res(doc: Doc, name: str) -> dict[str, Any]:
    hits = [r for r in doc["resources"] if r["name"] == name]
    assert len(hits) == 1, name
    return hits[0]


def _pick(doc: Doc, kind: str, name: str = "") -> dict[str, Any]:
    """The one resource of this kind (last part of its type) whose own name (Kubernetes ``metadata.name``,
    a release's ``name``) or Pulumi name contains ``name``."""
    def names(r: dict[str, Any]) -> str:
        inputs = r["inputs"]
        return f"{r['name']} {(inputs.get('metadata') or {}).get('name', '')} {inputs.get('name', '')}"

    hits = [r for r in doc["resources"] if r["type"].endswith(f":{kind}") and name in names(r)]
    assert len(hits) == 1, (kind, name, [r["name"] for r in hits])
    return hits[0]


def _queue(doc: Doc, queue: str) -> dict[str, Any]:
    return next(r for r in doc["resources"] if r["type"].endswith(":ClusterQueue")
                and r["inputs"]["metadata"]["name"] == queue)


def _one(d: diff.PlanDiff, name: str) -> diff.ResourceChange:
    hits = [r for r in d.resources if r.name == name]
    assert len(hits) == 1, [r.short for r in d.resources]
    return hits[0]


# --------------------------------------------------------------------------- no change, one more node


def test_identical_plans_are_no_change(base: preview.Preview) -> None:
    d = diff.diff(base.document(), copy.deepcopy(base.document()))
    assert not d.changed
    assert d.resources == [] and d.capacity == d.queues == d.profiles == d.nodes == []
    assert d.summary_line() == "0 to add, 0 to change, 0 to replace, 0 to delete"


def test_one_more_node_adds_exactly_that_nodes_resources(one_node: diff.PlanDiff, grown: preview.Preview) -> None:
    # From the naming scheme: the node's component `<site>-<node>` under Infra, and its children
    # `<site>-<node>-<part>` under it (a GPU node without a floating IP: its port and its VM).
    component = f"{NODE_URN}::cnaf-{NEW_NODE}"
    expected = {component, f"{NODE_URN}$openstack:networking/port:Port::cnaf-{NEW_NODE}-port",
                f"{NODE_URN}$openstack:compute/instance:Instance::cnaf-{NEW_NODE}-vm"}
    in_plan = {r["urn"] for r in grown.document()["resources"]}
    assert expected <= in_plan
    assert {r["urn"] for r in grown.document()["resources"] if r["parent"] == component} == expected - {component}
    assert _by_action(one_node, "create") == expected
    assert _by_action(one_node, "delete") == set() and _by_action(one_node, "replace") == set()
    assert one_node.summary_line() == "3 to add, 4 to change, 0 to replace, 0 to delete"


def test_one_more_node_moves_only_the_t4_quotas_and_the_cpu_pool(
    one_node: diff.PlanDiff, cnaf_yaml: dict[str, Any], base: preview.Preview
) -> None:
    t4 = cnaf_yaml["node_pools"]["t4"]
    before, after = t4["count"] * 4, (t4["count"] + 1) * 4
    shares = {p: s["shares"]["T4"] for p, s in cnaf_yaml["projects"].items() if "T4" in s["shares"]}
    moved = {p for p, s in shares.items() if math.floor(s * before) != math.floor(s * after)}
    # Only the queues whose quota moves: every project whose floor(share x units) changes, and
    # `interactive` (the shared T4 units and all CPU and memory). The hub is untouched: its spawn form
    # counts free units live (services/jupyterhub.py), so no profile text carries the platform's total.
    doc = base.document()
    updated = {r.urn for r in one_node.resources if r.action == "update"}
    assert updated == {_queue(doc, q)["urn"] for q in {"interactive", *moved}}

    assert [c.key for c in one_node.capacity] == ["T4"]
    units = {c.path: (c.old, c.new) for c in one_node.capacity[0].fields}
    assert units["units"] == (before, after)
    assert units[f"nodes.{NEW_NODE}"] == (diff.ABSENT, 4)

    quotas = {(q.key, c.path): (c.old, c.new) for q in one_node.queues for c in q.fields}
    for p in moved:
        assert quotas.pop((p, 't4["nvidia.com/gpu"].nominalQuota')) == (
            math.floor(shares[p] * before), math.floor(shares[p] * after))
    shared = (before - sum(math.floor(s * before) for s in shares.values()),
              after - sum(math.floor(s * after) for s in shares.values()))
    assert quotas.pop(("interactive", 't4["nvidia.com/gpu"].nominalQuota')) == shared
    cpu_old, cpu_new = quotas.pop(("interactive", "cpu.cpu.nominalQuota"))
    flavor = cnaf_yaml["flavors"][t4["flavor"]]
    assert cpu_new - cpu_old == flavor["vcpus"] - 1  # the new node's CPUs minus the one kept per node
    mem_old, mem_new = quotas.pop(("interactive", "cpu.memory.nominalQuota"))
    assert diff.quantity(mem_new) > diff.quantity(mem_old)  # type: ignore[operator]
    assert quotas == {}, quotas

    assert one_node.profiles == []
    assert [(n.key, n.change) for n in one_node.nodes] == [(NEW_NODE, "added")]
    added = {c.path: c.new for c in one_node.nodes[0].fields}
    assert {k: added[k] for k in ("pool", "role", "flavor")} == {"pool": "t4", "role": "gpu", "flavor": t4["flavor"]}


def test_diff_json_is_stable_and_holds_no_secret_value(one_node: diff.PlanDiff, base: preview.Preview) -> None:
    doc = one_node.document()
    text = json.dumps(doc, sort_keys=True)
    assert json.loads(text) == doc and json.dumps(json.loads(text), sort_keys=True) == text
    assert preview.OFFLINE_SECRET not in text
    assert doc["summary"] == {"add": 3, "change": 4, "replace": 0, "delete": 0} and doc["changed"] is True


# --------------------------------------------------------------------------- replacement rules


def _edited(base: preview.Preview, edit: Callable[[Doc], None]) -> diff.PlanDiff:
    old = base.document()
    new = copy.deepcopy(old)
    edit(new)
    return diff.diff(old, new)


def test_instance_flavor_change_is_a_resize_in_place_not_a_replacement(base: preview.Preview) -> None:
    # terraform-provider-openstack: flavor_id is not ForceNew; Update resizes and confirms.
    def edit(doc: Doc) -> None:
        vm = _res(doc, "cnaf-gpu-t4-01-vm")["inputs"]
        vm["flavorId"] = vm["flavorId"].replace("gpu-t4x4", "gpu-a30x1")
        for node in doc.get("nodes") or []:  # plans that list their nodes say it there too
            if node["name"] == "gpu-t4-01":
                node["flavor"] = "gpu-a30x1"

    d = _edited(base, edit)
    vm = _one(d, "cnaf-gpu-t4-01-vm")
    assert vm.action == "update" and [c.path for c in vm.changes] == ["flavorId"]
    assert any("resize" in n and "restarts" in n for n in vm.notes), vm.notes
    assert [(n.key, [(c.path, c.old, c.new) for c in n.fields]) for n in d.nodes] == [
        ("gpu-t4-01", [("flavor", "gpu-t4x4", "gpu-a30x1")])]


def test_changing_a_flavor_replaces_it_and_resizes_every_vm_of_that_flavor(base: preview.Preview) -> None:
    d = _edited(base, lambda doc: _res(doc, "cnaf-flavors-gpu-t4x4")["inputs"].update(vcpus=30))
    flavor = _one(d, "cnaf-flavors-gpu-t4x4")
    assert flavor.action == "replace" and [r.path for r in flavor.reasons] == ["vcpus"]
    assert any("names are unique" in n for n in flavor.notes)  # create-before-delete would collide
    vms = {r.name for r in d.resources if r.type == "openstack:compute/instance:Instance"}
    assert vms == {"cnaf-gpu-t4-01-vm", "cnaf-gpu-t4-02-vm"}
    for name in vms:
        vm = _one(d, name)
        assert vm.action == "update" and any("resize" in n for n in vm.notes)


def test_a_ports_network_change_replaces_the_port_and_its_vm(base: preview.Preview) -> None:
    def edit(doc: Doc) -> None:
        _res(doc, "cnaf-gpu-t4-01-port")["inputs"]["networkId"] = "other-net-0123abcd"

    d = _edited(base, edit)
    assert _by_action(d, "replace") == {_res(base.document(), n)["urn"]
                                        for n in ("cnaf-gpu-t4-01-port", "cnaf-gpu-t4-01-vm")}
    port, vm = _one(d, "cnaf-gpu-t4-01-port"), _one(d, "cnaf-gpu-t4-01-vm")
    assert [(r.path, r.kind) for r in port.reasons] == [("networkId", "force-new")]
    assert [(r.path, r.kind) for r in vm.reasons] == [("networks[0].port", "replaced-dependency")]
    assert "creates the new one first, then deletes the old one" in port.notes
    assert d.summary_line() == "0 to add, 0 to change, 2 to replace, 0 to delete"


def test_delete_before_replace_is_reported(base: preview.Preview) -> None:
    def edit(doc: Doc) -> None:
        port = _res(doc, "cnaf-gpu-t4-01-port")
        port["inputs"]["networkId"], port["delete_before_replace"] = "other-net-0123abcd", True

    port = _one(_edited(base, edit), "cnaf-gpu-t4-01-port")
    assert port.delete_before_replace and "deletes the old one first, then creates the new one" in port.notes


def test_shrinking_a_data_volume_needs_a_replacement_growing_it_is_an_extend(base: preview.Preview) -> None:
    size = _res(base.document(), "cnaf-stateful-nfs-data")["inputs"]["size"]
    shrunk = _edited(base, lambda doc: _res(doc, "cnaf-stateful-nfs-data")["inputs"].update(size=size // 2))
    vol = _one(shrunk, "cnaf-stateful-nfs-data")
    assert vol.action == "replace" and vol.required
    assert [(r.path, r.kind) for r in vol.reasons] == [("size", "refused-decrease")]
    assert any("cannot shrink" in r.why for r in vol.reasons)
    assert any(n.startswith("protected") for n in vol.notes)  # and `pulumi up` would refuse anyway
    assert _one(shrunk, "cnaf-stateful-nfs-data-attach").action == "replace"  # the attachment follows the ID

    grown = _edited(base, lambda doc: _res(doc, "cnaf-stateful-nfs-data")["inputs"].update(size=size * 2))
    vol = _one(grown, "cnaf-stateful-nfs-data")
    assert vol.action == "update" and any("extend" in n for n in vol.notes)
    assert grown.summary_line() == "0 to add, 1 to change, 0 to replace, 0 to delete"


@pytest.mark.parametrize(
    ("kind", "name", "path", "value", "action"),
    [
        ("Job", "", ("spec", "backoffLimit"), 3, "update"),
        ("Job", "", ("spec", "template", "spec", "restartPolicy"), "Never", "replace"),  # the template is immutable
        ("StorageClass", "juicefs", ("reclaimPolicy",), "Delete", "replace"),
        ("StorageClass", "juicefs", ("allowVolumeExpansion",), False, "update"),
        ("PersistentVolumeClaim", "hub", ("spec", "resources", "requests", "storage"), "1Gi", "replace"),  # no shrink
        ("PersistentVolumeClaim", "hub", ("spec", "resources", "requests", "storage"), "50Gi", "update"),
        ("PersistentVolumeClaim", "hub", ("spec", "storageClassName"), "juicefs", "replace"),
        ("Release", "jupyterhub", ("namespace",), "hub", "replace"),
        ("Release", "jupyterhub", ("version",), "9.9.9", "update"),
        ("ClusterQueue", "astro", ("metadata", "name"), "astro2", "replace"),
        ("RandomPassword", "rke2-token", ("length",), 64, "replace"),
        ("Keypair", "", ("publicKey",), "ssh-ed25519 AAAA other", "replace"),
        ("ServerGroup", "", ("policies",), "soft-anti-affinity", "replace"),
        ("Subnet", "", ("dnsNameservers",), ["192.0.2.53"], "update"),
        ("FloatingIp", "bastion", ("pool",), "other-public", "replace"),
    ],
)
def test_replacement_rules_of_the_providers(
    base: preview.Preview, kind: str, name: str, path: tuple[str, ...], value: Any, action: str
) -> None:
    def edit(doc: Doc) -> None:
        node = _pick(doc, kind, name)["inputs"]
        for p in path[:-1]:
            node = node[p]
        node[path[-1]] = value

    d = _edited(base, edit)
    urn = _pick(base.document(), kind, name)["urn"]
    assert {r.urn: r.action for r in d.resources}.get(urn) == action, [(r.short, r.action) for r in d.resources]


def test_kubernetes_objects_keeping_their_name_are_deleted_first(base: preview.Preview) -> None:
    def edit(doc: Doc) -> None:
        _pick(doc, "StorageClass", "juicefs")["inputs"]["provisioner"] = "csi.example.org"

    sc = _one(_edited(base, edit), _pick(base.document(), "StorageClass", "juicefs")["name"])
    assert sc.action == "replace" and sc.delete_before_replace


def test_replace_on_changes_always_replaces(base: preview.Preview) -> None:
    def edit(doc: Doc) -> None:
        q = _queue(doc, "astro")
        q["replace_on_changes"] = ["spec"]
        q["inputs"]["spec"]["queueingStrategy"] = "StrictFIFO"

    q = _one(_edited(base, edit), _queue(base.document(), "astro")["name"])
    assert q.action == "replace" and [(r.path, r.kind) for r in q.reasons] == [
        ("spec.queueingStrategy", "replace-on-changes")]


def test_ignore_changes_are_not_changes(base: preview.Preview) -> None:
    vm = _res(base.document(), "cnaf-gpu-t4-01-vm")
    assert "userData" in vm["ignore_changes"]  # the program's policy: new cloud-init for new nodes only

    def new_user_data(doc: Doc) -> None:
        _res(doc, "cnaf-gpu-t4-01-vm")["inputs"]["userData"] += "\n# changed\n"

    assert not _edited(base, new_user_data).changed

    def without_ignore(doc: Doc) -> None:
        new_user_data(doc)
        _res(doc, "cnaf-gpu-t4-01-vm")["ignore_changes"] = []

    d = _edited(base, without_ignore)
    vm_change = _one(d, "cnaf-gpu-t4-01-vm")
    assert vm_change.action == "replace" and [r.path for r in vm_change.reasons] == ["userData"]  # ForceNew
    assert vm_change.options == [diff.Change("ignore_changes", sorted(vm["ignore_changes"]), [])]


def test_a_secret_is_never_compared_or_shown_by_value(base: preview.Preview) -> None:
    old = base.document()
    secret = next(r for r in old["resources"] if r["inputs"].get("stringData") == diff.SECRET)

    def edit(doc: Doc) -> None:
        target = _res(doc, secret["name"])
        target["inputs"]["stringData"] = diff.SECRET  # another secret value: the plan cannot tell
        target["inputs"]["metadata"]["labels"] = {"rotated": "yes"}

    d = _edited(base, edit)
    change = _one(d, secret["name"])
    assert [c.path for c in change.changes] == ["metadata.labels"]  # the secret itself is no change
    text = json.dumps(d.document())
    assert preview.OFFLINE_SECRET not in text

    def to_plain(doc: Doc) -> None:
        _res(doc, secret["name"])["inputs"]["stringData"] = {"key": diff.SECRET}

    c = _one(_edited(base, to_plain), secret["name"])
    assert [(x.path, x.old, x.new) for x in c.changes] == [("stringData", diff.SECRET, {"key": diff.SECRET})]
    assert c.action == "replace"  # a Secret's data is replaced (pulumi-kubernetes, enableSecretMutable unset)


def test_deleting_a_protected_volume_is_flagged(base: preview.Preview) -> None:
    def edit(doc: Doc) -> None:
        doc["resources"] = [r for r in doc["resources"] if r["name"] != "cnaf-stateful-borg-repo"]

    vol = _one(_edited(base, edit), "cnaf-stateful-borg-repo")
    assert vol.action == "delete"
    assert any(n.startswith("protected") for n in vol.notes) and any("retain_on_delete" in n for n in vol.notes)


def test_an_alias_is_a_rename_not_a_delete_and_create(base: preview.Preview) -> None:
    keypair = _pick(base.document(), "Keypair")
    old_urn = keypair["urn"]

    def edit(doc: Doc) -> None:
        kp = _pick(doc, "Keypair")
        kp["urn"], kp["name"], kp["aliases"] = old_urn.rsplit("::", 1)[0] + "::cnaf-ssh", "cnaf-ssh", [old_urn]

    d = _edited(base, edit)
    assert [(r.short, r.action, r.renamed_from) for r in d.resources] == [("Keypair cnaf-ssh", "update", old_urn)]


def test_nodes_come_from_the_plans_nodes_list_when_both_have_one(base: preview.Preview) -> None:
    old = base.document()
    nodes = [{"name": i["inputs"]["name"], "pool": i["inputs"]["metadata"]["aiinfn:pool"], "role": "gpu",
              "flavor": "f", "accelerator": "T4", "accelerator_count": 4, "mig_config": "none",
              "labels": {}, "taints": []}
             for i in old["resources"] if i["type"] == "openstack:compute/instance:Instance"]
    old = {**old, "nodes": nodes, "scope": "site"}
    new = copy.deepcopy(old)
    new["nodes"][0]["labels"] = {"x": "y"}
    d = diff.diff(old, new)
    assert [(n.key, [c.path for c in n.fields]) for n in d.nodes] == [(nodes[0]["name"], ['labels.x'])]
    assert d.scope == "site"


# --------------------------------------------------------------------------- baselines


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=aiinfn tests", "-c", "user.email=tests@example.invalid",
                    "-c", "commit.gpgsign=false", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory, root: Path) -> Path:
    """A git checkout of the project's environments/, tagged along its history: ``no-envs`` (none),
    ``base-only`` (base.yaml), ``broken`` (every environment, cnaf broken), then HEAD (every environment as
    shipped); today's stacks/, templates/ and Pulumi*.yaml beside it."""
    repo = tmp_path_factory.mktemp("repo")
    _git(repo, "init", "-q")
    (repo / "README").write_text("no environments yet\n")
    _git(repo, "add", "README")
    _git(repo, "commit", "-q", "-m", "start")
    _git(repo, "tag", "no-envs")
    (repo / "environments").mkdir()
    shutil.copy(root / "environments" / "base.yaml", repo / "environments" / "base.yaml")
    _git(repo, "add", "environments")
    _git(repo, "commit", "-q", "-m", "base only")
    _git(repo, "tag", "base-only")
    shutil.rmtree(repo / "environments")
    shutil.copytree(root / "environments", repo / "environments")
    cnaf = repo / "environments" / "cnaf.yaml"
    shipped = cnaf.read_text()
    cnaf.write_text(shipped.replace("mig: {1g.10gb: 7}", "mig: [3g.30gb]"))
    _git(repo, "add", "-A", "environments")
    _git(repo, "commit", "-q", "-m", "every environment, cnaf broken")
    _git(repo, "tag", "broken")
    cnaf.write_text(shipped)
    _git(repo, "add", "-A", "environments")
    _git(repo, "commit", "-q", "-m", "cnaf fixed")
    for entry in root.iterdir():
        if entry.name in ("stacks", "templates") or (entry.name.startswith("Pulumi") and entry.suffix == ".yaml"):
            (repo / entry.name).symlink_to(entry)
    return repo


def test_against_head_of_an_unchanged_tree_is_no_change(repo: Path) -> None:
    c = diff.compare_with_git_ref("cnaf", "HEAD", root=repo)
    assert c.baseline == "HEAD:environments/cnaf.yaml"
    assert not c.result.changed, c.result.summary_line()
    assert c.old["resources"] == c.new["resources"]


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("no-such-ref", "'no-such-ref' is not a commit"),
        ("base-only", "environments/cnaf.yaml does not exist at base-only"),
        ("no-envs", "no environments/ directory at no-envs"),
        ("--output=x", "is not a git ref"),
    ],
)
def test_against_a_ref_without_the_environment_is_one_clear_line(repo: Path, ref: str, message: str) -> None:
    with pytest.raises(diff.DiffError) as e:
        diff.compare_with_git_ref("cnaf", ref, root=repo)
    assert message in str(e.value) and "\n" not in str(e.value) and e.value.exit_code == 1


def test_an_environment_broken_at_the_ref_is_named_by_ref_and_field(repo: Path) -> None:
    with pytest.raises(ConfigError) as e:
        diff.compare_with_git_ref("cnaf", "broken", root=repo)
    assert str(e.value).startswith("broken:environments/cnaf.yaml: node_pools.a100.mig[0]: '3g.30gb'"), str(e.value)


def test_against_needs_an_environment_under_environments(repo: Path, grown_file: Path) -> None:
    with pytest.raises(diff.DiffError, match=r"is not under .*environments: --against compares"):
        diff.compare_with_git_ref(grown_file, "HEAD", root=repo)


def test_against_outside_a_git_checkout_is_one_clear_line(
    tmp_path: Path, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    shutil.copytree(root / "environments", tmp_path / "environments")
    with pytest.raises(diff.DiffError, match="is not a git checkout"):
        diff.compare_with_git_ref("cnaf", "HEAD", root=tmp_path)


# --------------------------------------------------------------------------- the command


@pytest.fixture
def cli(
    monkeypatch: pytest.MonkeyPatch, base: preview.Preview, grown: preview.Preview, grown_file: Path, root: Path
) -> Iterator[Callable[..., Any]]:
    """Run `aiinfn diff` through typer, with the module's plans reused (planning is tested above)."""
    plans = {"cnaf": base, str(root / "environments" / "cnaf.yaml"): base, str(grown_file): grown}
    real = preview.build

    def build(ref: str | Path, *, stack: str | None = None, root: Path | None = None) -> preview.Preview:
        hit = plans.get(str(ref))
        return hit if hit is not None and root is None and stack in (None, STACK) else real(ref, stack=stack, root=root)

    monkeypatch.setattr(preview, "build", build)
    app = typer.Typer()
    register(app)
    app.callback()(lambda: None)

    def run(*args: str) -> Any:
        return CliRunner().invoke(app, ["diff", *args], env={"COLUMNS": "250"})

    yield run


def _baseline(build_dir: Path, doc: Doc) -> Path:
    (build_dir / "cnaf").mkdir(parents=True, exist_ok=True)
    path = build_dir / "cnaf" / "plan.json"
    path.write_text(json.dumps(doc))
    return path


def test_cli_no_change_exits_0_with_exit_code(cli: Callable[..., Any], base: preview.Preview, tmp_path: Path) -> None:
    plan = _baseline(tmp_path, base.document())
    before = plan.stat().st_mtime_ns
    res = cli("cnaf", "--build-dir", str(tmp_path), "--exit-code")
    assert res.exit_code == 0, res.output
    assert "No changes. 0 to add, 0 to change, 0 to replace, 0 to delete" in res.output
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["cnaf", "plan.json"]  # diff writes nothing
    assert plan.stat().st_mtime_ns == before


def test_cli_without_build_dir_reads_where_plan_writes_from_any_directory(
    cli: Callable[..., Any], base: preview.Preview, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`aiinfn plan cnaf` then `aiinfn diff cnaf`, neither told where: the diff finds the plan the plan wrote
    (the project's build/, by config.loader.default_build_dir, pointed here at a temporary directory), even
    when the diff runs in another directory, where a relative ``build/`` would hold nothing."""
    from aiinfn.config import loader

    project_build = tmp_path / "project-build"
    monkeypatch.setattr(loader, "default_build_dir", lambda: project_build)
    preview.write(base, loader.default_build_dir())  # what `aiinfn plan cnaf` writes
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    res = cli("cnaf", "--exit-code")
    assert res.exit_code == 0, res.output
    assert "No changes." in res.output
    assert not (elsewhere / "build").exists()


def test_cli_one_more_node_table_and_exit_2(
    cli: Callable[..., Any], base: preview.Preview, grown_file: Path, tmp_path: Path
) -> None:
    _baseline(tmp_path, base.document())
    res = cli(str(grown_file), "--build-dir", str(tmp_path), "--exit-code")
    assert res.exit_code == 2, res.output
    lines = res.output.splitlines()
    assert lines[-1] == "3 to add, 4 to change, 0 to replace, 0 to delete"
    table = " ".join(res.output.split())  # cells without their padding
    lhc = _queue(base.document(), "lhc-ml")["name"]
    for text in (
        f"+ create │ Node cnaf-{NEW_NODE} │", f"+ create │ Port cnaf-{NEW_NODE}-port │",
        f"+ create │ Instance cnaf-{NEW_NODE}-vm │",
        f"~ update │ ClusterQueue {lhc} │ "
        "spec.resourceGroups[1].flavors[0].resources[0].nominalQuota: 2 -> 3",
        "│ T4 │ changed │ 8 -> 12 (+4) │",
        "│ lhc-ml │ t4 │ nvidia.com/gpu │ nominalQuota │ 2 -> 3 (+1) │",
        f"│ {NEW_NODE} │ added │",
    ):
        assert text in table, (text, res.output)
    assert cli(str(grown_file), "--build-dir", str(tmp_path)).exit_code == 0  # without --exit-code


def test_cli_json_is_the_whole_diff_with_sorted_keys(
    cli: Callable[..., Any], base: preview.Preview, grown_file: Path, tmp_path: Path
) -> None:
    _baseline(tmp_path, base.document())
    res = cli(str(grown_file), "--build-dir", str(tmp_path), "-o", "json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert res.stdout == json.dumps(doc, indent=2, sort_keys=True) + "\n"
    assert doc["baseline"] == str(tmp_path / "cnaf" / "plan.json")
    assert doc["summary"] == {"add": 3, "change": 4, "replace": 0, "delete": 0}
    assert {r["name"] for r in doc["resources"] if r["action"] == "create"} == {
        f"cnaf-{NEW_NODE}", f"cnaf-{NEW_NODE}-port", f"cnaf-{NEW_NODE}-vm"}


@pytest.mark.parametrize("content", [None, "{not json", '{"toolkit": {}}'])
def test_cli_missing_or_unreadable_baseline_is_one_line(
    cli: Callable[..., Any], tmp_path: Path, content: str | None
) -> None:
    if content is not None:
        (tmp_path / "cnaf").mkdir()
        (tmp_path / "cnaf" / "plan.json").write_text(content)
    res = cli("cnaf", "--build-dir", str(tmp_path), "--exit-code")
    assert isinstance(res.exception, AiinfnError), res.output
    message = str(res.exception)
    assert "\n" not in message and res.exception.exit_code == 1
    assert "`aiinfn plan cnaf`" in message and "--against" in message


def test_cli_refuses_a_last_plan_of_another_stack(
    cli: Callable[..., Any], base: preview.Preview, tmp_path: Path
) -> None:
    _baseline(tmp_path, {**base.document(), "stack": "cnaf-staging"})
    res = cli("cnaf", "--build-dir", str(tmp_path))
    assert isinstance(res.exception, diff.DiffError) and "--stack cnaf-staging" in str(res.exception)


def test_cli_bad_ref_is_one_line(cli: Callable[..., Any], root: Path) -> None:
    assert (root / ".git").exists(), "the tests run in a git clone (CI clones the project)"
    res = cli("cnaf", "--against", "no-such-ref-anywhere")
    assert isinstance(res.exception, diff.DiffError)
    assert "'no-such-ref-anywhere' is not a commit" in str(res.exception) and "\n" not in str(res.exception)


def test_cli_broken_environment_exits_1_under_exit_code(cli: Callable[..., Any], tmp_path: Path, root: Path) -> None:
    env = _write_env(tmp_path / "broken.yaml", {"extends": str(root / "environments" / "cnaf.yaml"),
                                                "node_pools": {"a100": {"mig": ["3g.30gb"]}}})
    plain = cli(str(env), "--build-dir", str(tmp_path))
    assert isinstance(plain.exception, AiinfnError) and plain.exception.exit_code == 2  # the project's code
    strict = cli(str(env), "--build-dir", str(tmp_path), "--exit-code")
    assert isinstance(strict.exception, AiinfnError) and strict.exception.exit_code == 1  # 2 means "changes"
    assert "3g.30gb" in str(strict.exception)


def test_aiinfn_diff_as_installed(root: Path, tmp_path: Path) -> None:
    res = subprocess.run([sys.executable, "-m", "aiinfn.cli", "diff", "cnaf", "--build-dir", str(tmp_path)],
                         capture_output=True, text=True, cwd=root, env=dict(os.environ), timeout=120)
    assert res.returncode == 1 and res.stderr.count("\n") == 1 and "aiinfn plan cnaf" in res.stderr


def test_a_profile_whose_text_or_resources_change_is_listed(base: preview.Preview) -> None:
    """A kind's memory moves (its profile's title and memory limit): the profiles table says which profile and how."""

    def edit(doc: Doc) -> None:
        hub = _pick(doc, "Release", "jupyterhub")
        t4 = next(p for p in hub["inputs"]["values"]["singleuser"]["profileList"] if p["slug"] == "t4")
        t4["display_name"] = t4["display_name"].replace("GB", "GB, new")
        t4["kubespawner_override"]["mem_limit"] = "99G"

    d = _edited(base, edit)
    assert [p.key for p in d.profiles] == ["t4"] and d.profiles[0].change == "changed"
    paths = {c.path for c in d.profiles[0].fields}
    assert "display_name" in paths and any("99G" in str(c.new) for c in d.profiles[0].fields), d.profiles[0]
