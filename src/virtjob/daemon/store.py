"""`Store`: virtjobd's persistent state in one SQLite file under the state directory.

Two tables:

- ``jobs``: one row per job the daemon started, kept until the job is destroyed or falls out
  of the retention limit (the oldest finished jobs go first, never one the caller says is
  still waited for). Rows are written when the job is
  created, as it progresses (the recorder throttles this), and when it ends.
- ``definitions``: for drivers whose definitions live only in memory (the test driver), the
  latest XML of every domain and network defined through the daemon, or a tombstone (NULL XML)
  for one undefined through it, in the order they happened; replayed on a fresh host at start.

The database runs in WAL mode with ``synchronous=NORMAL``: a ``kill -9`` of the daemon loses
at most the last throttled progress snapshot, never a committed row. It runs with
``auto_vacuum=INCREMENTAL`` (an older file is converted once, at open): once deletes have
freed more than `RECLAIM_PAGES` pages, they are given back to the file system
(``incremental_vacuum``, then a checkpoint that truncates the WAL), so the file shrinks again
after large definitions are undefined or jobs pruned. One connection is shared
by the daemon's threads behind a lock. Every method raises `InternalError` if SQLite fails.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from virtjob.errors import InternalError
from virtjob.jobs import JobInfo

log = logging.getLogger("virtjob.daemon")

SCHEMA_VERSION = 1
RECLAIM_PAGES = 256
"""Free pages (of 4 KiB) past which deleted space is given back to the file system."""
WAL_LIMIT = 4 << 20
"""Bytes a checkpointed WAL file is truncated to (``journal_size_limit``)."""
_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id               TEXT PRIMARY KEY,
    host             TEXT NOT NULL,
    kind             TEXT NOT NULL,
    subject          TEXT NOT NULL,
    state            TEXT NOT NULL,
    created          REAL NOT NULL,
    started          REAL,
    ended            REAL,
    bounded          INTEGER NOT NULL DEFAULT 0,
    elapsed          REAL NOT NULL DEFAULT 0,
    percent          REAL,
    processed        INTEGER,
    total            INTEGER,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    error_code       TEXT,
    error_message    TEXT,
    result_type      TEXT,
    result_name      TEXT,
    result_uuid      TEXT,
    target           TEXT
);
CREATE INDEX IF NOT EXISTS jobs_by_host ON jobs (host, created);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, ended);
CREATE TABLE IF NOT EXISTS definitions (
    seq   INTEGER PRIMARY KEY AUTOINCREMENT,
    host  TEXT NOT NULL,
    type  TEXT NOT NULL,
    uuid  TEXT NOT NULL,
    name  TEXT NOT NULL,
    xml   TEXT,
    UNIQUE (host, type, uuid)
);
"""
FINAL_STATES = ("succeeded", "failed", "cancelled")
_LIVE_STATES = ("queued", "running")


@dataclass(frozen=True, slots=True)
class JobRow:
    """One stored job record, as the ``jobs`` table holds it."""

    id: str
    host: str
    kind: str
    subject: str
    state: str
    created: float
    started: float | None
    ended: float | None
    bounded: bool
    elapsed: float
    percent: float | None
    processed: int | None
    total: int | None
    cancel_requested: bool
    error_code: str | None
    error_message: str | None
    result_type: str | None
    result_name: str | None
    result_uuid: str | None
    target: str | None


@dataclass(frozen=True, slots=True)
class JobEnd:
    """How a job ended, as `Store.finish_job` records it."""

    info: JobInfo
    """The job's final info (state and last progress)."""
    started: float | None
    """When it started running (wall clock), None if it never did."""
    ended: float
    """When it ended (wall clock)."""
    error: tuple[str, str] | None = None
    """The code and message of a failed job's error."""
    result: tuple[str, str, str] | None = None
    """The type, name and UUID of the domain or network a succeeded job made."""


def _progress(info: JobInfo) -> tuple[str, int, float, float | None, int | None, int | None, int]:
    """The state, bounded, elapsed, percent, processed, total and cancel_requested columns."""
    return (
        str(info.state),
        int(info.bounded),
        info.elapsed,
        info.percent,
        info.processed,
        info.total,
        int(info.cancel_requested),
    )


