"""The stage runner around its seams: stage selection, one-line failures, confirmation, secrets kept out of
progress, the SSH configuration the stages write, the kubeconfig rewrite, and `aiinfn up` as a command.

The stages on real hosts through a real bastion are tests/integration/hosts/test_stages.py. Gap: no Pulumi CLI
runs here, so ``AutomationStack`` is tested only for refusing clearly without it; the stages drive the
``SiteStack`` seam (tests/support/stages.py ``RecordingStack``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from aiinfn.ansible.known_hosts import SshAccess, SshError, host_key_changed
from aiinfn.config.loader import load_site
from aiinfn.errors import ToolMissingError
from aiinfn.planning import make_plan
from aiinfn.render import plain, read_inventory
from aiinfn.stages import kubeconfig as kc
from aiinfn.stages import runner
from aiinfn.stages.runner import StageFailed, StageUsageError, UpState
from aiinfn.stages.site import SiteRun, floating_ip
from aiinfn.stages.stack import AutomationStack, shown_outputs, stack_environment

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))
import stages as support  # tests/support/stages.py

AIINFN = str(Path(sys.executable).parent / "aiinfn")


# --------------------------------------------------------------------------- selection and failures


def test_select_runs_all_from_a_stage_or_only_some_in_order() -> None:
    assert runner.select() == list(runner.STAGES)
    assert runner.select("bootstrap") == ["bootstrap", "kubeconfig", "overlay"]
    assert runner.select(only=["overlay", "inventory"]) == ["inventory", "overlay"]
    with pytest.raises(StageUsageError, match="'bootstap' is not a stage"):
        runner.select("bootstap")
    with pytest.raises(StageUsageError, match="exclude each other"):
        runner.select("infra", ["overlay"])


def _run(tmp_path: Path, stages: list[str], steps: dict[str, Any]) -> list[runner.StageResult]:
    return runner.run(stages, steps, support.ListReporter(), tmp_path,
                      resume=lambda s: f"aiinfn up cnaf --from {s}")


def test_a_failure_is_one_line_with_the_stage_the_subject_and_the_resume_command(tmp_path: Path) -> None:
    done: list[str] = []

    def fails() -> str:
        raise StageFailed("bootstrap", "gpu-t4-01", "Gathering Facts: unreachable: Connection timed out\nagain")

    steps = {"inventory": lambda: done.append("inventory") or "ok", "bootstrap": fails,
             "kubeconfig": lambda: done.append("kubeconfig") or "ok"}
    with pytest.raises(StageFailed) as e:
        _run(tmp_path, ["inventory", "bootstrap", "kubeconfig"], steps)
    assert str(e.value) == ("stage bootstrap failed: gpu-t4-01: Gathering Facts: unreachable: Connection timed out "
                            "again; resume with `aiinfn up cnaf --from bootstrap`")
    assert done == ["inventory"]  # nothing after the failed stage ran
    state = UpState.load(tmp_path)
    assert (state.completed, state.failed) == (["inventory"], "bootstrap")


def test_any_aiinfn_error_in_a_stage_keeps_its_exit_code(tmp_path: Path) -> None:
    def no_pulumi() -> str:
        raise ToolMissingError("the pulumi CLI is not installed")

    with pytest.raises(StageFailed) as e:
        _run(tmp_path, ["infra"], {"infra": no_pulumi})
    assert e.value.exit_code == 4
    assert str(e.value) == ("stage infra failed: the pulumi CLI is not installed; resume with "
                            "`aiinfn up cnaf --from infra`")


@pytest.fixture
def small(tmp_path: Path) -> SiteRun:
    env = load_site(support.site_env(tmp_path, 1))
    plan = make_plan(env)
    return SiteRun(env_ref="stages", environment=env, plan=plan, stack_name="stages", state_dir=tmp_path / "state",
                   reporter=support.ListReporter(), make_stack=lambda: support.RecordingStack("stages"),
                   list_servers=lambda: support.servers(plan, lambda n: f"10.9.0.{len(n)}",
                                                        [n.name for n in plan.nodes]),
                   confirm=lambda q: False)


def test_without_yes_the_preview_is_shown_and_a_refusal_applies_nothing(small: SiteRun) -> None:
    with pytest.raises(StageFailed, match="stage infra failed: stack stages: not confirmed: nothing applied"):
        small.infra()
    stack = small.stack()
    assert isinstance(stack, support.RecordingStack)
    assert stack.calls == ["preview"]
    assert any("Previewing update" in ln for ln in small.reporter.lines)  # type: ignore[attr-defined]
    assert any("3 to create" in ln for ln in small.reporter.lines)  # type: ignore[attr-defined]


def test_a_stack_without_changes_is_skipped_without_asking(small: SiteRun) -> None:
    stack = support.RecordingStack("stages", changes={"same": 12})
    small.make_stack = lambda: stack
    with pytest.raises(runner.Skip, match="no changes"):
        small.overlay()
    assert stack.calls == ["preview"]


def test_inventory_stage_refuses_a_planned_node_without_a_server(small: SiteRun) -> None:
    plan = small.plan
    small.list_servers = lambda: support.servers(plan, lambda n: "10.9.0.5", ["bastion-01", "k8s-server-01"])
    with pytest.raises(StageFailed, match="stage inventory failed: k8s-agent-01: planned node has no server"):
        small.inventory()


def test_inventory_stage_writes_proxyjump_for_every_node_but_the_bastion(small: SiteRun) -> None:
    small.inventory()
    doc = read_inventory((small.state_dir / "inventory.yaml").read_text(), markers=False)["all"]["hosts"]
    for name, hv in doc.items():
        assert ("ProxyJump=aiinfn-stages-bastion" in hv["ansible_ssh_common_args"]) is (name != "bastion-01")
    st = UpState.load(small.state_dir)
    assert st.bastion_address == support.FLOATING
    assert (small.state_dir / "inventory.yaml").stat().st_mode & 0o077 == 0


def test_ansible_reads_the_jump_host_from_the_rendered_inventory(small: SiteRun) -> None:
    """Ansible's own inventory parser: the connection arguments arrive as one string per host, ProxyJump kept."""
    small.inventory()
    res = subprocess.run([str(Path(sys.executable).parent / "ansible-inventory"), "-i",
                          str(small.state_dir / "inventory.yaml"), "--list"], capture_output=True, text=True,
                         env={**os.environ, "ANSIBLE_INVENTORY_UNPARSED_FAILED": "true"}, timeout=120)
    assert res.returncode == 0, res.stderr
    hv = plain(json.loads(res.stdout)["_meta"]["hostvars"])  # the strings arrive marked unsafe: data
    args = hv["k8s-agent-01"]["ansible_ssh_common_args"]
    assert args.endswith("-o HostKeyAlias=k8s-agent-01 -o ProxyJump=aiinfn-stages-bastion")
    assert "ProxyJump" not in hv["bastion-01"]["ansible_ssh_common_args"]


