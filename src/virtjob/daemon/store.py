"""`Store`: virtjobd's persistent state in one SQLite file under the state directory.

Two tables:

- ``jobs``: one row per job the daemon started, kept until the job is destroyed or falls out
  of the retention limit (the oldest finished jobs go first, never one the caller says is
  still waited for). A row is the job's document (`virtjob.api.JobDocument`) as JSON text in
  one column, the very JSON the API answers, beside the few columns queries need: ``id``,
  ``host``, ``state``, ``created``, ``ended`` (copied from the document when it is written).
  So a field added to the document is stored with no change here. Rows are written when the
  job is created, as it progresses (the recorder throttles this), and when it ends.
- ``definitions``: for drivers whose definitions live only in memory (the test driver), the
  latest XML of every domain and network defined through the daemon, or a tombstone (NULL XML)
  for one undefined through it, in the order they happened; replayed on a fresh host at start.

**A row this virtjobd cannot read** (damaged: not JSON text, JSON nested too deeply for the
parser or with a number past what it reads, not a job document, another job's document; or
written by a newer virtjobd on the same state directory: a job kind or state it does not
know) costs that job alone: listings leave it out (logged once per row), `get_job` raises
the `InternalError` of `damaged` (which says to delete it), deleting and pruning work on the
columns, and `interrupt_unfinished` marks an unfinished one failed through its columns, its
document kept as it is. A row whose ``state`` column says unfinished but whose readable
document is final keeps its document (the record; the column is a copy): start-up sets the
column from it.

**Schema versions** (``PRAGMA user_version``): 1 had a column per field of the job; 2 (this
one) keeps the document. A version-1 file is converted in place when opened, in one
transaction: each row becomes the document it stood for (a row that cannot is dropped, and
logged). A file of version 0 (none set) is read by the layout of its ``jobs`` table (a
version-1 table is converted). A file of a later version, or whose ``jobs`` table is not of
the layout its version says, is refused, naming the file and what to do.

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
import json
import logging
import os
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Any

from virtjob.api import SCHEMA_VERSION as DOCUMENT_SCHEMA
from virtjob.api import JobDocument, encode_job
from virtjob.api.document import decode_stored_job
from virtjob.errors import InternalError, VirtError

log = logging.getLogger("virtjob.daemon")

SCHEMA_VERSION = 2
"""The version of the database layout this virtjobd writes (see the module docs)."""
RECLAIM_PAGES = 256
"""Free pages (of 4 KiB) past which deleted space is given back to the file system."""
WAL_LIMIT = 4 << 20
"""Bytes a checkpointed WAL file is truncated to (``journal_size_limit``)."""
_JOBS = """
CREATE TABLE IF NOT EXISTS jobs (
    id       TEXT PRIMARY KEY,
    host     TEXT NOT NULL,
    state    TEXT NOT NULL,
    created  REAL NOT NULL,
    ended    REAL,
    document TEXT NOT NULL
)"""
_INDEXES = (
    "CREATE INDEX IF NOT EXISTS jobs_by_host ON jobs (host, created)",
    "CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, ended)",
)
_DEFINITIONS = """
CREATE TABLE IF NOT EXISTS definitions (
    seq   INTEGER PRIMARY KEY AUTOINCREMENT,
    host  TEXT NOT NULL,
    type  TEXT NOT NULL,
    uuid  TEXT NOT NULL,
    name  TEXT NOT NULL,
    xml   TEXT,
    UNIQUE (host, type, uuid)
)"""
FINAL_STATES = ("succeeded", "failed", "cancelled")
_FINAL = "('succeeded', 'failed', 'cancelled')"
_LIVE = "('queued', 'running')"
_V1_COLUMNS = (
    "id, host, kind, subject, state, created, started, ended, bounded, elapsed, percent,"
    " processed, total, cancel_requested, error_code, error_message, result_type,"
    " result_name, result_uuid, target"
)
"""The columns of a version-1 ``jobs`` row, in the order `_v1_document` reads them."""


def _row(document: JobDocument) -> tuple[str, str, str, float, float | None, str]:
    """The ``jobs`` row of `document`: id, host, state, created, ended, the document."""
    return (
        document.id,
        document.host,
        str(document.info.state),
        document.created,
        document.ended,
        json.dumps(encode_job(document), separators=(",", ":")),
    )


def _document(job_id: str, text: str | bytes) -> JobDocument:
    """The document stored as `text` for job `job_id`; `InternalError` (see `damaged`) if
    this virtjobd cannot read it: not JSON, JSON nested too deeply for the parser
    (`RecursionError`) or with a number of too many digits (`ValueError`), not a job
    document, or another job's."""
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        reason = "nested too deeply to read" if isinstance(exc, RecursionError) else str(exc)
        raise damaged(job_id, f"not JSON: {reason}") from exc
    try:
        document = decode_stored_job(data)
    except RecursionError as exc:  # a value nested almost as deep as the parser allows
        raise damaged(job_id, "a value in it is nested too deeply to read") from exc
    except InternalError as exc:
        reason = str(exc.__cause__ or exc)
        schema = data.get("schema") if isinstance(data, dict) else None
        if isinstance(schema, int) and not isinstance(schema, bool) and schema > DOCUMENT_SCHEMA:
            reason += f"; document schema {schema}, this virtjobd knows up to {DOCUMENT_SCHEMA}"
        raise damaged(job_id, reason, newer=isinstance(data, dict)) from exc
    if document.id != job_id:
        raise damaged(job_id, f"its document is that of job {document.id!r}")
    return document


