"""``aiinfn up SITE``: the whole life of a site from one command, stage by stage (``aiinfn.stages``).

drain -> infra -> inventory -> bootstrap -> kubeconfig -> overlay; ``--from STAGE`` resumes, ``--only
STAGE`` (repeatable) runs just those. First it shows ``aiinfn diff`` against the last plan and which nodes
join or leave the site; without ``--yes`` each Pulumi stage's preview is shown and confirmed. Each stage
shows live progress (the current Pulumi line, or each host's Ansible task) and one line when it is done; a
failure is one line naming the stage, the host or resource and the cause, and the command that resumes.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.status import Status

from ..stages.runner import STAGES, StageResult

out = Console()
err = Console(stderr=True)


class ConsoleReporter:
    """Live progress on stderr: a spinner per stage with what it is doing, a line when it ends."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.status: Status | None = None
        self.stage = ""
        self.hosts: dict[str, str] = {}
        self.counts = {"ok": 0, "changed": 0, "failed": 0}

    def start(self, stage: str, index: int, total: int) -> None:
        self.stage = f"[{index + 1}/{total}] {stage}"
        self.hosts.clear()
        self.counts = {"ok": 0, "changed": 0, "failed": 0}
        self.status = self.console.status(f"{self.stage} ...")
        self.status.start()

    def line(self, text: str) -> None:
        if text.strip():
            self.console.print(f"  {escape(text)}", highlight=False, soft_wrap=True)

    def ansible_event(self, event: Mapping[str, Any]) -> None:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        host = data.get("host")
        if kind == "runner_on_start" and host:
            self.hosts[str(host)] = str(data.get("task", ""))
        elif kind == "runner_on_ok":
            self.counts["ok"] += 1
            if (data.get("res") or {}).get("changed"):
                self.counts["changed"] += 1
        elif kind in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors"):
            self.counts["failed"] += 1
        if self.status is not None and self.hosts:
            task = max(set(self.hosts.values()), key=list(self.hosts.values()).count)
            self.status.update(f"{self.stage}: {escape(task)} on {len(self.hosts)} hosts "
                               f"(ok {self.counts['ok']}, changed {self.counts['changed']}, "
                               f"failed {self.counts['failed']})")

    def done(self, result: StageResult) -> None:
        if self.status is not None:
            self.status.stop()
        mark = "[dim]skipped[/dim]" if result.skipped else "[green]done[/green]"
        self.console.print(f"{self.stage} {mark} in {result.seconds:.1f} s: {escape(result.summary)}",
                           highlight=False, soft_wrap=True)

    def stop(self) -> None:
        if self.status is not None:
            self.status.stop()


def _servers(environment: Any, cloud: str | None, timeout: float | None) -> list[Any]:
    from ..openstack.connect import DEFAULT_TIMEOUT, calling, connect
    from ..openstack.inventory import site_servers

    name = cloud or environment.site.cloud
    limit = timeout or DEFAULT_TIMEOUT
    conn = connect(name, timeout=limit)
    try:
        with calling(name, "list the project's servers", timeout=limit):
            return site_servers(conn, environment.site.name)
    finally:
        conn.close()


def _show_diff(env: str, plan: Any, state_dir: Path, build_dir: Path, stack: str | None) -> None:
    """``aiinfn diff`` against the last plan, and the nodes joining or leaving since the last bootstrap."""
    from .. import diff as plandiff
    from ..errors import AiinfnError
    from ..stages.runner import UpState
    from .diff import print_comparison

    try:
        with err.status(f"planning {env} offline for the diff ..."):
            comparison = plandiff.compare_with_last_plan(env, build_dir, stack=stack)
        print_comparison(comparison)
    except AiinfnError as e:
        err.print(f"[yellow]note[/yellow]: no diff shown: {escape(str(e))}", highlight=False, soft_wrap=True)
    st = UpState.load(state_dir)
    if st.bootstrapped:
        planned = [n.name for n in plan.nodes]
        joining = [n for n in planned if n not in st.bootstrapped]
        leaving = [n for n in st.bootstrapped if n not in planned]
        err.print(f"nodes joining: {', '.join(joining) or 'none'}; leaving (drained first): "
                  f"{', '.join(leaving) or 'none'}", highlight=False)


