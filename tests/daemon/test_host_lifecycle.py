"""Only hosts holding state stay open: failed requests close the host they opened, a pristine
host can be closed (``DELETE /v1/hosts/{driver}/{instance}``), and undefines of objects a
fresh host never had leave nothing to replay at a restart."""

from __future__ import annotations

import os
import signal
import uuid

from virtjob.daemon.store import Store

from .conftest import SLOW_RATE, DaemonProcess, running


def _xml(name: str) -> str:
    return (
        f"<domain type='test'><name>{name}</name><memory unit='MiB'>64</memory>"
        f"<vcpu>1</vcpu><os><type>hvm</type></os></domain>"
    )


def test_failed_requests_do_not_fill_max_hosts() -> None:
    """32 failing DELETEs of made-up hosts used to create 32 hosts and lock every writer out."""
    with running(extra=["--max-hosts", "2"]) as daemon, daemon.client() as client:
        for index in range(8):
            base = f"/v1/hosts/test/p{index}"
            missing = client.delete(f"{base}/domains/nosuch")
            assert missing.status_code == 404, missing.text
            bad = client.post(f"{base}/domains", json={"xml": "<domain>"})
            assert bad.status_code == 400, bad.text
            busy = client.post(f"{base}/domains/test/resume")  # running, not paused: 409
            assert busy.status_code == 409, busy.text
            assert "--max-hosts" not in busy.json()["message"]
        assert client.get("/v1/version").json()["hosts"] == []
        for name in ("w1", "w2"):
            answer = client.post(f"/v1/hosts/test/{name}/domains", json={"xml": _xml("d")})
            assert answer.status_code == 201, answer.text
        # a host holding state stays open when a later request on it fails
        assert client.delete("/v1/hosts/test/w1/domains/nosuch").status_code == 404
        assert set(client.get("/v1/version").json()["hosts"]) == {"test:///w1", "test:///w2"}
        assert [d["name"] for d in client.get("/v1/hosts/test/w1/domains").json()] == ["test", "d"]


def test_delete_closes_a_pristine_host_and_refuses_one_holding_state() -> None:
    with running(extra=["--max-hosts", "1"]) as daemon, daemon.client() as client:
        base = "/v1/hosts/test/c1"
        assert client.post(f"{base}/domains", json={"xml": _xml("web")}).status_code == 201
        held = client.delete(base)
        assert held.status_code == 409
        assert "domain 'web'" in held.json()["message"]
        assert client.post("/v1/hosts/test/c2/domains/test/suspend").status_code == 409  # full

        assert client.delete(f"{base}/domains/web").status_code == 204
        # a job queued or running keeps the host
        job = client.post(
            f"{base}/domains/test/dump-core",
            json={"path": f"{daemon.files}/c1.core"},
            params={"rate": SLOW_RATE},
        ).json()
        running_job = client.delete(base)
        assert running_job.status_code == 409
        assert "queued or running" in running_job.json()["message"]
        client.post(f"/v1/jobs/{job['id']}/cancel")
        ended = client.get(f"/v1/jobs/{job['id']}/wait", params={"timeout": 15}).json()
        assert ended["info"]["state"] == "cancelled"

        assert client.delete(base).status_code == 204
        assert client.get("/v1/version").json()["hosts"] == []
        assert client.delete(base).status_code == 204  # not open: nothing to do
        assert client.post("/v1/hosts/test/c2/domains/test/suspend").status_code == 204
        well_known = client.delete("/v1/hosts/test/default")
        assert well_known.status_code == 409
        assert "well-known" in well_known.json()["message"]
        # the job history of the closed host stays
        assert [j["id"] for j in client.get(f"{base}/jobs").json()] == [job["id"]]


def test_a_closed_host_reopens_fresh() -> None:
    with running() as daemon, daemon.client() as client:
        base = "/v1/hosts/test/f1"
        assert client.post(f"{base}/domains/test/suspend").status_code == 204
        assert client.post(f"{base}/domains/test/resume").status_code == 204
        assert client.delete(base).status_code == 204
        assert client.post(f"{base}/domains", json={"xml": _xml("x")}).status_code == 201
        names = [d["name"] for d in client.get(f"{base}/domains").json()]
        assert names == ["test", "x"]


def test_undefined_domains_leave_no_host_to_reopen_at_restart() -> None:
    """A host whose added domains were all undefined kept only tombstones, was reopened at
    every restart and logged a 'could not replay the undefine' warning for each."""
    with running() as daemon:
        with daemon.client() as client:
            base = "/v1/hosts/test/u1"
            for name in ("a", "b", "c"):
                assert client.post(f"{base}/domains", json={"xml": _xml(name)}).status_code == 201
            for name in ("a", "b", "c"):
                assert client.delete(f"{base}/domains/{name}").status_code == 204
            # a built-in object undefined is state: its tombstone stays and is replayed
            kept = "/v1/hosts/test/u2"
            assert client.post(f"{kept}/domains/test/destroy").status_code == 204
            assert client.delete(f"{kept}/domains/test").status_code == 204
        assert daemon.signal(signal.SIGTERM) == 0
        daemon.start()
        with daemon.client() as client:
            assert client.get("/v1/version").json()["hosts"] == ["test:///u2"]
            assert client.get("/v1/hosts/test/u2/domains").json() == []
            assert [d["name"] for d in client.get("/v1/hosts/test/u1/domains").json()] == ["test"]
        assert "could not replay" not in daemon.log()
        assert client is not None


def test_tombstones_an_older_daemon_left_with_nothing_to_undo_are_purged_at_start() -> None:
    daemon = DaemonProcess()
    try:
        os.makedirs(daemon.state_dir, mode=0o700)
        store = Store(os.path.join(daemon.state_dir, "virtjobd.sqlite3"))
        for index in range(5):  # as older daemons recorded every undefine
            store.record_definition("test:///old", "domain", str(uuid.uuid4()), f"d{index}", None)
        store.close()
        daemon.start()
        with daemon.client() as client:
            assert client.get("/v1/version").json()["hosts"] == []
        assert "could not replay" not in daemon.log()
        store = Store(os.path.join(daemon.state_dir, "virtjobd.sqlite3"))
        try:
            assert store.definitions() == []
        finally:
            store.close()
    finally:
        daemon.cleanup()
