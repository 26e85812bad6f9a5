"""The state directory of a training: its checkpoints, runs, report and lock (layout in aiinfn.fl.run)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import AiinfnError
from . import aggregate as aggregate_program


class RunError(AiinfnError):
    """The training stopped before its last round: the message names the facility and how to resume."""

    exit_code = 1


@dataclass(frozen=True)
class State:
    root: Path

    @property
    def rounds(self) -> Path:
        return self.root / "rounds"

    @property
    def plan(self) -> Path:
        return self.root / "plan"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def model(self) -> Path:
        return self.root / "model.npz"

    def meta(self) -> dict[str, Any]:
        try:
            data = json.loads((self.root / "state.json").read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def write_meta(self, data: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / "state.json.tmp"
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
        os.replace(tmp, self.root / "state.json")

    def completed(self) -> list[dict[str, Any]]:
        """Round records of the complete rounds 1..k (a round counts only if its model is intact)."""
        out = []
        number = 1
        while True:
            d = aggregate_program.round_dir(self.rounds, number)
            try:
                rec = json.loads((d / aggregate_program.ROUND).read_text())
                intact = aggregate_program.sha256(d / aggregate_program.MODEL) == rec.get("model_sha256")
            except (OSError, ValueError):
                break
            if not intact:
                break
            out.append(rec)
            number += 1
        return out

    def round_model(self, number: int) -> Path:
        return aggregate_program.round_dir(self.rounds, number) / aggregate_program.MODEL

    def last_run(self) -> Path | None:
        runs = sorted(self.runs.glob("[0-9][0-9][0-9][0-9]")) if self.runs.is_dir() else []
        return runs[-1] if runs else None

    def running_pid(self) -> int | None:
        try:
            pid = int((self.root / "run.pid").read_text())
        except (OSError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except OSError:
            return None
        return pid

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        fh = open(self.root / "run.lock", "a+")  # noqa: SIM115 - held for the run
        try:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise RunError(f"another `aiinfn fl run` is using {self.root} (pid {self.running_pid() or '?'}): "
                               "wait for it, or see `aiinfn fl status`") from None
            (self.root / "run.pid").write_text(str(os.getpid()))
            yield
        finally:
            with contextlib.suppress(OSError):
                (self.root / "run.pid").unlink()
            fh.close()
