"""A stored job this virtjobd cannot read (a damaged row, or one a newer virtjobd wrote on the
same state directory) costs that job alone: listings leave it out (logged once), reading it
answers internal-error saying how to get rid of it, deleting it works, and the daemon starts
(an unfinished one is marked failed through its columns)."""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.daemon.conftest import SAFETY, DaemonProcess, new_host
from virtjob import JobState
from virtjob.api import JobDocument, encode_job
from virtjob.daemon.recorder import Recorder
from virtjob.daemon.service import DB_NAME
from virtjob.daemon.store import Store
from virtjob.errors import InternalError
from virtjob.jobs import JobKind, LocalJobDriver
from virtjob.jobs.local import hold_new_jobs

HOST = "test:///damaged"


def _documents() -> tuple[JobDocument, JobDocument]:
    """A finished (succeeded) and a queued job's documents, from a real engine."""
    engine = LocalJobDriver(max_jobs=1, host=HOST)
    try:
        done = engine.start_job(JobKind.NETWORK_START, "default", lambda ctx: None)
        assert done.wait(SAFETY).state is JobState.SUCCEEDED
        with hold_new_jobs():  # it cannot start before the block ends
            queued = engine.start_job(JobKind.DOMAIN_SAVE, "d", lambda ctx: None).document()
        return done.document(), queued
    finally:
        engine.close(timeout=SAFETY)


def _newer(document: JobDocument, job_id: str, **changes: Any) -> str:
    """`document` as a newer virtjobd might store it: another id, `changes` applied."""
    data = encode_job(document)
    info = {**data["info"], **changes.pop("info", {})}
    return json.dumps({**data, "id": job_id, "info": info, **changes})


DEEP = "[" * 100_000 + "]" * 100_000
"""JSON nested past what the parser reads (`RecursionError`)."""


def _insert(path: Path, rows: list[tuple[str, str, str]], host: str = HOST) -> None:
    """Write `rows` (id, state column, document text) of `host` into the store at `path`
    directly."""
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.executemany(
            "INSERT INTO jobs VALUES (?, ?, ?, 1.0, NULL, ?)",
            [(job_id, host, state, text) for job_id, state, text in rows],
        )
        db.commit()


def _columns(path: Path, job_id: str) -> tuple[str, float | None, str]:
    with contextlib.closing(sqlite3.connect(path)) as db:
        row = db.execute("SELECT state, ended, document FROM jobs WHERE id=?", (job_id,)).fetchone()
    return row[0], row[1], row[2]


def _logged(caplog: pytest.LogCaptureFixture, job_id: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if f"job {job_id}" in record.getMessage()]