def damaged(job_id: str, reason: str, *, newer: bool = False) -> InternalError:
    """The error for stored job `job_id`, whose document this virtjobd cannot read for
    `reason` (`newer`: a JSON object, which a newer virtjobd may have written): what the API
    answers for it, saying how to get rid of it."""
    if newer:
        return InternalError(
            f"stored job {job_id} cannot be read ({reason}): it is damaged, or a newer virtjobd"
            f" wrote it; this one leaves it out of job lists: run the newer virtjobd to see it,"
            f" or delete it (DELETE /v1/jobs/{job_id})"
        )
    return InternalError(
        f"stored job {job_id} is damaged ({reason}); virtjobd leaves it out of job lists:"
        f" delete it (DELETE /v1/jobs/{job_id})"
    )


def _v1_document(row: tuple[Any, ...]) -> dict[str, Any]:
    """The document (as JSON) a version-1 row stood for: what that daemon answered for it,
    with every key of this version's document (so it is stored as one, ``schema`` included)."""
    (
        job_id, host, kind, subject, state, created, started, ended, bounded, elapsed,
        percent, processed, total, cancel_requested, error_code, error_message, result_type,
        result_name, result_uuid, target,
    ) = row  # fmt: skip
    result = None
    if result_type is not None:
        result = {"type": result_type, "name": result_name, "uuid": result_uuid}
    error = None
    if error_code is not None:
        error = {"code": error_code, "message": error_message or ""}
    return {
        "id": job_id,
        "host": host,
        "kind": kind,
        "subject": subject,
        "info": {
            "state": state,
            "bounded": bool(bounded),
            "elapsed": elapsed,
            "remaining": 0.0 if state in FINAL_STATES else None,
            "percent": percent,
            "processed": processed,
            "total": total,
            "cancel_requested": bool(cancel_requested),
        },
        "result": result,
        "error": error,
        "target": target,
        "created": created,
        "started": started,
        "ended": ended,
        "schema": DOCUMENT_SCHEMA,
    }


@dataclass(frozen=True, slots=True)
class Definition:
    """One replayable definition: the XML of a domain or network, or None for an undefine."""

    host: str
    type: str
    uuid: str
    name: str
    xml: str | None


