"""``aiinfn fl plan|run|status FILE``: federated training across the platform's sites and HPC facilities.

``register(app)`` adds the ``fl`` group to the main typer app. ``plan`` checks the description (fields,
files, sites and project queues, images in the registry, each facility's login node, queue manager and
dataset over SSH) and writes the workflow and deployments StreamFlow will run; ``run`` runs the rounds
not complete yet, showing per round and facility when a job is submitted, done and aggregated, and
writes the final model and the report; ``status`` reads the state. Every failure is one line (exit 2 for
a bad description, 1 for a facility or engine failure) naming the field or the facility.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

out = Console()
err = Console(stderr=True)

FileArg = Annotated[Path, typer.Argument(help="the federated training description (YAML, kind: federated-training)")]
StateOpt = Annotated[Path | None, typer.Option("--state", help="state directory (default build/fl/<name>)")]
RegistryOpt = Annotated[str | None, typer.Option(
    "--registry-url", help="base URL of the registry's Harbor API (default https://<the image's registry>)")]
OfflineOpt = Annotated[bool, typer.Option(
    "--offline", help="skip the checks that need the network (registry API, facilities over SSH)")]


def _facility_table(planned: Any) -> Table:
    from ..fl.model import HpcFacility

    t = Table(title=f"facilities of {planned.desc.training.name}")
    for col in ("facility", "reached as", "batch", "image", "dataset", "per round"):
        t.add_column(col)
    for name, f in planned.desc.training.facilities.items():
        r = f.resources
        if isinstance(f, HpcFacility):
            reached = f"{f.kind} over SSH {f.user}@{f.address}" + (
                f" (offload target {f.offload_of.split('/')[1]} of site {f.offload_of.split('/')[0]})"
                if f.offload_of else "")
            batch = f.partition or "(default partition)"
            data = f.dataset
            res = f"{r.cpus} cpu, {r.memory_gb:g} GB, {r.gpus} gpu, {r.time_minutes} min"
        else:
            q = planned.queues[name]
            reached = f"site {f.site} (helm3, namespace {q.namespace})"
            batch = f"LocalQueue {q.local_queue} -> ClusterQueue {q.cluster_queue}"
            data = f"claim {f.dataset.claim}" + (f"/{f.dataset.path}" if f.dataset.path else "")
            res = f"{r.cpus} cpu, {r.memory_gb:g} GB, {r.accelerator or 'no accelerator'}, {r.time_minutes} min"
        t.add_row(escape(name), escape(reached), escape(batch), escape(f.image), escape(data), res)
    return t


def register(app: typer.Typer) -> None:
    fl = typer.Typer(name="fl", help="Federated learning across sites and HPC facilities (StreamFlow).",
                     no_args_is_help=True)
    app.add_typer(fl, name="fl")

    @fl.command("plan")
    def plan_cmd(file: FileArg, state: StateOpt = None, registry_url: RegistryOpt = None,
                 offline: OfflineOpt = False) -> None:
        """Check the description and write the workflow and one deployment per facility (nothing runs)."""
        from ..fl import description, run

        desc = description.load(file)
        with err.status("checking the description against the platform and the facilities ..."):
            planned = run.plan(desc, state, registry_url=registry_url, check_remote=not offline)
        out.print(_facility_table(planned))
        t = desc.training
        out.print(f"{t.rounds} rounds, aggregation {t.aggregation.method.value} on the {t.aggregation.runs_on}, "
                  f"handed to StreamFlow {planned.generated.last} rounds at a time; StreamFlow files of rounds "
                  f"1-{planned.generated.last} in [cyan]{planned.generated.root}[/cyan] (streamflow.yml, workflow.cwl)")
        if offline:
            err.print("[yellow]note[/yellow]: --offline: the registry and the facilities were not asked")

    @fl.command("run")
    def run_cmd(file: FileArg, state: StateOpt = None, registry_url: RegistryOpt = None,
                offline: OfflineOpt = False,
                restart: Annotated[bool, typer.Option(help="discard completed rounds and start from round 1")] = False,
                ) -> None:
        """Run the rounds not complete yet (resumes after the last complete round) and write the report."""
        from ..fl import description, run

        desc = description.load(file)

        def show(ev: Any) -> None:
            if ev.what == "submitted":
                err.print(f"round {ev.round} {escape(ev.facility)}: job {escape(str(ev.detail.get('job_id')))} "
                          "submitted")
            elif ev.what == "done":
                secs = ev.detail.get("seconds")
                err.print(f"round {ev.round} {escape(ev.facility)}: done" + (f" in {secs:.1f} s" if secs else ""))
            elif ev.what == "failed":
                err.print(f"round {ev.round} {escape(ev.facility)}: [red]failed[/red]")
            elif ev.what == "aggregated":
                loss, acc = ev.detail.get("loss"), ev.detail.get("accuracy")
                extra = (f", loss {loss:.4f}" if loss is not None else "") + (
                    f", accuracy {acc:.4f}" if acc is not None else "")
                err.print(f"round {ev.round}: [green]aggregated[/green] {len(ev.detail.get('facilities', {}))} "
                          f"updates{extra}")
            elif ev.what == "stopping":
                err.print(f"round {ev.round}: stopping the workflow engine: {escape(ev.detail.get('reason', ''))}")

        outcome = run.run(desc, state, registry_url=registry_url, check_remote=not offline, restart=restart,
                          on_event=show)
        rep = outcome.report
        if outcome.resumed_from:
            out.print(f"resumed after round {outcome.resumed_from}")
        last = rep["rounds"][-1] if rep["rounds"] else {}
        out.print(f"[green]done[/green]: {rep['rounds_done']} rounds; final loss {last.get('loss')}, accuracy "
                  f"{last.get('accuracy')}; model [cyan]{outcome.state.model}[/cyan], report "
                  f"[cyan]{outcome.state.root / 'report.md'}[/cyan]")

    @fl.command("status")
    def status_cmd(file: FileArg, state: StateOpt = None) -> None:
        """Rounds complete, per facility and round: job, samples, loss, times, bytes moved."""
        from ..fl import description, report, run

        desc = description.load(file)
        st = run.State(state or run.default_state(desc))
        rep = report.build_report(desc, st)
        pid = st.running_pid()
        where = f"running (pid {pid})" if pid else ("complete" if rep["final_model"] else "not running")
        out.print(f"{desc.training.name}: {rep['rounds_done']} of {rep['rounds_total']} rounds complete, {where}; "
                  f"state in {st.root}")
        if rep["rounds"]:
            t = Table()
            for col in ("round", "facility", "job", "samples", "loss", "accuracy", "train s", "step s", "sent",
                        "received"):
                t.add_column(col)
            for r in rep["rounds"]:
                for name, f in r["facilities"].items():
                    t.add_row(str(r["round"]), escape(name), escape(str(f["job_id"])), str(f["samples"]),
                              report._fmt(f["loss"], ".4f"), report._fmt(f["accuracy"], ".4f"),
                              report._fmt(f["train_s"], ".2f"), report._fmt(f["step_s"], ".2f"), str(f["sent"]),
                              str(f["received"]))
                t.add_row(str(r["round"]), "[bold]aggregate[/bold]", "", "", report._fmt(r["loss"], ".4f"),
                          report._fmt(r["accuracy"], ".4f"), "", report._fmt(r["wall_s"], ".2f"), "", "")
            out.print(t)
