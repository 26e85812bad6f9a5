"""Plan, run and resume a federated training: aiinfn prepares, StreamFlow runs, aiinfn reports.

State of a training (``--state``, default ``build/fl/<name>``)::

    state.json            what the checkpoints belong to (the description's digest), the rounds
    plan/                 the last `aiinfn fl plan`: workflow, deployments, batch scripts, charts
    rounds/round-NNNN/    every completed round (aggregate.py): model, updates, results, round.json
    runs/NNNN/            one hand-over to StreamFlow: its files, log (streamflow.log), engine.json
    model.npz             the final model, once every round is complete
    report.json, report.md

A run hands rounds ``k+1..R`` to StreamFlow, where ``k`` is the last complete round in ``rounds/``:
StreamFlow 0.1.6 cannot resume a failed workflow itself (it keeps no state a new run could start from),
so resuming is done a level up, by round: each round is checkpointed on the controller (by the aggregator
there, or, when ``aggregation.runs_on`` names a facility, by a controller step that gets the model and
the record back from the facility's aggregation job) and a rerun hands the engine a workflow of the
rounds still to do, starting from the last round's model.

While StreamFlow runs, its log gives the progress per round and facility (aiinfn.fl.engine) and a
watchdog probes each HPC facility's login node: a facility that stops answering, or whose step fails,
stops the run with one line naming it, the round, and how to resume.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from ..errors import AiinfnError
from . import aggregate as aggregate_program
from . import registry, remote
from .description import Description, SiteQueue, check_platform
from .engine import EngineLog, StepRecord
from .model import HpcFacility
from .state import RunError, State
from .workflow import AGGREGATOR_WORKDIR, Generated, generate

#: Seconds between probes of a login node, and how many may fail in a row before it counts as down.
PROBE_INTERVAL = 2.0
PROBE_FAILURES = 4
#: Most paths StreamFlow's translator may walk from the last aggregation back (see rounds_per_run).
MAX_PATHS = 64
#: A refused SSH channel (asyncssh's ChannelOpenError) is handed over again, at most this often per run.
TRANSIENT_RETRIES = 2
TRANSIENT_SSH_ERROR = "open failed"
#: Seconds StreamFlow gets to undeploy after it is told to stop, before it is killed.
STOP_GRACE = 10.0


def default_state(desc: Description) -> Path:
    return Path("build") / "fl" / desc.training.name


# --------------------------------------------------------------------------- plan


@dataclass(frozen=True)
class Planned:
    desc: Description
    state: State
    queues: dict[str, SiteQueue]
    generated: Generated
    ssh_config: Path
    remote_checked: bool


def _ssh_home(desc: Description, where: Path) -> Path:
    """A HOME for the engine whose ~/.ssh/config is ours (keepalives, known_hosts); returns its config."""
    ssh = where / "home" / ".ssh"
    ssh.mkdir(parents=True, exist_ok=True, mode=0o700)
    config = ssh / "config"
    config.write_text(remote.ssh_config(desc))
    config.chmod(0o600)
    return config


def check_generated(gen: Generated) -> None:
    """The generated files as StreamFlow itself reads them: its schema, its connectors, cwltool's loader."""
    import cwltool.context
    import cwltool.load_tool
    from streamflow.config.validator import SfValidator
    from streamflow.core.exception import WorkflowDefinitionException
    from streamflow.deployment.deployment_manager import connector_classes

    try:
        config = SfValidator().validate_file(str(gen.streamflow))
    except WorkflowDefinitionException as e:
        last = str(e).splitlines()[-1]
        raise AiinfnError(f"{gen.streamflow}: StreamFlow refuses the generated file: {last}") from None
    for name, model in config.get("models", {}).items():
        connector_classes[model["type"]](str(gen.root), **model["config"])  # reads templates, connects nowhere
        del name
    ctx = cwltool.context.LoadingContext()
    ctx, obj, uri = cwltool.load_tool.fetch_document(str(gen.workflow), ctx)
    cwltool.load_tool.resolve_and_validate_document(ctx, obj, uri)


