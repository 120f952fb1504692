"""A k-nearest-neighbour probe: the second classifier `evaluate` trains on a
coreset, so that a conclusion never rests on the linear probe alone.

Cosine similarity on L2-normalised embeddings, each of the k nearest coreset
rows voting for its class with weight exp(similarity / T), T = 0.07 (the
weighted k-NN of Wu et al. 2018 and DINO, the usual frozen-feature probe).
k is chosen per coreset from `K_GRID` by leave-one-out accuracy on the
coreset itself (ties: the smaller k), since a fixed k is wrong at one end of
the budget range (k = 20 would let 20 rows of 10 classes all vote).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: Neighbour counts tried.
K_GRID: tuple[int, ...] = (1, 3, 5, 10, 20)
#: Vote temperature.
TEMPERATURE = 0.07
#: Test rows per block of similarities.
_BLOCK = 2048


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


@dataclass
class KNNProbe:
    """Weighted k-NN classifier; `fit`, `predict`, `score` like `LinearProbe`.

    Args:
        k: neighbours; None (default) chooses from `k_grid` by leave-one-out.
        k_grid: the ks tried.
        seed: unused (no random step); kept so both probes take the same arguments.

    After `fit`: `classes_`, `k_` (the k used), `validation_` ({k: leave-one-out accuracy}).
    """

    k: int | None = None
    k_grid: tuple[int, ...] = K_GRID
    seed: int = 0
    classes_: np.ndarray = field(init=False, repr=False)
    k_: int = field(init=False, repr=False)
    validation_: dict[int, float] = field(init=False, repr=False, default_factory=dict)

    def fit(self, x: np.ndarray, y: np.ndarray) -> KNNProbe:
        """Stores the coreset and chooses k."""
        self.classes_, codes = np.unique(np.asarray(y), return_inverse=True)
        self._x = _unit(x)
        self._y = codes.reshape(-1).astype(np.int64)
        n = self._x.shape[0]
        if self.k is not None:
            self.k_ = max(1, min(int(self.k), n))
            return self
        grid = [k for k in self.k_grid if k <= n - 1] or [1]
        self.validation_ = {}
        if n >= 2:
            sim = self._x @ self._x.T
            np.fill_diagonal(sim, -np.inf)  # leave one out
            for k in grid:
                pred = self._vote(sim, k)
                self.validation_[k] = float(np.mean(pred == self._y))
            best = max(self.validation_.values())
            self.k_ = min(k for k, a in self.validation_.items() if a == best)
        else:
            self.k_ = 1
        return self

    def _vote(self, sim: np.ndarray, k: int) -> np.ndarray:
        k = min(k, sim.shape[1])
        top = np.argpartition(-sim, k - 1, axis=1)[:, :k]
        s = np.take_along_axis(sim, top, axis=1)
        w = np.exp((s - s.max(axis=1, keepdims=True)) / TEMPERATURE)
        w[~np.isfinite(s)] = 0.0
        votes = np.zeros((sim.shape[0], self.classes_.size))
        np.add.at(votes, (np.arange(sim.shape[0])[:, None], self._y[top]), w)
        return votes.argmax(axis=1)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """The class of each row of `x`."""
        q = _unit(x)
        out = np.empty(q.shape[0], dtype=np.int64)
        for lo in range(0, q.shape[0], _BLOCK):
            out[lo : lo + _BLOCK] = self._vote(q[lo : lo + _BLOCK] @ self._x.T, self.k_)
        return self.classes_[out]

    def score(self, x: np.ndarray, y: np.ndarray) -> float:
        """Accuracy on (`x`, `y`)."""
        return float(np.mean(self.predict(x) == np.asarray(y)))
