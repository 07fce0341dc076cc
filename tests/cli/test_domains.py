"""Domain commands against in-process test hosts."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import Invoke
from tests.cli.helpers import FAST, WEB_XML, host_uri, run, write

DOMAIN_KEYS = {
    "name",
    "uuid",
    "id",
    "state",
    "active",
    "persistent",
    "memory",
    "current_memory",
    "vcpus",
    "os_type",
}


def test_list_shows_running_domains_by_default_and_all_with_all(
    invoke: Invoke, tmp_path: Path
) -> None:
    assert invoke("define", write(tmp_path / "web.xml", WEB_XML)).code == 0
    running = invoke("list")
    assert running.code == 0
    assert "test" in running.out
    assert "running" in running.out
    assert "web" not in running.out
    everything = invoke("list", "--all")
    assert "web" in everything.out
    assert "shutoff" in everything.out
    assert invoke("list", "--inactive", "--name").out == "web\n"
    assert invoke("list", "--name").out == "test\n"


def test_list_name_with_json_gives_a_json_array_of_names(invoke: Invoke, tmp_path: Path) -> None:
    assert invoke("define", write(tmp_path / "web.xml", WEB_XML)).code == 0
    assert json.loads(invoke("list", "--json", "--name").out) == ["test"]
    assert json.loads(invoke("list", "--all", "--json", "--name").out) == ["test", "web"]
    assert json.loads(invoke("list", "--inactive", "--json", "--name").out) == ["web"]


def test_list_json_schema(invoke: Invoke, tmp_path: Path) -> None:
    invoke("define", write(tmp_path / "web.xml", WEB_XML))
    domains = json.loads(invoke("list", "--all", "--json").out)
    assert [d["name"] for d in domains] == ["test", "web"]
    for domain in domains:
        assert set(domain) == DOMAIN_KEYS
    test, web = domains
    assert test["state"] == "running"
    assert test["active"] is True
    assert test["id"] == 1
    assert test["memory"] == 512 << 20
    assert test["vcpus"] == 2
    assert test["persistent"] is True
    assert web["state"] == "shutoff"
    assert web["id"] is None
    assert web["memory"] == 64 << 20


def test_dominfo_text_and_json(invoke: Invoke) -> None:
    text = invoke("dominfo", "test")
    assert text.code == 0
    assert "State:" in text.out
    assert "running" in text.out
    assert "512.0 MiB" in text.out
    info = json.loads(invoke("dominfo", "test", "--json").out)
    assert set(info) == DOMAIN_KEYS
    assert info["name"] == "test"
    by_uuid = json.loads(invoke("dominfo", info["uuid"], "--json").out)
    assert by_uuid == info


def test_dumpxml_round_trips_through_define(invoke: Invoke, tmp_path: Path) -> None:
    xml = invoke("dumpxml", "test").out
    assert xml.startswith("<domain")
    assert "<name>test</name>" in xml
    copy = xml.replace("<name>test</name>", "<name>copy</name>")
    copy = "\n".join(line for line in copy.splitlines() if "<uuid>" not in line)
    defined = invoke("define", "-", stdin=copy)
    assert defined.code == 0
    assert "Domain 'copy' defined from <stdin>" in defined.out


def test_domain_life_cycle_in_one_process(invoke: Invoke, tmp_path: Path) -> None:
    assert "Domain 'web' defined" in invoke("define", write(tmp_path / "web.xml", WEB_XML)).out
    started = invoke("start", "web")
    assert started.code == 0
    assert "Domain 'web' started" in started.out
    assert "domain-start web: succeeded" in started.out  # the plain progress lines
    assert "running" in invoke("dominfo", "web").out
    assert invoke("suspend", "web").out == "Domain 'web' suspended\n"
    assert json.loads(invoke("dominfo", "web", "--json").out)["state"] == "paused"
    assert invoke("resume", "web").code == 0
    assert invoke("shutdown", "web").code == 0
    assert json.loads(invoke("dominfo", "web", "--json").out)["state"] == "shutoff"
    assert invoke("start", "web").code == 0
    assert invoke("destroy", "web").out == "Domain 'web' destroyed\n"
    assert invoke("undefine", "web").code == 0
    gone = invoke("dominfo", "web")
    assert gone.code == 4
    assert gone.err.startswith("error: no domain 'web'")


def test_operations_refused_in_the_wrong_state(invoke: Invoke) -> None:
    refused = invoke("resume", "test")
    assert refused.code == 1
    assert refused.err == "error: cannot resume domain 'test': it is running, not paused\n"
    assert invoke("start", "test").code == 1


def test_create_from_stdin_reports_the_new_domain(invoke: Invoke) -> None:
    created = invoke("create", "-", stdin=WEB_XML)
    assert created.code == 0
    assert "Domain 'web' created from <stdin>" in created.out
    listed = json.loads(invoke("list", "--json").out)
    assert {d["name"]: d["persistent"] for d in listed} == {"test": True, "web": False}


def test_save_restore_and_dump_with_json(invoke: Invoke, tmp_path: Path) -> None:
    core = tmp_path / "test.core"
    dumped = json.loads(invoke("dump", "test", str(core), "--json").out)
    assert dumped["info"]["state"] == "succeeded"
    assert dumped["kind"] == "domain-dump-core"
    assert core.stat().st_size > 0
    target = tmp_path / "test.save"
    saved = invoke("save", "test", str(target), "--json")
    job = json.loads(saved.out)  # --json: nothing but the document on stdout
    assert saved.code == 0
    assert job["info"]["state"] == "succeeded"
    assert job["info"]["percent"] == 100.0
    assert job["info"]["processed"] == job["info"]["total"] == 512 << 20
    assert job["result"] is None
    assert job["target"] == str(target)
    assert target.exists()
    assert json.loads(invoke("dominfo", "test", "--json").out)["state"] == "shutoff"
    restored = json.loads(invoke("restore", str(target), "--json").out)
    assert restored["result"]["type"] == "domain"
    assert restored["result"]["name"] == "test"
    assert invoke("job-list", "--json").out.strip() == "[]"  # foreground jobs are released


def test_save_and_restore_in_separate_processes(tmp_path: Path) -> None:
    target = tmp_path / "test.save"
    saved = run("-c", host_uri(FAST), "save", "test", str(target))
    assert saved.code == 0, saved.err
    assert saved.out.splitlines()[-1] == f"Domain 'test' saved to {target}"
    # A new process has a new in-process host whose `test` runs: restore is refused...
    refused = run("-c", host_uri(FAST), "restore", str(target))
    assert refused.code == 1
    assert "already running" in refused.err
    # ...until it is destroyed there, which one invocation cannot do; the file itself is good:
    corrupt = tmp_path / "bad.save"
    corrupt.write_bytes(target.read_bytes()[:-10])
    bad = run("-c", host_uri(FAST), "restore", str(corrupt))
    assert bad.code == 1
    assert bad.err.startswith("error: ")
    assert len(bad.err.splitlines()) == 1


def test_save_to_a_missing_directory_fails_at_once(invoke: Invoke, tmp_path: Path) -> None:
    failed = invoke("save", "test", str(tmp_path / "nope" / "test.save"))
    assert failed.code == 1
    assert "does not exist" in failed.err
    assert json.loads(invoke("dominfo", "test", "--json").out)["state"] == "running"
