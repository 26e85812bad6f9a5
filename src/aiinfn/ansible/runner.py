"""Run a playbook of playbooks/ through ansible-runner and boil its events down to what an operator needs.

``run_playbook`` returns a ``PlaybookResult``: per-host counters (ok, changed, failed, unreachable,
skipped), every failure as (host, task, message), and which hosts had any task run on them. An optional
``on_event`` callback sees each event as it happens (the CLI draws its progress from it).

Extra variables (the secrets among them) never go on a command line, where any user of the machine could
read them (``ps``) and ansible-runner would record them: they are written to ``env/extravars`` of the run's
private data directory (a fresh 0700 temporary directory, the file 0600, both removed when the run ends),
which ansible-playbook reads with ``-e @file``. Every string in that file is tagged ``!unsafe``, so Ansible
uses it as the literal value it is and never templates it (a passphrase holding ``{{ 7*7 }}`` stays that).
Tasks that handle secrets are ``no_log`` in the roles, so the events never carry them.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config.loader import project_root
from ..errors import AiinfnError, ToolMissingError
from ..render import to_unsafe_yaml, to_yaml

#: The playbooks an operator runs, by the name ``aiinfn bootstrap --playbook`` accepts.
PLAYBOOKS: dict[str, str] = {
    "site": "site.yml",
    "add-node": "add-node.yml",
    "remove-node": "remove-node.yml",
    "mig": "mig.yml",
    "backup-restore": "backup-restore.yml",
    "backup-prune": "backup-prune.yml",
    "monitoring": "monitoring.yml",
}

OUTCOMES = ("ok", "changed", "failed", "unreachable", "skipped")
#: What an extra variable may be called (Ansible's own rule for variable names).
VARIABLE_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: Where ansible-runner looks for extra variables in its private data directory.
EXTRAVARS_FILE = Path("env") / "extravars"


class ExtraVarsError(AiinfnError):
    """An extra variable that cannot be handed to Ansible (a name that is not a variable name)."""

    exit_code = 2


def extravars_document(extravars: Mapping[str, Any]) -> str:
    """The YAML of ``env/extravars``: one variable a line, every string in it tagged ``!unsafe``."""
    lines = ["# aiinfn: extra variables of one run; literal values (!unsafe), never templated\n"]
    for name in sorted(extravars):
        if not isinstance(name, str) or not VARIABLE_NAME_RE.fullmatch(name):
            raise ExtraVarsError(f"extra variable {name!r}: not a variable name (letters, digits and '_', "
                                 "not starting with a digit)")
        lines.append(f"{to_yaml(name)}: {to_unsafe_yaml(extravars[name])}\n")
    return "".join(lines)


def write_extravars(private_data_dir: Path, extravars: Mapping[str, Any]) -> Path | None:
    """Write ``extravars`` for ansible-runner, readable by this user only; None when there are none."""
    if not extravars:
        return None
    text = extravars_document(extravars)
    path = private_data_dir / EXTRAVARS_FILE
    path.parent.mkdir(mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    return path


@dataclass
class HostStats:
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0

    @property
    def good(self) -> bool:
        return self.failed == 0 and self.unreachable == 0


@dataclass(frozen=True)
class Failure:
    host: str
    task: str
    message: str
    unreachable: bool = False

    def line(self) -> str:
        what = "unreachable" if self.unreachable else "failed"
        return f"{self.host}: {self.task}: {what}: {self.message}"


@dataclass
class PlaybookResult:
    playbook: str
    rc: int
    status: str
    stats: dict[str, HostStats] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    #: Hosts on which at least one task started (gathering facts included).
    touched: set[str] = field(default_factory=set)
    #: Hosts on which at least one task reported a change.
    changed_hosts: set[str] = field(default_factory=set)
    stdout: str = ""

    @property
    def ok(self) -> bool:
        return self.rc == 0 and not self.failures

    @property
    def changed(self) -> dict[str, int]:
        return {h: s.changed for h, s in self.stats.items()}


def _message(res: Mapping[str, Any]) -> str:
    """The most useful single line of a failed task's result."""
    if res.get("censored"):
        return str(res["censored"])
    items = [r for r in res.get("results") or [] if isinstance(r, Mapping) and r.get("failed")]
    if items:  # a loop: the first failed item's own message
        label = items[0].get("_ansible_item_label", items[0].get("item", ""))
        return f"item {label}: {_message(items[0])}"
    keys: tuple[str, ...] = ("msg", "stderr", "reason", "module_stderr", "stdout")
    if res.get("msg") == "non-zero return code" and res.get("stderr"):
        keys = ("stderr", "stdout")  # a command's own error says more than Ansible's summary
    for key in keys:
        value = res.get(key)
        if value:
            text = str(value).strip()
            lines = [ln for ln in text.splitlines() if ln.strip()]
            return lines[-1] if key in ("module_stderr", "stderr", "stdout") and lines else " ".join(lines)
    return "failed without a message"


