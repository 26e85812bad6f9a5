"""The one seam between the stage runner and Pulumi: a site's stack, as the stages use it.

``SiteStack`` is what the stages call: preview, apply, read the outputs, set a config secret. The real
one, ``AutomationStack``, drives the Pulumi Automation API on the project's ``Pulumi.yaml`` (it needs the
``pulumi`` CLI, and says so in one line when it is missing); the tests give the runner a stand-in that
records the calls, since no Pulumi CLI runs on the machines they run on.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..errors import AiinfnError, ToolMissingError

#: The stack config key the kubeconfig goes into (a secret; stacks/scopes.py reads it for the overlay).
KUBECONFIG_KEY = "aiinfn:kubeconfig"
#: Stack outputs that are secrets: never shown.
SECRET_OUTPUTS = frozenset({"kubeconfig", "rke2_token", "rke2_agent_token"})


@dataclass
class Preview:
    """What a ``pulumi preview`` would do: counts per operation, and its text for the operator."""

    changes: dict[str, int] = field(default_factory=dict)
    text: str = ""

    @property
    def has_changes(self) -> bool:
        return any(n for op, n in self.changes.items() if op != "same")

    def summary(self) -> str:
        shown = [f"{n} to {op}" for op, n in sorted(self.changes.items()) if n and op != "same"]
        return ", ".join(shown) or "no changes"


class SiteStack(Protocol):
    name: str

    def preview(self, on_output: Callable[[str], None] | None = None) -> Preview: ...

    def up(self, on_output: Callable[[str], None] | None = None) -> dict[str, int]: ...

    def outputs(self) -> dict[str, Any]: ...

    def set_secret(self, key: str, value: str) -> None: ...


class StackError(AiinfnError):
    """The Automation API failed; the message is its first line (never a value of the stack)."""


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0] if text else 'no detail'}"


class AutomationStack:
    """The site's stack through the Pulumi Automation API (``Pulumi.yaml`` at the project root)."""

    def __init__(self, name: str, environment: Path | None, work_dir: Path) -> None:
        """Select (or create) the stack and point it at ``environment``; with ``environment`` None, only
        select an existing stack and change nothing (``aiinfn status``)."""
        if shutil.which("pulumi") is None:
            raise ToolMissingError(
                "the pulumi CLI is not installed: install it (https://www.pulumi.com/docs/install/) to run the "
                "infra and overlay stages (`aiinfn up SITE --from inventory` runs the rest)"
            )
        from pulumi import automation as auto

        self.name = name
        try:
            if environment is None:
                self._stack = auto.select_stack(stack_name=name, work_dir=str(work_dir))
            else:
                self._stack = auto.create_or_select_stack(stack_name=name, work_dir=str(work_dir))
                self._stack.set_config("aiinfn:environment", auto.ConfigValue(stack_environment(environment, work_dir)))
        except Exception as e:  # the Automation API raises many types; each means "not usable"
            raise StackError(f"stack {name}: {_first_line(e)}") from None

    def preview(self, on_output: Callable[[str], None] | None = None) -> Preview:
        try:
            res = self._stack.preview(on_output=on_output)
        except Exception as e:
            raise StackError(f"stack {self.name}: preview: {_first_line(e)}") from None
        return Preview(changes={str(k): int(v) for k, v in (res.change_summary or {}).items()}, text=res.stdout)

    def up(self, on_output: Callable[[str], None] | None = None) -> dict[str, int]:
        try:
            res = self._stack.up(on_output=on_output)
        except Exception as e:
            raise StackError(f"stack {self.name}: up: {_first_line(e)}") from None
        return {str(k): int(v) for k, v in (res.summary.resource_changes or {}).items()}

    def outputs(self) -> dict[str, Any]:
        try:
            return {k: v.value for k, v in self._stack.outputs().items()}
        except Exception as e:
            raise StackError(f"stack {self.name}: outputs: {_first_line(e)}") from None

    def set_secret(self, key: str, value: str) -> None:
        from pulumi import automation as auto

        try:
            self._stack.set_config(key, auto.ConfigValue(value, secret=True))
        except Exception as e:
            raise StackError(f"stack {self.name}: cannot set {key}: {_first_line(e)}") from None


def stack_environment(environment: Path, work_dir: Path) -> str:
    """The ``aiinfn:environment`` the stack file gets: relative to the checkout when inside it (the stack file
    is committed: no operator's absolute path in it)."""
    try:
        return environment.resolve().relative_to(work_dir.resolve()).as_posix()
    except ValueError:
        return str(environment)


def shown_outputs(outputs: dict[str, Any]) -> dict[str, Any]:
    """``outputs`` fit to print: every secret output replaced by ``[secret]``."""
    return {k: ("[secret]" if k in SECRET_OUTPUTS else v) for k, v in sorted(outputs.items())}
