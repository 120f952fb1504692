"""The terminal table of `zcore-fast evaluate` (rich)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def print_results(summary: dict[str, Any], console: Console | None = None) -> None:
    """Prints accuracy (%) as mean ± s.d. over seeds, one table per probe:
    one row per budget, one column per method, the best mean of each row in
    bold; then the full-data accuracy and the files written."""
    console = console or Console()
    for probe in summary.get("probes", ["linear"]):
        _print_probe(summary, probe, console)
    files = summary.get("files", {})
    if files:
        console.print("wrote " + ", ".join(files.values()), highlight=False)


def _print_probe(summary: dict[str, Any], probe: str, console: Console) -> None:
    methods: list[str] = summary["methods"]
    cells = {
        (s["method"], s["prune_rate"]): s
        for s in summary["summary"]
        if s.get("probe", "linear") == probe
    }
    seeds = len(summary["seeds"])
    name = {"linear": "Linear-probe", "knn": "k-NN-probe"}.get(probe, probe)
    table = Table(
        title=f"{name} test accuracy (%), mean ± s.d. over {seeds} seed(s)",
        title_justify="left",
    )
    table.add_column("prune rate", justify="right")
    table.add_column("examples", justify="right")
    for m in methods:
        table.add_column(m, justify="right")
    for rate in summary["prune_rates"]:
        row = [cells[(m, rate)] for m in methods]
        best = max(s["accuracy_mean"] for s in row)
        texts = []
        for s in row:
            text = f"{100 * s['accuracy_mean']:.1f} ± {100 * s['accuracy_std']:.1f}"
            texts.append(f"[bold]{text}[/bold]" if s["accuracy_mean"] == best else text)
        table.add_row(f"{rate:.4g}", f"{row[0]['n_selected']:,}", *texts)
    console.print(table)
    split = "held out from the input" if summary["held_out"] else "given"
    full = summary.get("full_accuracies", {}).get(probe, summary["full_accuracy"])
    console.print(
        f"all {summary['n_train']:,} training rows: {100 * full:.1f}%  "
        f"(test set: {summary['n_test']:,} rows, {split}; {summary['n_classes']} classes)"
    )
