"""One round at one facility: run the researcher's entry point on the local data, record what happened.

Shipped as a file: the workflow engine stages it next to the entry point in the job's directory on the
facility and runs it with the image's ``python3``; it needs only the standard library (never ``import
aiinfn`` here). The entry point's contract (docs/user-guide-fl.md)::

    python3 ENTRY --model MODEL.npz --data DATASET --out update.npz --metrics metrics.json --round N [ARGS]

``MODEL.npz`` holds the global model's named arrays; the entry point writes its updated arrays (same
names and shapes) to ``update.npz`` and at least ``{"samples": <training examples used>}`` to
``metrics.json`` (``loss`` and ``accuracy`` are reported when present). The data stays where it is: the
entry point reads ``DATASET`` in place and nothing of it is an output of the step.

This program renames the update ``update-<facility>.npz`` and writes ``result-<facility>.json``: the
facility, the round, the metrics, the time the training took
inside the job, the batch job's id and host, and the digests of the model it started from and of the
update it produced (the aggregator pairs each update with its result by that digest).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

UPDATE = "update.npz"
METRICS = "metrics.json"


def update_file(facility: str) -> str:
    """What the step outputs: the update and the result under names of their facility (StreamFlow 0.1.6 stages
    the files of one array input into one directory, where files of the same name overwrite each other)."""
    return f"update-{facility}.npz"


def result_file(facility: str) -> str:
    return f"result-{facility}.json"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fail(message: str) -> int:
    print(f"aiinfn-fl task: {message}", file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--facility", required=True)
    parser.add_argument("--round", type=int, required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--entry", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("args", nargs=argparse.REMAINDER)
    ns = parser.parse_args(argv)
    extra = ns.args[1:] if ns.args[:1] == ["--"] else ns.args
    if not os.path.exists(ns.dataset):
        return _fail(f"facility {ns.facility}: dataset {ns.dataset} does not exist here ({socket.gethostname()})")
    command = [sys.executable, ns.entry, "--model", ns.model, "--data", ns.dataset, "--out", UPDATE,
               "--metrics", METRICS, "--round", str(ns.round), *extra]
    started = time.time()
    t0 = time.perf_counter()
    proc = subprocess.run(command, stdin=subprocess.DEVNULL, check=False)
    train_seconds = time.perf_counter() - t0
    ended = time.time()
    if proc.returncode != 0:
        return _fail(f"facility {ns.facility}: the entry point exited {proc.returncode} in round {ns.round}")
    written, metrics_file = Path(UPDATE), Path(METRICS)
    if not written.is_file() or not metrics_file.is_file():
        return _fail(f"facility {ns.facility}: the entry point wrote no {UPDATE} or no {METRICS}")
    update = Path(update_file(ns.facility))
    os.replace(written, update)
    try:
        metrics = json.loads(metrics_file.read_text())
    except (OSError, ValueError) as exc:
        return _fail(f"facility {ns.facility}: {METRICS} is not JSON ({exc})")
    samples = metrics.get("samples") if isinstance(metrics, dict) else None
    if not isinstance(samples, int) or isinstance(samples, bool) or samples <= 0:
        return _fail(f"facility {ns.facility}: {METRICS} must hold a positive whole 'samples', got {samples!r}")
    numbers = {k: float(v) for k, v in metrics.items()
               if k != "samples" and isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)}
    result = {
        "facility": ns.facility,
        "round": ns.round,
        "samples": samples,
        "metrics": numbers,
        "train_seconds": train_seconds,
        "started": started,
        "ended": ended,
        "host": socket.gethostname(),
        "job_id": next((os.environ[v] for v in ("SLURM_JOB_ID", "PBS_JOBID", "FLUX_JOB_ID") if os.environ.get(v)),
                       os.environ.get("HOSTNAME", "")),
        "model_sha256": _sha256(Path(ns.model)),
        "update_sha256": _sha256(update),
        "update_bytes": update.stat().st_size,
    }
    Path(result_file(ns.facility)).write_text(json.dumps(result, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
