"""Offline execution of the Pulumi program (mock runtime): the engine of `aiinfn plan` and of the
stack tests."""

from .runtime import (
    SECRET,
    PlanMocks,
    ProgramRun,
    RecordingMonitor,
    Registration,
    is_secret,
    redact,
    run_program,
    unwrap,
)

__all__ = [
    "SECRET",
    "PlanMocks",
    "ProgramRun",
    "RecordingMonitor",
    "Registration",
    "is_secret",
    "redact",
    "run_program",
    "unwrap",
]