def test_a_damaged_row_is_left_out_of_listings_named_when_read_and_deletable(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "jobs.sqlite3"
    done, _queued = _documents()
    store = Store(str(path))
    try:
        store.insert_job(done)
        _insert(
            path,
            [
                ("garbled", "succeeded", '{"id": "garbled", "host": '),
                ("newer", "succeeded", _newer(done, "newer", kind="domain-migrate", schema=3)),
                ("nan", "succeeded", _newer(done, "nan", info={"elapsed": float("nan")})),
                ("deep", "succeeded", DEEP),
                ("other", "succeeded", _newer(done, done.id)),  # another job's document
            ],
        )
        with caplog.at_level(logging.WARNING, logger="virtjob.daemon"):
            assert store.list_jobs() == [done]
            assert store.list_jobs(HOST) == [done]
        for job_id in ("garbled", "newer", "nan", "deep", "other"):
            [record] = _logged(caplog, job_id)  # once, however many listings
            assert record.levelno == logging.WARNING
            assert f"job lists leave out job {job_id}: stored job {job_id}" in record.getMessage()
        with pytest.raises(InternalError) as garbled:
            store.get_job("garbled")
        assert "stored job garbled is damaged (not JSON" in garbled.value.message
        assert "DELETE /v1/jobs/garbled" in garbled.value.message
        assert isinstance(garbled.value.__cause__, ValueError), "the root cause is kept"
        with pytest.raises(InternalError) as newer:
            store.get_job("newer")
        assert "'domain-migrate'" in newer.value.message
        assert "document schema 3" in newer.value.message
        assert "a newer virtjobd wrote it" in newer.value.message
        assert "DELETE /v1/jobs/newer" in newer.value.message
        with pytest.raises(InternalError, match="finite"):
            store.get_job("nan")
        with pytest.raises(InternalError, match=r"damaged \(not JSON: nested too deeply") as deep:
            store.get_job("deep")
        assert isinstance(deep.value.__cause__, RecursionError), "the root cause is kept"
        with pytest.raises(InternalError) as other:
            store.get_job("other")
        assert f"damaged (its document is that of job {done.id!r})" in other.value.message
        assert store.count_final() == 6
        for job_id in ("garbled", "deep", "other"):
            assert store.delete_job(job_id)
            assert store.get_job(job_id) is None
        assert store.count_final() == 3
        assert set(store.prune(0)) == {done.id, "newer", "nan"}
        assert store.count_final() == 0
    finally:
        store.close()


def test_recovery_marks_an_unreadable_unfinished_row_failed_through_its_columns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "jobs.sqlite3"
    done, queued = _documents()
    store = Store(str(path))
    try:
        store.insert_job(done)
        store.insert_job(queued)
        pausing = _newer(done, "pausing", info={"state": "pausing"})
        _insert(
            path,
            [
                ("cut", "running", "not json"),
                ("pausing", "pausing", pausing),
                ("deep", "running", DEEP),
            ],
        )
        recorder = Recorder(store, 100)
        try:
            with caplog.at_level(logging.WARNING, logger="virtjob.daemon"):
                [was] = recorder.recover()
                assert was == queued, "a readable one is recovered as before"
                assert store.list_jobs() == [done, store.get_job(queued.id)]
        finally:
            recorder.close()
        recovered = store.get_job(queued.id)
        assert recovered is not None
        assert recovered.info.state is JobState.FAILED
        for job_id, text in (("cut", "not json"), ("pausing", pausing), ("deep", DEEP)):
            state, ended, document = _columns(path, job_id)
            assert state == "failed"
            assert ended == recovered.ended, "ended at the start-up time, as the others"
            assert document == text, "its document is kept as it was"
            [record] = _logged(caplog, job_id)  # listings do not log it again
            assert record.levelno == logging.ERROR
            assert "marked failed" in record.getMessage()
        assert "was pausing" in _logged(caplog, "pausing")[0].getMessage()
        assert store.count_final() == 5
        assert len(store.prune(1)) == 4, "pruned like any finished job"
        assert store.count_final() == 1
    finally:
        store.close()


def test_a_daemon_starts_over_damaged_rows_and_serves_the_others() -> None:
    daemon = DaemonProcess()
    host = new_host()
    try:
        daemon.start()
        with daemon.client() as api:
            base = f"/v1/hosts/test/{host}/networks/default"
            assert api.post(f"{base}/destroy").status_code == 204
            started = api.post(f"{base}/start").json()
            done = api.get(f"/v1/jobs/{started['id']}/wait", params={"timeout": SAFETY}).json()
            assert done["info"]["state"] == "succeeded"
        daemon.stop()
        path = Path(daemon.state_dir) / DB_NAME
        newer = json.dumps({**done, "id": "newer", "kind": "domain-migrate", "schema": 3})
        damaged = [("garbled", "succeeded", "{"), ("cut", "running", "not json")]
        deep = ("deep", "running", DEEP)  # once a RecursionError: virtjobd did not start
        _insert(path, [*damaged, ("newer", "running", newer), deep], f"test:///{host}")
        daemon.start()
        with daemon.client() as api:
            for _ in range(2):
                assert [job["id"] for job in api.get("/v1/jobs").json()] == [done["id"]]
                listed = api.get(f"/v1/hosts/test/{host}/jobs").json()
                assert [job["id"] for job in listed] == [done["id"]]
            assert api.get(f"/v1/jobs/{done['id']}").json() == done
            for job_id in ("garbled", "newer", "cut", "deep"):
                answer = api.get(f"/v1/jobs/{job_id}")
                assert answer.status_code == 500, answer.text
                error = answer.json()
                assert error["code"] == "internal-error"
                assert f"stored job {job_id}" in error["message"]
                assert f"DELETE /v1/jobs/{job_id}" in error["message"]
                assert api.delete(f"/v1/jobs/{job_id}").status_code == 204
                assert api.get(f"/v1/jobs/{job_id}").json()["code"] == "no-job"
        daemon.stop()
        log = daemon.log()
        assert log.count("job lists leave out job garbled") == 1
        assert "job newer was running when the daemon stopped: marked failed" in log
        assert "job cut was running when the daemon stopped: marked failed" in log
        assert "job deep was running when the daemon stopped: marked failed" in log
        assert "job lists leave out job cut" not in log, "logged once, at recovery"
        # each 500 is logged with its causes: a VirtError's on the line, another's traced
        [newer_read] = [
            line
            for line in log.splitlines()
            if "request failed: InternalError: stored job newer" in line
        ]
        assert "; caused by InternalError: a stored job is damaged" in newer_read
        assert "; caused by MalformedError: JobDocument.kind" in newer_read
        assert "json.decoder.JSONDecodeError: Expecting" in log, "the garbled row's traceback"
    finally:
        daemon.cleanup()


def test_recovery_trusts_a_final_document_over_its_state_column(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "jobs.sqlite3"
    done, _queued = _documents()
    text = json.dumps(encode_job(done), separators=(",", ":"))
    store = Store(str(path))
    try:
        _insert(path, [(done.id, "running", text)])  # its column copied from an older snapshot
        recorder = Recorder(store, 100)
        try:
            with caplog.at_level(logging.WARNING, logger="virtjob.daemon"):
                assert recorder.recover() == [], "it was not interrupted: it had ended"
        finally:
            recorder.close()
        assert store.get_job(done.id) == done, "its document is kept (it was succeeded)"
        assert _columns(path, done.id) == ("succeeded", done.ended, text)
        assert store.count_final() == 1
        [record] = _logged(caplog, done.id)
        assert record.levelno == logging.WARNING
        assert "was running by its state column but succeeded by its document" in (
            record.getMessage()
        )
    finally:
        store.close()
