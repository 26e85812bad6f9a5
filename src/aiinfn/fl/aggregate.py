"""Aggregation of one round: the facilities' updates combined into the next global model.

Shipped as a file and run by the workflow engine (numpy and the standard library only; never ``import
aiinfn`` here): on the controller, or at the facility ``aggregation.runs_on`` names, inside a batch job
of its queue manager and its image. For each facility it gets the update (``update.npz``) and the result
(``result.json``, written by task.py) of the round, pairs them by the update's digest, and writes:

- ``model.npz`` (the step's output, the model of the next round): for every array name,
  ``sum_i w_i * update_i`` with ``w_i = n_i / sum_j n_j`` (``fedavg``: weighted by the samples each
  facility trained on) or ``w_i = 1 / F`` (``mean``), computed in float64 and stored in the updates' dtype;
- the round's checkpoint ``<checkpoints>/round-NNNN/``: the model, every update and result, and
  ``round.json`` (weights, samples, metrics, digests). It is written under a temporary name and renamed
  last, so a directory with that name is a complete round: what a rerun resumes from.

At a facility the step writes ``model.npz`` and ``round.json`` (the record, with where it ran and its
batch job's id) as its outputs and no checkpoint; the engine copies both back and a second step on the
controller (``--checkpoint-only``) checks the model and the updates against the record and writes the
checkpoint there: checkpoints always live on the controller.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

MODEL = "model.npz"
ROUND = "round.json"


def round_dir(checkpoints: Path, number: int) -> Path:
    return checkpoints / f"round-{number:04d}"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def weights_of(results: list[dict[str, Any]], method: str) -> dict[str, float]:
    if method == "mean":
        return {r["facility"]: 1.0 / len(results) for r in results}
    total = sum(int(r["samples"]) for r in results)
    return {r["facility"]: int(r["samples"]) / total for r in results}


def average(updates: dict[str, dict[str, np.ndarray]], weights: dict[str, float]) -> dict[str, np.ndarray]:
    """The weighted average of ``updates`` (facility -> arrays), array by array."""
    first = next(iter(updates.values()))
    out: dict[str, np.ndarray] = {}
    for name, ref in first.items():
        acc = np.zeros(ref.shape, dtype=np.float64)
        for facility, arrays in updates.items():
            acc += weights[facility] * arrays[name].astype(np.float64)
        out[name] = acc.astype(ref.dtype)
    return out


class AggregationError(Exception):
    pass


def _check_shapes(updates: dict[str, dict[str, np.ndarray]]) -> None:
    names = {f: sorted(a) for f, a in updates.items()}
    ref_facility, ref = next(iter(updates.items()))
    for facility, arrays in updates.items():
        if names[facility] != names[ref_facility]:
            raise AggregationError(f"the update of {facility} holds arrays {names[facility]}, the update of "
                                   f"{ref_facility} {names[ref_facility]}: every facility must train the same model")
        for name, array in arrays.items():
            if array.shape != ref[name].shape or not np.issubdtype(array.dtype, np.number):
                raise AggregationError(f"array {name!r} of {facility} is {array.dtype}{list(array.shape)}, "
                                       f"of {ref_facility} {ref[name].dtype}{list(ref[name].shape)}")


def compute(number: int, method: str, update_files: list[Path], result_files: list[Path], out: Path,
            runs_on: str = "controller") -> tuple[dict[str, Any], dict[str, Path]]:
    """Average the round's updates into ``out``; return the round's record and each facility's update file."""
    results = [json.loads(p.read_text()) for p in result_files]
    by_digest = {sha256(p): p for p in update_files}
    updates: dict[str, dict[str, np.ndarray]] = {}
    paths: dict[str, Path] = {}
    for r in results:
        path = by_digest.get(r["update_sha256"])
        if path is None:
            raise AggregationError(f"the update of {r['facility']} in round {number} did not arrive intact "
                                   "(no update with the digest its result names)")
        if r["round"] != number:
            raise AggregationError(f"{r['facility']} sent the result of round {r['round']} in round {number}")
        updates[r["facility"]] = load_arrays(path)
        paths[r["facility"]] = path
    if len(updates) != len(results) or not updates:
        raise AggregationError(f"round {number}: {len(results)} results but {len(updates)} distinct updates")
    _check_shapes(updates)
    weights = weights_of(results, method)
    model = average(updates, weights)
    np.savez(out, **dict(sorted(model.items())))  # type: ignore[arg-type]
    record = {
        "round": number,
        "method": method,
        "weights": weights,
        "facilities": {r["facility"]: r for r in results},
        "model_sha256": sha256(out),
        "model_bytes": out.stat().st_size,
        "aggregated_at": time.time(),
        # where the averaging ran: the controller, or a facility's batch job (its queue manager's job id)
        "aggregated_on": {
            "runs_on": runs_on,
            "host": socket.gethostname(),
            "job_id": next((os.environ[v] for v in ("SLURM_JOB_ID", "PBS_JOBID", "FLUX_JOB_ID") if os.environ.get(v)),
                           None),
        },
    }
    for metric in ("loss", "accuracy"):
        values = {r["facility"]: r["metrics"].get(metric) for r in results}
        if all(v is not None for v in values.values()):
            record[metric] = sum(weights[f] * float(v) for f, v in values.items() if v is not None)
    return record, paths


