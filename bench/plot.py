"""Plot the scaling benchmarks of a run: ``python -m bench.plot [--json PATH] [--out PATH]``.

Reads a results file (default ``bench/results/latest.json``; it needs a run that included the
``scaling`` group, e.g. ``python -m bench --only scaling``) and draws, log-log against the
number of finished jobs, ours and the baseline of ``scaling.list_jobs@N``,
``scaling.lookup_info@N`` and ``scaling.memory@N`` into ``docs/performance-scaling.png``
(the last two are per call and per job: flat is the ideal; list_jobs gets a linear guide).

matplotlib is optional and not a dependency of virtjob: without it this prints why and exits 0.
This module is not a benchmark module (the harness skips it).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.harness import DEFAULT_JSON

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "docs" / "performance-scaling.png"
PANELS = (
    ("scaling.list_jobs", "list_jobs(): ms per call", "ms"),
    ("scaling.lookup_info", "lookup_job(id).info(): ns per call", "ns"),
    ("scaling.memory", "memory per finished job: bytes", "bytes"),
)
_SUFFIX = {"k": 1_000, "M": 1_000_000}


def _size(label: str) -> int:
    """``"10k"`` -> 10000."""
    if label and label[-1] in _SUFFIX:
        return int(float(label[:-1]) * _SUFFIX[label[-1]])
    return int(label)


Series = dict[str, list[tuple[int, float, float]]]
"""Benchmark prefix -> sorted (N, ours median, baseline median)."""


def read_series(data: dict[str, Any]) -> Series:
    """Pick the first-stat row of every ``scaling.*@N`` benchmark that ran, by prefix."""
    series: Series = {}
    for entry in data.get("benchmarks", []):
        name = str(entry.get("name", ""))
        prefix, at, label = name.partition("@")
        if not at or entry.get("status") != "ok" or not entry.get("rows"):
            continue
        row = entry["rows"][0]
        if row.get("ours") is None or row.get("baseline") is None:
            continue
        series.setdefault(prefix, []).append(
            (_size(label), float(row["ours"]), float(row["baseline"]))
        )
    for points in series.values():
        points.sort()
    return series


def plot(series: Series, out: Path, title: str) -> None:
    """Draw the panels of `PANELS` that have data into `out` (PNG)."""
    matplotlib: Any = importlib.import_module("matplotlib")
    matplotlib.use("Agg")
    plt: Any = importlib.import_module("matplotlib.pyplot")

    panels = [p for p in PANELS if p[0] in series]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.0), squeeze=False)
    for ax, (prefix, label, unit) in zip(axes[0], panels, strict=True):
        points = series[prefix]
        sizes = [p[0] for p in points]
        ax.plot(sizes, [p[1] for p in points], "o-", label="virtjob")
        ax.plot(sizes, [p[2] for p in points], "s--", label="baseline")
        if prefix.endswith("list_jobs"):  # per call over all N: linear is the ideal growth
            first_n, first_ours = points[0][0], points[0][1]
            ax.plot(
                sizes,
                [first_ours * n / first_n for n in sizes],
                ":",
                color="grey",
                label="linear in N (from the first point)",
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("finished jobs in the driver (N)")
        ax.set_ylabel(unit)
        ax.set_title(label, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m bench.plot", description=__doc__)
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="results to read")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="PNG to write")
    args = parser.parse_args(argv)
    try:
        importlib.import_module("matplotlib")
    except ImportError:
        print("bench.plot: matplotlib is not installed; no plot written", file=sys.stderr)
        return 0
    try:
        data = json.loads(args.json.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        print(f"bench.plot: cannot read {args.json}: {exc}", file=sys.stderr)
        return 1
    series = read_series(data)
    if not series:
        print(
            f"bench.plot: no scaling.*@N results in {args.json};"
            " run `python -m bench --only scaling` first",
            file=sys.stderr,
        )
        return 1
    machine = data.get("machine", {})
    quick = " (quick)" if data.get("config", {}).get("quick") else ""
    load = machine.get("load_average_1m")
    title = (
        f"virtjob scaling{quick}: {machine.get('cpu_model')}, {machine.get('cores')} cores,"
        f" {machine.get('python')}, {str(machine.get('git_commit') or '')[:12]},"
        f" {machine.get('date')}, load {load if load is None else f'{load:.2f}'}"
    )
    plot(series, args.out, title)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
