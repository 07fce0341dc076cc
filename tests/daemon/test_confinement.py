"""What a client can make virtjobd touch: never its own state, only valid text, only what the
operator allowed in domain XML, and only from a state directory nobody else controls."""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.daemon.conftest import SAFETY, DaemonProcess, new_host, start_fails
from virtjob.daemon.app import error_response
from virtjob.errors import InvalidArgError

OTHER_UID = 1000


def _error(answer: httpx.Response) -> dict[str, Any]:
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text)
    body: dict[str, Any] = answer.json()
    return body


# -- finding 2: the daemon's own files are never targets ------------------------------------


@pytest.fixture
def wide_daemon() -> Iterator[DaemonProcess]:
    """A daemon whose --allow-dir contains its state directory and socket (as in the README)."""
    base = tempfile.mkdtemp(prefix="vjd-")
    daemon = DaemonProcess(base=base, extra=["--allow-dir", base])
    try:
        yield daemon.start()
    finally:
        daemon.cleanup()


def test_the_state_directory_and_socket_are_never_targets(wide_daemon: DaemonProcess) -> None:
    """Dumps onto the database, its WAL, the lock file, the socket, or a symlink to one of
    them, are refused with 403 naming the state directory; the daemon restarts intact."""
    state = wide_daemon.state_dir
    link = os.path.join(wide_daemon.files, "db.link")
    os.symlink(os.path.join(state, "virtjobd.sqlite3"), link)
    targets = [
        os.path.join(state, "virtjobd.sqlite3"),
        os.path.join(state, "virtjobd.sqlite3-wal"),
        os.path.join(state, "virtjobd.lock"),
        os.path.join(state, "files", "x.dump"),
        link,
    ]
    kept = ("virtjobd.sqlite3", "virtjobd.lock")
    before = {name: os.stat(os.path.join(state, name)).st_ino for name in kept}
    with wide_daemon.client() as client:
        base = "/v1/hosts/test/default/domains/test"
        for target in targets:
            for route in ("dump-core", "save"):
                error = _error(client.post(f"{base}/{route}", json={"path": target}))
                assert error["code"] == "access-denied", error
                assert state in error["message"], error
        error = _error(client.post(f"{base}/dump-core", json={"path": wide_daemon.socket}))
        assert error["code"] == "access-denied"
        assert wide_daemon.socket in error["message"]
        assert client.get("/v1/hosts/test/default/jobs").json() == []
        good = os.path.join(wide_daemon.files, "good.dump")
        answer = client.post(f"{base}/dump-core", json={"path": good})
        assert answer.status_code == 202, answer.text
        job = answer.json()["id"]
        final = client.get(f"/v1/jobs/{job}/wait", params={"timeout": SAFETY}).json()
        assert final["info"]["state"] == "succeeded"
    after = {name: os.stat(os.path.join(state, name)).st_ino for name in before}
    assert after == before  # nothing of the state directory was replaced
    wide_daemon.stop()
    wide_daemon.start()
    with wide_daemon.client() as client:
        assert [item["id"] for item in client.get("/v1/jobs").json()] == [job]


def test_a_replaced_lock_file_keeps_a_second_daemon_out(daemon: DaemonProcess) -> None:
    """The lock is on the state directory itself: replacing the lock file changes nothing."""
    lock = os.path.join(daemon.state_dir, "virtjobd.lock")
    fresh = lock + ".new"
    with open(fresh, "w", encoding="ascii") as handle:
        handle.write("0\n")
    os.replace(fresh, lock)
    second = os.path.join(daemon.base, "b.sock")
    result = start_fails(
        "--state-dir", daemon.state_dir, "--listen", f"unix:{second}", "--allow-dir", daemon.files
    )
    assert result.returncode == 2, result.stderr
    assert "another virtjobd is using the state directory" in result.stderr
    assert not os.path.exists(second)
    with daemon.client() as client:
        assert client.get("/v1/version").status_code == 200


@pytest.mark.parametrize("inside", ["", "qemu"])
def test_an_allow_dir_inside_the_state_directory_is_refused(
    tmp_path: os.PathLike[str], inside: str
) -> None:
    state = os.path.join(str(tmp_path), "state")
    allowed = os.path.join(state, inside) if inside else state
    os.makedirs(allowed, mode=0o700)
    result = start_fails("--state-dir", state, "--allow-dir", allowed)
    assert result.returncode == 2, result.stderr
    assert f"--allow-dir {allowed} lies inside virtjobd's own {state}" in result.stderr


