"""HPC facilities on the local test hosts: each host one SLURM cluster, reached over SSH like a login node.

Built on tests/support/hosts/hostlib.py. Each host gets Debian's ``slurmctld``, ``slurmd``,
``slurm-client`` and ``munge`` (and ``python3-numpy``, the training's library) from the mirror through
the hosts' relay, a ``slurm.conf`` of its own (cluster named after the host, one node with the host's
cores, partition ``debug``; job completion records in ``/var/log/slurm/jobcomp.log`` through
``jobcomp/filetxt``, read back with ``sacct --completion``: no slurmdbd or database), its own munge key,
and an unprivileged account ``researcher`` that logs in with the test hosts' key. Jobs run for real:
``sbatch`` queues them, slurmctld schedules them, slurmd runs them as ``researcher``.

Stand-ins, because the real parts do not exist here:

- **Apptainer** (not packaged for Debian bookworm): ``/usr/local/bin/apptainer`` is a small program that
  accepts ``apptainer exec [--nv] [--bind SRC[:DST[:ro]]]... IMAGE COMMAND...``, refuses an image that
  is not in ``/etc/aiinfn-standin/apptainer-images`` (the images "pulled" on the facility), records every
  call in ``/var/log/aiinfn-standin/apptainer.log`` and runs COMMAND on the host itself: no container
  isolation, the host's python3 and numpy stand in for the image's.
- The controller reaches the login nodes from the hosts' hub namespace (``<prefix>hub``, the bridge's
  side; hostlib keeps this machine's own namespace free of test addresses): ``hub_run``/``hub_popen`` run
  a command there, e.g. ``aiinfn fl run``.

``Facilities.kill(name)`` powers a host off (hostlib), ``revive(name)`` boots it again with its disk and
its MAC (hostlib), and returns once its sshd answers from the hub and its SLURM is idle: munge, slurmctld
and slurmd are enabled units and come back by themselves.
"""

from __future__ import annotations

import concurrent.futures
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOSTS_SUPPORT = Path(__file__).resolve().parents[1] / "hosts"
if str(HOSTS_SUPPORT) not in sys.path:
    sys.path.insert(0, str(HOSTS_SUPPORT))

import hostlib  # noqa: E402 - found through HOSTS_SUPPORT
import image  # noqa: E402 - found through HOSTS_SUPPORT

PACKAGES = ("slurmctld", "slurmd", "slurm-client", "munge", "python3-numpy")
USER = "researcher"
PARTITION = "debug"
JOBCOMP = "/var/log/slurm/jobcomp.log"
STANDIN_IMAGES = "/etc/aiinfn-standin/apptainer-images"
STANDIN_LOG = "/var/log/aiinfn-standin/apptainer.log"
#: Seconds a host may take to install and start its SLURM.
SETUP_TIMEOUT = 600

SLURM_CONF = """\
# SLURM of test facility {name} (tests/support/slurm): one node, controller and compute on one host
ClusterName={name}
SlurmctldHost={name}
AuthType=auth/munge
SlurmUser=slurm
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
ReturnToService=2
MinJobAge=3600
JobCompType=jobcomp/filetxt
JobCompLoc={jobcomp}
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName={name} CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName={partition} Nodes={name} Default=YES MaxTime=120 State=UP
"""

APPTAINER_STANDIN = r'''#!/usr/bin/python3
"""Stand-in of apptainer (tests/support/slurm): checks the image is on the facility, runs the command."""
import json, os, sys, time
args = sys.argv[1:]
if not args or args[0] != "exec":
    sys.exit("apptainer stand-in: only 'exec' is supported")
args = args[1:]
binds, nv = [], False
while args and args[0].startswith("-"):
    opt = args.pop(0)
    if opt == "--nv":
        nv = True
    elif opt in ("--bind", "-B"):
        binds.append(args.pop(0))
    else:
        sys.exit(f"apptainer stand-in: unsupported option {opt}")
if len(args) < 2:
    sys.exit("apptainer stand-in: exec needs an image and a command")
image, command = args[0], args[1:]
with open("@IMAGES@") as fh:
    known = {line.strip() for line in fh if line.strip()}
if image not in known:
    sys.exit(f"FATAL: apptainer stand-in: image {image} is not on this facility")
for b in binds:
    src = b.split(":")[0]
    if not os.path.exists(src):
        sys.exit(f"FATAL: apptainer stand-in: bind source {src} does not exist")
entry = {"time": time.time(), "user": os.environ.get("USER", ""), "job": os.environ.get("SLURM_JOB_ID", ""),
         "image": image, "binds": binds, "nv": nv, "command": command}
with open("@LOG@", "a") as fh:
    fh.write(json.dumps(entry) + "\n")
os.execvp(command[0], command)
'''.replace("@IMAGES@", STANDIN_IMAGES).replace("@LOG@", STANDIN_LOG)


