"""Network commands against in-process test hosts."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import Invoke
from tests.cli.helpers import LAB_XML, host_uri, run, write

NETWORK_KEYS = {"name", "uuid", "active", "persistent", "bridge", "forward_mode"}


def test_net_list_and_info(invoke: Invoke) -> None:
    listed = invoke("net-list")
    assert listed.code == 0
    assert "default" in listed.out
    assert "active" in listed.out
    networks = json.loads(invoke("net-list", "--json").out)
    assert len(networks) == 1
    assert set(networks[0]) == NETWORK_KEYS
    assert networks[0]["bridge"] == "virbr0"
    assert networks[0]["forward_mode"] == "nat"
    info = json.loads(invoke("net-info", "default", "--json").out)
    assert info == networks[0]
    assert "Bridge:" in invoke("net-info", "default").out
    assert "<network>" in invoke("net-dumpxml", "default").out


def test_network_life_cycle_in_one_process(invoke: Invoke, tmp_path: Path) -> None:
    lab = write(tmp_path / "lab.xml", LAB_XML)
    assert invoke("net-define", lab).out == f"Network 'lab' defined from {lab}\n"
    assert invoke("net-list", "--name").out == "default\n"
    assert invoke("net-list", "--all", "--name").out == "default\nlab\n"
    assert invoke("net-list", "--inactive", "--name").out == "lab\n"
    assert json.loads(invoke("net-list", "--all", "--name", "--json").out) == ["default", "lab"]
    assert json.loads(invoke("net-list", "--name", "--json").out) == ["default"]
    started = invoke("net-start", "lab")
    assert started.code == 0
    assert started.out.endswith("Network 'lab' started\n")
    assert json.loads(invoke("net-info", "lab", "--json").out)["active"] is True
    assert invoke("net-destroy", "lab").out == "Network 'lab' destroyed\n"
    assert invoke("net-undefine", "lab").code == 0
    assert invoke("net-info", "lab").code == 4


def test_net_create_in_a_subprocess(tmp_path: Path) -> None:
    created = run("-c", host_uri(), "net-create", write(tmp_path / "lab.xml", LAB_XML))
    assert created.code == 0, created.err
    assert "network-create lab: succeeded" in created.out
    assert created.out.splitlines()[-1].startswith("Network 'lab' created from")


def test_net_create_json(invoke: Invoke) -> None:
    job = json.loads(invoke("net-create", "-", "--json", stdin=LAB_XML).out)
    assert job["kind"] == "network-create"
    assert job["info"]["state"] == "succeeded"
    assert job["result"]["type"] == "network"
    assert job["result"]["name"] == "lab"


def test_network_errors(invoke: Invoke) -> None:
    missing = invoke("net-info", "nosuch")
    assert missing.code == 4
    assert missing.err.startswith("error: ")
    assert "nosuch" in missing.err
    assert invoke("net-start", "default").code == 1  # already active
