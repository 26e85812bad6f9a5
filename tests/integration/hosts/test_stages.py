"""``aiinfn up``'s stage runner on real test hosts: a site behind its bastion, grown, shrunk, resumed.

Four hosts: ``bastion-01`` and a site behind it (``k8s-server-01``, ``k8s-agent-01``, and ``k8s-agent-02``,
which joins later). This machine reaches the bastion only (its ssh_config's ``ProxyCommand`` into the
bastion's network namespace, where a cloud would give a floating IP); the other nodes are reached only with
``ProxyJump`` through it, from the inventory the inventory stage writes. Each node records the address its
SSH connection came from: the bastion's for every node behind it.

What stands in (named gaps): the Pulumi stages drive ``RecordingStack`` (no Pulumi CLI runs here: the
Automation API itself is not exercised); the live cloud's server list is the test hosts as Nova would list
them (the OpenStack listing itself is tested in tests/integration/openstack); site.yml / add-node.yml /
remove-node.yml are small real playbooks running the project's ``inventory_check`` role and a recording task
(the real playbooks run on test hosts in test_site.py); RKE2's kubeconfig is a file the test writes where
RKE2 writes it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hostlib
import image
import pytest

from aiinfn.config.loader import load_site
from aiinfn.planning import make_plan
from aiinfn.render import read_inventory
from aiinfn.stages import runner
from aiinfn.stages.runner import StageFailed, UpState
from aiinfn.stages.site import SiteRun
from aiinfn.stages.stack import KUBECONFIG_KEY

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "support"))
import stages as support  # tests/support/stages.py, found through the path set just above

pytestmark = [pytest.mark.integration]

HOSTS = support.node_names(2)
NEW = "k8s-agent-02"


@dataclass
class Site:
    hosts: hostlib.Hosts
    work: Path
    state: Path
    playbooks: dict[str, Path]
    stack: support.RecordingStack

    def run(self, agents: int, stages: list[str] | None = None, *, present: list[str] | None = None,
            stack: Any = None, confirm: Callable[[str], bool] | None = None, yes: bool = True,
            ) -> tuple[list[runner.StageResult], support.ListReporter, SiteRun]:
        env = load_site(support.site_env(self.work, agents))
        plan = make_plan(env)
        reporter = support.ListReporter()
        names = present if present is not None else support.node_names(agents)
        site = SiteRun(
            env_ref="stages", environment=env, plan=plan, stack_name="stages", state_dir=self.state,
            reporter=reporter, make_stack=lambda: stack or self.stack,
            list_servers=lambda: support.servers(plan, self.hosts.address, names),
            confirm=confirm or (lambda q: True), yes=yes, ssh_user="root", identity=image.ensure_key(),
            bastion_proxy_command=self.hosts.proxy_command("bastion-01"), playbooks=self.playbooks,
        )
        results = runner.run(stages or list(runner.STAGES), site.steps(), reporter, self.state,
                             resume=lambda s: f"aiinfn up stages --from {s}")
        return results, reporter, site

    def records(self, name: str) -> list[str]:
        if not self.hosts.exists(name, support.RECORD):
            return []
        return self.hosts.read(name, support.RECORD).decode().splitlines()


@pytest.fixture(scope="module")
def site(host_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    work = tmp_path_factory.mktemp("stages")
    hosts = hostlib.start_hosts(HOSTS)
    try:
        kube = hosts.path("k8s-server-01", "/etc/rancher/rke2/rke2.yaml")
        kube.parent.mkdir(parents=True, exist_ok=True)
        kube.write_text(support.RKE2_YAML)
        kube.chmod(0o600)
        s = Site(hosts, work, work / "state", support.playbooks(work / "playbooks"),
                 support.RecordingStack("stages"))
        yield s
    finally:
        hosts.stop()


@pytest.fixture(scope="module")
def first_up(site: Site) -> tuple[list[runner.StageResult], support.ListReporter, SiteRun]:
    """The first `aiinfn up` of the site with one agent (k8s-agent-02 is not in the environment yet)."""
    return site.run(1)


def test_first_up_runs_every_stage_in_order_through_the_bastion(site: Site, first_up: Any) -> None:
    results, reporter, _ = first_up
    assert [(r.stage, r.skipped) for r in results] == [
        ("drain", True), ("infra", False), ("inventory", False), ("bootstrap", False), ("kubeconfig", False),
        ("overlay", False)]
    # the Pulumi seam: infra previewed and applied, the kubeconfig stored, the overlay previewed and applied
    assert [c for c in site.stack.calls if c != "outputs"] == [
        "preview", "up", f"set_secret {KUBECONFIG_KEY}", "preview", "up"]
    bastion = site.hosts.address("bastion-01")
    # every node behind the bastion was reached from the bastion's address; the bastion from this machine
    for name in ("k8s-server-01", "k8s-agent-01"):
        assert site.records(name) == [f"site {bastion}"], name
    assert site.records("bastion-01") == ["site 127.0.0.1"]
    assert site.records(NEW) == []  # not in the environment yet: never touched
    assert support.RKE2_TOKEN not in reporter.text()  # the join token reached Ansible, never the progress


def test_inventory_carries_proxyjump_for_nodes_behind_the_bastion(site: Site, first_up: Any) -> None:
    text = (site.state / "inventory.yaml").read_text()
    doc = read_inventory(text, markers=False)["all"]
    hosts = doc["hosts"]
    assert set(hosts) == {"bastion-01", "k8s-server-01", "k8s-agent-01"}
    for name, hv in hosts.items():
        args = hv["ansible_ssh_common_args"]
        assert f"-F {site.state / 'ssh_config'}" in args and f"HostKeyAlias={name}" in args
        assert ("ProxyJump=aiinfn-stages-bastion" in args) is (name != "bastion-01"), name
        assert hv["ansible_host"] == site.hosts.address(name)
    assert '!unsafe "-F ' in text  # the connection arguments are data too
    config = (site.state / "ssh_config").read_text()
    assert f"Host aiinfn-stages-bastion {site.hosts.address('bastion-01')}\n  HostName {support.FLOATING}" in config
    assert "StrictHostKeyChecking accept-new" in config


def _host_keys(site: Site, name: str) -> set[str]:
    out = site.hosts.exec(name, "cat /etc/ssh/ssh_host_*_key.pub", check=True).stdout
    return {" ".join(line.split()[:2]) for line in out.splitlines() if line.strip()}


def test_host_keys_are_pinned_on_first_contact_under_node_names(site: Site, first_up: Any) -> None:
    _, _, run = first_up
    pinned = run.access().pinned()
    assert set(pinned) == {"bastion-01", "k8s-server-01", "k8s-agent-01"}
    for name, keys in pinned.items():
        assert set(keys) <= _host_keys(site, name), name
    assert (site.state / "known_hosts").stat().st_mode & 0o077 == 0


def test_kubeconfig_fetched_through_the_bastion_with_its_address_rewritten(site: Site, first_up: Any) -> None:
    results, reporter, _ = first_up
    stored = site.stack.secrets[KUBECONFIG_KEY]
    from ruamel.yaml import YAML

    doc = YAML(typ="safe").load(stored)
    assert doc["clusters"][0]["cluster"]["server"] == f"https://{site.hosts.address('k8s-server-01')}:6443"
    assert doc["users"][0]["user"]["client-key-data"] == support.CLIENT_KEY  # the rest as RKE2 wrote it
    assert support.CLIENT_KEY not in reporter.text()
    assert not any(support.CLIENT_KEY in p.read_text(errors="replace") for p in site.state.rglob("*") if p.is_file())
    kube = next(r for r in results if r.stage == "kubeconfig")
    assert "through bastion-01" in kube.summary


def test_rerun_of_a_converged_site_runs_site_yml_and_applies_nothing(site: Site, first_up: Any) -> None:
    results, _, _ = site.run(1)
    skipped = {r.stage: r.skipped for r in results}
    assert skipped["infra"] and skipped["overlay"]  # the stack has no changes: nothing applied
    assert site.records("k8s-agent-01")[-1].startswith("site ")


def test_growing_the_site_bootstraps_only_the_new_node(site: Site, first_up: Any) -> None:
    before = {n: site.records(n) for n in HOSTS}
    site.stack.changes = {"create": 5, "update": 2}  # the new VM and the overlay's quota and profile changes
    results, _, _ = site.run(2)
    boot = next(r for r in results if r.stage == "bootstrap")
    assert boot.summary.startswith(f"add-node on {NEW}")
    assert site.records(NEW) == [f"add-node {site.hosts.address('bastion-01')}"]
    for name in HOSTS:
        if name != NEW:
            assert site.records(name) == before[name], name  # limited: no other host ran a task
    assert UpState.load(site.state).bootstrapped == sorted(support.node_names(2))


def test_shrinking_the_site_drains_the_node_before_infra_deletes_it(site: Site, first_up: Any) -> None:
    site.run(2, ["inventory", "bootstrap"])  # whatever the order of the tests: NEW is part of the site
    calls = len(site.stack.calls)
    site.stack.changes = {"delete": 5}
    results, _, run = site.run(1, present=support.node_names(2))  # the VM still exists when drain runs
    drain = results[0]
    assert (drain.stage, drain.skipped) == ("drain", False)
    assert site.records(NEW)[-1] == f"remove-node {site.hosts.address('bastion-01')}"
    assert site.stack.calls[calls:calls + 2] == ["preview", "up"]  # then the infra stage deletes the VM
    st = UpState.load(site.state)
    assert NEW not in st.bootstrapped
    assert NEW not in run.access().pinned()  # a later node of that name is another VM


def test_a_failed_stage_names_itself_and_resumes_from_there(site: Site, first_up: Any) -> None:
    failing = support.RecordingStack("stages", changes={"update": 1}, fail_up="stack stages: up: the overlay broke")
    with pytest.raises(StageFailed) as e:
        site.run(1, ["kubeconfig", "overlay"], stack=failing)
    assert str(e.value) == ("stage overlay failed: stack stages: up: the overlay broke; resume with "
                            "`aiinfn up stages --from overlay`")
    assert UpState.load(site.state).failed == "overlay"
    results, reporter, _ = site.run(1, runner.select("overlay"), stack=support.RecordingStack("stages"))
    assert [r.stage for r in results] == ["overlay"]
    assert not reporter.events  # nothing before the overlay ran again
    assert UpState.load(site.state).failed is None


def test_a_changed_host_key_is_refused(site: Site, first_up: Any) -> None:
    node = "k8s-agent-01"
    pinned = (site.state / "known_hosts").read_text()
    site.hosts.exec(node, "rm -f /etc/ssh/ssh_host_* && ssh-keygen -A && systemctl restart ssh", check=True)
    for sock in (site.state / "cp").glob("*"):
        sock.unlink()  # a rebuilt VM has no open connection to reuse
    before = site.records(node)
    with pytest.raises(StageFailed) as e:
        site.run(1, ["bootstrap"])
    line = str(e.value)
    assert line.startswith(f"stage bootstrap failed: {node}: its host key differs from the one pinned")
    assert f"ssh-keygen -R {node} -f {site.state / 'known_hosts'}" in line
    assert line.endswith("resume with `aiinfn up stages --from bootstrap`")
    assert site.records(node) == before  # nothing ran there
    assert (site.state / "known_hosts").read_text() == pinned  # the pinned key stays
    # the operator's remedy for a VM rebuilt on purpose: forget the key, resume
    _, _, run = site.run(1, ["inventory"])
    assert run.access().forget(node)
    site.run(1, runner.select("bootstrap"))
    assert site.records(node)[-1].startswith("site ")