def plan(desc: Description, state_dir: Path | None = None, *, registry_url: str | None = None,
         check_remote: bool = True) -> Planned:
    """Every check, then the workflow of the first hand-over (rounds 1..rounds_per_run) and the deployments
    under ``<state>/plan`` (nothing runs)."""
    state = State(state_dir or default_state(desc))
    queues = check_platform(desc)
    state.plan.mkdir(parents=True, exist_ok=True)
    config = _ssh_home(desc, state.plan)
    if check_remote:
        registry.check(desc, registry_url)
        remote.check(desc, config)
    last = min(desc.training.rounds, _per_run(desc))
    gen = generate(desc, state.plan, first=1, last=last, model=desc.local(desc.training.initial_model),
                   checkpoints=state.rounds, queues=queues)
    check_generated(gen)
    return Planned(desc, state, queues, gen, config, check_remote)


# --------------------------------------------------------------------------- run


@dataclass
class Event:
    """Something a user watching the run wants to see."""

    round: int
    facility: str | None
    what: str  # submitted | done | failed | aggregated | stopping
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class Outcome:
    state: State
    first: int
    last: int
    resumed_from: int
    report: dict[str, Any]


class _Watchdog(threading.Thread):
    """Probes each HPC facility's login node (TCP connect) while the engine runs."""

    def __init__(self, desc: Description) -> None:
        super().__init__(daemon=True, name="aiinfn-fl-watchdog")
        self.targets = {n: (f.host, f.port) for n, f in desc.training.hpc().items()}
        self.failures = dict.fromkeys(self.targets, 0)
        self.down: dict[str, float] = {}
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.wait(PROBE_INTERVAL):
            for name, (host, port) in self.targets.items():
                try:
                    with socket.create_connection((host, port), timeout=PROBE_INTERVAL):
                        self.failures[name] = 0
                except OSError:
                    self.failures[name] += 1
                    if self.failures[name] >= PROBE_FAILURES and name not in self.down:
                        self.down[name] = time.time()


def _describe_facility(desc: Description, name: str) -> str:
    f = desc.training.facilities[name]
    if isinstance(f, HpcFacility):
        return f"facility {name} ({f.kind} at {f.user}@{f.address})"
    return f"facility {name} (site {f.site})"


def _resume_hint(desc: Description, done: int, number: int) -> str:
    kept = f"rounds 1-{done} are complete and kept" if done > 1 else ("round 1 is complete and kept" if done == 1
                                                                        else "no round is complete yet")
    return f"{kept}; rerun `aiinfn fl run {desc.file}` to resume from round {number}"


def _start_engine(gen: Generated, home: Path, log: IO[str]) -> subprocess.Popen[str]:
    tmp = gen.root / "tmp"
    tmp.mkdir(exist_ok=True)
    env = {**os.environ, "HOME": str(home), "TMPDIR": str(tmp), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "streamflow", "run", str(gen.streamflow), "--outdir", str(gen.root / "out")],
        cwd=gen.root, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, errors="replace", start_new_session=True,
    )


def _stop_engine(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_GRACE)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def _event_of(rec: StepRecord, state: State, at_facility: bool = False) -> Event | None:
    if rec.facility is None:
        # a round is aggregated once its checkpoint is on the controller: after an aggregation at a facility,
        # that is the controller's checkpoint step
        if rec.status == "COMPLETED" and not (at_facility and rec.stage == "aggregate"):
            detail: dict[str, Any] = {}
            with contextlib.suppress(OSError, ValueError):
                detail = json.loads((aggregate_program.round_dir(state.rounds, rec.round) /
                                     aggregate_program.ROUND).read_text())
            return Event(rec.round, None, "aggregated", detail)
        return None
    if rec.status == "COMPLETED":
        return Event(rec.round, rec.facility, "done", {"seconds": rec.seconds, "job_id": rec.job_id})
    if rec.status == "FAILED":
        return Event(rec.round, rec.facility, "failed", {"error": rec.error[:3]})
    if rec.job_id is not None and rec.ended is None:
        return Event(rec.round, rec.facility, "submitted", {"job_id": rec.job_id})
    return None


