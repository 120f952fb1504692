"""Variants of the low-budget methods against random, on an exported pool:
the README's "A later look" table (Low-budget methods).

    python benches/fashion_mnist_example.py --export benches/.cache/fm   # once
    python benches/lowbudget_variants.py --budgets 500,1000,2000 \\
        --variants random,herding-20,herding-100,cluster-random,half-typiclust
    python benches/lowbudget_variants.py --budgets 200 --variants typiclust,herding-100

Each selection goes through the package's own method functions (labels are
never passed to them) and is scored as `zcore-fast evaluate` scores it: a
`LinearProbe(seed=s)` fitted on the selected rows, accuracy on the test rows,
mean over seeds 0 .. --seeds - 1. Variants:
- random, typiclust: the methods with their defaults;
- herding-K: herding on a K-nearest-neighbour graph (default K = 20);
- cluster-random: k-means into K = budget clusters on L2-normalised rows
  (as typiclust clusters), one uniformly drawn row of each;
- half-typiclust: typiclust for half the budget, uniform rows for the rest;
- typiclust-uncapped: typiclust's choice (most typical row of each cluster)
  over k-means into K = budget clusters, past its cap of 500 and N / 40;
- kmeans++: the k-means++ seeding itself on L2-normalised rows (each next row
  drawn with probability proportional to its squared distance to the rows
  already drawn), the budget's rows.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if any((ROOT / "python" / "zcore_fast").glob("_native*.so")):
    # This checkout's code when its extension is built in place; otherwise
    # the installed package (pip install .).
    sys.path.insert(0, str(ROOT / "python"))
from zcore_fast.evaluation.probe import LinearProbe  # noqa: E402
from zcore_fast.methods import herding, typiclust  # noqa: E402
from zcore_fast.methods import random as random_method  # noqa: E402
from zcore_fast.methods.kmeans import kmeans  # noqa: E402
from zcore_fast.methods.probcover import normalise as unit_rows  # noqa: E402

Select = Callable[[np.ndarray, int, int], np.ndarray]


def cluster_random(x: np.ndarray, budget: int, seed: int) -> np.ndarray:
    """One uniformly drawn row of each of `budget` k-means clusters."""
    unit = unit_rows(x)
    labels = kmeans(unit, budget, seed=seed, threads=2).labels
    rng = np.random.default_rng(seed)
    picks = [rng.choice(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    return np.asarray(picks, dtype=np.int64)


def half_typiclust(x: np.ndarray, budget: int, seed: int) -> np.ndarray:
    """typiclust for half the budget, uniform rows among the rest for the rest."""
    typical = np.asarray(typiclust.run(x, budget // 2, seed=seed, threads=2).indices)
    rest = np.setdiff1d(np.arange(x.shape[0]), typical)
    extra = np.random.default_rng(seed + 100).choice(rest, budget - typical.size, replace=False)
    return np.concatenate([typical, extra])


def typiclust_uncapped(x: np.ndarray, budget: int, seed: int) -> np.ndarray:
    """typiclust's most typical row of each of `budget` k-means clusters."""
    unit = unit_rows(x)
    labels = kmeans(unit, budget, seed=seed, threads=2).labels
    return typiclust.select_from_clusters(unit, labels, budget)[0]


def kmeans_pp(x: np.ndarray, budget: int, seed: int) -> np.ndarray:
    """k-means++ seeding on L2-normalised rows: `budget` rows, each drawn with
    probability proportional to its squared distance to those drawn before."""
    unit = unit_rows(x)
    rng = np.random.default_rng(seed)
    picks = [int(rng.integers(unit.shape[0]))]
    nearest = np.sum((unit - unit[picks[0]]) ** 2, axis=1)
    for _ in range(budget - 1):
        pick = int(rng.choice(unit.shape[0], p=nearest / nearest.sum()))
        picks.append(pick)
        np.minimum(nearest, np.sum((unit - unit[pick]) ** 2, axis=1), out=nearest)
    return np.asarray(picks, dtype=np.int64)


def variant(name: str) -> Select:
    """The selection function a variant name stands for."""
    if name == "random":
        return lambda x, b, s: np.asarray(random_method.run(x, b, seed=s).indices)
    if name == "typiclust":
        return lambda x, b, s: np.asarray(typiclust.run(x, b, seed=s, threads=2).indices)
    if name.startswith("herding-") and name[8:].isdigit():
        k = int(name[8:])
        return lambda x, b, s: np.asarray(herding.run(x, b, seed=s, neighbors=k, threads=2).indices)
    if name == "cluster-random":
        return cluster_random
    if name == "half-typiclust":
        return half_typiclust
    if name == "kmeans++":
        return kmeans_pp
    if name == "typiclust-uncapped":
        return typiclust_uncapped
    raise SystemExit(
        f"unknown variant {name!r}: use random, typiclust, herding-K, cluster-random, "
        "half-typiclust, typiclust-uncapped or kmeans++"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--pool", type=Path, default=ROOT / "benches" / ".cache" / "fm")
    ap.add_argument("--budgets", default="500,1000,2000")
    ap.add_argument("--variants", default="random,herding-20,herding-100")
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    files = ["pool.npy", "pool_labels.npy", "test.npy", "test_labels.npy"]
    missing = [f for f in files if not (args.pool / f).is_file()]
    if missing:
        raise SystemExit(
            f"{args.pool} lacks {', '.join(missing)}: export a pool first with "
            f"python benches/fashion_mnist_example.py --export {args.pool}"
        )
    x, y, x_test, y_test = (np.load(args.pool / f) for f in files)
    x, x_test = x.astype(np.float32), x_test.astype(np.float32)
    selects = {name: variant(name) for name in args.variants.split(",")}
    print("| examples | variant | linear probe, mean (per seed) | seconds |")
    print("|---|---|---|---|")
    for budget in (int(b) for b in args.budgets.split(",")):
        for name, select in selects.items():
            start = time.perf_counter()
            accuracy = []
            for seed in range(args.seeds):
                keep = select(x, budget, seed)
                probe = LinearProbe(seed=seed).fit(x[keep], y[keep])
                accuracy.append(100 * probe.score(x_test, y_test))
            each = ", ".join(f"{a:.1f}" for a in accuracy)
            took = time.perf_counter() - start
            print(f"| {budget:,} | {name} | {np.mean(accuracy):.2f} ({each}) | {took:.0f} |")


if __name__ == "__main__":
    main()