@pytest.mark.parametrize("inside", ["files", "files/sub"])
def test_the_state_directorys_files_dir_may_be_an_allow_dir(inside: str) -> None:
    """STATE_DIR/files (the default) and directories beneath it are the one part of the state
    directory an --allow-dir may name: a file there is a target, the database never."""
    daemon = DaemonProcess()
    allowed = os.path.join(daemon.state_dir, inside)
    os.makedirs(allowed, mode=0o700)
    os.chmod(daemon.state_dir, 0o700)
    daemon.extra = ["--allow-dir", allowed]
    try:
        daemon.start()
        with daemon.client() as client:
            base = "/v1/hosts/test/default/domains/test/dump-core"
            database = os.path.join(daemon.state_dir, "virtjobd.sqlite3")
            refused = client.post(base, json={"path": database})
            assert refused.status_code == 403, refused.text
            answer = client.post(base, json={"path": os.path.join(allowed, "x.dump")})
            assert answer.status_code == 202, answer.text
            job = answer.json()["id"]
            final = client.get(f"/v1/jobs/{job}/wait", params={"timeout": SAFETY}).json()
            assert final["info"]["state"] == "succeeded", final
        assert os.path.isfile(os.path.join(allowed, "x.dump"))
    finally:
        daemon.cleanup()


def test_allow_dirs_around_and_inside_the_state_directory_are_refused(
    tmp_path: os.PathLike[str],
) -> None:
    """Allowing both a parent of the state directory and its files dir has no clear meaning."""
    base = str(tmp_path)
    state = os.path.join(base, "state")
    files = os.path.join(state, "files")
    os.makedirs(files, mode=0o700)
    result = start_fails("--state-dir", state, "--allow-dir", base, "--allow-dir", files)
    assert result.returncode == 2, result.stderr
    assert f"--allow-dir {base} contains virtjobd's own {state}" in result.stderr


# -- finding 4, daemon side: the path is checked again when the job starts -------------------

TEST_HOST_SLOTS = 16
"""Jobs a test host runs at once (virtjob.drivers.test.host.MAX_JOBS); more wait queued."""


def test_a_directory_swapped_for_a_symlink_while_queued_cannot_escape(
    shared_daemon: DaemonProcess,
) -> None:
    """A save checked fine on arrival waits in the queue; its directory becomes a symlink to
    outside the allowed dirs: when it starts it fails access-denied, nothing is written
    outside and the domain keeps running."""
    host = new_host()
    base = f"/v1/hosts/test/{host}"
    sub = os.path.join(shared_daemon.files, f"{host}-sub")
    os.mkdir(sub)
    outside = tempfile.mkdtemp(prefix="outside-", dir=shared_daemon.base)
    with shared_daemon.client() as client:
        blockers = []
        for index in range(TEST_HOST_SLOTS):  # crawling network creations fill every slot
            xml = f"<network><name>b{index}</name><bridge name='vjq{index}'/></network>"
            answer = client.post(f"{base}/networks/create", json={"xml": xml}, params={"rate": 1})
            assert answer.status_code == 202, answer.text
            blockers.append(answer.json()["id"])
        answer = client.post(
            f"{base}/domains/test/save", json={"path": os.path.join(sub, "x.save")}
        )
        assert answer.status_code == 202, answer.text
        job = answer.json()
        assert job["info"]["state"] == "queued"
        os.rmdir(sub)
        os.symlink(outside, sub)
        for blocker in blockers:
            assert client.post(f"/v1/jobs/{blocker}/cancel").status_code == 200
        final = client.get(f"/v1/jobs/{job['id']}/wait", params={"timeout": SAFETY}).json()
        assert final["info"]["state"] == "failed", final
        assert final["error"]["code"] == "access-denied", final
        assert client.get(f"{base}/domains/test").json()["state"] == "running"
    assert os.listdir(outside) == []


# -- finding 13: a state or socket directory someone else controls ---------------------------


