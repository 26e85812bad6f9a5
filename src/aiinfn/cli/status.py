"""``aiinfn status SITE``: the stack's outputs, the live servers against the plan, the nodes' readiness.

Each part says what it could not see instead of failing the others: stack outputs need the pulumi CLI
(secret outputs are shown as ``[secret]``), node readiness needs a kubeconfig (``--kubeconfig FILE``, else the
stack's ``kubeconfig`` output) and a reachable API server. The servers part needs the cloud: a cloud that
cannot be reached is one line, exit 1. Exit 0 when the site is as planned, 1 when a server is missing,
stray or drifted, or a planned node is absent or not Ready.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

out = Console()
err = Console(stderr=True)


def _outputs(name: str) -> tuple[dict[str, Any], str | None]:
    from ..config.loader import project_root
    from ..errors import AiinfnError
    from ..stages.stack import AutomationStack

    try:
        return AutomationStack(name, None, project_root()).outputs(), None
    except AiinfnError as e:
        return {}, str(e)


def _nodes_json(kubeconfig: Path, timeout: float) -> tuple[Any, str | None]:
    """``kubectl get nodes -o json`` through ``kubeconfig``, or why it could not be read."""
    try:
        res = subprocess.run(["kubectl", "--kubeconfig", str(kubeconfig), "get", "nodes", "-o", "json",
                              f"--request-timeout={int(timeout)}s"], capture_output=True, text=True,
                             timeout=timeout + 10, stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        return None, "kubectl is not installed"
    except subprocess.TimeoutExpired:
        return None, f"kubectl: no answer within {timeout:.0f} s"
    if res.returncode != 0:
        tail = [ln for ln in res.stderr.splitlines() if ln.strip()][-1:] or [f"exit {res.returncode}"]
        return None, f"kubectl: {tail[0]}"
    try:
        return json.loads(res.stdout), None
    except ValueError:
        return None, "kubectl printed something other than JSON"


def status(
    env: Annotated[str, typer.Argument(help="environment name under environments/ (e.g. cnaf) or a YAML path")],
    cloud: Annotated[str | None, typer.Option(help="clouds.yaml entry (default: the site's `cloud`)")] = None,
    stack: Annotated[str | None, typer.Option(help="stack name (default: the environment's name)")] = None,
    kubeconfig: Annotated[Path | None, typer.Option(help="kubeconfig of the cluster (default: the stack's "
                                                    "kubeconfig output)")] = None,
    output: Annotated[str, typer.Option("--output", "-o", help="table (default) or json")] = "table",
    timeout: Annotated[float | None, typer.Option(help="seconds per cloud or API request")] = None,
) -> None:
    """Show a site as it runs: stack outputs, servers against the plan (missing, strays, drift), node readiness."""
    from ..config.loader import load_site
    from ..events.cluster import kubeconfig_file
    from ..openstack.connect import DEFAULT_TIMEOUT, calling, connect
    from ..planning import make_plan
    from ..stages import status as st
    from ..stages.stack import shown_outputs

    if output not in ("table", "json"):
        raise typer.BadParameter(f"--output {output}: table or json")
    environment = load_site(env, purpose="`aiinfn status`")
    plan = make_plan(environment)
    name = stack or environment.name
    limit = timeout or DEFAULT_TIMEOUT
    outputs, outputs_gap = _outputs(name)
    where = cloud or environment.site.cloud
    conn = connect(where, timeout=limit)
    try:
        with calling(where, "list the project's servers", timeout=limit):
            servers = st.live_servers(conn, environment.site.name)
    finally:
        conn.close()
    report = st.compare(plan, servers)
    nodes: st.NodeReport | None = None
    nodes_gap: str | None = None
    kube_text = outputs.get("kubeconfig")
    if kubeconfig is not None:
        doc, nodes_gap = _nodes_json(kubeconfig, limit)
    elif isinstance(kube_text, str) and kube_text:
        with kubeconfig_file(kube_text) as f:
            doc, nodes_gap = _nodes_json(f, limit)
    else:
        doc, nodes_gap = None, "no kubeconfig (give --kubeconfig, or run `aiinfn up` through its kubeconfig stage)"
    if doc is not None:
        try:
            nodes = st.readiness(plan, doc)
        except st.NodeListError as e:
            nodes_gap = str(e)
    bad = not report.clean or (nodes is not None and (nodes.absent or nodes.not_ready))
    if output == "json":
        document = {"site": environment.site.name, "stack": name, "outputs": shown_outputs(outputs),
                    "outputs_unavailable": outputs_gap, "servers": report.document(),
                    "nodes": nodes.document() if nodes else None, "nodes_unavailable": nodes_gap}
        sys.stdout.write(json.dumps(document, indent=2, sort_keys=True, default=str) + "\n")
    else:
        _print(environment.site.name, name, shown_outputs(outputs), outputs_gap, report, nodes, nodes_gap)
    if bad:
        raise typer.Exit(1)


def _print(site: str, stack: str, outputs: dict[str, Any], outputs_gap: str | None, report: Any, nodes: Any,
           nodes_gap: str | None) -> None:
    out.print(f"[bold]site {escape(site)}[/bold] (stack {escape(stack)})")
    if outputs_gap:
        out.print(f"stack outputs: unavailable: {escape(outputs_gap)}", highlight=False, soft_wrap=True)
    else:
        for k, v in outputs.items():
            out.print(f"  {escape(k)}: {escape(json.dumps(v, sort_keys=True, default=str))}", highlight=False,
                      soft_wrap=True)
    t = Table(title=f"servers: {len(report.ok)} as planned", title_justify="left")
    t.add_column("server")
    t.add_column("state")
    t.add_column("detail", overflow="fold")
    for n in report.missing:
        t.add_row(escape(n), "[red]missing[/red]", "planned, no server in the cloud")
    for n in report.strays:
        t.add_row(escape(n), "[yellow]stray[/yellow]", "tagged for the site, not in the plan")
    for n in report.duplicates:
        t.add_row(escape(n), "[red]duplicate[/red]", "more than one server has this name")
    for n, diffs in report.drift.items():
        t.add_row(escape(n), "[yellow]drift[/yellow]", escape("; ".join(diffs)))
    out.print(t)
    if nodes is None:
        out.print(f"node readiness: unavailable: {escape(nodes_gap or '')}", highlight=False, soft_wrap=True)
        return
    nt = Table(title=f"nodes: {len(nodes.nodes) - len(nodes.not_ready)} Ready", title_justify="left")
    for col in ("node", "ready", "kubelet", "detail"):
        nt.add_column(col)
    for n, s in sorted(nodes.nodes.items()):
        nt.add_row(escape(n), "yes" if s.ready else "[red]no[/red]", escape(s.kubelet),
                   escape(("cordoned; " if s.unschedulable else "") + ("" if s.ready else s.reason)))
    for n in nodes.absent:
        nt.add_row(escape(n), "[red]absent[/red]", "", "planned, not in the cluster")
    for n in nodes.unknown:
        nt.add_row(escape(n), "?", "", "in the cluster, not in the plan")
    out.print(nt)


def register(app: typer.Typer) -> None:
    app.command("status")(status)
