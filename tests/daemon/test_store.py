"""The store keeps each job as its document: one mapping live and stored, and version-1 files
(a column per field) converted in place."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import uuid
from pathlib import Path

import pytest

from tests.daemon.conftest import SAFETY
from virtjob import JobState
from virtjob.api import SCHEMA_VERSION, encode_job
from virtjob.daemon.recorder import INTERRUPTED, Recorder, interrupted
from virtjob.daemon.store import Store
from virtjob.drivers.base import NetworkRef
from virtjob.errors import InternalError, OperationFailedError, VirtError
from virtjob.jobs import JobContext, JobKind, LocalJobDriver
from virtjob.jobs.local import hold_new_jobs

HOST = "test:///store"

V1_SCHEMA = """
CREATE TABLE jobs (
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
CREATE INDEX jobs_by_host ON jobs (host, created);
CREATE INDEX jobs_by_state ON jobs (state, ended);
CREATE TABLE definitions (
    seq   INTEGER PRIMARY KEY AUTOINCREMENT,
    host  TEXT NOT NULL,
    type  TEXT NOT NULL,
    uuid  TEXT NOT NULL,
    name  TEXT NOT NULL,
    xml   TEXT,
    UNIQUE (host, type, uuid)
);
PRAGMA user_version=1;
"""
"""The layout virtjobd 0.1 wrote (schema version 1), as it wrote it."""

NET_UUID = uuid.UUID("dd8fe884-6c02-601e-7551-cca97df1c5df")


def _v1_file(path: Path, version: int = 1) -> None:
    """A version-1 database with a succeeded, a failed, a running job and a definition (the
    jobs' targets lie beside it), its ``user_version`` set to `version`."""
    save, core = str(path.parent / "test.save"), str(path.parent / "core")
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executescript(V1_SCHEMA)
        db.executemany(
            "INSERT INTO jobs VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                ("ok", HOST, "network-start", "default", "succeeded", 10.0, 10.5, 12.0,
                 1, 1.5, 100.0, 64, 64, 0, None, None, "network", "default", str(NET_UUID),
                 None),
                ("bad", HOST, "domain-save", "test", "failed", 11.0, 11.0, 11.5,
                 1, 0.5, 40.0, 4, 10, 0, "operation-failed", "disk full", None, None, None,
                 save),
                ("run", "test:///other", "domain-dump-core", "test", "running", 12.0, 12.1,
                 None, 0, 3.0, None, None, None, 1, None, None, None, None, None,
                 core),
            ],
        )  # fmt: skip
        db.execute(
            "INSERT INTO definitions (host, type, uuid, name, xml) VALUES (?, ?, ?, ?, ?)",
            (HOST, "domain", str(uuid.uuid4()), "kept", "<domain/>"),
        )
        db.execute(f"PRAGMA user_version={version}")
        db.commit()


@pytest.mark.parametrize("version", [1, 0], ids=["version-1", "no-version"])
def test_a_version_1_file_is_converted_in_place(tmp_path: Path, version: int) -> None:
    path = tmp_path / "virtjobd.sqlite3"
    _v1_file(path, version)  # 0: virtjobd 0.1 left a version-1 table without the version
    store = Store(str(path))
    try:
        documents = {document.id: document for document in store.list_jobs()}
        assert list(documents) == ["ok", "bad", "run"], "the order of creation is kept"
        ok, bad, run = documents["ok"], documents["bad"], documents["run"]
        assert ok.kind is JobKind.NETWORK_START
        assert ok.info.state is JobState.SUCCEEDED
        assert ok.info.remaining == 0.0
        assert ok.info.percent == 100.0
        assert ok.result == NetworkRef("default", NET_UUID)
        assert (ok.created, ok.started, ok.ended) == (10.0, 10.5, 12.0)
        assert isinstance(bad.error, OperationFailedError)
        assert bad.error.message == "disk full"
        assert bad.target == str(tmp_path / "test.save")
        assert run.info.state is JobState.RUNNING
        assert run.info.remaining is None
        assert run.info.cancel_requested is True
        assert run.host == "test:///other"
        assert [d.id for d in store.list_jobs("test:///other")] == ["run"]
        assert store.count_final() == 2
        assert [item.name for item in store.definitions()] == ["kept"]
    finally:
        store.close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("PRAGMA user_version").fetchone()[0] == 2
        columns = [row[1] for row in db.execute("PRAGMA table_info(jobs)")]
        assert columns == ["id", "host", "state", "created", "ended", "document"]
        text = db.execute("SELECT document FROM jobs WHERE id='ok'").fetchone()[0]
        assert json.loads(text)["schema"] == SCHEMA_VERSION
    reopened = Store(str(path))  # version 2 now: opened as it is
    try:
        assert [document.id for document in reopened.list_jobs()] == ["ok", "bad", "run"]
    finally:
        reopened.close()


def test_a_converted_file_recovers_its_interrupted_jobs(tmp_path: Path) -> None:
    path = tmp_path / "virtjobd.sqlite3"
    _v1_file(path)
    store = Store(str(path))
    recorder = Recorder(store, 100)
    try:
        [was] = recorder.recover()
        assert was.id == "run"
        assert was.info.state is JobState.RUNNING, "the document as it was"
        now = store.get_job("run")
        assert now is not None
        assert now.info.state is JobState.FAILED
        assert now.info.remaining == 0.0
        assert now.info.elapsed == 3.0, "its last progress is kept"
        assert now.ended is not None
        assert isinstance(now.error, OperationFailedError)
        assert now.error.message == INTERRUPTED["running"]
        assert store.count_final() == 3
    finally:
        recorder.close()
        store.close()