def test_a_state_directory_of_another_user_is_refused(tmp_path: os.PathLike[str]) -> None:
    """An existing /tmp/vj of uid 1000, mode 0777: refused, and nothing created in it."""
    state = os.path.join(str(tmp_path), "vj")
    os.mkdir(state)
    os.chown(state, OTHER_UID, OTHER_UID)
    os.chmod(state, 0o777)
    result = start_fails("--state-dir", state)
    assert result.returncode == 2, result.stderr
    assert f"the state directory {state} belongs to uid {OTHER_UID}" in result.stderr
    assert "give a fresh directory" in result.stderr
    assert f"chown {os.geteuid()} {state}" in result.stderr
    assert os.listdir(state) == []


def test_a_state_directory_writable_by_others_is_refused(tmp_path: os.PathLike[str]) -> None:
    state = os.path.join(str(tmp_path), "vj")
    os.mkdir(state)
    os.chmod(state, 0o777)
    result = start_fails("--state-dir", state)
    assert result.returncode == 2, result.stderr
    assert f"the state directory {state} is writable by others" in result.stderr
    assert f"chmod 700 {state}" in result.stderr
    assert os.listdir(state) == []


def test_a_socket_directory_of_another_user_is_refused(tmp_path: os.PathLike[str]) -> None:
    """Another user could replace the daemon's socket in their directory."""
    sockets = os.path.join(str(tmp_path), "s")
    os.mkdir(sockets)
    os.chown(sockets, OTHER_UID, OTHER_UID)
    state = os.path.join(str(tmp_path), "state")
    result = start_fails("--state-dir", state, "--listen", f"unix:{sockets}/d.sock")
    assert result.returncode == 2, result.stderr
    assert f"the socket directory {sockets} belongs to uid {OTHER_UID}" in result.stderr
    assert os.listdir(sockets) == []


def test_a_sticky_shared_socket_directory_is_accepted(tmp_path: os.PathLike[str]) -> None:
    """A /tmp-like directory (world-writable, sticky) is fine for a socket: nobody else can
    remove or replace a file of ours there."""
    base = str(tmp_path)
    sockets = os.path.join(base, "s")
    os.mkdir(sockets)
    os.chmod(sockets, 0o1777)
    daemon = DaemonProcess(base=tempfile.mkdtemp(prefix="vjd-"))
    daemon.socket = os.path.join(sockets, "d.sock")
    try:
        daemon.start()
    finally:
        daemon.cleanup()


def test_a_state_directory_reached_through_another_users_symlink_is_refused(
    tmp_path: os.PathLike[str],
) -> None:
    """uid 1000 owns the link, so it could re-point it later: refused, nothing created."""
    real = os.path.join(str(tmp_path), "real")
    os.mkdir(real, 0o700)
    link = os.path.join(str(tmp_path), "vj")
    os.symlink(real, link)
    os.lchown(link, OTHER_UID, OTHER_UID)
    result = start_fails("--state-dir", link)
    assert result.returncode == 2, result.stderr
    assert f"the state directory {link}: the symlink {link} belongs to uid {OTHER_UID}" in (
        result.stderr
    )
    assert os.listdir(real) == []


@pytest.mark.parametrize("where", ["path", "link target"])
def test_a_state_directory_under_another_users_directory_is_refused(
    tmp_path: os.PathLike[str], where: str
) -> None:
    """A parent directory of uid 1000 (on the path given, or where a root-owned symlink
    leads) lets that user rename the state directory away and put their own in its place."""
    theirs = os.path.join(str(tmp_path), "theirs")
    os.mkdir(theirs, 0o755)
    os.chown(theirs, OTHER_UID, OTHER_UID)
    real = os.path.join(theirs, "vj")
    os.mkdir(real, 0o700)
    state = real
    if where == "link target":
        state = os.path.join(str(tmp_path), "link")
        os.symlink(real, state)
    result = start_fails("--state-dir", state)
    assert result.returncode == 2, result.stderr
    assert f"the state directory {state}: {theirs} belongs to uid {OTHER_UID}" in result.stderr
    assert os.listdir(real) == []


def test_a_state_directory_under_a_group_writable_directory_is_refused(
    tmp_path: os.PathLike[str],
) -> None:
    shared = os.path.join(str(tmp_path), "shared")
    os.mkdir(shared)
    os.chmod(shared, 0o775)
    state = os.path.join(shared, "vj")
    result = start_fails("--state-dir", state)
    assert result.returncode == 2, result.stderr
    assert f"the state directory {state}: {shared} is writable by others" in result.stderr
    assert os.listdir(shared) == []  # refused before anything is created