@dataclass(frozen=True, slots=True)
class Definition:
    """One replayable definition: the XML of a domain or network, or None for an undefine."""

    host: str
    type: str
    uuid: str
    name: str
    xml: str | None


_JOB_COLUMNS = ", ".join(JobRow.__slots__)


class Store:
    """The daemon's SQLite database; thread-safe. `close()` when done."""

    def __init__(self, path: str) -> None:
        """Open (or create) the database at `path`; `InternalError` if it is unusable."""
        self.path = path
        self._lock = threading.Lock()
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
            os.close(fd)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            if self._db.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:  # 2: incremental
                self._db.execute("PRAGMA auto_vacuum=INCREMENTAL")
                self._db.execute("VACUUM")  # converts an older file; instant on a new one
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT}")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise InternalError(
                    f"state database {path} has schema version {version}; this virtjobd"
                    f" reads version {SCHEMA_VERSION}: use the matching virtjobd or another"
                    f" --state-dir"
                )
            self._db.executescript(_SCHEMA)
            self._db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except (sqlite3.Error, OSError) as exc:
            raise InternalError(f"cannot open the state database {path}: {exc}") from exc

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise InternalError(f"state database {self.path} failed: {exc}") from exc

    def _reclaim(self) -> None:
        """Give free pages back to the file system once there are many (see the module docs)."""
        with self._lock:
            try:
                if self._db.execute("PRAGMA freelist_count").fetchone()[0] > RECLAIM_PAGES:
                    # executescript steps it to the end (execute frees one page per step)
                    self._db.executescript("PRAGMA incremental_vacuum;")
                    self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
            except sqlite3.Error as exc:
                raise InternalError(f"state database {self.path} failed: {exc}") from exc

    def _query(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise InternalError(f"state database {self.path} failed: {exc}") from exc

    def close(self) -> None:
        """Close the database (a checkpoint folds the WAL back into the main file)."""
        with self._lock:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()

    # -- jobs ---------------------------------------------------------------------------------

    def insert_job(self, row: JobRow) -> None:
        """Record a new job (replacing a stale row with the same id, should one exist)."""
        marks = ", ".join("?" for _ in JobRow.__slots__)
        values = tuple(getattr(row, name) for name in JobRow.__slots__)
        with self._tx() as db:
            db.execute(f"INSERT OR REPLACE INTO jobs ({_JOB_COLUMNS}) VALUES ({marks})", values)

    def update_progress(self, job_id: str, info: JobInfo, started: float | None) -> None:
        """Record `info`, a progress snapshot of a job that is not final yet, and when it
        `started` (wall clock, if it has). A final row is kept as it is."""
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET started=COALESCE(started, ?), state=?, bounded=?, elapsed=?,"
                " percent=?, processed=?, total=?, cancel_requested=?"
                " WHERE id=? AND state IN ('queued', 'running')",
                (started, *_progress(info), job_id),
            )

    def finish_job(self, job_id: str, end: JobEnd) -> None:
        """Record how a job ended: its final state, progress, times, error or result."""
        code, message = end.error if end.error is not None else (None, None)
        rtype, rname, ruuid = end.result if end.result is not None else (None, None, None)
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET ended=?, started=COALESCE(started, ?), state=?, bounded=?,"
                " elapsed=?, percent=?, processed=?, total=?, cancel_requested=?,"
                " error_code=?, error_message=?, result_type=?, result_name=?, result_uuid=?"
                " WHERE id=?",
                (
                    end.ended,
                    end.started,
                    *_progress(end.info),
                    code,
                    message,
                    rtype,
                    rname,
                    ruuid,
                    job_id,
                ),
            )

    def get_job(self, job_id: str) -> JobRow | None:
        """The stored row of job `job_id`, or None."""
        rows = self._query(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id=?", (job_id,))
        return _job_row(rows[0]) if rows else None

    def list_jobs(self, host: str | None = None) -> list[JobRow]:
        """Every stored job (of `host`, when given), oldest first."""
        if host is None:
            rows = self._query(f"SELECT {_JOB_COLUMNS} FROM jobs ORDER BY created, rowid")
        else:
            rows = self._query(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE host=? ORDER BY created, rowid", (host,)
            )
        return [_job_row(row) for row in rows]

    def count_final(self) -> int:
        """How many finished jobs are stored."""
        rows = self._query(
            "SELECT COUNT(*) FROM jobs WHERE state IN ('succeeded', 'failed', 'cancelled')"
        )
        return int(rows[0][0])

    def delete_job(self, job_id: str) -> bool:
        """Forget job `job_id`; return whether there was such a row."""
        with self._tx() as db:
            deleted = db.execute("DELETE FROM jobs WHERE id=?", (job_id,)).rowcount > 0
        self._reclaim()
        return deleted

    def prune(self, keep: int, exempt: Collection[str] = ()) -> list[str]:
        """Delete all but the `keep` most recently ended final jobs; return the deleted ids.

        Jobs in `exempt` (someone still waits for them) are neither deleted nor counted.
        """
        with self._tx() as db:
            rows = db.execute(
                "SELECT id FROM jobs WHERE state IN ('succeeded', 'failed', 'cancelled')"
                " ORDER BY ended DESC, rowid DESC"
            ).fetchall()
            ids = [row[0] for row in rows if row[0] not in exempt][keep:]
            db.executemany("DELETE FROM jobs WHERE id=?", [(i,) for i in ids])
        if ids:
            self._reclaim()
        return ids

    def interrupt_unfinished(self, messages: Mapping[str, str]) -> list[JobRow]:
        """Mark every queued or running job FAILED (code operation-failed).

        Its message is ``messages[state]``, the state it was recorded in ("queued" or
        "running"). Called at start-up: those jobs belonged to a daemon that is gone. Returns
        their rows as they were, so the caller can clean up after them (partial files).
        """
        now = time.time()
        with self._tx() as db:
            rows = [
                _job_row(row)
                for row in db.execute(
                    f"SELECT {_JOB_COLUMNS} FROM jobs WHERE state IN ('queued', 'running')"
                ).fetchall()
            ]
            db.executemany(
                "UPDATE jobs SET state='failed', ended=?, error_code='operation-failed',"
                " error_message=? WHERE id=?",
                [(now, messages[row.state], row.id) for row in rows],
            )
        return rows

    # -- definitions --------------------------------------------------------------------------

    def record_definition(
        self, host: str, type_: str, uuid: str, name: str, xml: str | None
    ) -> None:
        """Remember the latest definition (or, with `xml` None, the undefine) of an object."""
        with self._tx() as db:
            db.execute(
                "DELETE FROM definitions WHERE host=? AND type=? AND uuid=?", (host, type_, uuid)
            )
            db.execute(
                "INSERT INTO definitions (host, type, uuid, name, xml) VALUES (?, ?, ?, ?, ?)",
                (host, type_, uuid, name, xml),
            )
        self._reclaim()

    def forget_definition(self, host: str, type_: str, uuid: str) -> None:
        """Drop the record (definition or tombstone) of one object of `host`: for an undefine
        that leaves nothing a replay would have to undo."""
        with self._tx() as db:
            db.execute(
                "DELETE FROM definitions WHERE host=? AND type=? AND uuid=?", (host, type_, uuid)
            )
        self._reclaim()

    def forget_definitions(self, host: str) -> int:
        """Drop every recorded definition and undefine of `host`; return how many there were.

        For a host whose driver keeps its own definitions: a record of the daemon's would
        only replay stale XML over the driver's.
        """
        with self._tx() as db:
            count: int = db.execute("DELETE FROM definitions WHERE host=?", (host,)).rowcount
        self._reclaim()
        return count

    def definitions(self) -> list[Definition]:
        """Every recorded definition and undefine, in the order they happened."""
        rows = self._query("SELECT host, type, uuid, name, xml FROM definitions ORDER BY seq")
        return [Definition(*row) for row in rows]


def _job_row(row: tuple[Any, ...]) -> JobRow:
    values = dict(zip(JobRow.__slots__, row, strict=True))
    values["bounded"] = bool(values["bounded"])
    values["cancel_requested"] = bool(values["cancel_requested"])
    return JobRow(**values)