def run(desc: Description, state_dir: Path | None = None, *, registry_url: str | None = None,
        check_remote: bool = True, restart: bool = False,
        on_event: Callable[[Event], None] | None = None) -> Outcome:
    """Run the rounds not complete yet; raise RunError naming the facility when one fails."""
    from .report import build_report, write_report

    state = State(state_dir or default_state(desc))
    emit = on_event or (lambda _e: None)
    with state.lock():
        digest = desc.digest()
        meta = state.meta()
        if restart or (meta.get("digest") not in (None, digest) and not state.completed()):
            shutil.rmtree(state.rounds, ignore_errors=True)
            with contextlib.suppress(OSError):
                state.model.unlink()
        elif meta.get("digest") not in (None, digest):
            raise RunError(f"{desc.file} changed since rounds were completed in {state.root}: the checkpoints belong "
                           "to another training; run with --restart to start over from round 1")
        state.write_meta({"digest": digest, "name": desc.training.name, "rounds": desc.training.rounds,
                          "facilities": sorted(desc.training.facilities)})
        done = len(state.completed())
        total = desc.training.rounds
        if done >= total:
            report = build_report(desc, state)
            write_report(state, report)
            return Outcome(state, total + 1, total, done, report)
        first = done + 1
        planned = plan(desc, state.root, registry_url=registry_url, check_remote=check_remote)
        resources = {f.address: n for n, f in desc.training.hpc().items()}
        per_run = _per_run(desc)
        retries = 0
        a = first
        while a <= total:
            b = min(total, a + per_run - 1)
            number = len(list(state.runs.glob("[0-9][0-9][0-9][0-9]"))) + 1 if state.runs.is_dir() else 1
            root = state.runs / f"{number:04d}"
            shutil.rmtree(root, ignore_errors=True)
            start_model = state.round_model(a - 1) if a > 1 else desc.local(desc.training.initial_model)
            gen = generate(desc, root, first=a, last=b, model=start_model, checkpoints=state.rounds,
                           queues=planned.queues)
            _ssh_home(desc, root)
            log = EngineLog(resources, a, aggregator=aggregator_side(desc))
            failure = _drive(desc, state, gen, log, emit)
            log.settle()
            (root / "engine.json").write_text(json.dumps(log.to_json(), indent=1, sort_keys=True) + "\n")
            completed = len(state.completed())
            if (failure is not None or completed < b) and retries < TRANSIENT_RETRIES and _transient(desc, log):
                # a login node refused an SSH channel for a moment: hand the rounds left over again, from the
                # last checkpoint, as a rerun would (the failed hand-over's files stay in runs/)
                retries += 1
                emit(Event(completed + 1, None, "stopping", {
                    "reason": f"a login node refused an SSH channel (open failed); handing rounds {completed + 1}-"
                    f"{total} over again from the last checkpoint", "retry": retries}))
                a = completed + 1
                continue
            if failure is not None or completed < b:
                write_report(state, build_report(desc, state))
                reason = failure or _engine_failure(desc, log)
                number_failed = completed + 1
                raise RunError(f"{reason} in round {number_failed}; {_resume_hint(desc, completed, number_failed)}")
            a = b + 1
        shutil.copyfile(state.round_model(total), state.model)
        report = build_report(desc, state)
        write_report(state, report)
        return Outcome(state, first, total, done, report)


def aggregator_side(desc: Description) -> tuple[str, str] | None:
    """The aggregator's StreamFlow resource and workdir at its facility (None on the controller)."""
    where = desc.training.aggregation.at_facility
    if where is None:
        return None
    f = desc.training.hpc()[where]
    return f.address, f"{f.workdir}/{AGGREGATOR_WORKDIR}"


def rounds_per_run(facilities: int, aggregator_at_facility: bool = False) -> int:
    """Rounds handed to StreamFlow at once. Its 0.1.6 translator walks every path from a step back to the
    workflow's inputs without remembering any, and a round's aggregation has one path per facility into
    each earlier round: ``facilities ** rounds`` paths (2 facilities, 8 rounds: 50 s before the first job
    here). With the aggregator at a facility a round ends in the controller's checkpoint step, which has
    three paths per facility into the round (the model and the record through the aggregation, the update
    itself): ``(3 * facilities) ** rounds``. Keeping that at most MAX_PATHS bounds the translation; the
    rounds of a training then run as a sequence of workflows, each starting from the last one's checkpoint."""
    branching = facilities * (3 if aggregator_at_facility else 1)
    if branching <= 1:
        return 1000
    return max(1, int(math.log(MAX_PATHS) / math.log(branching) + 1e-9))


def _per_run(desc: Description) -> int:
    t = desc.training
    return rounds_per_run(len(t.facilities), t.aggregation.at_facility is not None)


