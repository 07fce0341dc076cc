"""``make demo``: several jobs at once on the embedded test:///default host, with live progress.

Runs a save, a core dump, a network create and a second save that gets cancelled, then a
restore of the first save and two user mistakes, and ends with a table of every job.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

import virtjob
from virtjob import Job, JobState

DB_XML = """\
<domain type='test'>
  <name>db</name>
  <memory unit='GiB'>1</memory>
  <vcpu>4</vcpu>
  <os><type>hvm</type></os>
</domain>
"""

WEB_XML = """\
<domain type='test'>
  <name>web</name>
  <memory unit='MiB'>768</memory>
  <vcpu>2</vcpu>
  <os><type>hvm</type></os>
</domain>
"""

LAB_XML = """\
<network>
  <name>lab</name>
  <bridge name='virbr9'/>
  <forward mode='nat'/>
  <ip address='10.9.0.1' netmask='255.255.255.0'>
    <dhcp><range start='10.9.0.10' end='10.9.0.99'/></dhcp>
  </ip>
</network>
"""

_STYLE = {
    JobState.SUCCEEDED: "green",
    JobState.FAILED: "red",
    JobState.CANCELLED: "yellow",
    JobState.RUNNING: "cyan",
    JobState.QUEUED: "dim",
}


def _progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description:<28}"),
        BarColumn(bar_width=28),
        TextColumn("{task.percentage:>5.1f}%"),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[state]}"),
        console=console,
    )


def _follow(progress: Progress, jobs: Mapping[TaskID, Job], cancel_at: dict[Job, float]) -> None:
    """Refresh every task from its job until all jobs are final, cancelling on cue."""
    stopped: set[TaskID] = set()
    while True:
        finished = 0
        for task, job in jobs.items():
            info = job.info()
            if job in cancel_at and (info.percent or 0) >= cancel_at[job]:
                job.cancel()
                del cancel_at[job]
            state = f"[{_STYLE[info.state]}]{info.state}"
            progress.update(
                task,
                completed=info.processed or 0,
                total=info.total or 1,
                state=state,
            )
            if info.state.terminal:
                if task not in stopped:
                    progress.stop_task(task)  # freezes its elapsed time, as the job's is
                    stopped.add(task)
                finished += 1
        if finished == len(jobs):
            return
        # The display refreshes on a clock; the jobs themselves need no polling.
        time.sleep(0.05)


def _outcome(job: Job) -> str:
    """What a finished job handed back, in a few words."""
    if (dom := job.domain()) is not None:
        return f"domain {dom.name} ({dom.state()})"
    if (net := job.network()) is not None:
        return f"network {net.name} (active)"
    if (error := job.error()) is not None:
        return f"{type(error).__name__}: {error}"
    return {JobState.SUCCEEDED: "file written", JobState.CANCELLED: "cancelled, no file"}.get(
        job.info().state, ""
    )


def main() -> None:
    """Run the demonstration."""
    console = Console()
    if not console.is_terminal:
        console = Console(width=120)
    workdir = Path(tempfile.mkdtemp(prefix="virtjob-demo-"))
    with virtjob.open("test:///default") as conn:
        console.rule("[bold]virtjob demo on test:///default")
        test = conn.lookup_domain("test")
        web = conn.create_domain(WEB_XML)
        db = conn.create_domain(DB_XML)
        console.print(
            f"domains: {', '.join(f'{d.name} ({d.state()})' for d in conn.list_domains())}"
        )
        console.print(f"capabilities: {', '.join(sorted(conn.capabilities().job_kinds))}\n")

        save_test = test.save_job(str(workdir / "test.save"))
        dump_web = web.dump_core_job(str(workdir / "web.core"))
        save_db = db.save_job(str(workdir / "db.save"))
        lab = conn.create_network_job(LAB_XML)
        try:
            test.save_job(str(workdir / "again.save"))
        except virtjob.OperationInvalidError as exc:
            console.print(f"[red]refused at once:[/] {exc}\n")

        with _progress(console) as progress:
            jobs = {
                progress.add_task(f"{job.kind} {job.subject}", total=1, state=""): job
                for job in (save_test, dump_web, save_db, lab)
            }
            _follow(progress, jobs, cancel_at={save_db: 40.0})

            restore = conn.restore_job(str(workdir / "test.save"))
            task = progress.add_task(f"{restore.kind} test", total=1, state="")
            _follow(progress, {task: restore}, cancel_at={})

        bad = workdir / "bad.save"
        bad.write_bytes(b"this is not a save file")
        try:
            conn.restore(str(bad))
        except virtjob.VirtError as exc:
            console.print(f"[red]{type(exc).__name__}:[/] {exc}")
        try:
            conn.lookup_domain("nosuch")
        except virtjob.VirtError as exc:
            console.print(f"[red]{type(exc).__name__}:[/] {exc}\n")

        table = Table(title="jobs on test:///default")
        for column in ("id", "kind", "subject", "state", "elapsed", "outcome"):
            table.add_column(column)
        for job in conn.list_jobs():
            info = job.wait()
            table.add_row(
                job.id,
                job.kind,
                job.subject,
                f"[{_STYLE[info.state]}]{info.state}",
                f"{info.elapsed:.2f} s",
                _outcome(job),
            )
        console.print(table)
        console.print(
            f"domains now: {', '.join(f'{d.name} ({d.state()})' for d in conn.list_domains())}"
        )
        files = ", ".join(f"{p.name} ({p.stat().st_size} B)" for p in sorted(workdir.iterdir()))
        console.print(f"files in {workdir}: {files}")


if __name__ == "__main__":
    main()
