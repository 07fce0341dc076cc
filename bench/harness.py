"""The benchmark harness: registration, side-by-side runs, statistics, the table and the JSON.

See the package docstring (`bench/__init__.py`) for how to write a benchmark.
"""

from __future__ import annotations

import contextlib
import datetime
import fnmatch
import gc
import importlib
import json
import math
import os
import pkgutil
import platform
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

T = TypeVar("T")

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
DEFAULT_JSON = RESULTS_DIR / "latest.json"
_NOT_BENCHMARK_MODULES = frozenset({"harness", "__main__", "plot"})
SCHEMA_VERSION = 1

# -- what a benchmark declares ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Config:
    """How the harness runs this time; handed to every benchmark's setup.

    `rounds` measured calls of each side (after `warmup` unmeasured ones). Use `pick` to choose
    a size: ``n = cfg.pick(10_000, 2_000)``.
    """

    quick: bool
    rounds: int
    warmup: int

    def pick(self, full: T, quick: T) -> T:
        """Return `quick` under ``--quick``, else `full`."""
        return quick if self.quick else full


Measure = Callable[[], float | Sequence[float]]
"""One side of a benchmark: does the work once, returns what it measured in the benchmark's unit.

A single float (a time, a rate) or a list of samples (e.g. one latency per try); the harness
pools what every round returns and computes the benchmark's `stats` over the pool.
"""


@dataclass(frozen=True, slots=True)
class Pair:
    """The two sides of a benchmark, run alternately by the harness."""

    ours: Measure
    baseline: Measure


Setup = Callable[[Config], Iterator[Pair]]
"""A generator function: set up, ``yield Pair(...)`` once, tear down (like a pytest fixture)."""

Requires = Callable[[], str | None]
"""Returns why the benchmark cannot run here (e.g. ``"qemu-system-x86_64 not found"``), or None."""


class Skip(Exception):
    """Raise from a benchmark's setup (or a side) to skip it with a reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Target:
    """What a benchmark promises: a bound on ours/baseline, or on ours alone."""

    kind: Literal["ratio_at_most", "ratio_at_least", "below", "above"]
    value: float

    @classmethod
    def ratio_at_most(cls, value: float) -> Target:
        """ours / baseline <= `value` (for times: "at most value x slower")."""
        return cls("ratio_at_most", value)

    @classmethod
    def ratio_at_least(cls, value: float) -> Target:
        """ours / baseline >= `value` (for rates: "at least value x as fast")."""
        return cls("ratio_at_least", value)

    @classmethod
    def below(cls, value: float) -> Target:
        """ours < `value`, in the benchmark's unit."""
        return cls("below", value)

    @classmethod
    def above(cls, value: float) -> Target:
        """ours > `value`, in the benchmark's unit."""
        return cls("above", value)

    def met(self, ours: float, ratio: float) -> bool:
        """Return whether the measured values meet the target."""
        if self.kind == "ratio_at_most":
            return ratio <= self.value
        if self.kind == "ratio_at_least":
            return ratio >= self.value
        if self.kind == "below":
            return ours < self.value
        return ours > self.value

    def describe(self, unit: str) -> str:
        """Return the target as the table shows it, e.g. ``<= 1.5x`` or ``< 50 ms``."""
        value = f"{self.value:g}"
        return {
            "ratio_at_most": f"<= {value}x",
            "ratio_at_least": f">= {value}x",
            "below": f"< {value} {unit}",
            "above": f"> {value} {unit}",
        }[self.kind]


@dataclass(frozen=True, slots=True)
class Benchmark:
    """A registered benchmark (see `benchmark`)."""

    name: str
    group: str
    setup: Setup
    unit: str
    ours: str
    baseline: str
    stats: tuple[str, ...]
    targets: Mapping[str, Target]
    requires: Requires | None
    higher_is_better: bool


_REGISTRY: dict[str, Benchmark] = {}


