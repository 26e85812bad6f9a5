"""The HPC facilities' login nodes, over SSH, as the workflow engine will reach them.

``ssh_config`` is the OpenSSH client configuration the engine's SSH client (asyncssh, which reads
``~/.ssh/config``) gets for a run: keepalives so that a facility that dies mid-round fails its step
within seconds instead of hanging for TCP's quarter of an hour, a connection timeout, and each
facility's known_hosts file (host keys are always checked). ``check`` logs into each login node with the
same settings and refuses, one line each, a facility that cannot be reached, lacks its queue manager's
commands or Apptainer, has no such partition, or has no dataset at the path the description names.
Every value put on a remote command line is quoted (and was validated to need no quoting).
"""

from __future__ import annotations

import asyncio
import shlex
from pathlib import Path

from ..errors import AiinfnError
from .description import Description
from .model import HpcFacility

#: Seconds between keepalives, and how many may go unanswered before the connection is dropped.
ALIVE_INTERVAL = 3
ALIVE_COUNT = 3
CONNECT_TIMEOUT = 15

COMMANDS = {"slurm": ("sbatch", "squeue", "scontrol", "scancel"), "pbs": ("qsub", "qstat", "qdel"), "flux": ("flux",)}


class FacilityError(AiinfnError):
    """A facility could not be used: the message names it."""

    exit_code = 1


def known_hosts(desc: Description, f: HpcFacility) -> Path:
    return desc.machine_path(f.known_hosts or "~/.ssh/known_hosts")


def ssh_config(desc: Description) -> str:
    lines = ["# written by aiinfn fl: how the workflow engine reaches each facility's login node", ""]
    for name, f in sorted(desc.training.hpc().items()):
        lines += [f"# facility {name}", f"Host {f.host}", f"  UserKnownHostsFile {known_hosts(desc, f)}",
                  "  StrictHostKeyChecking yes", ""]
    lines += ["Host *", f"  ServerAliveInterval {ALIVE_INTERVAL}", f"  ServerAliveCountMax {ALIVE_COUNT}",
              f"  ConnectTimeout {CONNECT_TIMEOUT}", ""]
    return "\n".join(lines)


def probe_script(f: HpcFacility) -> str:
    """A POSIX sh script printing one ``missing: WHAT`` line per problem (nothing when all is there)."""
    parts = [f"for c in {' '.join(COMMANDS[f.kind])} apptainer; do "
             "command -v \"$c\" >/dev/null 2>&1 || echo \"missing: command $c\"; done"]
    d = shlex.quote(f.dataset)
    parts.append(f"if [ ! -e {d} ]; then echo 'missing: dataset'; elif [ ! -r {d} ]; then echo 'missing: read'; fi")
    if f.kind == "slurm" and f.partition:
        part = shlex.quote(f.partition)
        parts.append(f"sinfo -h -o %P -p {part} 2>/dev/null | grep -q . || echo 'missing: partition'")
    if f.kind == "pbs" and f.partition:
        parts.append(f"qstat -Q {shlex.quote(f.partition)} >/dev/null 2>&1 || echo 'missing: partition'")
    if f.kind == "flux" and f.partition:
        parts.append(f"flux queue status -q {shlex.quote(f.partition)} >/dev/null 2>&1 || echo 'missing: partition'")
    return "; ".join(parts)


async def _probe(desc: Description, name: str, f: HpcFacility, config: Path) -> str | None:
    import asyncssh

    where = f"facility {name} ({f.kind} at {f.user}@{f.address})"
    try:
        async with asyncssh.connect(
            f.host, port=f.port, username=f.user, client_keys=[str(desc.machine_path(f.ssh_key))],
            known_hosts=str(known_hosts(desc, f)), config=[str(config)], connect_timeout=CONNECT_TIMEOUT,
            agent_path=None,
        ) as conn:
            res = await asyncio.wait_for(conn.run(probe_script(f), check=False), timeout=60)
    except (TimeoutError, OSError, asyncssh.Error, ValueError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return f"{where}: cannot log in over SSH: {reason}"
    out = str(res.stdout or "")
    problems = [line.removeprefix("missing: ") for line in out.splitlines() if line.startswith("missing: ")]
    for p in problems:
        if p == "dataset":
            return f"facilities.{name}.dataset: {f.dataset} does not exist on {where}"
        if p == "read":
            return f"facilities.{name}.dataset: {f.dataset} on {where} is not readable by {f.user}"
        if p == "partition":
            return f"facilities.{name}.partition: {f.partition!r} is not a partition of {where}"
        if p.startswith("command "):
            return f"{where}: {p.removeprefix('command ')} is not on the login node's PATH"
    return None


def check(desc: Description, config: Path) -> None:
    """Probe every HPC facility at once; raise the first problem (in the description's order)."""
    hpc = desc.training.hpc()
    if not hpc:
        return

    async def all_of() -> list[str | None]:
        return list(await asyncio.gather(*(_probe(desc, n, f, config) for n, f in hpc.items())))

    for problem in asyncio.run(all_of()):
        if problem is None:
            continue
        if problem.startswith("facilities."):
            path, _, message = problem.partition(": ")
            raise desc.error(path, message)
        raise FacilityError(problem)