def test_bootstrap_secrets_never_reach_the_progress(small: SiteRun, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_run(book: Any, inventory: Any, **kw: Any) -> Any:
        seen.update(kw)
        from aiinfn.ansible.runner import HostStats, PlaybookResult

        return PlaybookResult(playbook="site.yml", rc=0, status="successful",
                              stats={"k8s-server-01": HostStats(ok=3)})

    monkeypatch.setattr("aiinfn.stages.site.run_playbook", fake_run)
    small.inventory()
    summary = small.bootstrap()
    assert summary.startswith("site: 1 hosts")
    assert seen["extravars"]["rke2_token"] == support.RKE2_TOKEN  # from the stack's output, to Ansible only
    assert seen["envvars"]["ANSIBLE_HOST_KEY_CHECKING"] == "True"
    assert seen["extravars"]["rke2_agent_token"] == support.RKE2_AGENT_TOKEN
    assert support.RKE2_TOKEN not in "\n".join(small.reporter.lines)  # type: ignore[attr-defined]
    assert support.RKE2_AGENT_TOKEN not in "\n".join(small.reporter.lines)  # type: ignore[attr-defined]


def test_bootstrap_of_a_grown_site_is_add_node_limited_to_the_new_nodes(small: SiteRun,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str | None]] = []

    def fake_run(book: Path, inventory: Any, **kw: Any) -> Any:
        from aiinfn.ansible.runner import PlaybookResult

        calls.append((book.name, kw.get("limit")))
        return PlaybookResult(playbook=book.name, rc=0, status="successful")

    monkeypatch.setattr("aiinfn.stages.site.run_playbook", fake_run)
    small.inventory()
    st = UpState.load(small.state_dir)
    st.bootstrapped = ["bastion-01", "k8s-server-01"]
    st.save(small.state_dir)
    small.bootstrap()
    assert calls == [("add-node.yml", "k8s-agent-01")]
    assert UpState.load(small.state_dir).bootstrapped == ["bastion-01", "k8s-agent-01", "k8s-server-01"]