def benchmark(
    name: str,
    *,
    group: str,
    unit: str,
    ours: str,
    baseline: str,
    stats: Sequence[str] = ("median",),
    target: Target | Mapping[str, Target] | None = None,
    requires: Requires | None = None,
    higher_is_better: bool = False,
) -> Callable[[Setup], Setup]:
    """Register the decorated setup generator as benchmark `name` (see the package docstring).

    `ours` and `baseline` say in words what each side does. `stats` are computed over the pooled
    samples of each side, one table row each: ``median``, ``mean``, ``min``, ``max`` or ``pNN``
    (a percentile, e.g. ``p99``). A single `target` applies to the first stat; a mapping gives
    one per stat. Raises `ValueError` for a duplicate name or an unknown stat.
    """
    for stat in stats:
        _check_stat(stat)
    if target is None:
        targets: dict[str, Target] = {}
    elif isinstance(target, Target):
        targets = {stats[0]: target}
    else:
        targets = dict(target)
    unknown = set(targets) - set(stats)
    if unknown:
        raise ValueError(f"benchmark {name!r}: targets for stats it does not compute: {unknown}")

    def register(setup: Setup) -> Setup:
        if name in _REGISTRY:
            raise ValueError(f"benchmark {name!r} is registered twice")
        _REGISTRY[name] = Benchmark(
            name=name,
            group=group,
            setup=setup,
            unit=unit,
            ours=ours,
            baseline=baseline,
            stats=tuple(stats),
            targets=targets,
            requires=requires,
            higher_is_better=higher_is_better,
        )
        return setup

    return register


def registered() -> list[Benchmark]:
    """Return every registered benchmark, in registration order."""
    return list(_REGISTRY.values())


def discover() -> list[tuple[str, str]]:
    """Import every benchmark module of the `bench` package; return (module, error) failures."""
    failures: list[tuple[str, str]] = []
    for module in sorted(pkgutil.iter_modules([str(BENCH_DIR)]), key=lambda m: m.name):
        if module.name in _NOT_BENCHMARK_MODULES or module.name.startswith("_"):
            continue
        try:
            importlib.import_module(f"bench.{module.name}")
        except Exception as exc:
            failures.append((f"bench.{module.name}", f"{type(exc).__name__}: {exc}"))
    return failures


def select(benchmarks: Sequence[Benchmark], patterns: Sequence[str]) -> list[Benchmark]:
    """Keep benchmarks whose name or group matches a pattern (exact, or a shell glob).

    No patterns keeps everything. Raises `LookupError` naming a pattern that matches nothing.
    """
    if not patterns:
        return list(benchmarks)
    chosen: list[Benchmark] = []
    for pattern in patterns:
        hits = [
            b
            for b in benchmarks
            if fnmatch.fnmatchcase(b.name, pattern) or fnmatch.fnmatchcase(b.group, pattern)
        ]
        if not hits:
            raise LookupError(pattern)
        chosen.extend(b for b in hits if b not in chosen)
    return [b for b in benchmarks if b in chosen]  # keep registration order


# -- statistics ------------------------------------------------------------------------------


def _check_stat(stat: str) -> None:
    if stat in {"median", "mean", "min", "max"}:
        return
    if stat.startswith("p"):
        with contextlib.suppress(ValueError):
            if 0 <= float(stat[1:]) <= 100:
                return
    raise ValueError(f"unknown stat {stat!r}: use median, mean, min, max or pNN")


def percentile(samples: Sequence[float], pct: float) -> float:
    """Return the `pct` percentile of `samples`, interpolating linearly between ranks."""
    ordered = sorted(samples)
    if not ordered:
        return math.nan
    pos = (len(ordered) - 1) * pct / 100.0
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def compute(stat: str, samples: Sequence[float]) -> float:
    """Return statistic `stat` (``median``, ``mean``, ``min``, ``max``, ``pNN``) of `samples`."""
    if not samples:
        return math.nan
    if stat == "median":
        return percentile(samples, 50.0)
    if stat == "mean":
        return math.fsum(samples) / len(samples)
    if stat == "min":
        return min(samples)
    if stat == "max":
        return max(samples)
    return percentile(samples, float(stat[1:]))


# -- running ---------------------------------------------------------------------------------


@dataclass(slots=True)
class Row:
    """One line of the table: one statistic of one benchmark."""

    stat: str
    ours: float
    baseline: float
    ratio: float
    target: str | None
    met: bool | None


@dataclass(slots=True)
class Outcome:
    """What happened to one benchmark in a run."""

    benchmark: Benchmark
    status: Literal["ok", "skipped", "error"]
    reason: str | None = None
    rows: list[Row] = field(default_factory=list)
    ours_samples: list[float] = field(default_factory=list)
    baseline_samples: list[float] = field(default_factory=list)
    seconds: float = 0.0


def _call(measure: Measure, into: list[float]) -> None:
    gc.collect()
    value = measure()
    if isinstance(value, int | float):
        into.append(float(value))
    else:
        into.extend(float(v) for v in value)


