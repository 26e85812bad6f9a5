"""The baseline: the same model trained centrally on the union of the facilities' data.

What federated training is compared with (tests/integration/fl): ``central_model(names, rounds, epochs,
lr)`` regenerates each facility's data in memory (make_data.py's generator with the facility's seed;
nothing is read from a facility or written to disk) and takes ``rounds * epochs`` full-batch gradient
steps on all of it at once. ``python central.py FEDERATED_MODEL.npz bologna bari`` prints both accuracies
on the held-out test set.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import make_data
import train


def central_model(names: list[str], rounds: int, epochs: int, lr: float) -> dict[str, np.ndarray]:
    parts = [make_data.facility_data(n) for n in names]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return train.fit(train.init(make_data.FEATURES), x, y, rounds * epochs, lr)


def test_accuracy(model: dict[str, np.ndarray], names: list[str]) -> float:
    x, y = make_data.test_data(names)
    return train.accuracy(model, x, y)


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: central.py FEDERATED_MODEL.npz FACILITY... [--rounds R --epochs E --lr LR]", file=sys.stderr)
        return 2
    with np.load(argv[0], allow_pickle=False) as m:
        federated = {k: m[k] for k in m.files}
    names = [a for a in argv[1:] if a in make_data.FACILITIES]
    central = central_model(names, rounds=8, epochs=10, lr=0.5)
    print(f"federated accuracy {test_accuracy(federated, names):.4f}, central {test_accuracy(central, names):.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
