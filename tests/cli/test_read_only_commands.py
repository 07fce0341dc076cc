"""``domstate``, ``domjobinfo``, ``domjobabort``, and typos: a mistyped command is never
steered to one that changes state (issue 10, finding 18)."""

from __future__ import annotations

import json
from pathlib import Path

import click
import pytest

import virtjob
from tests.cli.conftest import Invoke
from tests.cli.helpers import SLOW, Daemon, host_uri, run
from virtjob.cli import cli
from virtjob.cli.main import READ_ONLY_COMMANDS
from virtjob.cli.output import ExitCode
from virtjob.jobs import JobState

# Commands that change a host: never offered for a typo, however close.
STATE_CHANGING = {
    "define",
    "undefine",
    "create",
    "start",
    "destroy",
    "suspend",
    "resume",
    "shutdown",
    "save",
    "restore",
    "dump",
    "net-define",
    "net-undefine",
    "net-create",
    "net-start",
    "net-destroy",
    "job-cancel",
    "job-wait",
    "job-destroy",
    "domjobabort",
}


def _typos(word: str) -> set[str]:
    """Every one-letter deletion, doubling and adjacent swap of `word`."""
    out = set()
    for i in range(len(word)):
        out.add(word[:i] + word[i + 1 :])
        out.add(word[:i] + word[i] + word[i:])
        if i + 1 < len(word):
            out.add(word[:i] + word[i + 1] + word[i] + word[i + 2 :])
    return out - {word}


def _suggested(stderr: str) -> list[str]:
    """The command names a "Did you mean" offers, in order."""
    if "Did you mean" not in stderr:
        return []
    offered = stderr.split("Did you mean", 1)[1].split("?", 1)[0]
    return [part.strip(" '") for part in offered.split(" or ")]


def test_every_command_is_either_read_only_or_state_changing() -> None:
    commands = set(cli.list_commands(click.Context(cli)))
    assert commands >= READ_ONLY_COMMANDS
    assert commands >= STATE_CHANGING
    assert not READ_ONLY_COMMANDS & STATE_CHANGING
    assert commands == READ_ONLY_COMMANDS | STATE_CHANGING, "classify the new command"


def test_domstate_typed_as_virsh_users_type_it() -> None:
    uri = host_uri()
    result = run("-c", uri, "domstate", "test")
    assert (result.code, result.out, result.err) == (0, "running\n", "")
    # issue 10: "No such command 'domstate'. Did you mean 'start'?"
    typo = run("-c", uri, "domstat", "test")
    assert typo.code == ExitCode.USAGE
    assert typo.out == ""
    assert typo.err == (
        "error: No such command 'domstat'. Did you mean 'domstate'?"
        " ('virtjob --help' lists the commands)\n"
    )


@pytest.mark.parametrize("typo", ["strat", "destory", "undefin", "sav", "resum", "net-strat"])
def test_a_typo_of_a_state_changing_command_gets_no_suggestion(typo: str) -> None:
    result = run(typo, "test")
    assert result.code == ExitCode.USAGE
    assert result.err == (
        f"error: No such command '{typo}'. ('virtjob --help' lists the commands)\n"
    )


def test_no_typo_of_any_command_is_steered_to_a_state_changing_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    offered: dict[str, list[str]] = {}
    names = cli.list_commands(click.Context(cli))
    for name in names:
        for typo in sorted(_typos(name) - set(names)):
            code = cli.run([typo, "test"])  # what the virtjob process runs, in this one
            err = capsys.readouterr().err
            assert code == ExitCode.USAGE, typo
            assert err.endswith("('virtjob --help' lists the commands)\n"), err
            offered[typo] = _suggested(err)
            assert not set(offered[typo]) & STATE_CHANGING, (typo, err)
            assert set(offered[typo]) <= READ_ONLY_COMMANDS
    # and the read-only ones are still found from their typos
    assert offered["lsit"] == ["list"]
    assert offered["dominf"][0] == "dominfo"
    assert offered["job-lsit"][0] == "job-list"
    assert offered["net-ifno"][0] == "net-info"
    assert offered["domsate"] == ["domstate"]
    for meant in ("strat", "destory", "undefin", "suspnd", "net-strat", "job-cancl"):
        assert offered.get(meant, []) == [], meant