def test_drain_runs_remove_node_only_for_nodes_leaving(small: SiteRun, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, str | None]] = []

    def fake_run(book: Path, inventory: Any, **kw: Any) -> Any:
        from aiinfn.ansible.runner import PlaybookResult

        calls.append((book.name, kw.get("limit")))
        return PlaybookResult(playbook=book.name, rc=0, status="successful")

    monkeypatch.setattr("aiinfn.stages.site.run_playbook", fake_run)
    with pytest.raises(runner.Skip, match="no node leaves"):
        small.drain()
    small.inventory()
    st = UpState.load(small.state_dir)
    st.bootstrapped = ["bastion-01", "k8s-agent-01", "k8s-agent-02", "k8s-server-01"]
    st.save(small.state_dir)
    assert small.drain() == "drained and cleaned k8s-agent-02"
    assert calls == [("remove-node.yml", "k8s-agent-02")]
    assert "k8s-agent-02" not in UpState.load(small.state_dir).bootstrapped


# --------------------------------------------------------------------------- SSH configuration


def _access(tmp_path: Path, **kw: Any) -> SshAccess:
    base: dict[str, Any] = {"site": "cnaf", "state_dir": tmp_path / "st", "bastion_name": "bastion-01",
                            "bastion_address": "131.154.0.10", "bastion_fixed_address": "10.10.0.5"}
    return SshAccess(**{**base, **kw})


def test_ssh_config_pins_keys_in_the_site_file_and_jumps_through_the_bastion(tmp_path: Path) -> None:
    a = _access(tmp_path)
    a.write()
    text = a.config.read_text()
    assert "Host aiinfn-cnaf-bastion 10.10.0.5\n  HostName 131.154.0.10\n  HostKeyAlias bastion-01\n" in text
    for line in ("StrictHostKeyChecking accept-new", "HashKnownHosts no", "UpdateHostKeys no",
                 "GlobalKnownHostsFile /dev/null", f'UserKnownHostsFile "{a.known_hosts}"'):
        assert f"  {line}\n" in text
    assert a.config.stat().st_mode & 0o777 == 0o600 and a.known_hosts.stat().st_mode & 0o777 == 0o600
    assert a.ssh_argv("gpu-t4-01", "10.10.0.7")[-3:] == ["-o", "ProxyJump=aiinfn-cnaf-bastion", "10.10.0.7"]
    assert a.ssh_argv("bastion-01", "10.10.0.5")[-1] == "aiinfn-cnaf-bastion"


@pytest.mark.parametrize("field,value", [
    ("bastion_address", "1.2.3.4\n  ProxyCommand evil"),
    ("bastion_address", "host name"),
    ("user", "root\nHost *"),
    ("bastion_proxy_command", "nc %h %p\nHost *"),
])
def test_values_that_would_change_the_ssh_config_are_refused(tmp_path: Path, field: str, value: str) -> None:
    with pytest.raises(SshError):
        _access(tmp_path, **{field: value}).config_text()


def test_refused_changed_keys_are_recognised_in_openssh_messages() -> None:
    assert host_key_changed("@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@ ...")
    assert host_key_changed("Host key for k8s-agent-01 has changed and you have requested strict checking.\r\n"
                            "Host key verification failed.")
    assert not host_key_changed("ssh: connect to host 10.0.0.1 port 22: Connection timed out")


# --------------------------------------------------------------------------- kubeconfig and stack


def test_kubeconfig_rewrite_points_every_cluster_at_the_api_and_keeps_the_rest() -> None:
    out = kc.rewrite(support.RKE2_YAML, kc.api_url("10.10.0.4"))
    doc = YAML(typ="safe").load(out)
    original = YAML(typ="safe").load(support.RKE2_YAML)
    assert doc["clusters"][0]["cluster"]["server"] == "https://10.10.0.4:6443"
    original["clusters"][0]["cluster"]["server"] = "https://10.10.0.4:6443"
    assert doc == original
    assert kc.api_url("fd00::4") == "https://[fd00::4]:6443"


@pytest.mark.parametrize("text,why", [("{", "not YAML"), ("kind: Config\n", "no clusters"),
                                      ("clusters:\n- name: x\n", "clusters\\[0\\].cluster.server is missing")])
def test_a_broken_kubeconfig_is_named_without_its_content(text: str, why: str) -> None:
    with pytest.raises(kc.KubeconfigError, match=why) as e:
        kc.rewrite(text, "https://x:6443")
    assert text.strip() not in str(e.value) or len(text.strip()) < 3


