"""Progress: a live bar on a terminal, plain lines in a pipe, nothing but JSON with --json."""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.cli.helpers import FAST, host_uri, run, run_pty

RATE = 512 << 20  # saving the 512 MiB domain `test` takes about a second


def test_bar_on_a_terminal(tmp_path: Path) -> None:
    target = tmp_path / "test.save"
    code, out = run_pty(["-c", host_uri(RATE), "save", "test", str(target)])
    assert code == 0, out
    job_id = re.search(r"job \S*?([0-9a-f]{12})", out)
    assert job_id is not None, out
    assert "\x1b[" in out  # drawn with terminal control sequences
    assert "domain-save test" in out
    assert "%" in out
    assert "MiB/s" in out
    assert "ETA" in out
    assert "100.0%" in out
    assert "succeeded" in out
    assert "elapsed" in out
    assert "━" in out  # the bar itself
    assert f"Domain 'test' saved to {target}" in out
    assert target.exists()


def test_plain_lines_in_a_pipe(tmp_path: Path) -> None:
    result = run("-c", host_uri(RATE), "save", "test", str(tmp_path / "test.save"))
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert "\x1b" not in result.out
    assert lines[-1] == f"Domain 'test' saved to {tmp_path / 'test.save'}"
    progress = lines[:-1]
    pattern = re.compile(r"^job [0-9a-f]{12} domain-save test: (queued|running|succeeded)")
    assert all(pattern.match(line) for line in progress), progress
    assert len({line.split()[1] for line in progress}) == 1  # one job id throughout
    final = progress[-1]
    assert "succeeded 100.0% 512.0 MiB/512.0 MiB" in final
    assert "MiB/s elapsed 0:01" in final
    # a line per change of state, else at most one a second: ~1 s of work
    running = [line for line in progress if ": running" in line]
    assert 1 <= len(running) <= 3, progress
    assert len(progress) <= len(running) + 2, progress


def test_json_output_is_only_the_document(tmp_path: Path) -> None:
    result = run("-c", host_uri(FAST), "dump", "test", str(tmp_path / "test.core"), "--json")
    assert result.code == 0, result.err
    job = json.loads(result.out)
    assert job["kind"] == "domain-dump-core"
    assert job["subject"] == "test"
    assert job["info"]["state"] == "succeeded"
    assert job["info"]["remaining"] == 0.0
    assert job["target"] == str(tmp_path / "test.core")


def test_bar_on_a_narrow_terminal(tmp_path: Path) -> None:
    lab = tmp_path / "lab.xml"
    lab.write_text("<network><name>lab</name><bridge name='virbr9'/></network>")
    code, out = run_pty(["-c", host_uri(), "net-create", str(lab)], columns=80)
    assert code == 0, out
    assert re.search(r"job \S*[0-9a-f]{12}\S*\s+network-create lab", out), out
    assert "100.0%" in out
    assert "Network 'lab' created" in out
