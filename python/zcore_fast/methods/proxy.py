"""ELFS's proxy classifier: a linear (or one-hidden-layer) head trained on the
embeddings with PyTorch, recording each row's training dynamics as it trains.

PyTorch is imported here, lazily, and only when a proxy is trained:
`import zcore_fast` never imports it. CPU is fine (a linear head on 50,000 x
1,280 trains in seconds); a GPU is used when present (`device="auto"`).

Determinism: weights are initialised and the data order drawn from NumPy
generators keyed by the seed (never torch's global RNG), so the same seed
gives the same dynamics on the same device and thread count.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from zcore_fast.methods.base import rng_for
from zcore_fast.methods.rows import Rows

if TYPE_CHECKING:
    import torch

#: Per dynamics score: True when a higher value means a harder example.
HARDER_IS_HIGHER = {"aum": False, "forgetting": True, "el2n": True}


@dataclass(frozen=True)
class ProxyConfig:
    """How the proxy head is trained (defaults are ELFS's, scaled to a head).

    Attributes:
        epochs: passes over the data; the dynamics are summed over them.
        batch_size: rows per step (the reference's 256).
        lr: peak learning rate of Adam, annealed to lr/1000 by a per-step cosine
            (the reference anneals SGD per step the same way). Adam because
            embeddings come at any scale; inputs are also standardised.
        hidden: width of a ReLU hidden layer; 0 trains a linear head.
        el2n_epochs: EL2N is summed over the first this-many epochs (the
            reference's 10: EL2N is an early-training score).
    """

    epochs: int = 20
    batch_size: int = 256
    lr: float = 1e-3
    hidden: int = 0
    el2n_epochs: int = 10


@dataclass(frozen=True)
class TrainingDynamics:
    """Per-row training dynamics of a proxy run.

    Attributes:
        aum: area under the margin: summed over epochs, the softmax probability
            of the row's class minus the largest other class probability,
            recorded at the row's training step (the ELFS/CCS reference's
            "accumulated_margin"; Pleiss et al. use logits, with the same idea).
            Low is hard.
        forgetting: times the row went from correctly to wrongly predicted
            between epochs (Toneva et al.); rows never predicted correctly count
            `epochs`, more than any learned row can reach. High is hard.
        el2n: L2 norm of softmax - one-hot, summed over the first
            `el2n_epochs` epochs (Paul et al.). High is hard.
        epochs: epochs recorded.
    """

    aum: np.ndarray
    forgetting: np.ndarray
    el2n: np.ndarray
    epochs: int

    def score(self, name: str) -> np.ndarray:
        """One score by name: "aum", "forgetting" or "el2n"."""
        if name not in HARDER_IS_HIGHER:
            raise ValueError(f"unknown dynamics score {name!r}; use aum, forgetting or el2n")
        return getattr(self, name)


def torch_module() -> Any:
    """`torch`, or an ImportError saying how to install it."""
    try:
        import torch
    except ImportError:
        raise ImportError(
            "ELFS (and CCS over AUM/forgetting/EL2N) trains a proxy classifier with PyTorch, "
            "which is not installed: pip install 'zcore-fast[elfs]' (or pip install torch)"
        ) from None
    return torch


def resolve_device(device: str) -> str:
    """ "auto" is "cuda" when a GPU is available, else "cpu"."""
    torch = torch_module()
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        kind = torch.device(device).type
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N") from None
    if kind == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: no CUDA GPU is available; use auto or cpu")
    return device


@contextlib.contextmanager
def torch_threads(threads: int | None, device: str) -> Iterator[None]:
    """Sets torch's intra-op threads while inside, then restores them.

    The default on the CPU is one thread: a proxy step (256 x 1,280 x 10) is
    too small to split, and on a busy 2-core machine two spinning OpenMP
    threads made an epoch 38x slower (14 s against 0.37 s, measured)."""
    torch = torch_module()
    before = torch.get_num_threads()
    wanted = threads if threads is not None else (1 if device == "cpu" else before)
    torch.set_num_threads(wanted)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class Recorder:
    """Accumulates training dynamics from the logits of each training step."""

    def __init__(self, n: int, epochs: int, el2n_epochs: int, device: str) -> None:
        torch = torch_module()
        self.epochs, self.el2n_epochs = epochs, el2n_epochs
        zeros = {"dtype": torch.float64, "device": device}
        self.aum = torch.zeros(n, **zeros)
        self.el2n = torch.zeros(n, **zeros)
        self.forgetting = torch.zeros(n, **zeros)
        self.last_correct = torch.zeros(n, dtype=torch.bool, device=device)
        self.ever_correct = torch.zeros(n, dtype=torch.bool, device=device)

    def record(
        self, epoch: int, index: torch.Tensor, logits: torch.Tensor, y: torch.Tensor
    ) -> None:
        """Adds one step: `logits` (B, C) of rows `index` with classes `y`.
        Each row appears once per epoch, so the scatter-adds do not collide."""
        torch = torch_module()
        probs = torch.softmax(logits.detach().double(), dim=1)
        rows = torch.arange(probs.shape[0], device=probs.device)
        target = probs[rows, y]
        others = probs.clone()
        others[rows, y] = -1.0
        # With one class there is no other class: its probability is 0.
        runner_up = others.max(dim=1).values.clamp(min=0.0)
        self.aum.index_add_(0, index, target - runner_up)
        correct = probs.argmax(dim=1) == y  # argmax: the first maximum
        forgot = self.last_correct[index] & ~correct
        self.forgetting.index_add_(0, index, forgot.double())
        self.last_correct[index] = correct
        self.ever_correct[index] |= correct
        if epoch < self.el2n_epochs:
            onehot = torch.nn.functional.one_hot(y, probs.shape[1]).double()
            self.el2n.index_add_(0, index, torch.linalg.vector_norm(probs - onehot, dim=1))

    def result(self) -> TrainingDynamics:
        """The dynamics recorded so far, as float32 NumPy arrays."""
        forgetting = self.forgetting.clone()
        forgetting[~self.ever_correct] = float(self.epochs)
        return TrainingDynamics(
            aum=self.aum.float().cpu().numpy(),
            forgetting=forgetting.float().cpu().numpy(),
            el2n=self.el2n.float().cpu().numpy(),
            epochs=self.epochs,
        )


def init_params(d: int, c: int, hidden: int, seed: int) -> list[np.ndarray]:
    """Initial weights [W (D, C), b] or [W1, b1, W2, b2] (hidden > 0), float32,
    uniform in +-1/sqrt(fan_in) like torch.nn.Linear, from the seed."""
    rng = rng_for(seed, 3)
    shapes = [(d, c)] if hidden == 0 else [(d, hidden), (hidden, c)]
    params: list[np.ndarray] = []
    for fan_in, fan_out in shapes:
        bound = 1.0 / math.sqrt(fan_in)
        params.append(rng.uniform(-bound, bound, size=(fan_in, fan_out)).astype(np.float32))
        params.append(rng.uniform(-bound, bound, size=fan_out).astype(np.float32))
    return params


def epoch_orders(n: int, epochs: int, seed: int) -> Iterator[np.ndarray]:
    """The row order of each epoch: a fresh permutation per epoch, from the seed."""
    rng = rng_for(seed, 2)
    for _ in range(epochs):
        yield rng.permutation(n)


def cosine_lr(lr: float, step: int, total: int) -> float:
    """Learning rate at `step` of `total`: cosine from lr down to lr / 1000."""
    low = lr / 1000.0
    return low + (lr - low) * (1.0 + math.cos(math.pi * step / max(1, total))) / 2.0


def standardisation(x: Rows) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and standard deviation (1 where constant), float32."""
    total = np.zeros(x.d)
    total_sq = np.zeros(x.d)
    for _, block in x.blocks():
        b = block.astype(np.float64)
        total += b.sum(axis=0)
        total_sq += (b * b).sum(axis=0)
    mean = total / x.n
    std = np.sqrt(np.maximum(total_sq / x.n - mean * mean, 0.0))
    std[std <= 1e-12 * np.maximum(1.0, np.abs(mean))] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


class Proxy:
    """A trained (or training) proxy head over standardised embeddings."""

    def __init__(self, rows: Rows, n_classes: int, config: ProxyConfig, seed: int, device: str):
        torch = torch_module()
        self.torch, self.rows, self.config, self.device = torch, rows, config, device
        self.n_classes, self.seed = n_classes, seed
        mean, std = standardisation(rows)
        self.mean = torch.from_numpy(mean).to(device)
        self.std = torch.from_numpy(std).to(device)
        self.params = self._fresh_params()
        # All rows in memory as float32, on the device (N x D x 4 bytes): the
        # random batch order of SGD makes reading a memmap on demand too slow.
        if device == "cpu":
            with warnings.catch_warnings():
                # A read-only memmap is shared, not copied; it is never written.
                warnings.simplefilter("ignore", UserWarning)
                self.x = torch.from_numpy(rows.dense())
        else:
            self.x = torch.cat([torch.tensor(b) for _, b in rows.blocks()]).to(device)

    @classmethod
    def like(cls, other: Proxy, config: ProxyConfig | None = None) -> Proxy:
        """A fresh, untrained head over `other`'s rows, standardisation and device
        (nothing is recomputed or copied to the device again), trained with
        `config` (default: `other`'s)."""
        new = cls.__new__(cls)
        new.__dict__.update(other.__dict__)
        new.config = config or other.config
        new.params = new._fresh_params()
        return new

    def _fresh_params(self) -> list[torch.Tensor]:
        init = init_params(self.rows.d, self.n_classes, self.config.hidden, self.seed)
        return [self.torch.from_numpy(p).to(self.device).requires_grad_() for p in init]

    def logits(self, index: torch.Tensor) -> torch.Tensor:
        """The head's logits for rows `index` (a tensor on the device).

        The head sees standardised rows (x - mean) / std; that is folded into
        the first layer, x @ (W / std) + (b - (mean / std) @ W), which is the
        same function with the same gradients but costs D x C per step instead
        of B x D."""
        w, b = self.params[0], self.params[1]
        scaled = w / self.std[:, None]
        out = self.x[index] @ scaled + (b - self.mean @ scaled)
        if len(self.params) == 2:
            return out
        return self.torch.relu(out) @ self.params[2] + self.params[3]

    def fit(
        self,
        train: np.ndarray,
        y: np.ndarray,
        seed: int,
        recorder: Recorder | None = None,
        on_epoch: Callable[[int, int], object] | None = None,
    ) -> None:
        """Trains on rows `train` (indices) with classes `y` (one per train row).
        With a `recorder`, records each row's dynamics at its training step,
        from the logits of that step's forward pass, as the reference does."""
        torch, cfg = self.torch, self.config
        opt = torch.optim.Adam(self.params, lr=cfg.lr)
        y_dev = torch.from_numpy(np.asarray(y, dtype=np.int64)).to(self.device)
        train_dev = torch.from_numpy(np.asarray(train, dtype=np.int64)).to(self.device)
        steps = cfg.epochs * math.ceil(train.size / cfg.batch_size)
        step = 0
        for epoch, order in enumerate(epoch_orders(train.size, cfg.epochs, seed)):
            order_dev = torch.from_numpy(order).to(self.device)
            for lo in range(0, train.size, cfg.batch_size):
                pos = order_dev[lo : lo + cfg.batch_size]
                index, target = train_dev[pos], y_dev[pos]
                logits = self.logits(index)
                if recorder is not None:
                    recorder.record(epoch, index, logits, target)
                loss = torch.nn.functional.cross_entropy(logits, target)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                for group in opt.param_groups:
                    group["lr"] = cosine_lr(cfg.lr, step, steps)
                opt.step()
                step += 1
            if on_epoch is not None:
                on_epoch(epoch + 1, cfg.epochs)

    def predict(self, index: np.ndarray) -> np.ndarray:
        """Predicted class of rows `index` (int64)."""
        index_dev = self.torch.from_numpy(np.asarray(index, dtype=np.int64)).to(self.device)
        with self.torch.no_grad():
            parts = [
                self.logits(index_dev[lo : lo + 8192]).argmax(dim=1).cpu()
                for lo in range(0, index_dev.shape[0], 8192)
            ]
        return self.torch.cat(parts).numpy().astype(np.int64)