def test_kubeconfig_stage_stores_a_secret_and_never_shows_it(small: SiteRun, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(kc, "fetch", lambda access, server, address: support.RKE2_YAML)
    small.inventory()
    summary = small.kubeconfig()
    stack = small.stack()
    assert isinstance(stack, support.RecordingStack)
    assert stack.calls == ["set_secret aiinfn:kubeconfig"]
    assert support.CLIENT_KEY in stack.secrets["aiinfn:kubeconfig"]
    assert support.CLIENT_KEY not in summary and "server https://" in summary


def test_secret_outputs_are_masked() -> None:
    assert shown_outputs({"kubeconfig": "apiVersion: v1", "rke2_token": "K10", "endpoints": {"bastion": "x"}}) == {
        "endpoints": {"bastion": "x"}, "kubeconfig": "[secret]", "rke2_token": "[secret]"}


def test_stack_file_gets_a_path_relative_to_the_checkout(root: Path) -> None:
    assert stack_environment(root / "environments" / "cnaf.yaml", root) == "environments/cnaf.yaml"
    assert stack_environment(Path("/elsewhere/site.yaml"), root) == "/elsewhere/site.yaml"


def test_automation_stack_without_the_pulumi_cli_says_so(root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(ToolMissingError, match=r"pulumi CLI is not installed.*--from inventory"):
        AutomationStack("cnaf", root / "environments" / "cnaf.yaml", root)


def test_floating_ip_is_read_from_novas_addresses() -> None:
    addrs = {"net": [{"addr": "10.0.0.3", "OS-EXT-IPS:type": "fixed"},
                     {"addr": "131.154.0.9", "OS-EXT-IPS:type": "floating", "version": 4}]}
    assert floating_ip(addrs) == "131.154.0.9"
    assert floating_ip({"net": [{"addr": "10.0.0.3", "OS-EXT-IPS:type": "fixed"}]}) is None


# --------------------------------------------------------------------------- the command


def _cli(*args: str, cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "XDG_STATE_HOME": str(home),
           "PATH": str(Path(sys.executable).parent) + os.pathsep + "/usr/bin:/bin"}
    return subprocess.run([AIINFN, *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=180)


def test_up_names_a_bad_stage_in_one_line(root: Path, tmp_path: Path) -> None:
    res = _cli("up", "cnaf", "--from", "bootstap", "--no-diff", cwd=root, home=tmp_path)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [
        "error: 'bootstap' is not a stage (stages: drain, infra, inventory, bootstrap, kubeconfig, overlay)"]


def test_up_of_an_event_is_refused_as_before(root: Path, tmp_path: Path) -> None:
    res = _cli("up", "hackathon-example", "--no-diff", cwd=root, home=tmp_path)
    assert res.returncode == 2, res.stderr
    assert "works on a site" in res.stderr and "Traceback" not in res.stderr


def test_up_without_pulumi_fails_at_the_infra_stage_with_the_resume_command(root: Path, tmp_path: Path) -> None:
    res = _cli("up", "cnaf", "--yes", "--no-diff", cwd=root, home=tmp_path)
    assert res.returncode == 4, res.stderr
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("error: stage infra failed: the pulumi CLI is not installed")
    assert last.endswith("resume with `aiinfn up cnaf --from infra`")
    assert json.loads((tmp_path / "aiinfn" / "cnaf" / "up.json").read_text())["failed"] == "infra"


def test_up_from_bootstrap_without_an_inventory_says_which_stage_to_run(root: Path, tmp_path: Path) -> None:
    res = _cli("up", "cnaf", "--only", "bootstrap", "--yes", "--no-diff", cwd=root, home=tmp_path)
    assert res.returncode == 1
    assert "stage bootstrap failed:" in res.stderr and "run `--from inventory`" in res.stderr


def test_up_shows_the_diff_against_the_last_plan_before_any_stage(root: Path, tmp_path: Path) -> None:
    build = tmp_path / "build"
    plan = subprocess.run([AIINFN, "plan", "cnaf", "--build-dir", str(build)], capture_output=True, text=True,
                          cwd=root, timeout=300)
    assert plan.returncode == 0, plan.stderr
    res = _cli("up", "cnaf", "--yes", "--build-dir", str(build), cwd=root, home=tmp_path)
    shown = res.stdout.replace("\n", "")  # rich wraps long paths at the terminal width
    assert f"diff cnaf (site) against {build / 'cnaf' / 'plan.json'}" in shown
    assert "No changes. 0 to add, 0 to change, 0 to replace, 0 to delete" in shown
    assert res.stderr.strip().splitlines()[-1].startswith("error: stage infra failed")  # after the diff
