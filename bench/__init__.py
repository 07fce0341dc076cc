"""virtjob's benchmarks: each one runs *ours* and a *baseline* side by side in the same run.

Run them with ``make bench`` (``make bench QUICK=1`` for a fast, smaller pass), or directly::

    .venv/bin/python -m bench [--quick] [--only NAME_OR_GROUP_OR_GLOB]... [--list]
                              [--json PATH] [--compare OLD.json] [--strict]

For every benchmark the harness calls the two sides alternately (the first round ours first, the
next baseline first, and so on) for 5 rounds (3 with ``--quick``) after one unmeasured warm-up
call of each, pools what the rounds return, and prints one table row per statistic: ours,
baseline, ratio (ours / baseline), target, and whether it is met. The run is also written as
JSON to ``bench/results/latest.json`` (machine, git commit, every sample) so that two commits
can be compared (``--compare``). See ``docs/performance.md`` for what each number means.

Writing a benchmark
-------------------
Add a module ``bench/<topic>.py``; the harness imports every module of this package (except
``harness`` and ``__main__``), so registration is all it takes. A benchmark is a generator
function decorated with `benchmark`: it sets up, yields a `Pair` of two zero-argument callables,
and tears down after the last round (like a pytest fixture)::

    from collections.abc import Iterator
    import shutil, time

    from bench import Config, Pair, Target, benchmark


    def _need_qemu() -> str | None:
        return None if shutil.which("qemu-system-x86_64") else "qemu-system-x86_64 not found"


    @benchmark(
        "qemu.save",
        group="qemu",
        unit="s",
        ours="dom.save() of a 256 MiB guest",
        baseline="dd of 256 MiB to the same directory",
        target=Target.ratio_at_most(1.5),
        requires=_need_qemu,
    )
    def qemu_save(cfg: Config) -> Iterator[Pair]:
        size = cfg.pick(256 << 20, 64 << 20)      # smaller under --quick
        dom = ...                                 # expensive setup, once for all rounds

        def ours() -> float:
            t0 = time.perf_counter()
            ...
            return time.perf_counter() - t0       # one value, in `unit`

        def baseline() -> float: ...

        try:
            yield Pair(ours=ours, baseline=baseline)
        finally:
            ...                                   # always clean up

Rules of the road:

- Each side measures itself (``time.perf_counter()`` around the part that counts) and returns
  a float, or a list of floats when one call yields several samples (latencies). The harness
  pools the samples of all rounds and computes the `stats` named at registration over the pool:
  ``median`` (the default), ``mean``, ``min``, ``max`` or a percentile such as ``p99``.
- Lower is better unless ``higher_is_better=True`` (rates). The ratio is always ours / baseline.
- `Target.ratio_at_most(x)`, `Target.ratio_at_least(x)`, `Target.below(v)`, `Target.above(v)`;
  one target for the first stat, or a ``{stat: Target}`` mapping.
- ``requires`` is a callable returning why the benchmark cannot run here (a missing binary, no
  /dev/kvm) or None; a skipped benchmark is listed with its reason and the others still run.
  Setup may also ``raise Skip("reason")`` when it only finds out by trying.
- Import optional dependencies inside the setup function, not at module level, so a missing
  one skips that benchmark instead of breaking the import of the module.
- Use `Config.pick(full, quick)` for sizes; ``--quick`` must keep the whole run under a minute.
- The harness runs ``gc.collect()`` before each measured call; release everything you start
  (close job drivers, stop processes, remove files) in the ``finally`` after ``yield``.
- Names are ``group.what`` (``engine.jobs``); ``--only`` matches a name, a group or a glob.
"""

from bench.harness import Benchmark, Config, Measure, Pair, Skip, Target, benchmark

__all__ = ["Benchmark", "Config", "Measure", "Pair", "Skip", "Target", "benchmark"]
