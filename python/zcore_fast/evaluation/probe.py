"""A linear probe: L2-regularised multinomial logistic regression in NumPy,
with the regularisation chosen on a validation split of its training rows.

Why choose the regularisation per coreset (DESIGN.md section 9): a weakly
regularised probe shows double descent, an accuracy dip when the number of
training rows nears the number of parameters (D x classes), which would make
some budgets look bad for no reason of the coreset's. Small coresets need
strong regularisation and large ones weak; a fixed value is wrong for one end.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from zcore_fast.evaluation.lbfgs import minimize
from zcore_fast.evaluation.splits import stratified_folds, stratified_holdout
from zcore_fast.threads import blas_threads

#: L2 strengths tried, strongest first (the lambda of mean cross-entropy +
#: lambda/2 |W|^2 on standardised features; scikit-learn's C = 1 / (lambda n)).
REG_GRID: tuple[float, ...] = tuple(float(v) for v in 10.0 ** np.arange(1.0, -6.01, -0.5))

#: Rows from which one 20% hold-out is a steady enough validation set; below
#: it, 3-fold cross-validation (cheap at that size) cuts the noise.
_HOLDOUT_MIN_ROWS = 2000
#: Fewer rows than this cannot be split usefully; the probe uses `_SMALL_REG`.
_MIN_VALIDATION_ROWS = 6
_SMALL_REG = 1e-1
#: Stop the path after this many grid steps without a lower validation loss:
#: along a warm-started path it falls to one minimum, and the weakly
#: regularised end is the slowest to fit.
_PATIENCE = 3
#: Below this many matrix entries (N x D) the probe runs BLAS on one thread.
_ONE_THREAD_ENTRIES = 1 << 22


@dataclass
class LinearProbe:
    """Multinomial logistic regression (softmax) with an L2 penalty on the
    weights (not the intercepts), fitted with L-BFGS on standardised features.

    Args:
        reg: fixed L2 strength lambda of mean cross-entropy + lambda/2 |W|^2;
            None (default) chooses it from `reg_grid` by validation accuracy.
        reg_grid: strengths tried when `reg` is None.
        max_iter: L-BFGS iterations per fit.
        gtol: stop when max |gradient| <= gtol (mean loss: independent of N).
        seed: seed of the validation split.
        dtype: float32 (default) or float64, the precision of the two
            (N x D) @ (D x K) products per iteration. float32 halves their
            memory traffic; its rounding noise (about 1e-5 in the gradient,
            3e-8 in the loss) sits far below what moves an accuracy, but
            float64 is there to check the optimum itself.

    After `fit`: `classes_`, `coef_` (D x K), `intercept_` (K,), `reg_` (the
    strength used), `validation_` ({lambda: (validation accuracy, validation
    log-loss)} for the strengths tried).

    The strength is chosen by validation log-loss, not accuracy: on the
    small validation sets of small coresets accuracy moves in steps of whole
    rows and picks noise, while log-loss (a proper scoring rule) varies
    smoothly; over 12 synthetic problems (40 to 2,500 rows) it gave test
    accuracy closer to the best strength in hindsight (0.476 vs 0.468 mean,
    best 0.484).
    """

    reg: float | None = None
    reg_grid: tuple[float, ...] = REG_GRID
    max_iter: int = 500
    gtol: float = 1e-4
    seed: int = 0
    dtype: type[np.floating] = np.float32
    classes_: np.ndarray = field(init=False, repr=False)
    coef_: np.ndarray = field(init=False, repr=False)
    intercept_: np.ndarray = field(init=False, repr=False)
    reg_: float = field(init=False, repr=False)
    validation_: dict[float, tuple[float, float]] = field(init=False, repr=False)
    _mean: np.ndarray = field(init=False, repr=False)
    _scale: np.ndarray = field(init=False, repr=False)

    def fit(self, x: npt.ArrayLike, y: npt.ArrayLike) -> LinearProbe:
        """Fits on rows `x` (N x D) with labels `y` (N,); returns self."""
        x = np.asarray(x)
        y = np.asarray(y)
        if x.ndim != 2 or y.shape != (x.shape[0],) or x.shape[0] == 0:
            raise ValueError(
                f"need x of shape (N, D) and y of shape (N,) with N >= 1; got {x.shape}, {y.shape}"
            )
        self.classes_, codes = np.unique(y, return_inverse=True)
        codes = codes.reshape(-1)
        self._mean = x.mean(axis=0, dtype=np.float64)
        std = x.std(axis=0, dtype=np.float64)
        self._scale = np.where(std > 0, std, 1.0)
        z = self._standardise(x)
        with _blas_threads(1 if z.size < _ONE_THREAD_ENTRIES else None):
            return self._fit_standardised(z, codes)

    def _fit_standardised(self, z: np.ndarray, codes: np.ndarray) -> LinearProbe:
        self.validation_ = {}
        k = self.classes_.size
        if k == 1:  # one class: the probe can only ever answer it
            self.coef_ = np.zeros((z.shape[1], 1))
            self.intercept_ = np.zeros(1)
            self.reg_ = float("nan")
            return self
        start: np.ndarray | None = None
        if self.reg is not None:
            self.reg_ = float(self.reg)
        else:
            self.reg_, start = self._choose_reg(z, codes, k)
        w = _fit(z, codes, k, self.reg_, start, self.max_iter, self.gtol)
        self.coef_, self.intercept_ = _unpack(w, z.shape[1], k)
        return self

    def decision_function(self, x: npt.ArrayLike) -> np.ndarray:
        """Class logits (N x K)."""
        z = self._standardise(np.asarray(x))
        return z @ self.coef_.astype(z.dtype) + self.intercept_

    def predict(self, x: npt.ArrayLike) -> np.ndarray:
        """Predicted labels (N,), in the label values given to `fit`."""
        return self.classes_[np.argmax(self.decision_function(x), axis=1)]

    def score(self, x: npt.ArrayLike, y: npt.ArrayLike) -> float:
        """Accuracy on rows `x` with labels `y`."""
        return float(np.mean(self.predict(x) == np.asarray(y)))

    def _standardise(self, x: np.ndarray) -> np.ndarray:
        return ((x - self._mean) / self._scale).astype(self.dtype)

    def _choose_reg(
        self, z: np.ndarray, codes: np.ndarray, k: int
    ) -> tuple[float, np.ndarray | None]:
        """The grid strength with the lowest validation log-loss (ties: the
        stronger), and a warm start for the final fit."""
        n = z.shape[0]
        if n < _MIN_VALIDATION_ROWS:
            return _SMALL_REG, None
        if n >= _HOLDOUT_MIN_ROWS:
            train, val = stratified_holdout(codes, 0.2, self.seed)
            splits = [(train, val)]
        else:
            folds = stratified_folds(codes, 3, self.seed)
            splits = [(np.concatenate(folds[:j] + folds[j + 1 :]), folds[j]) for j in range(3)]
            splits = [(t, v) for t, v in splits if t.size and v.size]
        starts: list[np.ndarray | None] = [None] * len(splits)
        best_nll = np.inf
        best_reg, best_start, since_best = self.reg_grid[0], None, 0
        for lam in sorted(self.reg_grid, reverse=True):
            acc, nll = 0.0, 0.0
            for j, (tr, va) in enumerate(splits):
                w = _fit(z[tr], codes[tr], k, lam, starts[j], self.max_iter, self.gtol)
                starts[j] = w  # warm start for the next, weaker strength
                a, loss = _evaluate(w, z[va], codes[va], k)
                acc, nll = acc + a / len(splits), nll + loss / len(splits)
            self.validation_[lam] = (acc, nll)
            if nll < best_nll:
                best_nll, best_reg, best_start, since_best = nll, lam, starts[0], 0
            else:
                since_best += 1
                if since_best >= _PATIENCE:
                    break
        return best_reg, best_start


def _unpack(w: np.ndarray, d: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    return w[: d * k].reshape(d, k), w[d * k :]


def _fit(
    z: np.ndarray,
    codes: np.ndarray,
    k: int,
    lam: float,
    start: np.ndarray | None,
    max_iter: int,
    gtol: float,
) -> np.ndarray:
    """Minimises mean cross-entropy + lam/2 |W|^2 over (W, b); returns them flat."""
    n, d = z.shape
    onehot = np.zeros((n, k))
    onehot[np.arange(n), codes] = 1.0

    def fun_grad(w: np.ndarray) -> tuple[float, np.ndarray]:
        coef, bias = _unpack(w, d, k)
        logits = (z @ coef.astype(z.dtype)).astype(np.float64) + bias
        logits -= logits.max(axis=1, keepdims=True)
        lse = np.log(np.exp(logits).sum(axis=1))
        loss = float(np.mean(lse - logits[np.arange(n), codes]))
        resid = (np.exp(logits - lse[:, None]) - onehot) / n
        g_coef = (z.T @ resid.astype(z.dtype)).astype(np.float64) + lam * coef
        value = loss + 0.5 * lam * float(np.sum(coef * coef))
        return value, np.concatenate([g_coef.ravel(), resid.sum(axis=0)])

    w0 = np.zeros(d * k + k) if start is None else start
    # Stop where the loss's own rounding noise begins (see LinearProbe.dtype).
    ftol = 1e-8 if z.dtype == np.float32 else 1e-14
    return minimize(fun_grad, w0, max_iter=max_iter, gtol=gtol, ftol=ftol).x


def _evaluate(w: np.ndarray, z: np.ndarray, codes: np.ndarray, k: int) -> tuple[float, float]:
    """(accuracy, mean log-loss) of packed weights `w` on rows z."""
    coef, bias = _unpack(w, z.shape[1], k)
    logits = (z @ coef.astype(z.dtype)).astype(np.float64) + bias
    logits -= logits.max(axis=1, keepdims=True)
    lse = np.log(np.exp(logits).sum(axis=1))
    nll = float(np.mean(lse - logits[np.arange(z.shape[0]), codes]))
    return float(np.mean(np.argmax(logits, axis=1) == codes)), nll


def _blas_threads(threads: int | None) -> Any:
    """Caps NumPy's BLAS threads inside a `with` when threadpoolctl is
    installed (a no-op otherwise). Why: a small product split over threads
    that wait for busy cores can run 20x slower than on one thread
    (measured on this project's 2-core machine under load). The cap is
    shared with calls in other threads (`zcore_fast.threads.SharedCap`)."""
    return blas_threads(threads)
