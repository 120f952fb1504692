"""A rich progress bar for long scoring runs (the CLI's; the library never prints)."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class ProgressBar:
    """Shows samples (or other `unit`s) done, their rate and ETA on stderr when
    `enabled`."""

    def __init__(
        self, *, enabled: bool, total: int | None, label: str = "scoring", unit: str = "samples"
    ) -> None:
        self.enabled = enabled
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        if enabled:
            self._progress = Progress(
                TextColumn(f"[bold]{label}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn(f"{{task.fields[rate]}} {unit}/s"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._task = self._progress.add_task(label, total=total, rate="-")

    def update(self, done: int, total: int) -> None:
        """Progress callback: `done` of `total` samples."""
        if self._progress is None or self._task is None:
            return
        self._progress.update(self._task, completed=done, total=total)
        task = self._progress.tasks[0]
        speed = task.speed
        self._progress.update(self._task, rate=f"{speed:,.0f}" if speed else "-")

    def __enter__(self) -> ProgressBar:
        if self._progress is not None:
            self._progress.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
