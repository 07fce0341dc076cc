"""Bad input: one clear line on stderr, no traceback, the documented exit code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli.conftest import Invoke
from tests.cli.helpers import WEB_XML, Result, cli_env, host_uri, run, write
from virtjob.defaults import daemon_socket

BAD_XML = "<domain type='test'>\n  <name>web</name\n</domain>\n"


def one_line(text: str) -> str:
    lines = text.splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


def test_unknown_command_suggests_the_right_one() -> None:
    result = run("lsit")
    assert result.code == 2
    assert result.out == ""
    line = one_line(result.err)
    assert line.startswith("error: No such command 'lsit'")
    assert "list" in line


def test_missing_argument_and_unknown_option() -> None:
    missing = run("dominfo")
    assert missing.code == 2
    assert "DOMAIN" in one_line(missing.err)
    unknown = run("list", "--bogus")
    assert unknown.code == 2
    assert "--bogus" in one_line(unknown.err)


def test_unknown_domain_is_not_found() -> None:
    result = run("-c", host_uri(), "dominfo", "nosuch")
    assert result.code == 4
    assert one_line(result.err).startswith("error: no domain 'nosuch'")


@pytest.mark.parametrize("command", ["define", "create", "net-define", "net-create"])
def test_unreadable_xml_file(invoke: Invoke, tmp_path: Path, command: str) -> None:
    result = invoke(command, str(tmp_path / "missing.xml"))
    assert result.code == 2
    assert "cannot read XML file" in one_line(result.err)
    assert "missing.xml" in result.err


def test_unreadable_xml_file_in_a_subprocess(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    result = run("-c", host_uri(), "define", str(not_a_dir / "web.xml"))
    assert result.code == 2
    assert one_line(result.err).endswith("Not a directory; check the path and its permissions")


def test_invalid_xml_names_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.xml", BAD_XML)
    result = run("-c", host_uri(), "define", path)
    assert result.code == 1
    assert one_line(result.err).startswith(f"error: {path}:3:1: malformed XML")


@pytest.mark.parametrize("command", ["define", "create"])
def test_wrong_document_kind(invoke: Invoke, command: str) -> None:
    result = invoke(command, "-", stdin="<network><name>n</name></network>")
    assert result.code == 1
    assert one_line(result.err).startswith("error: <stdin>:1:1: the root element is <network>")


def test_not_utf8(invoke: Invoke, tmp_path: Path) -> None:
    path = tmp_path / "latin1.xml"
    path.write_bytes(WEB_XML.replace("web", "w\xe9b").encode("latin-1"))
    result = invoke("define", str(path))
    assert result.code == 1
    assert "not UTF-8" in one_line(result.err)


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("nonsense", "is malformed"),
        ("test://somehost/default", "without a network transport"),
        ("bogus:///default", "no driver named 'bogus'"),
        ("test:///default?speed=1", "unknown parameter 'speed'"),
    ],
)
def test_bad_uri_is_a_usage_error(uri: str, expected: str) -> None:
    result = run("-c", uri, "list")
    assert result.code == 2
    line = one_line(result.err)
    assert line.startswith("error: ")
    assert expected in line


def test_bad_uri_from_the_environment() -> None:
    result = run("list", env=cli_env(VIRTJOB_DEFAULT_URI="nonsense"))
    assert result.code == 2
    line = one_line(result.err)
    assert "is malformed" in line
    assert line.startswith("error: $VIRTJOB_DEFAULT_URI is not a valid URI: ")
    assert "'-c'" not in line  # no -c was given


def test_default_uri_comes_from_the_environment() -> None:
    result = run("list", "--name", env=cli_env(VIRTJOB_DEFAULT_URI=host_uri()))
    assert result.code == 0
    assert result.out == "test\n"


def test_debug_shows_the_traceback() -> None:
    result = run("--debug", "-c", host_uri(), "dominfo", "nosuch")
    assert result.code == 4
    assert "Traceback" in result.err
    assert "NoDomainError" in result.err
    assert result.err.splitlines()[-1].startswith("error: no domain 'nosuch'")


@pytest.mark.parametrize(
    "args",
    [
        ["save", "--bg", "test", "{tmp}/never.save"],
        ["create", "--bg", "-"],
        ["restore", "--bg", "{tmp}/never.save"],
    ],
)
def test_bg_is_refused_in_process(invoke: Invoke, args: list[str], tmp_path: Path) -> None:
    result = invoke(*[arg.format(tmp=tmp_path) for arg in args], stdin=WEB_XML)
    assert result.code == 2
    line = one_line(result.err)
    assert "--bg needs a daemon" in line
    assert "die" in line
    assert "start the daemon with 'virtjobd &'" in line
    socket = daemon_socket()  # where virtjobd listens unless told otherwise
    assert line.endswith(f"+unix:///{line.split('+unix:///')[1].split('?')[0]}?socket={socket}'")
    assert "$UID" not in line
    assert not (tmp_path / "never.save").exists()


QEMU_XML = """\
<domain type='qemu'>
  <name>vm</name>
  <memory unit='MiB'>64</memory>
  <vcpu>1</vcpu>
  <os><type>hvm</type></os>