def up(
    env: Annotated[str, typer.Argument(help="environment name under environments/ (e.g. cnaf) or a YAML path")],
    stack: Annotated[str | None, typer.Option(help="stack name (default: the environment's name)")] = None,
    yes: Annotated[bool, typer.Option("--yes", help="unattended: apply each Pulumi stage without asking")] = False,
    start: Annotated[str | None, typer.Option("--from", metavar="STAGE",
                                              help=f"resume from this stage ({', '.join(STAGES)})")] = None,
    only: Annotated[list[str] | None, typer.Option("--only", metavar="STAGE",
                                                   help="run only this stage (repeatable)")] = None,
    state_dir: Annotated[Path | None, typer.Option(help="the site's state: inventory, ssh_config, pinned host keys "
                                                   "(default $XDG_STATE_HOME/aiinfn/<stack>)")] = None,
    cloud: Annotated[str | None, typer.Option(help="clouds.yaml entry (default: the site's `cloud`)")] = None,
    ssh_user: Annotated[str, typer.Option(help="login on the nodes")] = "aiinfn",
    ssh_key: Annotated[Path | None, typer.Option(help="SSH private key (default: ssh's own)")] = None,
    bastion_address: Annotated[str | None, typer.Option(help="where this machine reaches the bastion (default: "
                                                        "its floating IP)")] = None,
    api_endpoint: Annotated[str | None, typer.Option(help="host of the Kubernetes API in the stored kubeconfig "
                                                     "(default: the first tls_san, else the first server)")] = None,
    secrets_file: Annotated[Path | None, typer.Option(help="YAML secret name -> value, mode 0600 (bootstrap)")]
    = None,
    show_diff: Annotated[bool, typer.Option("--diff/--no-diff", help="show `aiinfn diff` against the last plan "
                                            "first")] = True,
    build_dir: Annotated[Path | None, typer.Option(help="where the last plan is read for the diff (default: the "
                                                   "project's build/)")] = None,
    timeout: Annotated[float | None, typer.Option(help="seconds per cloud request")] = None,
) -> None:
    """Stand up, grow or shrink a site: drain, infra, inventory, bootstrap, kubeconfig, overlay."""
    from ..config.loader import load_site, project_root, resolve
    from ..planning import make_plan
    from ..stages import runner
    from ..stages.site import SiteRun, default_state_dir
    from ..stages.stack import AutomationStack

    path = resolve(env)
    from . import federation

    if federation.is_federation(path):  # the federation stack, after its sites' (cli/federation.py)
        return federation.up(path, stack, yes, out, err)
    environment = load_site(path, purpose="`aiinfn up`")  # validate before anything changes
    stages = runner.select(start, only)
    plan = make_plan(environment)
    name = stack or environment.name
    state = state_dir or default_state_dir(name)
    if show_diff:
        from ..config.loader import default_build_dir

        _show_diff(env, plan, state, build_dir or default_build_dir(), stack)
    reporter = ConsoleReporter(err)
    site = SiteRun(
        env_ref=env, environment=environment, plan=plan, stack_name=name, state_dir=state, reporter=reporter,
        make_stack=lambda: AutomationStack(name, path, project_root()),
        list_servers=lambda: _servers(environment, cloud, timeout),
        confirm=lambda q: typer.confirm(q, err=True), yes=yes, ssh_user=ssh_user, identity=ssh_key,
        bastion_address=bastion_address, api_endpoint=api_endpoint, secrets_file=secrets_file,
    )
    suffix = f" --stack {stack}" if stack else ""
    try:
        results = runner.run(stages, site.steps(), reporter, state,
                             resume=lambda s: f"aiinfn up {env}{suffix} --from {s}")
    finally:
        reporter.stop()
    ran = [r.stage for r in results if not r.skipped]
    out.print(f"[green]done[/green]: site {environment.site.name}: {', '.join(ran) or 'nothing to do'}")


def register(app: typer.Typer) -> None:
    app.command("up")(up)
