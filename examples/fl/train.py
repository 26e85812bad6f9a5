"""One round of local training at a facility: logistic regression by full-batch gradient descent (numpy).

The entry point of the example federated training (training.yaml). aiinfn's task program runs it in
the facility's batch job as::

    python3 train.py --model MODEL.npz --data DATASET --out update.npz --metrics metrics.json --round N
                     [--epochs E] [--lr LR]

It reads the facility's own data in place (``DATASET/train.npz``: ``x`` features, ``y`` labels 0/1),
starts from the global model (arrays ``w`` and ``b``), takes E gradient steps on the local data, and
writes the updated arrays and ``{"samples", "loss", "accuracy"}`` (on the local data, after training).
The functions are also what central.py trains the same model with on the union of the data.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def init(features: int) -> dict[str, np.ndarray]:
    return {"w": np.zeros(features, dtype=np.float64), "b": np.zeros(1, dtype=np.float64)}


def predict(model: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    z = x @ model["w"] + model["b"][0]
    return 1.0 / (1.0 + np.exp(-np.clip(z, -30, 30)))


def loss(model: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
    p = np.clip(predict(model, x), 1e-12, 1 - 1e-12)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def accuracy(model: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean((predict(model, x) >= 0.5) == (y >= 0.5)))


def fit(model: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, epochs: int, lr: float) -> dict[str, np.ndarray]:
    w, b = model["w"].astype(np.float64).copy(), model["b"].astype(np.float64).copy()
    for _ in range(epochs):
        err = predict({"w": w, "b": b}, x) - y
        w -= lr * (x.T @ err) / len(y)
        b -= lr * np.array([err.mean()])
    return {"w": w, "b": b}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="one round of local logistic regression")
    parser.add_argument("--model", required=True)
    parser.add_argument("--data", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--metrics", required=True)
    parser.add_argument("--round", type=int, required=True)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--lr", type=float, default=0.5)
    ns = parser.parse_args(argv)
    with np.load(ns.model, allow_pickle=False) as m:
        model = {k: m[k] for k in m.files}
    with np.load(Path(ns.data) / "train.npz", allow_pickle=False) as d:
        x, y = d["x"], d["y"]
    model = fit(model, x, y, ns.epochs, ns.lr)
    np.savez(ns.out, **model)
    Path(ns.metrics).write_text(json.dumps({"samples": len(y), "loss": loss(model, x, y),
                                            "accuracy": accuracy(model, x, y)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
