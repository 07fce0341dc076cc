"""Shell completion of job ids: offered as plain words the shells keep (issue 10, finding 18).

Each id used to come back with what the job does as its completion *type*, which bash and
zsh drop: completing ``virtjob job-info <TAB>`` offered nothing.
"""

from __future__ import annotations

from pathlib import Path

from click.shell_completion import BashComplete, ZshComplete

import virtjob
from tests.cli.helpers import FAST, SLOW, Daemon, cli_env, host_uri, run
from virtjob.cli import cli
from virtjob.cli.completion import COMPLETE_VAR


def complete(shell: str, words: str, cword: int) -> list[str]:
    """What a real ``virtjob`` process answers the shell's completion request with."""
    env = cli_env(
        **{COMPLETE_VAR: f"{shell}_complete", "COMP_WORDS": words, "COMP_CWORD": str(cword)}
    )
    result = run(env=env)
    assert result.code == 0, result.err
    assert result.err == ""
    return [line for line in result.out.splitlines() if line]


def test_job_ids_from_a_daemon_complete_in_bash_and_zsh(daemon: Daemon) -> None:
    uri = daemon.uri(FAST)
    done = run("-c", uri, "save", "--bg", "test", str(daemon.files / "a.save")).out.strip()
    slow = daemon.uri(SLOW)
    running = run("-c", slow, "dump", "--bg", "test", str(daemon.files / "b.core")).out.strip()
    try:
        assert complete("bash", f"virtjob -c {uri} job-info ", 4) == [f"plain,{done}"]
        assert complete("bash", f"virtjob -c {uri} job-wait {done[:4]}", 4) == [f"plain,{done}"]
        assert complete("bash", f"virtjob -c {uri} job-cancel zz", 4) == []
        assert complete("bash", f"virtjob -c {slow} job-cancel ", 4) == [f"plain,{running}"]
        # zsh: type, value, and what the job does as the description
        assert complete("zsh", f"virtjob -c {slow} job-info ", 4) == [
            "plain",
            running,
            "domain-dump-core test",
        ]
    finally:
        run("-c", slow, "job-cancel", running)


def test_job_ids_of_the_in_process_host_complete(tmp_path: Path) -> None:
    uri = host_uri(SLOW)
    with virtjob.open(uri) as conn:  # the same process: the host's jobs are here
        job = conn.lookup_domain("test").dump_core_job(str(tmp_path / "t.core"))
        try:
            bash = BashComplete(cli, {}, "virtjob", COMPLETE_VAR)
            items = bash.get_completions(["-c", uri, "job-info"], "")
            assert [bash.format_completion(item) for item in items] == [f"plain,{job.id}"]
            assert items[0].help == "domain-dump-core test"
            zsh = ZshComplete(cli, {}, "virtjob", COMPLETE_VAR)
            items = zsh.get_completions(["-c", uri, "job-wait"], job.id[:3])
            assert [zsh.format_completion(item) for item in items] == [
                f"plain\n{job.id}\ndomain-dump-core test"
            ]
            assert bash.get_completions(["-c", uri, "job-info"], "nope") == []
        finally:
            job.cancel()
            job.wait(timeout=10)
            job.destroy()