def write_checkpoint(checkpoints: Path, record: dict[str, Any], model: Path, updates: dict[str, Path]) -> Path:
    """The round's checkpoint directory, complete or absent: written under a temporary name, renamed last."""
    number = int(record["round"])
    final = round_dir(checkpoints, number)
    tmp = checkpoints / f".round-{number:04d}.{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "updates").mkdir(parents=True)
    (tmp / "results").mkdir()
    shutil.copyfile(model, tmp / MODEL)
    for facility, path in updates.items():
        shutil.copyfile(path, tmp / "updates" / f"{facility}.npz")
    for facility, result in record["facilities"].items():
        (tmp / "results" / f"{facility}.json").write_text(json.dumps(result, sort_keys=True) + "\n")
    (tmp / ROUND).write_text(json.dumps(record, sort_keys=True, indent=1) + "\n")
    if final.exists():
        shutil.rmtree(final)
    os.rename(tmp, final)
    return final


def aggregate(number: int, method: str, update_files: list[Path], result_files: list[Path],
              checkpoints: Path, out: Path) -> dict[str, Any]:
    """On the controller: average the round and write its checkpoint at once."""
    record, paths = compute(number, method, update_files, result_files, out)
    write_checkpoint(checkpoints, record, out, paths)
    return record


def checkpoint(number: int, record_file: Path, model: Path, update_files: list[Path], checkpoints: Path,
               out: Path) -> dict[str, Any]:
    """On the controller, after an aggregation at a facility: check that the model and the updates that came
    back are the ones the aggregator's record names, write the checkpoint and give the model on (``out``)."""
    record = json.loads(record_file.read_text())
    if record.get("round") != number:
        raise AggregationError(f"the aggregator's record is of round {record.get('round')}, not {number}")
    if sha256(model) != record.get("model_sha256"):
        raise AggregationError(f"the model of round {number} did not come back from the aggregator intact")
    by_digest = {sha256(p): p for p in update_files}
    updates: dict[str, Path] = {}
    for facility, r in record["facilities"].items():
        path = by_digest.get(r["update_sha256"])
        if path is None:
            raise AggregationError(f"the update of {facility} in round {number} did not reach the controller intact")
        updates[facility] = path
    write_checkpoint(checkpoints, record, model, updates)
    if not (out.exists() and out.samefile(model)):
        shutil.copyfile(model, out)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="aggregate one round of federated training")
    parser.add_argument("--round", type=int, required=True)
    parser.add_argument("--method", choices=("fedavg", "mean"))
    parser.add_argument("--checkpoints", help="write the round's checkpoint there (on the controller)")
    parser.add_argument("--runs-on", default="controller", help="where this aggregation runs (for the record)")
    parser.add_argument("--record", help="with --checkpoint-only: the aggregator's round.json")
    parser.add_argument("--model", help="with --checkpoint-only: the model the aggregator wrote")
    parser.add_argument("--checkpoint-only", action="store_true",
                        help="write the checkpoint of an aggregation that ran elsewhere")
    parser.add_argument("--out", default=MODEL)
    parser.add_argument("--updates", required=True, help="comma-separated update files")
    parser.add_argument("--results", help="comma-separated result files")
    ns = parser.parse_args(argv)
    updates = [Path(p) for p in ns.updates.split(",")]
    try:
        if ns.checkpoint_only:
            if not (ns.record and ns.model and ns.checkpoints):
                parser.error("--checkpoint-only needs --record, --model and --checkpoints")
            record = checkpoint(ns.round, Path(ns.record), Path(ns.model), updates, Path(ns.checkpoints),
                                Path(ns.out))
        else:
            if not (ns.method and ns.results):
                parser.error("aggregating needs --method and --results")
            results = [Path(p) for p in ns.results.split(",")]
            if ns.checkpoints:
                record = aggregate(ns.round, ns.method, updates, results, Path(ns.checkpoints), Path(ns.out))
            else:  # at a facility: the record goes back with the model, the controller checkpoints both
                record, _paths = compute(ns.round, ns.method, updates, results, Path(ns.out), ns.runs_on)
                Path(ROUND).write_text(json.dumps(record, sort_keys=True, indent=1) + "\n")
    except (AggregationError, OSError, ValueError, KeyError) as exc:
        print(f"aiinfn-fl aggregate: round {ns.round}: {exc}", file=sys.stderr)
        return 2
    print(f"round {record['round']}: aggregated {len(record['facilities'])} updates", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
