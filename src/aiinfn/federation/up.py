"""``aiinfn up federation``: apply the federation stack after its sites'.

The member sites' stacks are only read: each must already export its kubeconfig (bootstrapped, overlay
applied), each worker its ``multikueue_kubeconfig`` (its stack names the federation:
``aiinfn:federation``) that passes Kueue's rules, and every site the pinned versions of this checkout.
Anything missing is one line naming the site and the command that fixes it, before the federation
stack is touched. Then the federation stack (scope ``federation``) is previewed, confirmed and applied.
It works on a ``Backend``: the Pulumi Automation API (the pulumi CLI, else ``ToolMissingError``, exit
code 4 as every ``up``), or the tests' stand-in.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from ..config.models import Federation
from ..config.validate_federation import pinned_versions
from ..errors import AiinfnError, ToolMissingError
from ..services import multikueue
from ..stacknames import site_stack_name
from . import kubeconfig


class FederationError(AiinfnError):
    """A member site is not ready for the federation (exit code 1, one line)."""


class Backend(Protocol):
    def outputs(self, stack: str) -> dict[str, Any]: ...

    def preview(self, stack: str, config: dict[str, str], on_output: Callable[[str], None]) -> dict[str, int]: ...

    def up(self, stack: str, config: dict[str, str], on_output: Callable[[str], None]) -> dict[str, int]: ...


class AutomationBackend:
    """Stacks of the project's Pulumi program through the Automation API (needs the pulumi CLI)."""

    def __init__(self, work_dir: Path) -> None:
        if shutil.which("pulumi") is None:
            raise ToolMissingError(
                "the pulumi CLI is not installed: install it (https://www.pulumi.com/docs/install/) to run "
                "`aiinfn up federation`; `aiinfn plan federation` works without it")
        self.work_dir = str(work_dir)

    def _stack(self, stack: str, config: dict[str, str] | None) -> Any:
        from pulumi import automation as auto

        if config is None:
            return auto.select_stack(stack_name=stack, work_dir=self.work_dir)
        st = auto.create_or_select_stack(stack_name=stack, work_dir=self.work_dir)
        for k, v in config.items():
            st.set_config(k, auto.ConfigValue(v))
        return st

    def outputs(self, stack: str) -> dict[str, Any]:
        try:
            return {k: v.value for k, v in self._stack(stack, None).outputs().items()}
        except Exception as e:  # the Automation API raises many types; each means "not readable"
            raise FederationError(f"stack {stack}: cannot read its outputs ({type(e).__name__})") from None

    def preview(self, stack: str, config: dict[str, str], on_output: Callable[[str], None]) -> dict[str, int]:
        res = self._stack(stack, config).preview(on_output=on_output)
        return {str(k): int(v) for k, v in (res.change_summary or {}).items()}

    def up(self, stack: str, config: dict[str, str], on_output: Callable[[str], None]) -> dict[str, int]:
        res = self._stack(stack, config).up(on_output=on_output)
        return {str(k): int(v) for k, v in (res.summary.resource_changes or {}).items()}


def check_sites(fed: Federation, backend: Backend) -> None:
    """Every member's stack has what the federation reads (see the module docstring)."""
    workers = [w for w in fed.worker_sites() if w != fed.manager]
    for name, env in fed.site_environments().items():
        stack = site_stack_name(name)
        outs = backend.outputs(stack)
        if not outs.get("kubeconfig"):
            raise FederationError(f"site {name!r}: stack {stack} exports no kubeconfig: bootstrap the site and "
                                  f"apply its overlay first (`aiinfn up {name}`)")
        pins = outs.get("versions")
        if pins != pinned_versions(env):
            raise FederationError(f"site {name!r}: stack {stack} runs other pinned versions than this checkout: "
                                  f"`aiinfn up {name}` first")
        if name in workers and fed.queues:
            text = outs.get("multikueue_kubeconfig")
            if not text:
                raise FederationError(
                    f"site {name!r}: stack {stack} exports no multikueue_kubeconfig: `pulumi config set "
                    f"aiinfn:federation {fed.name} -s {stack}`, then `aiinfn up {name}`")
            found = kubeconfig.problems(str(text))
            if found:
                raise FederationError(f"site {name!r}: its {multikueue.KUBECONFIG_KEY} for MultiKueue "
                                      f"{'; '.join(found)} (rerun `aiinfn up {name}`)")


def up(fed: Federation, env_file: str, backend: Backend, *, stack: str | None = None,
       confirm: Callable[[str], bool], on_output: Callable[[str], None]) -> dict[str, int] | None:
    """Check the sites, preview the federation stack, apply it when confirmed (None: not confirmed)."""
    check_sites(fed, backend)
    name = stack or fed.name
    config = {"aiinfn:environment": env_file, "aiinfn:scope": "federation"}
    changes = backend.preview(name, config, on_output)
    on_output(f"{name}: {', '.join(f'{n} to {op}' for op, n in sorted(changes.items()) if n) or 'no changes'}")
    if not confirm(f"apply these changes to stack {name!r}?"):
        return None
    return backend.up(name, config, on_output)
