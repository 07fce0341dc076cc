"""``python -m bench``: run the benchmarks, print the table, write ``bench/results/latest.json``."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bench import harness


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Run virtjob's benchmarks: ours and a baseline side by side, medians, ratios.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="3 rounds and smaller sizes (under a minute)"
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help="run only benchmarks whose name or group matches (exact or glob; repeatable,"
        " comma-separated)",
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    parser.add_argument("--rounds", type=int, help="measured rounds per side (default 5, quick 3)")
    parser.add_argument(
        "--json",
        type=Path,
        default=harness.DEFAULT_JSON,
        metavar="PATH",
        help="where to write the results (default: bench/results/latest.json)",
    )
    parser.add_argument(
        "--compare",
        type=Path,
        metavar="OLD_JSON",
        help="show the ratios of an earlier run (e.g. a copy of latest.json) next to these",
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit with status 1 when a target is missed"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the selected benchmarks; return the exit status (0 ok, 1 error/missed, 2 usage)."""
    args = _parser().parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    failures = harness.discover()
    for module, error in failures:
        log(f"ERROR: cannot import {module}: {error}")
    patterns = [p for arg in args.only for p in arg.split(",") if p]
    try:
        chosen = harness.select(harness.registered(), patterns)
    except LookupError as exc:
        names = ", ".join(b.name for b in harness.registered())
        log(f"no benchmark matches {exc.args[0]!r}; known: {names}")
        return 2
    if args.list:
        for b in chosen:
            target = ", ".join(f"{s} {t.describe(b.unit)}" for s, t in b.targets.items()) or "-"
            print(f"{b.name}  [{b.group}, {b.unit}, target: {target}]")
            print(f"    ours:     {b.ours}")
            print(f"    baseline: {b.baseline}")
        return 0
    previous = None
    if args.compare is not None:
        try:
            previous = harness.previous_ratios(args.compare)
        except (OSError, ValueError) as exc:
            log(f"cannot read {args.compare}: {exc}")
            return 2
    rounds = args.rounds if args.rounds is not None else (3 if args.quick else 5)
    if rounds < 1:
        log("--rounds must be at least 1")
        return 2
    cfg = harness.Config(quick=args.quick, rounds=rounds, warmup=1)

    machine = harness.machine_info()
    started = time.perf_counter()
    outcomes = harness.run_all(chosen, cfg, log)
    seconds = time.perf_counter() - started

    data = harness.to_json(outcomes, cfg, seconds, machine)
    print()
    print(harness.table(outcomes, previous))
    print(f"\n{rounds} rounds{' (quick)' if args.quick else ''}, {seconds:.1f} s in all")
    print(f"machine: {harness.describe_machine(data['machine'])}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    print(f"results written to {args.json}")

    errored = bool(failures) or any(o.status == "error" for o in outcomes)
    missed = any(r.met is False for o in outcomes for r in o.rows)
    return 1 if errored or (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