def test_domstate_reason_and_json(invoke: Invoke) -> None:
    assert invoke("domstate", "test", "--reason").out == "running (booted)\n"
    assert json.loads(invoke("domstate", "test", "--json").out) == {
        "name": "test",
        "state": "running",
        "reason": "booted",
        "job": None,
    }
    assert invoke("suspend", "test").code == 0
    assert invoke("domstate", "test").out == "paused\n"
    assert invoke("domstate", "test", "--reason").out == "paused (user)\n"
    assert invoke("destroy", "test").code == 0
    assert invoke("domstate", "test", "--reason").out == "shutoff (destroyed)\n"
    missing = invoke("domstate", "nosuch")
    assert missing.code == ExitCode.NOT_FOUND
    assert missing.err.startswith("error: no domain 'nosuch'")
    assert invoke("domstate", "").code == ExitCode.USAGE


def test_the_job_of_a_domain_state_info_and_abort(invoke: Invoke, tmp_path: Path) -> None:
    uri = host_uri(SLOW)  # the save would take 32 s: it is still at work while we look
    target = tmp_path / "t.save"
    assert invoke("domjobinfo", "test", connect=uri).out == "No job is running on domain 'test'\n"
    assert invoke("domjobinfo", "test", "--json", connect=uri).out == "null\n"
    with virtjob.open(uri) as conn:
        job = conn.lookup_domain("test").save_job(str(target))
        try:
            state = invoke("domstate", "test", "--reason", connect=uri)
            assert state.out in ("running (saving)\n", "paused (saving)\n")
            as_json = json.loads(invoke("domstate", "test", "--json", connect=uri).out)
            assert (as_json["reason"], as_json["job"]) == ("saving", job.id)

            info = invoke("domjobinfo", "test", connect=uri)
            assert info.code == 0
            assert f"Id:               {job.id}" in info.out
            assert "Kind:             domain-save" in info.out
            document = json.loads(invoke("domjobinfo", "test", "--json", connect=uri).out)
            assert (document["id"], document["kind"]) == (job.id, "domain-save")

            aborted = invoke("domjobabort", "test", connect=uri)
            assert aborted.code == 0, aborted.err
            assert job.id in aborted.out
        finally:
            job.cancel()
        assert job.wait(timeout=10).state is JobState.CANCELLED
        assert not target.exists()
        assert invoke("domjobinfo", "test", connect=uri).out.startswith("No job is running")
        nothing = invoke("domjobabort", "test", connect=uri)
        assert nothing.code == ExitCode.FAILED
        assert nothing.err == "error: no job is running on domain 'test'; nothing to abort\n"
        assert invoke("domstate", "test", "--reason", connect=uri).out == "running (booted)\n"
        job.destroy()


def test_domjobinfo_and_domjobabort_through_the_daemon(daemon: Daemon) -> None:
    uri = daemon.uri(SLOW)
    job_id = run("-c", uri, "save", "--bg", "test", str(daemon.files / "d.save")).out.strip()
    assert run("-c", uri, "domstate", "test", "--reason").out.endswith("(saving)\n")
    assert json.loads(run("-c", uri, "domjobinfo", "test", "--json").out)["id"] == job_id
    assert run("-c", uri, "domjobabort", "test").code == 0
    waited = run("-c", uri, "job-wait", job_id)
    assert waited.code == ExitCode.CANCELLED
    assert run("-c", uri, "domjobinfo", "test").out == "No job is running on domain 'test'\n"
    assert not (daemon.files / "d.save").exists()
