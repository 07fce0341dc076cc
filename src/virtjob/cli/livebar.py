"""The live progress bar of a followed job on a terminal, drawn with rich.

Only `virtjob.cli.progress.make_display` imports this module, when stdout is a terminal: the
commands that draw no bar never load rich.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from virtjob.cli.output import format_bytes, format_duration, format_percent
from virtjob.cli.progress import RateMeter, describe
from virtjob.jobs import Job, JobInfo, JobState

_STATE_STYLE = {
    JobState.QUEUED: "dim",
    JobState.RUNNING: "cyan",
    JobState.SUCCEEDED: "green",
    JobState.FAILED: "red",
    JobState.CANCELLED: "yellow",
}


class _JobView:
    """The renderable: a header line (job id, what, state) over a bar with the numbers."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.info: JobInfo | None = None
        self.seen_at = time.monotonic()
        self.meter = RateMeter()

    def set(self, info: JobInfo) -> None:
        self.info = info
        self.seen_at = time.monotonic()
        self.meter.add(info)

    def __rich__(self) -> RenderableType:
        info = self.info
        header = Text.assemble(("job ", "dim"), (self.job.id, "bold"), "  ", describe(self.job))
        if info is None:
            return Group(header, ProgressBar(total=None))
        header.append("  ")
        header.append(str(info.state), style=_STATE_STYLE[info.state])
        if info.cancel_requested and not info.state.terminal:
            header.append("  cancelling…", style="yellow")
        elapsed, remaining = info.elapsed, info.remaining
        if info.state is JobState.RUNNING:  # tick between snapshots
            since = time.monotonic() - self.seen_at
            elapsed += since
            remaining = None if remaining is None else max(0.0, remaining - since)
        style = {JobState.FAILED: "red", JobState.CANCELLED: "yellow"}.get(info.state, "")
        bar = ProgressBar(
            total=None if info.percent is None else 100.0,
            completed=info.percent or 0.0,
            complete_style=style or "bar.complete",
            finished_style=style or "bar.finished",
        )
        grid = Table.grid(padding=(0, 2), expand=True)
        grid.add_column(ratio=1, min_width=10)
        cells: list[RenderableType] = [bar, format_percent(info.percent)]
        if info.processed is not None:
            total = f"/{format_bytes(info.total)}" if info.total is not None else ""
            cells.append(f"{format_bytes(info.processed)}{total}")
        rate = self.meter.rate(info)
        if rate is not None:
            cells.append(f"{format_bytes(rate)}/s")
        cells.append(f"{format_duration(elapsed)} elapsed")
        if not info.state.terminal:
            cells.append(f"ETA {format_duration(remaining)}")
        for _ in cells[1:]:
            grid.add_column(no_wrap=True, justify="right")
        grid.add_row(*cells)
        return Group(header, grid)


class RichDisplay:
    """A live, self-refreshing bar on the terminal, left on screen in its final state."""

    def __init__(self, job: Job, console: Console | None = None) -> None:
        console = console or Console(file=sys.stdout)
        self._view = _JobView(job)
        self._live = Live(self._view, console=console, refresh_per_second=10, transient=False)

    def __enter__(self) -> RichDisplay:
        self._live.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._live.refresh()
        self._live.stop()

    def update(self, info: JobInfo) -> None:
        """Show the snapshot at once."""
        self._view.set(info)
        self._live.refresh()

    def note(self, text: str) -> None:
        """Print the message above the bar."""
        self._live.console.print(Text(text, style="yellow"))
