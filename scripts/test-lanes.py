"""Run the whole test suite as `make test` does: pytest sessions side by side (lanes), then one verdict.

The tests on the local test hosts (systemd-nspawn hosts reached over SSH: Ansible, molecule, SLURM) spend
most of their wall time waiting on the hosts (boots, SSH round trips, services starting), not on the CPU.
Every other test (the fast suites, the OpenStack control plane, the real JupyterHub, Prometheus) is
CPU-bound. So the host tests run in lanes of their own beside the rest: the roles' molecule scenarios in
one, the other host tests and federated learning's SLURM facilities in another, and the suite takes about
as long as its longest lane instead of the sum (docs/benchmarks.md, "The whole suite").

The lanes share nothing a test holds: each set of test hosts has its own prefix, network and lock (the
molecule scenarios ``mtNN``, the host tests ``ah``, the facilities ``fl``), the host image is built once
under its own lock, the OpenStack control plane is used by one lane only, and every port is taken free at
the time. Each lane is an ordinary pytest session (its own session fixtures, summary and slowest tests).
The first lane streams; each other lane writes to a log file, named at the start so it can be followed,
and printed whole once every lane is done, so no output is interleaved. The exit code is the first
non-zero one of the lanes (pytest's own codes), else 0.

Arguments are passed to every lane (`make test PYTEST_ARGS=...`). Given paths or ``-k``/``-m``
selections, the suite runs as one session instead (a developer's run of some tests).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HOSTS, FL, MOLECULE = "tests/integration/hosts", "tests/integration/fl", "tests/integration/hosts/test_molecule.py"
#: name -> what the lane's pytest is given; the first lane streams.
LANES: dict[str, list[str]] = {
    "the rest": [f"--ignore={HOSTS}", f"--ignore={FL}"],
    "molecule": [MOLECULE],
    "hosts": [HOSTS, FL, f"--ignore={MOLECULE}"],
}
COMMON = ["-p", "no:cacheprovider", "--durations=30"]


def selects_tests(args: list[str]) -> bool:
    """Whether the caller chose tests (a path, a node id, -k or -m): then one session runs them."""
    return any(a in ("-k", "-m") or a.startswith(("-k", "-m")) or a.startswith("tests") or "::" in a
               for a in args)


def main(argv: list[str]) -> int:
    pytest = [sys.executable, "-m", "pytest", *COMMON]
    if selects_tests(argv):
        return subprocess.call([*pytest, *argv], cwd=ROOT)
    started = time.monotonic()
    logs_dir = Path(tempfile.mkdtemp(prefix="aiinfn-lanes-"))
    procs: dict[str, subprocess.Popen[bytes]] = {}
    logs: dict[str, Path] = {}
    codes: dict[str, int] = {}
    took: dict[str, float] = {}
    try:
        for i, (name, args) in enumerate(LANES.items()):
            if i == 0:
                procs[name] = subprocess.Popen([*pytest, *argv, *args], cwd=ROOT, stdin=subprocess.DEVNULL,
                                               start_new_session=True)
                continue
            logs[name] = logs_dir / f"{name.replace(' ', '-')}.log"
            with logs[name].open("wb") as out:
                procs[name] = subprocess.Popen([*pytest, *argv, *args], cwd=ROOT, stdout=out,
                                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                               start_new_session=True)
            print(f"lane {name!r}: {' '.join(args)} -> {logs[name]}", flush=True)
        while len(codes) < len(procs):
            for name, proc in procs.items():
                if name not in codes and proc.poll() is not None:
                    codes[name], took[name] = proc.returncode, time.monotonic() - started
            time.sleep(0.5)
    except BaseException:
        for proc in procs.values():  # an interrupted run leaves no lane behind
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        raise
    for name, log in logs.items():
        print(f"\n{'=' * 30} lane {name!r} ({' '.join(LANES[name])}) {'=' * 30}", flush=True)
        sys.stdout.write(log.read_text(errors="replace"))
    summary = "; ".join(f"{name!r} exit {codes[name]} in {took[name]:.0f} s" for name in LANES)
    print(f"\nlanes: {summary}; the suite {time.monotonic() - started:.0f} s", flush=True)
    return next((codes[name] for name in LANES if codes[name]), 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
