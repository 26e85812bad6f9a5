"""The example federated training (examples/fl) on SLURM test facilities: what its runner and tests share.

``Setup`` holds started facilities (slurm_hosts) and a working directory with a copy of the example
(description rewritten for the facilities' addresses, the test hosts' key and a known_hosts file from
ssh-keyscan), each facility's data generated on the facility itself, and a Harbor stand-in
(registry_standin.py) in the hub namespace holding the example's image. ``aiinfn(...)`` runs the CLI
from the hub namespace, where the login nodes are reachable, as a researcher's machine would reach them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import slurm_hosts
from ruamel.yaml import YAML

REPO = Path(__file__).resolve().parents[3]
EXAMPLE = REPO / "examples" / "fl"
IMAGE = "harbor.ai-infn.cloud.cnaf.infn.it/apptainer/fl-numpy:1.0"
REGISTRY_HOST = "harbor.ai-infn.cloud.cnaf.infn.it"
DATA_ROOT = "/srv/data"
#: Stand-in of PBS's and Flux's commands (neither is packaged for Debian bookworm): tests/support/batch_standins.
BATCH_STANDIN = REPO / "tests" / "support" / "batch_standins" / "batch_standin.py"
BATCH_LOG = "/var/log/aiinfn-standin/batch.log"


def dataset_path(facility: str) -> str:
    return f"{DATA_ROOT}/fl-{facility}"


@dataclass
class Setup:
    facilities: slurm_hosts.Facilities
    work: Path
    registry_url: str
    registry_log: Path
    _registry: subprocess.Popen[str] | None = None
    env: dict[str, str] = field(default_factory=dict)

    @property
    def description(self) -> Path:
        return self.work / "training.yaml"

    @property
    def state(self) -> Path:
        return self.work / "state"

    def aiinfn(self, *args: str, timeout: float = 900, state: Path | None = None) -> subprocess.CompletedProcess[str]:
        argv = [str(Path(sys.executable).parent / "aiinfn"), "fl", *args]
        if args and args[0] in ("plan", "run", "status"):
            argv += ["--state", str(state or self.state)]
        if args and args[0] in ("plan", "run"):
            argv += ["--registry-url", self.registry_url]
        return self.facilities.hub_run(argv, timeout=timeout, cwd=self.work, env={**os.environ, **self.env})

    def stop(self) -> None:
        if self._registry is not None:
            self._registry.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._registry.wait(timeout=10)
            self._registry = None
        self.facilities.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_description(path: Path, facilities: slurm_hosts.Facilities, names: list[str], **changes: Any) -> Path:
    """The example's description for these facilities (their addresses, the test key), with ``changes``
    applied at the top level."""
    yaml = YAML(typ="safe", pure=True)
    data = yaml.load((EXAMPLE / "training.yaml").read_text())
    template = next(iter(data["facilities"].values()))
    data["facilities"] = {}
    for name in names:
        f = dict(template)
        f.update(host=facilities.address(name), ssh_key=str(facilities.key), known_hosts="known_hosts",
                 dataset=dataset_path(name))
        data["facilities"][name] = f
    data.update(changes)
    with path.open("w") as fh:
        yaml.dump(data, fh)
    return path


def install_batch_standin(facilities: slurm_hosts.Facilities, name: str, kind: str, queues: list[str]) -> None:
    """Put the PBS (``qsub``, ``qstat``, ``qdel``) or Flux (``flux``) stand-in on facility ``name``'s login node,
    with ``queues`` as the queue manager's queues."""
    commands = {"pbs": ("qsub", "qstat", "qdel"), "flux": ("flux",)}[kind]
    script = "\n".join([
        "set -eu",
        "install -d /opt/aiinfn-standin /etc/aiinfn-standin /var/log/aiinfn-standin",
        "cat > /opt/aiinfn-standin/batch_standin.py",
        "chmod 0755 /opt/aiinfn-standin/batch_standin.py",
        *(f"ln -sf /opt/aiinfn-standin/batch_standin.py /usr/local/bin/{c}" for c in commands),
        f"printf '%s\\n' {' '.join(queues)} > /etc/aiinfn-standin/queues",
        f"touch {BATCH_LOG} && chmod 0666 {BATCH_LOG}",
    ])
    res = facilities.hosts.exec(name, script, input=BATCH_STANDIN.read_text(), timeout=60)
    if res.returncode != 0:
        raise RuntimeError(f"{name}: installing the {kind} stand-in failed: {res.stderr[-1000:]}")


def batch_calls(facilities: slurm_hosts.Facilities, name: str) -> list[dict[str, Any]]:
    """What the PBS/Flux stand-in of facility ``name`` was asked, call by call."""
    import json

    text = facilities.hosts.read(name, BATCH_LOG).decode()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def seed_data(facilities: slurm_hosts.Facilities, name: str) -> None:
    """Generate facility ``name``'s data on the facility, owned by the researcher (it exists nowhere else)."""
    facilities.exec(name, f"install -d -o {slurm_hosts.USER} -g {slurm_hosts.USER} {DATA_ROOT}")
    script = (EXAMPLE / "make_data.py").read_text()
    res = facilities.hosts.exec(
        name, f"su - {slurm_hosts.USER} -c 'python3 - --facility {name} --out {dataset_path(name)}'",
        input=script, timeout=120)
    if res.returncode != 0:
        raise RuntimeError(f"{name}: make_data.py failed: {res.stderr[-1000:]}")


def start(names: list[str], work: Path, *, prefix: str, net: str, rounds: int | None = None) -> Setup:
    facilities = slurm_hosts.start(names, prefix=prefix, net=net, images=[f"oras://{IMAGE}"])
    try:
        work.mkdir(parents=True, exist_ok=True)
        for f in ("train.py", "init.npz"):
            shutil.copyfile(EXAMPLE / f, work / f)
        facilities.write_known_hosts(work / "known_hosts")
        write_description(work / "training.yaml", facilities, names, **({"rounds": rounds} if rounds else {}))
        for name in names:
            seed_data(facilities, name)
        port = _free_port()
        log = work / "registry.log"
        proc = facilities.hub_popen(
            [sys.executable, str(Path(__file__).with_name("registry_standin.py")), "--port", str(port), "--host",
             REGISTRY_HOST, "--image", IMAGE, "--log", str(log)],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert proc.stdout is not None
        deadline = time.monotonic() + 20
        while proc.stdout.readline().strip() != "ready":
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the registry stand-in did not start")
        proc.stdout.close()
        return Setup(facilities, work, f"http://127.0.0.1:{port}", log, proc)
    except BaseException:
        facilities.stop()
        raise
