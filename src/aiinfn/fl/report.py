"""The per-round report: per facility the time, the data moved and the loss; per round the aggregate.

Built from two records: the round checkpoints the aggregator wrote (samples, metrics, the time the
training took inside each batch job, its job id and host, the model's size) and what the workflow
engine logged in each run (aiinfn.fl.engine: when each step ran, what it copied to and from each
facility). ``report.json`` holds everything; ``report.md`` is the same as tables.

Per facility and round: ``train_s`` is the entry point's run inside the job; ``step_s`` is the engine's
step, from the job's start through the batch system to its end; ``sent``/``received`` are the bytes the
engine copied to the facility (the model, and in a run's first round the programs) and back (update and
result). Per round, ``aggregation``: where it ran (``runs_on``: controller or a facility; its host and,
at a facility, its batch job's id), its step's time and the bytes the engine copied to the aggregator
and back when it ran at a facility. Per round: ``wall_s`` from the first step of the round to the end
of its aggregation (its checkpoint on the controller), and ``overhead_s = wall_s - max(train_s)``: what
the engine and the batch systems add to the slowest facility's own training.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .engine import AGGREGATOR

if TYPE_CHECKING:
    from .description import Description
    from .state import State


def _engine_records(state: State) -> dict[int, dict[str, Any]]:
    """Per round, the engine's steps and copies from the run that completed it."""
    per_round: dict[int, dict[str, Any]] = {}
    runs = sorted(state.runs.glob("[0-9][0-9][0-9][0-9]")) if state.runs.is_dir() else []
    for run in runs:
        try:
            data = json.loads((run / "engine.json").read_text())
        except (OSError, ValueError):
            continue
        steps = data.get("steps", {})
        for step in steps.values():
            if step.get("facility") is None and step.get("status") == "COMPLETED":
                number = int(step["round"])
                per_round[number] = {
                    "run": run.name,
                    "steps": {s["facility"] or s.get("stage", "aggregate"): s for s in steps.values()
                              if s["round"] == number},
                    "copies": [c for c in data.get("copies", []) if c["round"] == number],
                }
    return per_round


def build_report(desc: Description, state: State) -> dict[str, Any]:
    engine = _engine_records(state)
    rounds = []
    for rec in state.completed():
        number = rec["round"]
        eng = engine.get(number, {"steps": {}, "copies": [], "run": None})
        facilities = {}
        for name, res in sorted(rec["facilities"].items()):
            step = eng["steps"].get(name, {})
            started, ended = step.get("started"), step.get("ended")
            facilities[name] = {
                "samples": res["samples"],
                "weight": rec["weights"][name],
                "loss": res["metrics"].get("loss"),
                "accuracy": res["metrics"].get("accuracy"),
                "train_s": res["train_seconds"],
                "step_s": (ended - started) if started is not None and ended is not None else None,
                "job_id": res.get("job_id"),
                "host": res.get("host"),
                "sent": sum(c["bytes"] for c in eng["copies"] if c["facility"] == name and c["direction"] == "to"),
                "received": sum(c["bytes"] for c in eng["copies"]
                                if c["facility"] == name and c["direction"] == "from"),
            }
        agg = eng["steps"].get("aggregate", {})
        last = eng["steps"].get("checkpoint", agg)  # the round ends with its checkpoint on the controller
        starts = [s["started"] for s in eng["steps"].values() if s.get("started") is not None]
        wall = (last["ended"] - min(starts)) if last.get("ended") is not None and starts else None
        slowest = max(f["train_s"] for f in facilities.values())
        on = rec.get("aggregated_on") or {}
        at = [c for c in eng["copies"] if c["facility"] == AGGREGATOR]
        aggregation = {
            "runs_on": on.get("runs_on", "controller"),
            "host": on.get("host"),
            # the queue manager's job id, as the job saw it (and as the engine logged it, when it did)
            "job_id": on.get("job_id") or agg.get("job_id"),
            "step_s": (agg["ended"] - agg["started"]) if agg.get("ended") is not None
            and agg.get("started") is not None else None,
            "sent": sum(c["bytes"] for c in at if c["direction"] == "to"),
            "received": sum(c["bytes"] for c in at if c["direction"] == "from"),
        }
        rounds.append({
            "round": number,
            "loss": rec.get("loss"),
            "accuracy": rec.get("accuracy"),
            "model_bytes": rec["model_bytes"],
            "model_sha256": rec["model_sha256"],
            "wall_s": wall,
            "overhead_s": (wall - slowest) if wall is not None else None,
            "bytes_moved": sum(f["sent"] + f["received"] for f in facilities.values())
            + aggregation["sent"] + aggregation["received"],
            "run": eng["run"],
            "aggregation": aggregation,
            "facilities": facilities,
        })
    return {
        "name": desc.training.name,
        "rounds_total": desc.training.rounds,
        "rounds_done": len(rounds),
        "aggregation": desc.training.aggregation.method.value,
        "aggregator": desc.training.aggregation.runs_on,
        "facilities": {n: f.kind for n, f in sorted(desc.training.facilities.items())},
        "final_model": str(state.model) if state.model.is_file() else None,
        "rounds": rounds,
    }


def _fmt(v: Any, spec: str = ".3f") -> str:
    return "-" if v is None else format(v, spec) if isinstance(v, float) else str(v)


def markdown(report: dict[str, Any]) -> str:
    lines = [f"# Federated training {report['name']}", "",
             f"{report['rounds_done']} of {report['rounds_total']} rounds, aggregation {report['aggregation']}, "
             f"aggregator on {report.get('aggregator', 'controller')}, "
             f"facilities: {', '.join(f'{n} ({k})' for n, k in report['facilities'].items())}.", "",
             "| round | loss | accuracy | wall s | overhead s | bytes moved | model bytes | aggregated on |",
             "|---|---|---|---|---|---|---|---|"]
    for r in report["rounds"]:
        a = r.get("aggregation") or {}
        where = a.get("runs_on", "controller") + (f" (job {a['job_id']})" if a.get("job_id") else "")
        lines.append(f"| {r['round']} | {_fmt(r['loss'], '.4f')} | {_fmt(r['accuracy'], '.4f')} | "
                     f"{_fmt(r['wall_s'], '.2f')} | {_fmt(r['overhead_s'], '.2f')} | {r['bytes_moved']} | "
                     f"{r['model_bytes']} | {where} |")
    lines += ["", "| round | facility | job | samples | weight | loss | train s | step s | sent | received |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["rounds"]:
        for name, f in r["facilities"].items():
            lines.append(f"| {r['round']} | {name} | {f['job_id']} | {f['samples']} | {f['weight']:.3f} | "
                         f"{_fmt(f['loss'], '.4f')} | {_fmt(f['train_s'], '.2f')} | {_fmt(f['step_s'], '.2f')} | "
                         f"{f['sent']} | {f['received']} |")
    return "\n".join(lines) + "\n"


def write_report(state: State, report: dict[str, Any]) -> tuple[Path, Path]:
    state.root.mkdir(parents=True, exist_ok=True)
    j, m = state.root / "report.json", state.root / "report.md"
    j.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    m.write_text(markdown(report))
    return j, m