def _drive(desc: Description, state: State, gen: Generated, log: EngineLog,
           emit: Callable[[Event], None]) -> str | None:
    """Run StreamFlow to its end; return why a facility stopped it, if one did."""
    watchdog = _Watchdog(desc)
    at_facility = desc.training.aggregation.at_facility is not None
    lines: list[str] = []
    done_reading = threading.Event()
    with open(gen.root / "streamflow.log", "w") as logfile:
        log.engine_started = time.time()
        proc = _start_engine(gen, gen.root / "home", logfile)

        def reader() -> None:
            assert proc.stdout is not None
            for line in proc.stdout:
                logfile.write(line)
                logfile.flush()
                lines.append(line.rstrip("\n"))
            done_reading.set()

        threading.Thread(target=reader, daemon=True, name="aiinfn-fl-log").start()
        watchdog.start()
        failure: str | None = None
        seen = 0
        emitted: set[tuple[int, str | None, str]] = set()
        try:
            while True:
                finished = done_reading.wait(0.2)
                while seen < len(lines):
                    rec = log.feed(lines[seen])
                    seen += 1
                    ev = _event_of(rec, state, at_facility) if rec is not None else None
                    if ev is not None and (ev.round, ev.facility, ev.what) not in emitted:
                        emitted.add((ev.round, ev.facility, ev.what))
                        emit(ev)
                    if rec is not None and rec.status == "FAILED" and rec.facility is not None and failure is None:
                        failure = f"{_describe_facility(desc, rec.facility)} failed: " + _first_error(rec)
                if finished:
                    break
                down = sorted(watchdog.down, key=watchdog.down.__getitem__)
                if down and failure is None:
                    name = down[0]
                    failure = (f"{_describe_facility(desc, name)} stopped answering (no reply from its login node for "
                               f"{PROBE_INTERVAL * PROBE_FAILURES:.0f} s)")
                if failure is not None:
                    emit(Event(len(state.completed()) + 1, None, "stopping", {"reason": failure}))
                    _stop_engine(proc)
        finally:
            watchdog.stop_event.set()
            _stop_engine(proc)
            done_reading.wait(10)
            log.engine_ended = time.time()
    return failure


def _transient(desc: Description, log: EngineLog) -> bool:
    """The engine stopped because a login node refused it one more SSH channel (asyncssh's ChannelOpenError
    "open failed", OpenSSH's answer past MaxSessions), and every login node answers. Seen on the test
    facilities in about one hand-over in three with the aggregator at a facility, right after the
    aggregation's inputs were staged there; the cause in StreamFlow 0.1.6 is not pinned down."""
    refused = any(e.strip() == TRANSIENT_SSH_ERROR for e in log.errors) or any(
        TRANSIENT_SSH_ERROR in line for r in log.steps.values() for line in r.error)
    return refused and not _unreachable(desc)


def _first_error(rec: StepRecord) -> str:
    text = [line for line in rec.error if line]
    if not text:
        return "its job failed (see the run's streamflow.log)"
    message = next((line for line in text if "aiinfn-fl task:" in line), text[-1])
    return message.split("aiinfn-fl task: ", 1)[-1][:300]


def _unreachable(desc: Description) -> list[str]:
    """HPC facilities whose login node does not answer now (one TCP connect each)."""
    out = []
    for name, f in desc.training.hpc().items():
        try:
            with socket.create_connection((f.host, f.port), timeout=PROBE_INTERVAL):
                pass
        except OSError:
            out.append(name)
    return out


def _engine_failure(desc: Description, log: EngineLog) -> str:
    down = _unreachable(desc)
    if down:
        return f"{_describe_facility(desc, down[0])} stopped answering (its login node does not accept connections)"
    rec = log.failed_step()
    if rec is not None and rec.facility is not None:
        return f"{_describe_facility(desc, rec.facility)} failed: {_first_error(rec)}"
    named = log.facility_in_errors()
    if named is not None:
        return f"{_describe_facility(desc, named)} failed: {log.errors[-1][:300]}"
    if rec is not None:
        where = desc.training.aggregation.at_facility
        at = f" at {_describe_facility(desc, where)}" if where is not None else ""
        return f"the aggregation{at} failed: {_first_error(rec)}"
    last = log.errors[-1] if log.errors else "it exited before the last round"
    return f"the workflow engine stopped ({last[:300]})"
