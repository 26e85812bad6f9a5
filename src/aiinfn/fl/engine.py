"""What StreamFlow says while it runs, read from its log: steps, batch jobs, copies, failures.

StreamFlow 0.1.6 logs one line per event (``%(asctime)s.%(msecs)03d LEVEL message``): a job executing on
a resource in a directory, a batch job scheduled with its id, a copy between the local file-system and a
resource, a step terminating with its status, a job failing with its error (the error follows on lines
that start with a tab). ``EngineLog`` turns those lines into events per round and facility, and accounts
each copy to the round and facility it served: a copy to a facility of a file the aggregator of round k
wrote carries the model of round k + 1; a copy from a train step's directory carries that step's outputs;
the workflow's own inputs (the first model, the entry point, task.py) count for the run's first round.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_STAMP = r"(?P<t>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) +(?P<level>[A-Z]+) +"
_STEP = (r"/(?P<step>(?:train-r(?P<round>\d{4})-(?P<facility>[a-z0-9-]+))|"
         r"(?:(?P<stage>aggregate|checkpoint)-r(?P<around>\d{4})))")
EXECUTING = re.compile(_STAMP + r"Executing job " + _STEP + r"/run/\S+ (?:locally|on resource (?P<res>\S+)) "
                       r"into directory (?P<dir>\S+?):?$")
SCHEDULED = re.compile(_STAMP + r"Scheduled job " + _STEP + r"/run/\S+ with job id (?P<job>\S+)")
#: a step's own job (``/run``) or one of its input/output transfers (``/in/model``) ends
TERMINATED = re.compile(_STAMP + r"Step " + _STEP + r"/(?P<sub>run|in/[\w-]+|out/[\w-]+) terminated with status "
                        r"(?P<status>[A-Z]+)")
FAILED = re.compile(_STAMP + r"Job " + _STEP + r"/(?:run|in/[\w-]+|out/[\w-]+)/\S+ failed with error:")
TO_REMOTE = re.compile(_STAMP + r"Copying (?P<src>\S+) on local file-system to (?P<dst>\S+) on resource (?P<res>\S+)$")
TO_LOCAL = re.compile(_STAMP + r"Copying (?P<src>\S+) on resource (?P<res>\S+) to (?P<dst>\S+) on local file-system$")
ERROR = re.compile(_STAMP + r"(?P<message>.*)$")


def _time(stamp: str) -> float:
    return dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S.%f").timestamp()


def size_of(path: Path) -> int:
    try:
        if path.is_file():
            return path.stat().st_size
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    except OSError:
        return 0


@dataclass
class StepRecord:
    step: str
    round: int
    facility: str | None
    started: float | None = None
    ended: float | None = None
    status: str | None = None
    job_id: str | None = None
    directory: str | None = None
    error: list[str] = field(default_factory=list)
    #: train, aggregate, or checkpoint (the controller's step after an aggregation at a facility)
    stage: str = "train"
    #: the StreamFlow resource it ran on (None: the controller)
    resource: str | None = None

    @property
    def seconds(self) -> float | None:
        return None if self.started is None or self.ended is None else self.ended - self.started


#: The ``facility`` of a copy to or from the aggregator at a facility.
AGGREGATOR = "(aggregator)"


@dataclass
class Copy:
    round: int
    facility: str
    direction: str  # "to" the facility or "from" it
    path: str
    bytes: int


@dataclass
class EngineLog:
    """The events of one StreamFlow run, fed line by line."""

    facilities: dict[str, str]  # StreamFlow resource name (host:port) -> facility
    first_round: int
    #: where the aggregator works at a facility (its resource and workdir), when it runs at one: the copies
    #: to and from there are the aggregation's, accounted apart from that facility's training
    aggregator: tuple[str, str] | None = None
    steps: dict[str, StepRecord] = field(default_factory=dict)
    copies: list[Copy] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: when the engine was started and when it exited (time.time())
    engine_started: float | None = None
    engine_ended: float | None = None
    _pending_remote: list[tuple[str, str, str]] = field(default_factory=list)
    _pending_aggregator: list[tuple[int, str, str]] = field(default_factory=list)
    _last_failed: StepRecord | None = None

    def _record(self, m: re.Match[str]) -> StepRecord:
        step = m["step"]
        rec = self.steps.get(step)
        if rec is None:
            number = int(m["round"] or m["around"])
            rec = self.steps[step] = StepRecord(step, number, m["facility"], stage=m["stage"] or "train")
        return rec

    def feed(self, line: str) -> StepRecord | None:
        """Take one line of the log; return the step it changed, if any."""
        if line.startswith("\t") and self._last_failed is not None:
            self._last_failed.error.append(line.strip())
            return self._last_failed
        self._last_failed = None
        if m := EXECUTING.match(line):
            rec = self._record(m)
            rec.started, rec.directory, rec.resource = _time(m["t"]), m["dir"], m["res"]
            return rec
        if m := SCHEDULED.match(line):
            rec = self._record(m)
            rec.job_id = m["job"]
            return rec
        if m := TERMINATED.match(line):
            rec = self._record(m)
            if m["sub"] == "run" or m["status"] == "FAILED":
                rec.ended, rec.status = _time(m["t"]), m["status"]
            return rec
        if m := FAILED.match(line):
            rec = self._record(m)
            self._last_failed = rec
            return rec
        if m := TO_REMOTE.match(line):
            if self._aggregator_side(m["res"], m["dst"]):
                self.copies.append(Copy(self._training_round(), AGGREGATOR, "to", m["src"], size_of(Path(m["src"]))))
            else:
                self._copy_to(m["src"], m["res"])
            return None
        if m := TO_LOCAL.match(line):
            if self._aggregator_side(m["res"], m["src"]):
                self._pending_aggregator.append((self._training_round(), m["src"], m["dst"]))
            else:
                self._pending_remote.append((m["src"], m["res"], m["dst"]))
            return None
        if (m := ERROR.match(line)) and m["level"] in ("ERROR", "CRITICAL"):
            self.errors.append(m["message"])
        return None

    def facility_in_errors(self) -> str | None:
        """The facility whose login node an error message names (an SSH error names host:port)."""
        for message in reversed(self.errors):
            for resource, facility in self.facilities.items():
                if resource in message or resource.rsplit(":", 1)[0] in message:
                    return facility
        return None

    def _aggregator_side(self, resource: str, path: str) -> bool:
        return self.aggregator is not None and resource == self.aggregator[0] and _under_tree(path, self.aggregator[1])

    def _training_round(self) -> int:
        """The round whose aggregation a copy serves: the last round with a completed training step."""
        done = [r.round for r in self.steps.values() if r.stage == "train" and r.status == "COMPLETED"]
        return max(done, default=self.first_round)

    def _copy_to(self, src: str, resource: str) -> None:
        facility = self.facilities.get(resource)
        if facility is None:
            return
        number = self.first_round
        for rec in self.steps.values():
            if rec.facility is None and rec.directory and _under(src, rec.directory):
                number = rec.round + 1
        self.copies.append(Copy(number, facility, "to", src, size_of(Path(src))))

    def settle(self) -> None:
        """Account the copies back to the controller (their files exist once the run is over)."""
        for src, resource, dst in self._pending_remote:
            facility = self.facilities.get(resource)
            rec = next((r for r in self.steps.values() if r.facility == facility and r.directory
                        and _under(src, r.directory)), None)
            if facility is None or rec is None:
                continue
            self.copies.append(Copy(rec.round, facility, "from", src, size_of(Path(dst))))
        self._pending_remote.clear()
        for number, src, dst in self._pending_aggregator:
            self.copies.append(Copy(number, AGGREGATOR, "from", src, size_of(Path(dst))))
        self._pending_aggregator.clear()

    def failed_step(self) -> StepRecord | None:
        failed = [r for r in self.steps.values() if r.status == "FAILED" or (r.error and r.status != "COMPLETED")]
        return min(failed, key=lambda r: (r.round, r.facility is None)) if failed else None

    def running(self) -> list[StepRecord]:
        return [r for r in self.steps.values() if r.started is not None and r.ended is None]

    def to_json(self) -> dict[str, Any]:
        return {
            "steps": {k: vars(v) for k, v in sorted(self.steps.items())},
            "copies": [vars(c) for c in self.copies],
            "errors": self.errors[-20:],
            "engine_started": self.engine_started,
            "engine_ended": self.engine_ended,
        }


def _under_tree(path: str, directory: str) -> bool:
    d = directory.rstrip("/")
    return path == d or path.startswith(d + "/")


def _under(path: str, directory: str) -> bool:
    d = directory.rstrip("/")
    return path == d or path.startswith(d + "/") or os.path.dirname(path) == d
