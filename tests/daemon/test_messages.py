"""Refusals that say what to give: a long poll's timeout, a path that is not UTF-8 text (in
the daemon, and in the CLI before anything is sent)."""

from __future__ import annotations

import os
import subprocess
import sys

import pydantic
import pytest

from virtjob.daemon.models import PathBody

from .conftest import SAFETY, DaemonProcess, new_host


@pytest.mark.parametrize("value", ["nan", "inf", "61", "-1", "soon"])
def test_a_bad_wait_timeout_says_it_takes_seconds_from_0_to_60(
    shared_daemon: DaemonProcess, value: str
) -> None:
    """timeout=nan used to answer 'Input should be less than or equal to 60'."""
    with shared_daemon.client() as client:
        job = client.post(
            f"/v1/hosts/test/{new_host()}/domains/test/dump-core",
            json={"path": os.path.join(shared_daemon.files, f"{new_host()}.core")},
        ).json()
        answer = client.get(f"/v1/jobs/{job['id']}/wait", params={"timeout": value})
        assert answer.status_code == 400
        message = answer.json()["message"]
        assert f"timeout must be a number of seconds from 0 to 60, not '{value}'" in message
        assert "Input should" not in message
        events = client.get(f"/v1/jobs/{job['id']}/events", params={"interval": value})
        assert "interval must be a number of seconds from 0 to 60" in events.json()["message"]
        client.get(f"/v1/jobs/{job['id']}/wait", params={"timeout": SAFETY})


def test_a_path_that_is_not_text_names_the_field_and_what_to_do(
    shared_daemon: DaemonProcess,
) -> None:
    """It used to say 'path: Value error, ... send valid text'."""
    host = new_host()
    body = '{"path": "%s/bad\\udcff.save"}' % shared_daemon.files  # noqa: UP031 - raw JSON
    with shared_daemon.client() as client:
        answer = client.post(
            f"/v1/hosts/test/{host}/domains/test/save",
            content=body,
            headers={"content-type": "application/json"},
        )
        assert answer.status_code == 400
        message = answer.json()["message"]
        assert "path is not valid UTF-8 text" in message
        assert "\\udcff at position" in message
        assert "rename the file" in message
        assert "Value error" not in message
        assert client.get(f"/v1/hosts/test/{host}/domains/test").json()["state"] == "running"


def test_the_text_check_keeps_its_root_cause() -> None:
    with pytest.raises(pydantic.ValidationError) as caught:
        PathBody.model_validate({"path": "/x/\udcff"})
    error = caught.value.errors()[0]["ctx"]["error"]
    assert "path is not valid UTF-8 text" in str(error)
    assert isinstance(error.__cause__, UnicodeEncodeError)


def test_the_cli_refuses_a_path_that_is_not_utf8_before_sending(
    shared_daemon: DaemonProcess,
) -> None:
    host = new_host()
    target = os.fsencode(shared_daemon.files) + b"/bad\xff.save"
    argv = [sys.executable, "-m", "virtjob.cli", "-c", shared_daemon.uri(host)]
    done = subprocess.run(
        [*argv, "save", "test", target], capture_output=True, timeout=SAFETY, check=False
    )
    assert done.returncode == 2, done.stderr
    told = done.stderr.decode()
    assert "the path is not valid UTF-8 text" in told
    assert "rename the file" in told
    assert not os.path.exists(target)
    with shared_daemon.client() as client:
        assert client.get(f"/v1/hosts/test/{host}/jobs").json() == []
        assert client.get("/v1/version").json()["hosts"].count(f"test:///{host}") == 0