</domain>
"""


@pytest.mark.parametrize(
    "args",
    [["start", "vm"], ["create", "-"], ["restore", "{tmp}/never.save"]],
    ids=["start", "create", "restore"],
)
def test_guests_are_not_started_in_process_on_qemu(tmp_path: Path, args: list[str]) -> None:
    """They would die with the command; this refusal comes before any QEMU is started."""
    env = cli_env(VIRTJOB_STATE_DIR=str(tmp_path))
    args = [arg.format(tmp=tmp_path) for arg in args]
    result = run("-c", "qemu:///session", *args, stdin=QEMU_XML, env=env)
    assert result.code == 2
    line = one_line(result.err)
    assert line.startswith(f"error: {args[0]} refused on qemu:///session: ")
    assert "stop when this command exits" in line
    assert "'virtjobd &'" in line
    assert f"-c 'qemu+unix:///session?socket={tmp_path}/virtjobd.sock'" in line
    assert result.out == ""
    assert not (tmp_path / "qemu" / "logs" / "vm.log").exists()


def test_the_rest_works_in_process_on_qemu(tmp_path: Path) -> None:
    env = cli_env(VIRTJOB_STATE_DIR=str(tmp_path))

    def qemu(*args: str, stdin: str | None = None) -> Result:
        return run("-c", "qemu:///session", *args, stdin=stdin, env=env)

    defined = qemu("define", "-", stdin=QEMU_XML)
    assert defined.code == 0, defined.err
    assert qemu("list", "--all", "--name").out == "vm\n"
    assert json.loads(qemu("dominfo", "vm", "--json").out)["state"] == "shutoff"
    assert "<name>vm</name>" in qemu("dumpxml", "vm").out
    assert qemu("undefine", "vm").code == 0
    assert qemu("list", "--all", "--name").out == ""


@pytest.mark.parametrize("command", ["define", "create", "net-define", "net-create"])
def test_an_empty_xml_path_asks_for_a_file(invoke: Invoke, command: str) -> None:
    result = invoke(command, "")
    assert result.code == 2
    line = one_line(result.err)
    assert "name an XML file, or '-' to read stdin" in line
    assert "directory" not in line


@pytest.mark.parametrize(
    "args",
    [
        ["job-info", ""],
        ["job-wait", " "],
        ["job-cancel", ""],
        ["job-destroy", ""],
        ["dominfo", ""],
        ["net-info", ""],
    ],
)
def test_an_empty_name_or_id_is_a_usage_error(args: list[str]) -> None:
    result = run("-c", host_uri(), *args)
    assert result.code == 2
    assert "must not be empty" in one_line(result.err)


@pytest.mark.parametrize(
    "args", [["dump", "test", ""], ["save", "test", ""], ["restore", ""]], ids=lambda a: a[0]
)
def test_an_empty_file_path_is_refused_as_empty(args: list[str]) -> None:
    """An empty FILE used to become the working directory ("...to /cwd: it is a directory")."""
    result = run("-c", host_uri(), *args)
    assert result.code == 2
    line = one_line(result.err)
    assert "FILE" in line
    assert "must not be empty" in line
    assert "directory" not in line


@pytest.mark.parametrize("command", ["list", "net-list"])
def test_all_and_inactive_exclude_each_other(command: str) -> None:
    result = run("-c", host_uri(), command, "--all", "--inactive")
    assert result.code == 2
    line = one_line(result.err)
    assert "--all and --inactive exclude each other" in line
    assert result.out == ""


def test_job_commands_on_unknown_ids(invoke: Invoke) -> None:
    for command in ("job-info", "job-wait", "job-cancel", "job-destroy"):
        result = invoke(command, "0123456789ab")
        assert result.code == 4, command
        line = one_line(result.err)
        assert line.startswith("error: no job with id '0123456789ab'")
        # in-process: say why, and where such jobs live
        assert "keeps no jobs between commands" in line
        assert "live in a daemon" in line
        assert "+unix:///" in line
    assert invoke("job-list", "--json").out.strip() == "[]"
