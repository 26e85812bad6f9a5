"""Run the whole test suite as `make test` does: two pytest sessions side by side, then one verdict.

The tests on the local test hosts (tests/integration/hosts and tests/integration/fl: systemd-nspawn hosts
reached over SSH, Ansible, SLURM) spend most of their wall time waiting on the hosts (boots, SSH round trips,
services starting), not on the CPU: measured at 17 min wall for 6.8 min of CPU. Every other test (the fast
suites, the OpenStack control plane, the real JupyterHub, Prometheus) is CPU-bound. So the host tests run in
a lane of their own beside the rest, and the suite takes about as long as its longer lane instead of the sum.

The two lanes share nothing a test holds: the test hosts have prefixes and networks of their own, the
OpenStack control plane is used by the other lane only, and every port is taken free at the time. Each lane
is an ordinary pytest session (its own session fixtures, its own summary and slowest tests). The other lane
streams; the host lane's output is kept in a file and printed whole once both are done, so neither is
interleaved. The exit code is the first non-zero one of the lanes (pytest's own codes), else 0.

Arguments are passed to both lanes (`make test PYTEST_ARGS=...`). Given paths or ``-k``/``-m``
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
#: The lane that waits on the test hosts.
HOST_LANE = ["tests/integration/hosts", "tests/integration/fl"]
COMMON = ["-p", "no:cacheprovider", "--durations=30"]


def selects_tests(args: list[str]) -> bool:
    """Whether the caller chose tests (a path, a node id, -k or -m): then one session runs them."""
    return any(a in ("-k", "-m") or a.startswith(("-k", "-m")) or a.startswith("tests") or "::" in a
               for a in args)


def main(argv: list[str]) -> int:
    pytest = [sys.executable, "-m", "pytest", *COMMON]
    if selects_tests(argv):
        return subprocess.call([*pytest, *argv], cwd=ROOT)
    ignore = [f"--ignore={p}" for p in HOST_LANE]
    started = time.monotonic()
    with tempfile.TemporaryFile("w+") as host_log:
        host = subprocess.Popen([*pytest, *argv, *HOST_LANE], cwd=ROOT, stdout=host_log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        rest = subprocess.Popen([*pytest, *argv, *ignore], cwd=ROOT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
        lanes = {"rest": rest, "host": host}
        codes: dict[str, int] = {}
        took: dict[str, float] = {}
        try:
            while len(codes) < len(lanes):
                for name, lane in lanes.items():
                    if name not in codes and lane.poll() is not None:
                        codes[name], took[name] = lane.returncode, time.monotonic() - started
                time.sleep(0.5)
        except BaseException:
            for lane in (host, rest):  # an interrupted run leaves no lane behind
                if lane.poll() is None:
                    os.killpg(lane.pid, signal.SIGTERM)
            raise
        host_log.seek(0)
        print(f"\n{'=' * 30} the host lane ({' '.join(HOST_LANE)}) {'=' * 30}", flush=True)
        sys.stdout.write(host_log.read())
    print(f"\nlanes: the rest exit {codes['rest']} in {took['rest']:.0f} s; the host lane exit {codes['host']} in "
          f"{took['host']:.0f} s; the suite {time.monotonic() - started:.0f} s", flush=True)
    return codes["rest"] or codes["host"]


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
