"""Who may talk to virtjobd and which files it touches: socket mode, tokens, TLS, allow-dirs."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator

import pytest

import virtjob
from tests.daemon.conftest import SAFETY, DaemonProcess, new_host, running, start_fails


def test_unix_socket_is_private(shared_daemon: DaemonProcess) -> None:
    mode = stat.S_IMODE(os.stat(shared_daemon.socket).st_mode)
    assert mode == 0o600


def test_tcp_without_a_token_file_is_refused(tmp_path: os.PathLike[str]) -> None:
    result = start_fails("--state-dir", str(tmp_path), "--listen", "tcp:127.0.0.1:0")
    assert result.returncode == 2
    assert "--token-file" in result.stderr


def test_a_missing_allow_dir_is_refused_at_start(tmp_path: os.PathLike[str]) -> None:
    """A typo in --allow-dir stops the daemon at once instead of refusing every path later."""
    missing = os.path.join(str(tmp_path), "no-such-dir")
    result = start_fails("--state-dir", str(tmp_path), "--allow-dir", missing)
    assert result.returncode == 2
    assert f"--allow-dir {missing} is not a directory" in result.stderr


def test_a_socket_in_a_missing_directory_is_refused(tmp_path: os.PathLike[str]) -> None:
    """--listen unix:PATH does not invent directories: a wrong path is an error."""
    path = os.path.join(str(tmp_path), "no-such-dir", "sock")
    result = start_fails("--state-dir", str(tmp_path), "--listen", f"unix:{path}")
    assert result.returncode == 1
    assert "does not exist" in result.stderr
    assert not os.path.exists(os.path.dirname(path))


def test_non_loopback_address_needs_listen_any(tmp_path: os.PathLike[str]) -> None:
    token = os.path.join(str(tmp_path), "token")
    fd = os.open(token, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"0123456789abcdef0123456789")
    os.close(fd)
    result = start_fails(
        "--state-dir", str(tmp_path), "--listen", "tcp:0.0.0.0:0", "--token-file", token
    )
    assert result.returncode == 1
    assert "--listen-any" in result.stderr


def test_token_file_readable_by_others_is_refused(tmp_path: os.PathLike[str]) -> None:
    token = os.path.join(str(tmp_path), "token")
    with open(token, "w") as handle:
        handle.write("0123456789abcdef0123456789")
    os.chmod(token, 0o644)
    result = start_fails(
        "--state-dir", str(tmp_path), "--listen", "tcp:127.0.0.1:0", "--token-file", token
    )
    assert result.returncode == 2
    assert "chmod 600" in result.stderr


@pytest.fixture(scope="module")
def tcp_daemon() -> Iterator[DaemonProcess]:
    with running(tcp=True) as daemon:
        yield daemon


def test_tcp_requires_the_right_token(
    tcp_daemon: DaemonProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = new_host()
    with tcp_daemon.client(token="") as anonymous:
        response = anonymous.get("/v1/version")
        assert response.status_code == 401
        assert response.json()["code"] == "auth-failed"
    with tcp_daemon.client(token="x" * 32) as wrong:
        response = wrong.post(f"/v1/hosts/test/{host}/domains/test/destroy")
        assert response.status_code == 401
    with tcp_daemon.client() as right:
        assert right.get(f"/v1/hosts/test/{host}/domains/test").json()["state"] == "running"
    monkeypatch.delenv("VIRTJOB_TOKEN", raising=False)
    with pytest.raises(virtjob.AuthError, match="no bearer token"):
        virtjob.open(tcp_daemon.uri(host, token_file=None).replace("token_file=None", ""))
    monkeypatch.setenv("VIRTJOB_TOKEN", "y" * 32)
    with pytest.raises(virtjob.AuthError, match="wrong bearer token"):
        virtjob.open(f"test+tcp://127.0.0.1:{tcp_daemon.port}/{host}")
    assert tcp_daemon.token is not None
    monkeypatch.setenv("VIRTJOB_TOKEN", tcp_daemon.token)
    with virtjob.open(f"test+tcp://127.0.0.1:{tcp_daemon.port}/{host}") as conn:
        assert conn.lookup_domain("test").is_active()
    with tcp_daemon.open(host) as conn:  # ?token_file=
        assert conn.lookup_domain("test").is_active()


def test_tls_with_a_self_signed_certificate(certificate: tuple[str, str]) -> None:
    host = new_host()
    with running(tcp=True, tls=certificate) as daemon:
        with daemon.open(host) as conn:  # ?ca_file= given
            dom = conn.lookup_domain("test")
            job = dom.dump_core_job(os.path.join(daemon.files, "core"))
            assert job.result(timeout=SAFETY) is None
        plain = daemon.uri(host, ca_file=None).replace("ca_file=None", "")
        with pytest.raises(virtjob.ConnectError, match="ca_file"):
            virtjob.open(plain)


@pytest.mark.parametrize("kind", ["outside", "dotdot", "symlink", "symlinked-dir", "directory"])
def test_paths_are_confined_to_allowed_directories(
    shared_daemon: DaemonProcess, host: str, tmp_path: os.PathLike[str], kind: str
) -> None:
    files = shared_daemon.files
    outside = os.path.join(str(tmp_path), "stolen")
    if kind == "outside":
        path = outside
    elif kind == "dotdot":
        path = os.path.join(files, "..", f"{host}-escaped")
    elif kind == "symlink":
        path = os.path.join(files, f"{host}-link")
        os.symlink(outside, path)
    elif kind == "symlinked-dir":
        link = os.path.join(files, f"{host}-dirlink")
        os.symlink(str(tmp_path), link)
        path = os.path.join(link, "stolen")
    else:
        path = files
    with shared_daemon.open(host) as conn:
        dom = conn.lookup_domain("test")
        expected: type[virtjob.VirtError] = virtjob.AccessDeniedError
        words = "outside the directories"
        if kind == "directory":  # inside, but a directory: named the same as by virtjob.files
            expected, words = virtjob.InvalidArgError, "is an allowed directory itself"
        with pytest.raises(expected, match=words):
            dom.save_job(path)
        with pytest.raises(expected):
            dom.dump_core_job(path)
        with pytest.raises(expected):
            conn.restore_job(path)
        assert dom.state() is virtjob.DomainState.RUNNING
        assert conn.list_jobs() == []
    assert not os.path.exists(outside)
    assert os.listdir(str(tmp_path)) == []


def test_dotdot_that_stays_inside_is_allowed(shared_daemon: DaemonProcess, host: str) -> None:
    os.makedirs(os.path.join(shared_daemon.files, host), exist_ok=True)
    path = os.path.join(shared_daemon.files, host, "..", f"{host}-inside")
    with shared_daemon.open(host, rate=1 << 32) as conn:
        conn.lookup_domain("test").dump_core(path)
    assert os.path.exists(os.path.join(shared_daemon.files, f"{host}-inside"))