def test_a_socket_directory_reached_through_another_users_symlink_is_refused(
    tmp_path: os.PathLike[str],
) -> None:
    real = os.path.join(str(tmp_path), "s")
    os.mkdir(real, 0o700)
    link = os.path.join(str(tmp_path), "l")
    os.symlink(real, link)
    os.lchown(link, OTHER_UID, OTHER_UID)
    state = os.path.join(str(tmp_path), "state")
    result = start_fails("--state-dir", state, "--listen", f"unix:{link}/d.sock")
    assert result.returncode == 2, result.stderr
    assert f"the socket directory {link}: the symlink {link} belongs to uid" in result.stderr
    assert os.listdir(real) == []


def test_a_safe_symlinked_state_directory_is_used_by_its_resolved_path() -> None:
    """A root-owned link in a sticky shared directory is fine; the daemon then works in the
    directory it resolved to (lock, default socket, excluded paths), whatever the link
    points to later."""
    base = tempfile.mkdtemp(prefix="vjd-")
    shared = os.path.join(base, "shared")
    os.mkdir(shared)
    os.chmod(shared, 0o1777)
    real = os.path.join(base, "real")
    os.mkdir(real, 0o700)
    link = os.path.join(shared, "vj")
    os.symlink(real, link)
    daemon = DaemonProcess(base=base)
    daemon.state_dir = link
    daemon.socket = os.path.join(link, "virtjobd.sock")
    try:
        daemon.start()
        assert f"serving http on unix:{real}/virtjobd.sock" in daemon.log()
        os.unlink(link)
        os.mkdir(link, 0o700)  # the link now names another (empty) directory
        daemon.socket = os.path.join(real, "virtjobd.sock")
        with daemon.client() as client:
            base_url = "/v1/hosts/test/default/domains/test"
            target = os.path.join(real, "virtjobd.sqlite3")
            answer = client.post(f"{base_url}/dump-core", json={"path": target})
            assert answer.status_code == 403, answer.text
            assert real in answer.json()["message"]
        assert daemon.signal(signal.SIGTERM) == 0
        assert os.listdir(link) == []
        left = set(os.listdir(real))
        assert {"virtjobd.lock", "virtjobd.sqlite3"} <= left
        assert "virtjobd.sock" not in left  # removed at its real path
    finally:
        daemon.cleanup()


# -- finding 6: paths that are not text -------------------------------------------------------


def _post_raw(client: httpx.Client, url: str, body: bytes) -> httpx.Response:
    return client.post(url, content=body, headers={"content-type": "application/json"})


def test_a_path_that_is_not_utf8_is_a_400_and_nothing_starts(
    shared_daemon: DaemonProcess,
) -> None:
    host = new_host()
    base = f"/v1/hosts/test/{host}"
    files = shared_daemon.files.encode()
    with shared_daemon.client() as client:
        assert client.post(f"{base}/domains/test/suspend").status_code == 204  # create the host
        assert client.post(f"{base}/domains/test/resume").status_code == 204
        before = sorted(os.listdir(shared_daemon.files))
        for route in ("domains/test/save", "domains/test/dump-core", "domains/restore"):
            body = b'{"path": "' + files + b'/bad-\\udcff.save"}'
            answer = _post_raw(client, f"{base}/{route}", body)
            assert answer.status_code == 400, (route, answer.text)
            error = answer.json()
            assert error["code"] == "invalid-arg"
            assert "\\udcff" in error["message"]  # shown escaped, so any terminal prints it
            assert "path is not valid UTF-8 text" in error["message"]
        answer = _post_raw(client, f"{base}/domains", b'{"xml": "<domain>\\udcff</domain>"}')
        assert answer.status_code == 400, answer.text
        assert client.get(f"{base}/domains/test").json()["state"] == "running"
        assert client.get(f"{base}/jobs").json() == []
        assert [job for job in client.get("/v1/jobs").json() if job["host"].endswith(host)] == []
    assert sorted(os.listdir(shared_daemon.files)) == before


def test_an_error_message_quoting_a_non_utf8_path_encodes() -> None:
    """Any error carrying an un-encodable character still makes a valid UTF-8 JSON answer."""
    answer = error_response(InvalidArgError("no such file /srv/\udcff.save"))
    assert answer.status_code == 400
    body = bytes(answer.body)
    body.decode("utf-8")
    assert json.loads(body)["message"] == "no such file /srv/\\udcff.save"