class Store:
    """The daemon's SQLite database; thread-safe. `close()` when done."""

    def __init__(self, path: str) -> None:
        """Open (or create) the database at `path`, converting a version-1 file (see the
        module docs); `InternalError` naming the file if it is unusable, damaged, of a later
        version or of a layout this virtjobd does not know."""
        self.path = path
        self._lock = threading.Lock()
        self._skipped: set[str] = set()
        """Ids of damaged rows listings have left out (and logged) already."""
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
            if version not in (0, 1, SCHEMA_VERSION):
                raise InternalError(
                    f"state database {path} has schema version {version}; this virtjobd"
                    f" reads versions up to {SCHEMA_VERSION}: use the matching virtjobd or"
                    f" another --state-dir"
                )
            with self._tx() as db:
                if self._layout(db, version) == 1:
                    self._migrate_v1(db)
                db.execute(_JOBS)
                for index in _INDEXES:
                    db.execute(index)
                db.execute(_DEFINITIONS)
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except (sqlite3.Error, OSError) as exc:
            remedy = ""
            if getattr(exc, "sqlite_errorname", None) in ("SQLITE_NOTADB", "SQLITE_CORRUPT"):
                remedy = (
                    "; move it aside (virtjobd then starts with no job history and no recorded"
                    " definitions) or give another --state-dir"
                )
            raise InternalError(f"cannot open the state database {path}: {exc}{remedy}") from exc

    def _layout(self, db: sqlite3.Connection, version: int) -> int | None:
        """The layout of the ``jobs`` table in a file of schema `version` (0 to 2): 1 (a
        column per field), 2 (the document), or None (no table yet). Version 0 is a file no
        virtjobd set the version of: its table tells (virtjobd 0.1 could leave a version-1
        table there). `InternalError` naming the file and what to do, for a table of neither
        layout or not of the layout its version says."""
        columns = {row[1] for row in db.execute("PRAGMA table_info(jobs)")}
        if not columns:
            return None
        layout = None
        if "document" in columns:
            layout = 2
        elif columns >= {name.strip() for name in _V1_COLUMNS.split(",")}:
            layout = 1
        if layout is None or version not in (0, layout):
            found = "no version's" if layout is None else f"version {layout}'s"
            raise InternalError(
                f"state database {self.path} has schema version {version} but its jobs table"
                f" has {found} columns ({', '.join(sorted(columns))}): it is damaged or was"
                f" not written by virtjobd; move it aside (virtjobd then starts with no job"
                f" history and no recorded definitions) or give another --state-dir"
            )
        if version == 0:
            log.info(
                "%s: no schema version set; its jobs table is of version %d", self.path, layout
            )
        return layout

    def _migrate_v1(self, db: sqlite3.Connection) -> None:
        """Turn the version-1 ``jobs`` table (a column per field) into documents, in place
        (inside the caller's transaction)."""
        db.execute("ALTER TABLE jobs RENAME TO jobs_v1")
        db.execute("DROP INDEX IF EXISTS jobs_by_host")
        db.execute("DROP INDEX IF EXISTS jobs_by_state")
        db.execute(_JOBS)
        rows = db.execute(f"SELECT {_V1_COLUMNS} FROM jobs_v1 ORDER BY rowid").fetchall()
        converted = []
        for row in rows:
            try:
                converted.append(_row(decode_stored_job(_v1_document(row))))
            except VirtError as exc:
                log.warning("%s: dropped job %s while converting it: %s", self.path, row[0], exc)
        db.executemany("INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?)", converted)
        db.execute("DROP TABLE jobs_v1")
        log.info(
            "%s: converted %d job(s) from schema version 1 to %d",
            self.path,
            len(converted),
            SCHEMA_VERSION,
        )

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

    def insert_job(self, document: JobDocument) -> None:
        """Record a new job (replacing a stale row with the same id, should one exist)."""
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO jobs VALUES (?, ?, ?, ?, ?, ?)", _row(document))

    def update_progress(self, document: JobDocument) -> None:
        """Record `document`, a snapshot of a job that is not final yet. A row that is final
        already is kept as it is (a late snapshot never undoes the end)."""
        job_id, _host, state, _created, ended, text = _row(document)
        with self._tx() as db:
            db.execute(
                f"UPDATE jobs SET state=?, ended=?, document=? WHERE id=? AND state IN {_LIVE}",
                (state, ended, text, job_id),
            )

    def finish_job(self, document: JobDocument) -> None:
        """Record `document`, the final one of a job: its end, outcome and last progress."""
        job_id, _host, state, _created, ended, text = _row(document)
        with self._tx() as db:
            db.execute(
                "UPDATE jobs SET state=?, ended=?, document=? WHERE id=?",
                (state, ended, text, job_id),
            )

    def get_job(self, job_id: str) -> JobDocument | None:
        """The stored document of job `job_id`, or None; `InternalError` if it is damaged
        (`damaged`: it says how to get rid of it)."""
        rows = self._query("SELECT document FROM jobs WHERE id=?", (job_id,))
        return _document(job_id, rows[0][0]) if rows else None

    def list_jobs(self, host: str | None = None) -> list[JobDocument]:
        """Every stored job (of `host`, when given), oldest first. A damaged row is left out,
        and logged (once per row) with the reason."""
        if host is None:
            rows = self._query("SELECT id, document FROM jobs ORDER BY created, rowid")
        else:
            rows = self._query(
                "SELECT id, document FROM jobs WHERE host=? ORDER BY created, rowid", (host,)
            )
        out = []
        for job_id, text in rows:
            try:
                out.append(_document(job_id, text))
            except InternalError as exc:
                self._skip(job_id, exc)
        return out

    def _skip(self, job_id: str, error: InternalError) -> None:
        """Log that listings leave out damaged row `job_id`, the first time only."""
        with self._lock:
            if job_id in self._skipped:
                return
            self._skipped.add(job_id)
        log.warning("%s: job lists leave out job %s: %s", self.path, job_id, error)

    def count_final(self) -> int:
        """How many finished jobs are stored."""
        rows = self._query(f"SELECT COUNT(*) FROM jobs WHERE state IN {_FINAL}")
        return int(rows[0][0])

    def delete_job(self, job_id: str) -> bool:
        """Forget job `job_id`; return whether there was such a row."""
        with self._tx() as db:
            deleted = db.execute("DELETE FROM jobs WHERE id=?", (job_id,)).rowcount > 0
            self._skipped.discard(job_id)
        self._reclaim()
        return deleted

    def prune(self, keep: int, exempt: Collection[str] = ()) -> list[str]:
        """Delete all but the `keep` most recently ended final jobs; return the deleted ids.

        Jobs in `exempt` (someone still waits for them) are neither deleted nor counted.
        """
        with self._tx() as db:
            rows = db.execute(
                f"SELECT id FROM jobs WHERE state IN {_FINAL} ORDER BY ended DESC, rowid DESC"
            ).fetchall()
            ids = [row[0] for row in rows if row[0] not in exempt][keep:]
            db.executemany("DELETE FROM jobs WHERE id=?", [(i,) for i in ids])
            self._skipped.difference_update(ids)
        if ids:
            self._reclaim()
        return ids

    def interrupt_unfinished(
        self, rewrite: Callable[[JobDocument], JobDocument], now: float
    ) -> list[JobDocument]:
        """Replace the document of every unfinished job (queued, running, or in a state only
        a newer virtjobd knows) by `rewrite(document)` (which must make it final), in one
        transaction.

        Called at start-up: those jobs belonged to a daemon that is gone. Returns their
        documents as they were, so the caller can clean up after them (partial files). A
        damaged row (see `damaged`) is marked failed through its columns alone (``state``
        failed, ``ended`` `now`), its document kept as it is, and logged: it is then a
        finished job like the others, left out of listings, deletable, pruned in its turn.
        A row whose document is final although its ``state`` column is not (the column is
        a copy for queries; the document is the record) keeps its document: its columns are
        set from it, and it is logged.
        """
        with self._tx() as db:
            before: list[JobDocument] = []
            final: list[tuple[str, str, JobDocument]] = []
            broken: list[tuple[str, str, InternalError]] = []
            for job_id, state, text in db.execute(
                f"SELECT id, state, document FROM jobs WHERE state NOT IN {_FINAL}"
            ).fetchall():
                try:
                    document = _document(job_id, text)
                except InternalError as error:
                    broken.append((job_id, state, error))
                    continue
                if document.info.state.terminal:
                    final.append((job_id, state, document))
                else:
                    before.append(document)
            rows = [_row(rewrite(document)) for document in before]
            db.executemany(
                "UPDATE jobs SET state=?, ended=?, document=? WHERE id=?",
                [(state, ended, text, job_id) for job_id, _h, state, _c, ended, text in rows],
            )
            db.executemany(
                "UPDATE jobs SET state=?, ended=? WHERE id=?",
                [(str(doc.info.state), doc.ended, job_id) for job_id, _state, doc in final],
            )
            db.executemany(
                "UPDATE jobs SET state='failed', ended=? WHERE id=?",
                [(now, job_id) for job_id, _state, _error in broken],
            )
            self._skipped.update(job_id for job_id, _state, _error in broken)
        for job_id, state, document in final:
            log.warning(
                "%s: job %s was %s by its state column but %s by its document: the column"
                " now says %s, as the document does",
                self.path,
                job_id,
                state,
                document.info.state,
                document.info.state,
            )
        for job_id, state, problem in broken:
            log.error(
                "%s: job %s was %s when the daemon stopped: marked failed, its document left as"
                " it is (partial output it left, if any, is not removed): %s",
                self.path,
                job_id,
                state,
                problem,
            )
        return before

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
