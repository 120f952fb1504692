"""A small L-BFGS minimiser in NumPy (so the probe needs neither SciPy nor torch)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable

import numpy as np

#: f(x) -> (value, gradient): the objective and its gradient at x.
FunGrad = Callable[[np.ndarray], "tuple[float, np.ndarray]"]


@dataclass(frozen=True)
class LbfgsResult:
    """The minimiser's answer: the point, its value, iterations, and whether
    the gradient test was met (False: stopped by max_iter, or by a line search
    that found no decrease, which near the optimum means float noise)."""

    x: np.ndarray
    value: float
    iterations: int
    converged: bool


def minimize(
    fun_grad: FunGrad,
    x0: np.ndarray,
    *,
    max_iter: int = 500,
    gtol: float = 1e-4,
    ftol: float = 0.0,
    memory: int = 10,
) -> LbfgsResult:
    """Minimises a smooth function with L-BFGS and a backtracking (Armijo)
    line search. Stops when max |gradient| <= gtol (scikit-learn's test for
    its lbfgs solver), when a step lowers the value by at most
    ftol * max(|f|, 1) (SciPy's test: set ftol above the rounding noise of
    the objective, or the search wanders in the noise until max_iter), or
    after `max_iter` iterations.

    Armijo backtracking is enough here because the objectives we minimise
    (L2-regularised logistic losses) are convex: the BFGS update only needs
    s.y > 0, which we check before storing a pair.
    """
    x = np.array(x0, dtype=np.float64)
    f, g = fun_grad(x)
    pairs: deque[tuple[np.ndarray, np.ndarray, float]] = deque(maxlen=memory)
    for it in range(max_iter):
        if np.max(np.abs(g)) <= gtol:
            return LbfgsResult(x, f, it, True)
        d = -_two_loop(g, pairs)
        slope = _dot(g, d)
        if slope >= 0.0:  # not a descent direction (stale memory): restart
            pairs.clear()
            d, slope = -g, -_dot(g, g)
        # First step: scale steepest descent to a unit move; then BFGS's own
        # scaling makes step 1 the natural first try.
        step = 1.0 if pairs else min(1.0, 1.0 / max(np.sqrt(-slope), 1e-12))
        for _ in range(20):
            x_new = x + step * d
            f_new, g_new = fun_grad(x_new)
            if f_new <= f + 1e-4 * step * slope:
                break
            # Minimum of the quadratic through f, the slope and f_new, kept
            # within [0.1, 0.5] of the step: fewer trials than halving.
            curve = f_new - f - slope * step
            guess = -slope * step * step / (2.0 * curve) if curve > 0 else 0.5 * step
            step = min(max(guess, 0.1 * step), 0.5 * step)
        else:
            # No decrease along a descent direction even for tiny steps: the
            # objective's rounding noise is larger than what is left to gain.
            return LbfgsResult(x, f, it, False)
        if f - f_new <= ftol * max(abs(f), abs(f_new), 1.0):
            return LbfgsResult(x_new, f_new, it + 1, bool(np.max(np.abs(g_new)) <= gtol))
        s, y = x_new - x, g_new - g
        sy = _dot(s, y)
        if sy > 1e-12 * _dot(y, y):
            pairs.append((s, y, 1.0 / sy))
        x, f, g = x_new, f_new, g_new
    return LbfgsResult(x, f, max_iter, bool(np.max(np.abs(g)) <= gtol))


def _two_loop(g: np.ndarray, pairs: deque[tuple[np.ndarray, np.ndarray, float]]) -> np.ndarray:
    """The L-BFGS two-loop recursion: an approximate inverse Hessian times g."""
    q = g.copy()
    alphas = []
    for s, y, rho in reversed(pairs):
        a = rho * _dot(s, q)
        alphas.append(a)
        q -= a * y
    if pairs:
        s, y, _ = pairs[-1]
        q *= _dot(s, y) / _dot(y, y)
    for (s, y, rho), a in zip(pairs, reversed(alphas)):
        b = rho * _dot(y, q)
        q += (a - b) * s
    return q


def _dot(a: np.ndarray, b: np.ndarray) -> float:
    """a . b without BLAS: on a busy machine a threaded BLAS dot of a few
    thousand numbers can take milliseconds (its threads wait for cores),
    while this takes microseconds."""
    return float(np.multiply(a, b).sum())