class _Collector:
    def __init__(self, result: PlaybookResult, on_event: Callable[[dict[str, Any]], None] | None) -> None:
        self.result = result
        self.on_event = on_event

    def __call__(self, event: dict[str, Any]) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data") or {}
        host = data.get("host")
        r = self.result
        if kind == "runner_on_start" and host:
            r.touched.add(host)
        elif kind in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable") and host:
            res = data.get("res") or {}
            if kind == "runner_on_ok" and res.get("changed"):
                r.changed_hosts.add(host)
            if kind == "runner_on_unreachable":
                r.touched.add(host)
                r.failures.append(Failure(host, str(data.get("task", "")), _message(res), unreachable=True))
            elif kind == "runner_on_failed" and not data.get("ignore_errors"):
                r.failures.append(Failure(host, str(data.get("task", "")), _message(res)))
        elif kind == "playbook_on_stats":
            for outcome, key in (("ok", "ok"), ("changed", "changed"), ("failed", "failures"),
                                 ("unreachable", "dark"), ("skipped", "skipped")):
                for h, n in (data.get(key) or {}).items():
                    setattr(r.stats.setdefault(h, HostStats()), outcome, int(n))
        if self.on_event is not None:
            self.on_event(event)
        return True


def ansible_env() -> dict[str, str]:
    """Environment of ansible-playbook: this project's ansible.cfg and roles, pipelining, no cows."""
    root = project_root()
    return {
        "ANSIBLE_CONFIG": str(root / "ansible.cfg"),
        "ANSIBLE_ROLES_PATH": str(root / "roles"),
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_NOCOWS": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_FORCE_COLOR": "0",
    }


def playbook_path(name: str) -> Path:
    """``site`` or ``site.yml`` or a path -> the playbook file."""
    if name in PLAYBOOKS:
        return project_root() / "playbooks" / PLAYBOOKS[name]
    p = Path(name)
    return p if p.is_absolute() or p.exists() else project_root() / "playbooks" / name


def run_playbook(
    playbook: str | Path,
    inventory: str | Path | Mapping[str, Any],
    *,
    extravars: Mapping[str, Any] | None = None,
    limit: str | None = None,
    tags: list[str] | None = None,
    envvars: Mapping[str, str] | None = None,
    forks: int = 20,
    on_event: Callable[[dict[str, Any]], None] | None = None,
    keep_stdout: bool = True,
) -> PlaybookResult:
    """Run ``playbook`` against ``inventory`` (a file, a script or an inventory dict) and collect the result."""
    bin_dir = Path(sys.executable).parent
    if shutil.which("ansible-playbook", path=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}") is None:
        raise ToolMissingError("ansible-playbook is not installed: `pip install -e .` installs it with aiinfn")
    import ansible_runner

    path = playbook_path(str(playbook)) if not isinstance(playbook, Path) else playbook
    result = PlaybookResult(playbook=path.name, rc=-1, status="unstarted")
    collector = _Collector(result, on_event)
    env = {**ansible_env(), **(envvars or {})}
    env["PATH"] = f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}"
    inv: Any = inventory if isinstance(inventory, Mapping) else str(Path(inventory).resolve())
    extravars_document(extravars or {})  # a bad name is refused before anything starts
    with tempfile.TemporaryDirectory(prefix="aiinfn-ansible-") as private:
        os.chmod(private, 0o700)
        write_extravars(Path(private), extravars or {})
        runner = ansible_runner.run(
            private_data_dir=private,
            project_dir=str(path.parent),
            playbook=str(path),
            inventory=inv,
            limit=limit,
            tags=",".join(tags) if tags else None,
            envvars=env,
            forks=forks,
            quiet=True,
            event_handler=collector,
            rotate_artifacts=1,
        )
        result.rc = int(runner.rc if runner.rc is not None else -1)
        result.status = str(runner.status)
        if keep_stdout:
            try:
                result.stdout = runner.stdout.read()
            except (OSError, ValueError, AttributeError):  # pragma: no cover - artifacts already gone
                result.stdout = ""
    if result.rc != 0 and not result.failures:
        # the playbook stopped before any task could fail: a syntax error, a missing role, no hosts matched
        tail = [ln for ln in result.stdout.splitlines() if ln.strip()][-3:]
        result.failures.append(Failure("localhost", "ansible-playbook", " ".join(tail) or f"exit {result.rc}"))
    return result
