"""Generate one facility's data where it will stay: ``python3 make_data.py --facility NAME --out DIR``.

Run on the facility itself (the example's runner does it over SSH): the data never exists anywhere
else. Binary labels from one logistic ground truth over 8 features; each facility sees its own region
of feature space (its own mean) and its own number of samples, so the facilities' data differ (not
identically distributed) and federated averaging has to weigh them. ``--split test`` makes a held-out
set drawn from every facility's distribution (for evaluation on the controller, never used to train).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

FEATURES = 8
TRUTH_W = np.array([1.5, -2.0, 1.0, 0.5, -1.0, 2.0, -0.5, 1.0])
TRUTH_B = -0.25
#: Per facility: (seed, samples, mean of the features).
FACILITIES = {
    "bologna": (11, 3000, 0.6),
    "bari": (23, 1200, -0.6),
    "leonardo": (37, 2000, 0.0),
}


def sample(seed: int, n: int, mean: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(mean, 1.0, size=(n, FEATURES))
    p = 1.0 / (1.0 + np.exp(-(x @ TRUTH_W + TRUTH_B)))
    y = (rng.random(n) < p).astype(np.float64)
    return x, y


def facility_data(name: str) -> tuple[np.ndarray, np.ndarray]:
    seed, n, mean = FACILITIES[name]
    return sample(seed, n, mean)


def test_data(names: list[str], n: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    parts = [sample(1000 + FACILITIES[name][0], n // len(names), FACILITIES[name][2]) for name in names]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--facility", required=True, choices=sorted(FACILITIES))
    parser.add_argument("--out", required=True)
    ns = parser.parse_args(argv)
    out = Path(ns.out)
    out.mkdir(parents=True, exist_ok=True)
    x, y = facility_data(ns.facility)
    np.savez(out / "train.npz", x=x, y=y)
    print(f"{ns.facility}: {len(y)} samples in {out / 'train.npz'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