def run_benchmark(bench: Benchmark, cfg: Config) -> Outcome:
    """Run one benchmark: warm up, then `cfg.rounds` rounds of both sides, alternating order.

    Never raises for the benchmark's own failures: they come back as a skipped or error outcome.
    """
    if bench.requires is not None:
        reason = bench.requires()
        if reason is not None:
            return Outcome(bench, "skipped", reason)
    outcome = Outcome(bench, "ok")
    started = time.perf_counter()
    try:
        with contextlib.contextmanager(bench.setup)(cfg) as pair:
            scratch: list[float] = []
            for _ in range(cfg.warmup):
                _call(pair.ours, scratch)
                _call(pair.baseline, scratch)
            for i in range(cfg.rounds):
                # Alternate which side goes first, so neither always runs on a warmer machine.
                if i % 2 == 0:
                    _call(pair.ours, outcome.ours_samples)
                    _call(pair.baseline, outcome.baseline_samples)
                else:
                    _call(pair.baseline, outcome.baseline_samples)
                    _call(pair.ours, outcome.ours_samples)
    except Skip as exc:
        outcome.status, outcome.reason = "skipped", exc.reason
    except Exception as exc:
        outcome.status, outcome.reason = "error", f"{type(exc).__name__}: {exc}"
        traceback.print_exc(file=sys.stderr)
    outcome.seconds = time.perf_counter() - started
    if outcome.status == "ok":
        outcome.rows = _rows(bench, outcome.ours_samples, outcome.baseline_samples)
    return outcome


def _rows(bench: Benchmark, ours: Sequence[float], baseline: Sequence[float]) -> list[Row]:
    rows: list[Row] = []
    for stat in bench.stats:
        o, b = compute(stat, ours), compute(stat, baseline)
        ratio = o / b if b else math.inf
        target = bench.targets.get(stat)
        rows.append(
            Row(
                stat=stat,
                ours=o,
                baseline=b,
                ratio=ratio,
                target=target.describe(bench.unit) if target else None,
                met=target.met(o, ratio) if target else None,
            )
        )
    return rows


def run_all(
    benchmarks: Iterable[Benchmark], cfg: Config, log: Callable[[str], None]
) -> list[Outcome]:
    """Run each benchmark in turn, logging one line per benchmark through `log`."""
    outcomes: list[Outcome] = []
    for bench in benchmarks:
        log(f"{bench.name} ...")
        outcome = run_benchmark(bench, cfg)
        if outcome.status == "ok":
            log(f"{bench.name}: done in {outcome.seconds:.1f} s")
        else:
            log(f"{bench.name}: {outcome.status.upper()}: {outcome.reason}")
        outcomes.append(outcome)
    return outcomes


# -- reporting -------------------------------------------------------------------------------


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "n/a"
    if math.isinf(value):
        return "inf"
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:,.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 0.1 or magnitude == 0:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _fmt_ratio(ratio: float) -> str:
    return f"{ratio:.2f}x" if math.isfinite(ratio) else _fmt(ratio)


def _row_label(bench: Benchmark, row: Row) -> str:
    return bench.name if len(bench.stats) == 1 else f"{bench.name} {row.stat}"