def test_a_later_schema_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "virtjobd.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("PRAGMA user_version=3")
    with pytest.raises(InternalError, match="schema version 3"):
        Store(str(path))


@pytest.mark.parametrize(
    ("version", "table", "found"),
    [
        (
            1,
            "CREATE TABLE jobs (id TEXT PRIMARY KEY, host TEXT)",
            "no version's columns (host, id)",
        ),
        (0, "CREATE TABLE jobs (id TEXT, payload BLOB)", "no version's columns (id, payload)"),
        (2, V1_SCHEMA.partition(";")[0], "version 1's columns"),
    ],
    ids=["version-1-unknown-table", "no-version-unknown-table", "version-2-of-version-1"],
)
def test_a_jobs_table_of_another_layout_is_refused_naming_the_file(
    tmp_path: Path, version: int, table: str, found: str
) -> None:
    path = tmp_path / "virtjobd.sqlite3"
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute(table)
        db.execute(f"PRAGMA user_version={version}")
    with pytest.raises(InternalError) as refused:
        Store(str(path))
    assert refused.value.message.startswith(
        f"state database {path} has schema version {version} but its jobs table has {found}"
    )
    assert "move it aside" in refused.value.message
    assert "give another --state-dir" in refused.value.message


def test_a_file_that_is_no_database_is_refused_saying_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "virtjobd.sqlite3"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(InternalError) as refused:
        Store(str(path))
    assert refused.value.message.startswith(f"cannot open the state database {path}: file is")
    assert "move it aside" in refused.value.message
    assert isinstance(refused.value.__cause__, sqlite3.DatabaseError)


def test_a_finished_job_reads_back_as_the_same_json(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "jobs.sqlite3"))
    recorder = Recorder(store, 100)
    engine = LocalJobDriver(max_jobs=1, host=HOST)

    def worker(ctx: JobContext) -> None:
        ctx.initialize(eta=1.0, bounded=True)
        ctx.update(percent=50.0, processed=5, total=10)
        ctx.finish_failed(OperationFailedError("the disk is full; free some space"))

    try:
        with hold_new_jobs():
            target = str(tmp_path / "d.save")
            job = engine.start_job(JobKind.DOMAIN_SAVE, "d", worker, target=target)
            recorder.track(job, HOST)
        assert job.wait(SAFETY).state is JobState.FAILED
        assert engine.close(cancel=False, timeout=SAFETY)  # its done callbacks have run
        live = job.document()
        stored = store.get_job(job.id)
        assert stored is not None
        assert json.dumps(encode_job(stored)) == json.dumps(encode_job(live))
        assert stored == live
        assert recorder.document(job.id) == live
    finally:
        engine.close(timeout=SAFETY)
        recorder.close()
        store.close()


def test_a_late_progress_snapshot_never_undoes_the_end(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "jobs.sqlite3"))
    engine = LocalJobDriver(max_jobs=1, host=HOST)
    running, release = threading.Event(), threading.Event()

    def worker(ctx: JobContext) -> None:
        running.set()
        assert release.wait(SAFETY), "the test never let the worker end"

    try:
        with hold_new_jobs():  # it cannot start before the block ends: this is its queued view
            job = engine.start_job(JobKind.DOMAIN_SAVE, "d", worker)
            queued = job.document()
        assert queued.info.state is JobState.QUEUED
        store.insert_job(queued)
        assert running.wait(SAFETY)
        started = job.document()  # the worker blocks until released: still running
        assert started.info.state is JobState.RUNNING
        store.update_progress(started)
        release.set()
        assert job.wait(SAFETY).state is JobState.SUCCEEDED
        final = job.document()
        store.finish_job(final)
        store.update_progress(started)
        store.update_progress(queued)
        assert store.get_job(job.id) == final
    finally:
        release.set()
        engine.close(timeout=SAFETY)
        store.close()


def test_a_job_whose_document_names_another_host_is_never_run(tmp_path: Path) -> None:
    store = Store(str(tmp_path / "jobs.sqlite3"))
    recorder = Recorder(store, 100)
    engine = LocalJobDriver(max_jobs=1, host="test:///elsewhere")
    ran: list[str] = []
    try:
        with hold_new_jobs():
            job = engine.start_job(JobKind.DOMAIN_SAVE, "d", lambda ctx: ran.append(ctx.id))
            with pytest.raises(VirtError, match="test:///elsewhere"):
                recorder.track(job, HOST)
        assert engine.close(cancel=False, timeout=SAFETY)
        assert job.info().state is JobState.CANCELLED
        assert ran == []
        assert store.list_jobs() == []
    finally:
        engine.close(timeout=SAFETY)
        recorder.close()
        store.close()


def test_interrupted_keeps_what_the_job_had_done() -> None:
    engine = LocalJobDriver(max_jobs=1, host=HOST)
    try:
        with hold_new_jobs():  # it cannot start before the block ends
            job = engine.start_job(JobKind.DOMAIN_SAVE, "d", lambda ctx: None)
            queued = job.document()
        assert queued.info.state is JobState.QUEUED
        failed = interrupted(queued, 123.0)
        assert failed.info.state is JobState.FAILED
        assert failed.ended == 123.0
        assert failed.error is not None
        assert failed.error.message == INTERRUPTED["queued"]
        assert (failed.id, failed.kind, failed.created) == (queued.id, queued.kind, queued.created)
    finally:
        engine.close(timeout=SAFETY)
