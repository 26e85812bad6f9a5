"""The stage runner: stages in order, each skippable and resumable, one line when one fails.

``select`` turns ``--from`` / ``--only`` into the stages to run; ``run`` runs them, reports each one's
start and end to a ``Reporter`` (the CLI draws live progress from it), records in the site's state file
which stages finished and which failed, and turns any failure into one ``StageFailed`` line naming the
stage, the host or resource, the cause and the command that resumes from there.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..errors import AiinfnError

#: The stages of ``aiinfn up SITE``, in order. ``drain`` does something only when nodes leave the site.
STAGES = ("drain", "infra", "inventory", "bootstrap", "kubeconfig", "overlay")
STATE_FILE = "up.json"


class StageUsageError(AiinfnError):
    exit_code = 2


class StageFailed(AiinfnError):
    """A stage failed: ``str()`` is the one line the operator sees."""

    def __init__(self, stage: str, subject: str, cause: str, *, exit_code: int = 1, resume: str = "") -> None:
        self.stage = stage
        self.subject = subject
        self.cause = cause.replace("\r", " ").replace("\n", " ")
        self.exit_code = exit_code
        self.resume = resume
        super().__init__(self.render())

    def render(self) -> str:
        line = f"stage {self.stage} failed: " + (f"{self.subject}: " if self.subject else "") + self.cause
        return f"{line}; resume with `{self.resume}`" if self.resume else line

    def resuming(self, command: str) -> StageFailed:
        return StageFailed(self.stage, self.subject, self.cause, exit_code=self.exit_code, resume=command)


def select(start: str | None = None, only: Sequence[str] | None = None) -> list[str]:
    """The stages to run: all, from ``start`` on, or exactly ``only`` (in the runner's order)."""
    if start and only:
        raise StageUsageError("--from and --only exclude each other: give one")
    for name in [start, *(only or [])]:
        if name is not None and name not in STAGES:
            raise StageUsageError(f"{name!r} is not a stage (stages: {', '.join(STAGES)})")
    if only:
        return [s for s in STAGES if s in only]
    return list(STAGES[STAGES.index(start):]) if start else list(STAGES)


@dataclass
class StageResult:
    stage: str
    summary: str
    seconds: float
    skipped: bool = False


@dataclass
class UpState:
    """What ``aiinfn up`` remembers of a site between runs (``<state dir>/up.json``, no secret in it)."""

    #: Nodes the bootstrap stage has converged (a node not among them is new; one not in the plan leaves).
    bootstrapped: list[str] = field(default_factory=list)
    #: Fixed addresses of the nodes, as the last inventory stage found them.
    addresses: dict[str, str] = field(default_factory=dict)
    #: The bastion's name and the address this machine reaches it at.
    bastion: str = ""
    bastion_address: str = ""
    completed: list[str] = field(default_factory=list)
    failed: str | None = None

    @classmethod
    def load(cls, state_dir: Path) -> UpState:
        path = state_dir / STATE_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError):
            raise AiinfnError(f"{path}: not a state file of `aiinfn up` (remove it to start over)") from None
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def save(self, state_dir: Path) -> None:
        state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = state_dir / STATE_FILE
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(asdict(self), f, indent=1, sort_keys=True)
        tmp.replace(path)


class Reporter(Protocol):
    def start(self, stage: str, index: int, total: int) -> None: ...

    def line(self, text: str) -> None: ...

    def ansible_event(self, event: Mapping[str, Any]) -> None: ...

    def done(self, result: StageResult) -> None: ...


class Skip(Exception):
    """Raised by a stage that has nothing to do; its text says why."""


def run(
    stages: Sequence[str],
    steps: Mapping[str, Callable[[], str]],
    reporter: Reporter,
    state_dir: Path,
    *,
    resume: Callable[[str], str],
) -> list[StageResult]:
    """Run ``stages`` with ``steps[stage]()`` (its summary line), recording progress in the state file."""
    results: list[StageResult] = []
    for i, stage in enumerate(stages):
        reporter.start(stage, i, len(stages))
        t0 = time.monotonic()
        try:
            summary, skipped = steps[stage](), False
        except Skip as s:
            summary, skipped = str(s), True
        except StageFailed as e:
            _record(state_dir, failed=stage)
            raise e.resuming(resume(stage)) from None
        except AiinfnError as e:
            _record(state_dir, failed=stage)
            raise StageFailed(stage, "", str(e), exit_code=e.exit_code, resume=resume(stage)) from None
        result = StageResult(stage, summary, time.monotonic() - t0, skipped)
        results.append(result)
        _record(state_dir, completed=stage)
        reporter.done(result)
    return results


def _record(state_dir: Path, *, completed: str | None = None, failed: str | None = None) -> None:
    st = UpState.load(state_dir)
    if completed:
        st.completed = [s for s in STAGES if s in {*st.completed, completed}]
        if st.failed == completed:
            st.failed = None
    if failed:
        st.failed = failed
    st.save(state_dir)
