"""What a writer may put inside one host is bounded: ``--max-domains``, ``--max-networks``,
and the state database gives the space of undefined definitions back."""

from __future__ import annotations

import os

from .conftest import DaemonProcess, running

BIG = "x" * (900 << 10)
"""A 0.9 MB domain description."""


def _xml(name: str, description: str = "") -> str:
    return (
        f"<domain type='test'><name>{name}</name><description>{description}</description>"
        f"<memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>"
    )


def _net(name: str, bridge: str) -> str:
    return f"<network><name>{name}</name><bridge name='{bridge}'/></network>"


def test_max_domains_and_networks_refuse_with_a_clear_message() -> None:
    """200 domain definitions of 0.9 MB each used to be accepted on one host (+170 MB)."""
    extra = ["--max-domains", "3", "--max-networks", "2"]
    with running(extra=extra) as daemon, daemon.client() as client:
        base = "/v1/hosts/test/m1"
        for name in ("a", "b"):  # with the built-in 'test': 3
            assert client.post(f"{base}/domains", json={"xml": _xml(name)}).status_code == 201
        for refused in (
            client.post(f"{base}/domains", json={"xml": _xml("c")}),
            client.post(f"{base}/domains/create", json={"xml": _xml("c")}),
        ):
            assert refused.status_code == 409, refused.text
            message = refused.json()["message"]
            assert "test:///m1 already has 3 domains" in message
            assert "--max-domains (3)" in message
        # redefining one that exists adds nothing: let through
        xml_a = client.get(f"{base}/domains/a/xml").json()["xml"]
        assert client.post(f"{base}/domains", json={"xml": xml_a}).status_code == 201
        assert client.delete(f"{base}/domains/a").status_code == 204
        assert client.post(f"{base}/domains", json={"xml": _xml("c")}).status_code == 201

        assert client.post(f"{base}/networks", json={"xml": _net("n1", "vjm1")}).status_code == 201
        refused = client.post(f"{base}/networks", json={"xml": _net("n2", "vjm2")})
        assert refused.status_code == 409
        assert "--max-networks (2)" in refused.json()["message"]


def _db_bytes(daemon: DaemonProcess) -> int:
    path = os.path.join(daemon.state_dir, "virtjobd.sqlite3")
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))


def test_the_database_shrinks_once_large_definitions_are_undefined() -> None:
    """Undefining 0.9 MB definitions used to leave the database file as large as before."""
    with running() as daemon, daemon.client() as client:
        base = "/v1/hosts/test/v1"
        assert client.post(f"{base}/domains/test/suspend").status_code == 204
        empty = _db_bytes(daemon)
        names = [f"d{i}" for i in range(12)]
        for name in names:
            answer = client.post(f"{base}/domains", json={"xml": _xml(name, BIG)})
            assert answer.status_code == 201, answer.text
        assert _db_bytes(daemon) > empty + 10 * len(BIG)
        for name in names:
            assert client.delete(f"{base}/domains/{name}").status_code == 204
        assert _db_bytes(daemon) < empty + 2 * len(BIG)
