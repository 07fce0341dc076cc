"""virtjobd's command line: a wrong option stops it at start (status 2) with a message naming
the option and its value, never a traceback."""

from __future__ import annotations

import os
import secrets

import pytest

from tests.daemon.conftest import start_fails


@pytest.mark.parametrize(
    ("option", "value", "wanted"),
    [
        ("--header-timeout", "0", "above 0 and at most 3600"),
        ("--header-timeout", "3601", "above 0 and at most 3600"),
        ("--header-timeout", "nan", "above 0 and at most 3600"),
        ("--max-connections", "0", "at least 1"),
        ("--retain-jobs", "-1", "0 or more"),
        ("--max-hosts", "0", "at least 1"),
        ("--max-domains", "0", "at least 1"),
        ("--max-networks", "0", "at least 1"),
        ("--shutdown-grace", "-1", "0 or more"),
        ("--shutdown-grace", "inf", "0 or more"),
    ],
)
def test_a_number_out_of_range_names_its_option(
    tmp_path: os.PathLike[str], option: str, value: str, wanted: str
) -> None:
    result = start_fails("--state-dir", str(tmp_path), option, value)
    assert result.returncode == 2, result.stderr
    assert f"virtjobd: {option} {value} is out of range" in result.stderr
    assert wanted in result.stderr
    assert os.listdir(str(tmp_path)) == []  # refused before the state directory is touched


def test_a_tls_key_that_is_not_the_certificates_is_refused_at_start(
    tmp_path: os.PathLike[str], certificate: tuple[str, str]
) -> None:
    """Both files exist but do not belong together: status 2 naming them, no traceback."""
    base = str(tmp_path)
    token = os.path.join(base, "token")
    fd = os.open(token, os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_urlsafe(24) + "\n")
    cert, _key = certificate
    wrong_key = cert  # a certificate is no private key
    state = os.path.join(base, "state")
    result = start_fails(
        "--state-dir", state, "--listen", "tcp:127.0.0.1:0", "--token-file", token,
        "--tls-cert", cert, "--tls-key", wrong_key,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert f"virtjobd: cannot use --tls-cert {cert} with --tls-key {wrong_key}" in result.stderr
    assert "Traceback" not in result.stderr
    assert not os.path.exists(state)