# -- finding 3, daemon side: domain XML cannot reach outside what the operator allowed --------

QEMU_NS = "xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'"


def _qemu_xml(name: str, devices: str = "", extra: str = "") -> str:
    return (
        f"<domain type='qemu' {QEMU_NS}><name>{name}</name><memory unit='MiB'>64</memory>"
        f"<vcpu>1</vcpu><os><type arch='x86_64'>hvm</type></os>"
        f"<devices>{devices}</devices>{extra}</domain>"
    )


@pytest.fixture
def qemu_daemon() -> Iterator[DaemonProcess]:
    """A daemon serving qemu:///session from its own state directory, with default policy."""
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed")
    daemon = DaemonProcess()
    daemon.env = {"VIRTJOB_STATE_DIR": daemon.state_dir}
    try:
        yield daemon.start()
    finally:
        daemon.cleanup()


def test_domain_xml_is_confined_to_what_the_operator_allowed(qemu_daemon: DaemonProcess) -> None:
    """An emulator of the client's choosing, a disk outside --allow-dir, or extra QEMU
    arguments are refused with a 4xx naming the option that would allow them."""
    outside = os.path.join(qemu_daemon.base, "outside")
    os.makedirs(outside)
    disk = os.path.join(outside, "disk.img")
    with open(disk, "wb") as handle:
        handle.truncate(1 << 20)
    refused = {
        "emulator": (_qemu_xml("e1", "<emulator>/bin/sh</emulator>"), "--allow-emulator"),
        "disk": (
            _qemu_xml(
                "d1",
                f"<disk type='file' device='disk'><source file='{disk}'/>"
                f"<target dev='vda' bus='virtio'/></disk>",
            ),
            qemu_daemon.files,
        ),
        "qemu-args": (
            _qemu_xml(
                "a1",
                extra="<qemu:commandline><qemu:arg value='-pidfile'/>"
                f"<qemu:arg value='{outside}/pid'/></qemu:commandline>",
            ),
            "--allow-qemu-args",
        ),
    }
    base = "/v1/hosts/qemu/session/domains"
    with qemu_daemon.client() as client:
        for what, (xml, hint) in refused.items():
            for route in (base, f"{base}/create"):
                answer = client.post(route, json={"xml": xml})
                error = _error(answer)
                assert hint in error["message"], (what, route, error)
        assert client.get(base).json() == []
        assert client.get("/v1/hosts/qemu/session/jobs").json() == []
    assert os.listdir(outside) == ["disk.img"]


def test_the_operator_flags_allow_an_emulator_and_qemu_arguments() -> None:
    """--allow-emulator and --allow-qemu-args reach the QEMU host: such XML is then defined."""
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed")
    base = tempfile.mkdtemp(prefix="vjd-")
    emulator = os.path.join(base, "emu")
    with open(emulator, "w", encoding="ascii") as handle:
        handle.write("#!/bin/sh\nexit 1\n")
    os.chmod(emulator, 0o700)
    daemon = DaemonProcess(base=base, extra=["--allow-emulator", emulator, "--allow-qemu-args"])
    daemon.env = {"VIRTJOB_STATE_DIR": daemon.state_dir}
    xml = _qemu_xml(
        "ok1",
        f"<emulator>{emulator}</emulator>",
        "<qemu:commandline><qemu:arg value='-no-reboot'/></qemu:commandline>",
    )
    try:
        daemon.start()
        with daemon.client() as client:
            answer = client.post("/v1/hosts/qemu/session/domains", json={"xml": xml})
            assert answer.status_code == 201, answer.text
            other = _qemu_xml("no1", "<emulator>/bin/sh</emulator>")
            answer = client.post("/v1/hosts/qemu/session/domains", json={"xml": other})
            assert "--allow-emulator /bin/sh" in _error(answer)["message"]
    finally:
        daemon.cleanup()


@pytest.mark.parametrize("emulator", ["qemu-system-x86_64", "/no/such/emulator"])
def test_a_bad_allow_emulator_is_refused_at_start(
    tmp_path: os.PathLike[str], emulator: str
) -> None:
    result = start_fails("--state-dir", str(tmp_path), "--allow-emulator", emulator)
    assert result.returncode == 2, result.stderr
    assert f"--allow-emulator {emulator} is not" in result.stderr