def _setup_script(name: str, cpus: int, memory_mb: int, images: list[str]) -> str:
    conf = SLURM_CONF.format(name=name, cpus=cpus, memory_mb=memory_mb, partition=PARTITION, jobcomp=JOBCOMP)
    return "\n".join([
        "set -eu",
        "export DEBIAN_FRONTEND=noninteractive",
        "apt-get update -q >/dev/null",
        f"apt-get install -y -q --no-install-recommends {' '.join(PACKAGES)} >/dev/null",
        f"cat > /etc/slurm/slurm.conf <<'EOF'\n{conf}EOF",
        "mkdir -p /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /etc/aiinfn-standin /var/log/aiinfn-standin",
        "chown slurm:slurm /var/spool/slurmctld /var/log/slurm",
        f"touch {JOBCOMP} && chown slurm:slurm {JOBCOMP}",
        f"printf '%s\\n' {' '.join(shlex.quote(i) for i in images)} > {STANDIN_IMAGES}",
        f"cat > /usr/local/bin/apptainer <<'EOF'\n{APPTAINER_STANDIN}EOF",
        "chmod 0755 /usr/local/bin/apptainer",
        f"touch {STANDIN_LOG} && chmod 0666 {STANDIN_LOG}",
        f"id {USER} >/dev/null 2>&1 || useradd -m -s /bin/bash {USER}",
        f"install -d -m 0700 -o {USER} -g {USER} /home/{USER}/.ssh",
        f"install -m 0600 -o {USER} -g {USER} /root/.ssh/authorized_keys /home/{USER}/.ssh/authorized_keys",
        "systemctl enable -q munge slurmctld slurmd",
        "systemctl restart munge",
        "systemctl restart slurmctld",
        "systemctl restart slurmd",
    ]) + "\n"