def table(outcomes: Sequence[Outcome], previous: Mapping[str, float] | None = None) -> str:
    """Return the results table (plain text, Markdown-compatible), then skips and errors.

    `previous` maps ``"name stat"`` to the ratio of an earlier run, shown as an extra column.
    """
    header = ["benchmark", "unit", "ours", "baseline", "ratio", "target", "met"]
    if previous is not None:
        header.append("prev ratio")
    lines: list[list[str]] = []
    for outcome in outcomes:
        bench = outcome.benchmark
        for row in outcome.rows:
            met = "-" if row.met is None else ("yes" if row.met else "NO")
            cells = [
                _row_label(bench, row),
                bench.unit + (" (higher is better)" if bench.higher_is_better else ""),
                _fmt(row.ours),
                _fmt(row.baseline),
                _fmt_ratio(row.ratio),
                row.target or "-",
                met,
            ]
            if previous is not None:
                prev = previous.get(f"{bench.name} {row.stat}")
                cells.append("-" if prev is None else _fmt_ratio(prev))
            lines.append(cells)
    widths = [max([len(h), *(len(c[i]) for c in lines)]) for i, h in enumerate(header)]
    numeric = {2, 3, 4}

    def render(cells: Sequence[str]) -> str:
        parts = [
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(parts) + " |"

    out = [render(header)]
    out.append(
        "|"
        + "|".join(
            "-" * (w + 1) + ":" if i in numeric else "-" * (w + 2) for i, w in enumerate(widths)
        )
        + "|"
    )
    out.extend(render(cells) for cells in lines)
    not_run = [o for o in outcomes if o.status != "ok"]
    if not_run:
        out.append("")
    for outcome in not_run:
        what = "skipped" if outcome.status == "skipped" else "ERROR"
        out.append(f"{what}: {outcome.benchmark.name}: {outcome.reason}")
    return "\n".join(out)


def describe_machine(machine: Mapping[str, Any]) -> str:
    """Return `machine_info()` as one line for the report."""
    memory = machine.get("memory_bytes")
    parts = [
        str(machine.get("cpu_model")),
        f"{machine.get('cores')} cores",
        f"{memory / 2**30:.1f} GiB" if memory else "memory unknown",
        str(machine.get("os")),
        str(machine.get("python")),
    ]
    commit = machine.get("git_commit")
    if commit:
        parts.append(f"commit {commit[:12]}{' (dirty)' if machine.get('git_dirty') else ''}")
    load = machine.get("load_average_1m")
    if load is not None:
        parts.append(f"load average {load:.2f} before the run")
    return ", ".join(parts)


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args],
            cwd=BENCH_DIR.parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def machine_info() -> dict[str, Any]:
    """Return what the numbers depend on: CPU, cores, memory, OS, Python, date, commit, load.

    Call it before the run: the load average then shows what else the machine was doing.
    """
    cpu_model = platform.processor() or platform.machine()
    cpuinfo = _read("/proc/cpuinfo") or ""
    for line in cpuinfo.splitlines():
        if line.startswith("model name"):
            cpu_model = line.partition(":")[2].strip()
            break
    memory: int | None = None
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            memory = int(line.split()[1]) * 1024
            break
    os_name = platform.system()
    for line in (_read("/etc/os-release") or "").splitlines():
        if line.startswith("PRETTY_NAME="):
            os_name = line.partition("=")[2].strip().strip('"')
            break
    commit = _git("rev-parse", "HEAD")
    status = _git("status", "--porcelain") if commit else None
    return {
        "cpu_model": cpu_model,
        "cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_bytes": memory,
        "os": os_name,
        "kernel": platform.release(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "git_commit": commit,
        "git_dirty": bool(status) if status is not None else None,
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def to_json(
    outcomes: Sequence[Outcome], cfg: Config, seconds: float, machine: Mapping[str, Any]
) -> dict[str, Any]:
    """Return the run as JSON-ready data (schema `SCHEMA_VERSION`), `machine` as measured."""

    def num(value: float) -> float | None:
        return None if math.isnan(value) or math.isinf(value) else value

    return {
        "schema": SCHEMA_VERSION,
        "machine": dict(machine),
        "config": {"quick": cfg.quick, "rounds": cfg.rounds, "warmup": cfg.warmup},
        "seconds": round(seconds, 3),
        "benchmarks": [
            {
                "name": o.benchmark.name,
                "group": o.benchmark.group,
                "unit": o.benchmark.unit,
                "higher_is_better": o.benchmark.higher_is_better,
                "ours": o.benchmark.ours,
                "baseline": o.benchmark.baseline,
                "status": o.status,
                "reason": o.reason,
                "seconds": round(o.seconds, 3),
                "rows": [
                    {
                        "stat": r.stat,
                        "ours": num(r.ours),
                        "baseline": num(r.baseline),
                        "ratio": num(r.ratio),
                        "target": r.target,
                        "met": r.met,
                    }
                    for r in o.rows
                ],
                "samples": {"ours": o.ours_samples, "baseline": o.baseline_samples},
            }
            for o in outcomes
        ],
    }


def previous_ratios(path: Path) -> dict[str, float]:
    """Read an earlier JSON result as ``{"name stat": ratio}``; `OSError`/`ValueError` if bad."""
    data = json.loads(path.read_text(encoding="utf-8"))
    ratios: dict[str, float] = {}
    for entry in data.get("benchmarks", []):
        for row in entry.get("rows", []):
            if row.get("ratio") is not None:
                ratios[f"{entry['name']} {row['stat']}"] = float(row["ratio"])
    return ratios
