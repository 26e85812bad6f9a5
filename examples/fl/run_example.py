"""Run the example federated training end to end on two local SLURM facilities (root; test-host deps).

    .venv/bin/python examples/fl/run_example.py [--facilities bologna,bari] [--work build/fl-example]

Starts one test host per facility (tests/support/slurm: Debian's slurmctld and slurmd, reached over
SSH as the user ``researcher``), generates each facility's data on the facility, then runs
``aiinfn fl plan``, ``aiinfn fl run`` and ``aiinfn fl status`` on a copy of training.yaml from the
hosts' network, compares the federated model with the same model trained centrally (central.py), and
stops the hosts. A minute or two on a laptop.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1] / "tests" / "support" / "slurm")]

import central  # noqa: E402 - beside this file
import fl_setup  # noqa: E402 - tests/support/slurm


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--facilities", default="bologna,bari")
    parser.add_argument("--work", type=Path, default=HERE.parents[1] / "build" / "fl-example")
    parser.add_argument("--prefix", default="flex")
    parser.add_argument("--net", default="10.254.7")
    ns = parser.parse_args()
    names = ns.facilities.split(",")
    setup = fl_setup.start(names, ns.work.resolve(), prefix=ns.prefix, net=ns.net)
    try:
        for cmd in ("plan", "run", "status"):
            res = setup.aiinfn(cmd, str(setup.description))
            sys.stdout.write(res.stdout)
            sys.stderr.write(res.stderr)
            if res.returncode != 0:
                return res.returncode
        with np.load(setup.state / "model.npz", allow_pickle=False) as m:
            federated = {k: m[k] for k in m.files}
        fed = central.test_accuracy(federated, names)
        cen = central.test_accuracy(central.central_model(names, rounds=8, epochs=10, lr=0.5), names)
        print(f"test accuracy: federated {fed:.4f}, central on the union of the data {cen:.4f}")
    finally:
        setup.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
