"""Exact k nearest neighbours (Euclidean) for the graph-based methods
(TypiClust's typicality, herding's k-NN graph).

faiss (`pip install "zcore-fast[faiss]"`) when it is installed, else the same
brute force in NumPy: blocks of queries against all rows, one float32 matrix
product per block (|q|^2 - 2 q.x + |x|^2), then a partial selection. Both are
exact and cost N x M x D multiply-adds; faiss is faster mostly through its
fused selection (measured in README "Low-budget methods"). faiss is imported
only when a search runs, never with the package.
"""

from __future__ import annotations

from types import ModuleType

import numpy as np

from zcore_fast.cancel import check_cancelled
from zcore_fast.methods.base import positive_int

#: Bytes of float32 distances one NumPy block may hold.
BLOCK_BYTES = 1 << 27

#: The search engines `knn` accepts.
BACKENDS = ("auto", "faiss", "numpy")


def faiss_module() -> ModuleType | None:
    """The faiss module when it is installed, else None."""
    try:
        import faiss
    except ImportError:
        return None
    return faiss


def resolve_backend(backend: str) -> str:
    """ "faiss" or "numpy" for `backend` ("auto": faiss when installed)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "auto":
        return "faiss" if faiss_module() is not None else "numpy"
    if backend == "faiss" and faiss_module() is None:
        raise ImportError('backend "faiss" needs faiss: pip install "zcore-fast[faiss]"')
    return backend


def knn(
    x: np.ndarray,
    k: int,
    *,
    queries: np.ndarray | None = None,
    backend: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """The `k` nearest rows of `x` to each query, by Euclidean distance.

    Args:
        x: float32 (N, D) rows to search.
        k: neighbours per query, 1 <= k <= N (N - 1 without `queries`).
        queries: float32 (M, D); default: the rows of `x` themselves, each
            row then excluded from its own neighbours.
        backend: "auto" (faiss when installed), "faiss" or "numpy".

    Returns:
        (distances float32 (M, k), indices int64 (M, k)), nearest first;
        equal distances among those returned in index order (NumPy; faiss
        orders exact ties its own way).
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    self_search = queries is None
    q = x if queries is None else np.ascontiguousarray(queries, dtype=np.float32)
    k = positive_int("k", k)
    limit = x.shape[0] - 1 if self_search else x.shape[0]
    if k > limit:
        raise ValueError(f"k={k} neighbours asked but only {limit} rows can be neighbours")
    if resolve_backend(backend) == "faiss":
        return _knn_faiss(x, q, k, self_search)
    return _knn_numpy(x, q, k, self_search)


def _knn_faiss(
    x: np.ndarray, q: np.ndarray, k: int, self_search: bool
) -> tuple[np.ndarray, np.ndarray]:
    faiss = faiss_module()
    assert faiss is not None
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(x)
    extra = 1 if self_search else 0
    sq, idx = index.search(q, k + extra)
    if self_search:
        # Drop each row's own entry (not always first when rows repeat);
        # where it is absent, the farthest entry goes instead.
        own = idx == np.arange(q.shape[0])[:, None]
        drop = np.where(own.any(axis=1), own.argmax(axis=1), k)
        keep = np.ones_like(own)
        keep[np.arange(q.shape[0]), drop] = False
        sq = sq[keep].reshape(q.shape[0], k)
        idx = idx[keep].reshape(q.shape[0], k)
    return np.sqrt(np.maximum(sq, 0.0)).astype(np.float32), idx.astype(np.int64)


def _knn_numpy(
    x: np.ndarray, q: np.ndarray, k: int, self_search: bool
) -> tuple[np.ndarray, np.ndarray]:
    n, m = x.shape[0], q.shape[0]
    x_sq = np.einsum("ij,ij->i", x, x)
    out_d = np.empty((m, k), dtype=np.float32)
    out_i = np.empty((m, k), dtype=np.int64)
    step = max(1, BLOCK_BYTES // (4 * n))
    for lo in range(0, m, step):
        check_cancelled()  # a block is at most BLOCK_BYTES of distances
        hi = min(m, lo + step)
        block = q[lo:hi]
        d = block @ x.T
        d *= -2.0
        d += np.einsum("ij,ij->i", block, block)[:, None]
        d += x_sq[None, :]
        np.maximum(d, 0.0, out=d)
        if self_search:
            d[np.arange(hi - lo), np.arange(lo, hi)] = np.inf
        if k < n:
            part = np.argpartition(d, k - 1, axis=1)[:, :k]
        else:
            part = np.tile(np.arange(n), (hi - lo, 1))
        pd = np.take_along_axis(d, part, axis=1)
        # Nearest first, equal distances by index: a lexsort per block.
        order = np.lexsort((part, pd), axis=1)
        out_i[lo:hi] = np.take_along_axis(part, order, axis=1)
        out_d[lo:hi] = np.sqrt(np.take_along_axis(pd, order, axis=1))
    return out_d, out_i
