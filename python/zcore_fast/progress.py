"""A rich progress bar for long scoring runs (the CLI's; the library never prints)."""

from __future__ import annotations

from types import TracebackType
from typing import Callable

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
    `enabled`. `stage` adds a bar for work before the main one (e.g. building
    the column cache); whichever reported last is the one shown."""

    def __init__(
        self, *, enabled: bool, total: int | None, label: str = "scoring", unit: str = "samples"
    ) -> None:
        self.enabled = enabled
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        if enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]} {task.fields[unit]}/s"),
                TimeElapsedColumn(),
                TextColumn("ETA"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._task = self._progress.add_task(label, total=total, rate="-", unit=unit)
        self._shown = self._task

    def update(self, done: int, total: int) -> None:
        """Progress callback: `done` of `total` samples."""
        self._report(self._task, done, total)

    def stage(self, label: str, unit: str) -> Callable[[int, int], None]:
        """A progress callback for another stage, shown in place of the main
        bar while it reports (its bar appears only if it is ever called)."""
        task: list[TaskID] = []

        def update(done: int, total: int) -> None:
            if self._progress is None:
                return
            if not task:
                task.append(
                    self._progress.add_task(label, total=total, rate="-", unit=unit, visible=False)
                )
            self._report(task[0], done, total)

        return update

    def _report(self, task_id: TaskID | None, done: int, total: int) -> None:
        if self._progress is None or task_id is None:
            return
        if task_id != self._shown and self._shown is not None:
            self._progress.update(self._shown, visible=False)
            self._progress.update(task_id, visible=True)
            self._shown = task_id
        self._progress.update(task_id, completed=done, total=total)
        speed = next(t.speed for t in self._progress.tasks if t.id == task_id)
        self._progress.update(task_id, rate=f"{speed:,.0f}" if speed else "-")

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
