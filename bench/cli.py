"""CLI start-up: a ``virtjob`` command as a user runs it, beside the same ``virsh`` command.

- ``cli.list``: wall time of ``virtjob -c test:///default list`` vs
  ``virsh -c test:///default list``.
- ``cli.dominfo``: ``virtjob -c test:///default dominfo test`` vs
  ``virsh -c test:///default dominfo test``.

Each call of a side starts its command as a new process 20 times (8 with ``--quick``), one
after the other, and returns the 20 wall times in ms: fork and exec, the interpreter's start,
imports, opening the in-process test host, printing, exiting. ``virtjob`` is the console
script installed next to this Python (``.venv/bin/virtjob``), run with the bytecode of its
modules cached, as an installed package has it (pip compiles it at install time): the
benchmark removes ``PYTHONDONTWRITEBYTECODE`` from the command's environment and points
``PYTHONPYCACHEPREFIX`` at a temporary directory, filled by an unmeasured first run.

``virsh`` comes from libvirt-clients; when it is absent and this runs as root on a system
with apt-get, the benchmark installs it (``apt-get install -y libvirt-clients``, after an
``apt-get update`` if the first try fails), else it is skipped saying why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

from bench import Config, Pair, Skip, Target, benchmark

URI = "test:///default"
PACKAGE = "libvirt-clients"
APT_TIMEOUT = 600.0
RUN_TIMEOUT = 30.0


def _apt_get(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(
        ["apt-get", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=APT_TIMEOUT,
        check=False,
    )


def find_virsh() -> str:
    """The path of ``virsh``, installed from libvirt-clients first if it is absent and this
    process may (root, apt-get present); `Skip` saying why when there is none."""
    found = shutil.which("virsh")
    if found is not None:
        return found
    if os.geteuid() != 0:
        raise Skip(f"virsh not found; not root, so not installing it (apt-get install {PACKAGE})")
    if shutil.which("apt-get") is None:
        raise Skip(f"virsh not found and no apt-get to install it; install {PACKAGE}")
    install = ("install", "-y", "-qq", "--no-install-recommends", PACKAGE)
    print(f"bench.cli: virsh not found; apt-get install {PACKAGE}", file=sys.stderr)
    done = _apt_get(*install)
    if done.returncode != 0:  # a stale or empty package list: refresh it and try once more
        _apt_get("update", "-qq")
        done = _apt_get(*install)
    found = shutil.which("virsh")
    if found is None:
        last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise Skip(f"virsh not found and apt-get install {PACKAGE} failed: {last[0]}")
    return found


def find_virtjob() -> str:
    """The installed ``virtjob`` console script next to this interpreter; `Skip` if absent."""
    script = Path(sys.executable).with_name("virtjob")
    if not script.exists():
        raise Skip(f"no virtjob console script at {script}; install virtjob (pip install -e .)")
    return str(script)


def _run(argv: Sequence[str], env: dict[str, str]) -> str:
    """Run `argv` to its end; its stdout. Raises `RuntimeError` if it fails: a command that
    fails measures nothing worth comparing."""
    done = subprocess.run(
        argv, capture_output=True, text=True, env=env, timeout=RUN_TIMEOUT, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def _wall_times(argv: Sequence[str], env: dict[str, str], times: int) -> list[float]:
    """Start `argv` `times` times in a row; the wall time of each, in ms.

    The end of each process is awaited with a blocking ``waitpid`` (``Popen.wait()`` without
    a timeout), a watchdog timer killing it after `RUN_TIMEOUT`: ``subprocess.run(...,
    timeout=...)`` polls instead, sleeping 1, 2, 4... up to 50 ms between looks, so the times
    it gives are rounded up to 15, 31, 63, 113... ms and not worth comparing.
    """
    samples = []
    for _ in range(times):
        t0 = time.perf_counter()
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        watchdog = threading.Timer(RUN_TIMEOUT, proc.kill)
        watchdog.start()
        try:
            code = proc.wait()
        finally:
            watchdog.cancel()
        samples.append((time.perf_counter() - t0) * 1000)
        if code != 0:
            raise RuntimeError(f"{' '.join(argv)} exited {code}")
    return samples


def _side_by_side(cfg: Config, *command: str) -> Iterator[Pair]:
    """The pair for ``virtjob -c URI COMMAND`` and ``virsh -c URI COMMAND``."""
    virsh = find_virsh()
    virtjob = find_virtjob()
    times = cfg.pick(20, 8)
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("VIRTJOB_DEFAULT_URI", "LIBVIRT_DEFAULT_URI", "PYTHONDONTWRITEBYTECODE")
    }
    with tempfile.TemporaryDirectory(prefix="vjbench-pyc-") as cache:
        env = {**base, "PYTHONPYCACHEPREFIX": cache}
        ours = [virtjob, "-c", URI, *command]
        baseline = [virsh, "-c", URI, *command]
        # Both answer (and fill the bytecode cache) before anything is measured.
        if "test" not in _run(ours, env) or "test" not in _run(baseline, env):
            raise RuntimeError(f"{command[0]} does not show the domain 'test' on {URI}")
        yield Pair(
            ours=lambda: _wall_times(ours, env, times),
            baseline=lambda: _wall_times(baseline, env, times),
        )


@benchmark(
    "cli.list",
    group="cli",
    unit="ms",
    ours="virtjob -c test:///default list: a new process, wall time (20 per call)",
    baseline="virsh -c test:///default list, the same way",
    stats=("median", "min"),
    target=Target.ratio_at_most(4.0),
)
def cli_list(cfg: Config) -> Iterator[Pair]:
    """Wall time of ``virtjob list`` beside ``virsh list``."""
    yield from _side_by_side(cfg, "list")


@benchmark(
    "cli.dominfo",
    group="cli",
    unit="ms",
    ours="virtjob -c test:///default dominfo test: a new process, wall time (20 per call)",
    baseline="virsh -c test:///default dominfo test, the same way",
    stats=("median", "min"),
    target=Target.ratio_at_most(4.0),
)
def cli_dominfo(cfg: Config) -> Iterator[Pair]:
    """Wall time of ``virtjob dominfo test`` beside ``virsh dominfo test``."""
    yield from _side_by_side(cfg, "dominfo", "test")
