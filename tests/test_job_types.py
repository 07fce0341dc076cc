"""The static type of every public job call, and that it holds at run time.

mypy checks this file (it runs on tests): each `assert_type` fails the type check if a call's
declared type changes. Run by pytest, the same calls run on a test host and the values are
checked to be of those types, so the declarations are not just claims.
"""

from __future__ import annotations

from pathlib import Path
from typing import assert_type

import virtjob
from virtjob import Domain, Job, Network, jobs

WEB = """<domain type='test'><name>web</name><memory unit='MiB'>256</memory>
<os><type>hvm</type></os></domain>"""
LAB = """<network><name>lab</name><bridge name='virbr7'/></network>"""
OFFICE = """<network><name>office</name><bridge name='virbr8'/></network>"""


def test_domain_jobs_are_typed_by_what_they_make(conn: virtjob.Connection, tmp_path: Path) -> None:
    """create, start and restore jobs are `Job[Domain]`; save and dump jobs `Job[None]`."""
    created = conn.create_domain_job(WEB)
    assert_type(created, Job[Domain])
    assert isinstance(created, Job)
    made = assert_type(created.result(), Domain)
    assert isinstance(made, Domain)
    assert_type(created.domain(), Domain | None)
    assert isinstance(created.domain(), Domain)
    assert_type(created.network(), Network | None)

    dumped = made.dump_core_job(str(tmp_path / "web.core"))
    assert_type(dumped, Job[None])
    assert assert_type(dumped.result(), None) is None

    saved = made.save_job(str(tmp_path / "web.save"))
    assert_type(saved, Job[None])
    assert assert_type(saved.result(), None) is None

    restored = conn.restore_job(str(tmp_path / "web.save"))
    assert_type(restored, Job[Domain])
    assert isinstance(assert_type(restored.result(), Domain), Domain)

    defined = conn.define_domain(WEB.replace("web", "db"))
    started = defined.start_job()
    assert_type(started, Job[Domain])
    assert assert_type(started.result(), Domain) == defined


def test_network_jobs_are_typed_by_what_they_make(conn: virtjob.Connection) -> None:
    """Network create and start jobs are `Job[Network]`."""
    created = conn.create_network_job(LAB)
    assert_type(created, Job[Network])
    assert isinstance(assert_type(created.result(), Network), Network)
    assert_type(created.network(), Network | None)
    assert isinstance(created.network(), Network)
    assert created.domain() is None

    started = conn.define_network(OFFICE).start_job()
    assert_type(started, Job[Network])
    assert isinstance(assert_type(started.result(), Network), Network)


def test_listed_and_looked_up_jobs_are_typed_by_the_union(conn: virtjob.Connection) -> None:
    """A job had by id or from a listing may make a domain, a network or nothing; a domain's
    own job a domain or nothing."""
    job = conn.create_network_job(LAB)
    assert_type(conn.list_jobs(), list[Job[Domain | Network | None]])
    looked_up = conn.lookup_job(job.id)
    assert_type(looked_up, Job[Domain | Network | None])
    assert isinstance(assert_type(looked_up.result(), Domain | Network | None), Network)
    assert_type(conn.lookup_domain("test").job(), Job[Domain | None] | None)


def test_synchronous_twins_return_what_their_jobs_make(
    conn: virtjob.Connection, tmp_path: Path
) -> None:
    """Each synchronous twin returns its job's result type."""
    dom = assert_type(conn.create_domain(WEB), Domain)
    assert isinstance(dom, Domain)
    assert assert_type(dom.dump_core(str(tmp_path / "web.core")), None) is None
    assert assert_type(dom.save(str(tmp_path / "web.save")), None) is None
    assert isinstance(assert_type(conn.restore(str(tmp_path / "web.save")), Domain), Domain)
    defined = conn.define_domain(WEB.replace("web", "db"))
    assert assert_type(defined.start(), Domain) == defined
    assert isinstance(assert_type(conn.create_network(LAB), Network), Network)
    office = conn.define_network(OFFICE)
    assert assert_type(office.start(), Network) == office


def test_with_and_callbacks_keep_the_handle_s_type(conn: virtjob.Connection) -> None:
    """`with job as j` and a done callback see the same `Job[Domain]`."""
    seen: list[Domain] = []

    def done(job: Job[Domain]) -> None:
        seen.append(job.result())

    with conn.create_domain_job(WEB) as job:
        assert_type(job, Job[Domain])
        job.add_done_callback(done)
    assert [dom.name for dom in seen] == ["web"]


def test_a_typed_handle_is_a_plain_job(conn: virtjob.Connection) -> None:
    """The type parameter is covariant and defaults to object: a `Job[Domain]` is usable
    wherever a plain `Job` (a `Job[object]`) or a `virtjob.jobs.Job` is expected."""

    def kind_of(job: Job) -> str:
        return str(job.kind)

    def engine_kind_of(job: jobs.Job) -> str:
        return str(job.kind)

    job = conn.create_domain_job(WEB)
    assert kind_of(job) == engine_kind_of(job) == "domain-create"