@dataclass
class Facilities:
    """Started SLURM facilities (one test host each)."""

    hosts: hostlib.Hosts

    @property
    def names(self) -> list[str]:
        return self.hosts.names

    @property
    def hub(self) -> str:
        return f"{self.hosts.prefix}hub"

    def address(self, name: str) -> str:
        return self.hosts.address(name)

    @property
    def key(self) -> Path:
        return image.ensure_key()

    def exec(self, name: str, cmd: str, *, user: str | None = None, check: bool = True,
             timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """``cmd`` (a shell string) on host ``name`` as root, or as ``user`` through ``su``."""
        full = cmd if user is None else f"su - {shlex.quote(user)} -c {shlex.quote(cmd)}"
        return self.hosts.exec(name, full, check=check, timeout=timeout)

    def hub_argv(self, argv: list[str]) -> list[str]:
        return [hostlib._tool("ip"), "netns", "exec", self.hub, *argv]

    def hub_run(self, argv: list[str], **kw: Any) -> subprocess.CompletedProcess[str]:
        kw.setdefault("capture_output", True)
        kw.setdefault("text", True)
        kw.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.run(self.hub_argv(argv), **kw)

    def hub_popen(self, argv: list[str], **kw: Any) -> subprocess.Popen[str]:
        kw.setdefault("text", True)
        kw.setdefault("stdin", subprocess.DEVNULL)
        return subprocess.Popen(self.hub_argv(argv), **kw)

    def write_known_hosts(self, path: Path) -> Path:
        """The login nodes' host keys, as ssh-keyscan sees them from the hub: a known_hosts file."""
        lines = []
        for name in self.names:
            res = self.hub_run(["ssh-keyscan", "-T", "10", "-t", "ed25519,ecdsa,rsa", self.address(name)], timeout=60)
            if not res.stdout.strip():
                raise hostlib.HostsError(f"{name}: ssh-keyscan found no host key: {res.stderr.strip()}")
            lines.append(res.stdout.strip())
        path.write_text("\n".join(lines) + "\n")
        return path

    def jobs(self, name: str) -> list[dict[str, str]]:
        """Job completion records of facility ``name`` (``sacct --completion``): id, name, user, state, node."""
        fields = ["JobID", "JobName", "User", "State", "NodeList", "Partition"]
        res = self.exec(name, f"sacct --completion -P -n -o {','.join(fields)}")
        return [dict(zip(fields, line.split("|"), strict=False)) for line in res.stdout.splitlines() if line.strip()]

    def apptainer_calls(self, name: str) -> list[dict[str, Any]]:
        import json

        text = self.hosts.read(name, STANDIN_LOG).decode()
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def wait_idle(self, names: list[str] | None = None, timeout: float = 120) -> None:
        """Until every node answers ``sinfo`` as idle (or mixed) in partition ``debug``."""
        deadline = time.monotonic() + timeout
        pending = list(names or self.names)
        while pending:
            for name in list(pending):
                res = self.exec(name, f"sinfo -h -p {PARTITION} -o %t", check=False, timeout=30)
                if res.returncode == 0 and res.stdout.strip() in ("idle", "mix", "alloc"):
                    pending.remove(name)
                elif res.stdout.strip() in ("down", "drain", "down*") and time.monotonic() > deadline - timeout / 2:
                    self.exec(name, f"scontrol update nodename={name} state=resume", check=False)
            if pending and time.monotonic() > deadline:
                raise hostlib.HostsError(f"SLURM of {', '.join(pending)} not idle after {timeout:.0f} s")
            if pending:
                time.sleep(0.5)

    def kill(self, name: str) -> None:
        self.hosts.kill(name)

    def wait_login(self, name: str, timeout: float = 120) -> None:
        """Until the login node's sshd answers from the hub over the bridge (the researcher's path: hostlib's
        own readiness check goes through the host's loopback and never crosses the bridge)."""
        deadline = time.monotonic() + timeout
        while True:
            res = self.hub_run(["ssh-keyscan", "-T", "5", "-t", "ed25519", self.address(name)], timeout=30)
            if res.stdout.strip():
                return
            if time.monotonic() > deadline:
                raise hostlib.HostsError(f"{name}: sshd not reachable from {self.hub} at {self.address(name)}:22 "
                                         f"after {timeout:.0f} s: {res.stderr.strip()[-300:]}")
            time.sleep(0.5)

    def revive(self, name: str) -> None:
        self.hosts.revive(name)
        self.wait_login(name)
        self.exec(name, "systemctl is-active munge slurmctld slurmd || systemctl restart munge slurmctld slurmd",
                  check=False)
        self.wait_idle([name])

    def stop(self) -> None:
        self.hosts.stop()


def start(names: list[str], *, prefix: str, net: str, images: list[str], cpus: int | None = None,
          memory_mb: int = 2048) -> Facilities:
    """Start one SLURM facility per name on test hosts with ``prefix``/``net`` (stop with ``.stop()``)."""
    hosts = hostlib.start_hosts(names, prefix=prefix, net=net)
    facilities = Facilities(hosts)
    try:
        cores = cpus or os.cpu_count() or 1

        def setup(name: str) -> None:
            res = hosts.exec(name, "sh -s", input=_setup_script(name, cores, memory_mb, images), timeout=SETUP_TIMEOUT)
            if res.returncode != 0:
                raise hostlib.HostsError(f"{name}: SLURM set-up failed ({res.returncode}):\n{res.stdout[-2000:]}\n"
                                         f"{res.stderr[-2000:]}")

        with concurrent.futures.ThreadPoolExecutor(len(names)) as pool:
            for fut in [pool.submit(setup, n) for n in names]:
                fut.result()
        facilities.wait_idle()
    except BaseException:
        hosts.stop()
        raise
    return facilities
