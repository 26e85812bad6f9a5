"""The project's own error types: every user-facing failure is one of these.

The CLI prints ``str(error)`` on one line and exits with ``error.exit_code``; nothing else escapes
as a traceback.
"""

from __future__ import annotations


class AiinfnError(Exception):
    """Base class: a message meant for an operator, and the exit code that goes with it."""

    exit_code = 1


class ConfigError(AiinfnError):
    """A broken environment: names the file, the field path and the fix.

    ``str()`` gives ``<file>: <path>: <message>``, e.g.
    ``environments/x.yaml: node_pools.a100.mig[0]: '3g.30gb' is not a MIG profile of A100-80GB (...)``.
    """

    exit_code = 2

    def __init__(
        self, message: str, *, file: str | None = None, path: str | None = None, related: tuple[str, ...] = ()
    ) -> None:
        self.file = file
        self.path = path
        self.message = message
        #: Other fields the rule involves (e.g. the flavor a pool uses): the error is attributed to the
        #: file that most recently set any of them.
        self.related = related
        super().__init__(self.render())

    def render(self) -> str:
        parts = [p for p in (self.file, self.path) if p]
        parts.append(self.message)
        # one line, always: a value or key quoted in the message may hold line breaks
        return ": ".join(parts).replace("\r", "\\r").replace("\n", "\\n")

    def with_file(self, file: str) -> ConfigError:
        """The same error, attributed to ``file`` unless it already names one."""
        return self if self.file else ConfigError(self.message, file=file, path=self.path, related=self.related)


class PlanError(AiinfnError):
    """The offline plan could not be built (a bug in a stack or a missing part of the toolkit)."""

    exit_code = 3


class ToolMissingError(AiinfnError):
    """An external program the command needs (pulumi, ansible-playbook ...) is not installed."""

    exit_code = 4


def an(word: str) -> str:
    """``word`` with its indefinite article (``an event``, ``a site``), for messages."""
    return ("an " if word[:1].lower() in "aeiou" else "a ") + word
