"""The numbers `evaluate` returns: one row per run, summaries over seeds, CSV and JSON."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from zcore_fast.io import PathLike, atomic_write

#: The label the full-data reference row carries in place of a method name.
FULL_DATA = "full"


@dataclass(frozen=True)
class Run:
    """One selection + probe: `method` kept `n_selected` training rows at
    `prune_rate` with `seed`; the probe trained on them scored `accuracy` on
    the test rows, with L2 strength `reg` (chosen on a validation split).

    `select_seconds` is the selection's wall time; score-once methods (ZCore)
    score once per seed and share that time among the prune rates. `probe`
    names the classifier ("linear" or "knn"); for k-NN, `reg` holds its k.
    """

    method: str
    prune_rate: float
    seed: int
    n_selected: int
    accuracy: float
    reg: float
    select_seconds: float
    probe_seconds: float
    probe: str = "linear"


@dataclass(frozen=True)
class Summary:
    """Accuracy of one method at one prune rate over its seeds. `accuracy_std`
    is the sample standard deviation (0 for a single seed)."""

    method: str
    prune_rate: float
    n_selected: int
    seeds: int
    accuracy_mean: float
    accuracy_std: float
    accuracy_min: float
    accuracy_max: float
    probe: str = "linear"


@dataclass
class EvalResults:
    """Everything `evaluate` measured.

    `runs` holds every (method, prune rate, seed); `full_accuracy` is the
    probe trained on all `n_train` training rows (the reference line);
    `summary()` aggregates over seeds; `to_csv` / `runs_to_csv` / `to_dict`
    write them out.
    """

    runs: list[Run]
    full_accuracy: float
    full_reg: float
    n_train: int
    n_test: int
    n_classes: int
    dims: int
    methods: tuple[str, ...]
    prune_rates: tuple[float, ...]
    seeds: tuple[int, ...]
    held_out: bool
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: The probes trained, in order; `full_accuracy` is the first's.
    probes: tuple[str, ...] = ("linear",)
    #: Full-data accuracy of each probe.
    full_accuracies: dict[str, float] = field(default_factory=dict)

    def summary(self) -> list[Summary]:
        """One `Summary` per (method, probe, prune rate), in the order evaluated."""
        groups: dict[tuple[str, str, float], list[Run]] = {}
        for run in self.runs:
            groups.setdefault((run.method, run.probe, run.prune_rate), []).append(run)
        out = []
        for (method, probe, rate), runs in groups.items():
            acc = np.array([r.accuracy for r in runs])
            out.append(
                Summary(
                    method=method,
                    prune_rate=rate,
                    n_selected=runs[0].n_selected,
                    seeds=len(runs),
                    accuracy_mean=float(acc.mean()),
                    accuracy_std=float(acc.std(ddof=1)) if acc.size > 1 else 0.0,
                    accuracy_min=float(acc.min()),
                    accuracy_max=float(acc.max()),
                    probe=probe,
                )
            )
        return out

    def full_summary(self, probe: str | None = None) -> Summary:
        """The full-data reference of `probe` (default the first) as a
        summary row (prune rate 0)."""
        probe = probe or self.probes[0]
        a = self.full_accuracies.get(probe, self.full_accuracy)
        return Summary(FULL_DATA, 0.0, self.n_train, 1, a, 0.0, a, a, probe)

    def to_csv(self, path: PathLike) -> None:
        """Writes the summaries, plus the full-data row of each probe first,
        as CSV (atomically)."""
        rows = [*(self.full_summary(p) for p in self.probes), *self.summary()]
        _write_csv(path, [asdict(r) for r in rows], list(Summary.__dataclass_fields__))

    def runs_to_csv(self, path: PathLike) -> None:
        """Writes every run as CSV (atomically)."""
        _write_csv(path, [asdict(r) for r in self.runs], list(Run.__dataclass_fields__))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of everything (NaN becomes None)."""
        return _json_safe(
            {
                "n_train": self.n_train,
                "n_test": self.n_test,
                "n_classes": self.n_classes,
                "dims": self.dims,
                "held_out": self.held_out,
                "methods": list(self.methods),
                "prune_rates": list(self.prune_rates),
                "seeds": list(self.seeds),
                "method_options": self.method_options,
                "full_accuracy": self.full_accuracy,
                "full_reg": self.full_reg,
                "probes": list(self.probes),
                "full_accuracies": self.full_accuracies,
                "summary": [asdict(s) for s in self.summary()],
                "runs": [asdict(r) for r in self.runs],
            }
        )


def results_from_dict(data: dict[str, Any]) -> EvalResults:
    """Rebuilds `EvalResults` from `to_dict()` output (e.g. a saved JSON), so
    plots can be redrawn without rerunning the evaluation."""

    def num(v: Any) -> float:
        return float("nan") if v is None else float(v)

    runs = [
        Run(**{**r, "reg": num(r["reg"]), "accuracy": num(r["accuracy"])}) for r in data["runs"]
    ]
    return EvalResults(
        runs=runs,
        full_accuracy=num(data["full_accuracy"]),
        full_reg=num(data["full_reg"]),
        n_train=int(data["n_train"]),
        n_test=int(data["n_test"]),
        n_classes=int(data["n_classes"]),
        dims=int(data["dims"]),
        methods=tuple(data["methods"]),
        prune_rates=tuple(float(p) for p in data["prune_rates"]),
        seeds=tuple(int(s) for s in data["seeds"]),
        held_out=bool(data["held_out"]),
        method_options=dict(data.get("method_options", {})),
        probes=tuple(data.get("probes", ("linear",))),
        full_accuracies={k: num(v) for k, v in data.get("full_accuracies", {}).items()},
    )


def _write_csv(path: PathLike, rows: Sequence[dict[str, Any]], columns: list[str]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(v) for k, v in row.items()})
    with atomic_write(path, "w") as handle:
        handle.write(buf.getvalue())


def _fmt(value: Any) -> Any:
    # 6 significant digits: accuracies on up to a million test rows stay
    # exact to the row, and the file stays readable.
    return f"{value:.6g}" if isinstance(value, float) else value


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float):
        return None if math.isnan(obj) or math.isinf(obj) else obj
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, np.generic):
        return _json_safe(obj.item())
    return obj
