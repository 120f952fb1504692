"""The terminal table of `zcore-fast evaluate` (rich)."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def print_results(summary: dict[str, Any], console: Console | None = None) -> None:
    """Prints accuracy (%) as mean ± s.d. over seeds: one row per prune rate,
    one column per method, the best mean of each row in bold; then the
    full-data accuracy and the files written."""
    console = console or Console()
    methods: list[str] = summary["methods"]
    cells = {(s["method"], s["prune_rate"]): s for s in summary["summary"]}
    seeds = len(summary["seeds"])
    table = Table(
        title=f"Linear-probe test accuracy (%), mean ± s.d. over {seeds} seed(s)",
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
        table.add_row(f"{rate:g}", f"{row[0]['n_selected']:,}", *texts)
    console.print(table)
    split = "held out from the input" if summary["held_out"] else "given"
    console.print(
        f"all {summary['n_train']:,} training rows: {100 * summary['full_accuracy']:.1f}%  "
        f"(test set: {summary['n_test']:,} rows, {split}; {summary['n_classes']} classes)"
    )
    files = summary.get("files", {})
    if files:
        console.print("wrote " + ", ".join(files.values()), highlight=False)
