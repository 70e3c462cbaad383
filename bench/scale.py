"""Fitting at scale: peak memory of large fits, and the bootstrap spread over worker processes.

(a) Peak RSS of fitting 50,000 synthetic runs by every method of SCALE_SPECS, each in a fresh
    process (`python -m bench.scale --child METHOD RUNS`) with BLAS on one thread, as a solver
    process runs, read from the child's rusage as it is reaped (os.wait4: ru_maxrss, the
    kernel's high-water mark of its resident set). A `baseline` child builds the runs and
    imports the fitters without fitting.
(b) A 200-resample bootstrap of 5,000 runs, split into chunks as server/fitting_rpcs.py
    splits it (count = min(resamples, max(4 x processes, resamples // 10)) chunks of resamples,
    `FitJob.bootstrap` per chunk), on a forkserver ProcessPoolExecutor of 2 workers and of 1
    worker, each worker with BLAS pinned to one thread (threadpoolctl, as the server's fit
    processes are, server/fit_pool.py), started and warmed before the clock starts. It measures
    the chunks' parallel gain; the server's own pool (pebble, niced) is timed in the serving
    section.

The synthetic runs follow Epoch's Chinchilla fit with 1% log-normal noise: N log-uniform over
1e7..1e10 parameters, D = N x (tokens per parameter log-uniform over 2..200).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

from bench.accuracy import AUTO, EPOCH_240, NAMED, MethodSpec
from bench.domain import log
from bench.load import machine_busy_cpu, process_tree_cpu
from planner.fitting.checkpoints import cluster_resamples
from planner.fitting.data import Array, Index, Runs
from planner.fitting.jobs import FitJob
from planner.laws import Law

REPO = Path(__file__).resolve().parent.parent
FIT_RUNS = 50_000
BOOTSTRAP_RUNS = 5_000
RESAMPLES = 200
PROCESSES = 2
RSS_TARGET = 1 << 30  # 1 GiB
BOOTSTRAP_TARGET = 60.0  # seconds
# A child above this address space fails with MemoryError instead of taking the shared machine.
CHILD_ADDRESS_SPACE = 8 << 30
# A child still fitting after this long is stopped (its peak so far is reported, marked).
CHILD_DEADLINE = 900.0
NOISE = 0.01
# The methods (the penalised Huber variants run the same code as huber).
SCALE_SPECS = (*NAMED, AUTO)


def synthetic_runs(count: int, seed: int = 0) -> tuple[Runs, Array]:
    """`count` runs on Epoch's surface with 1% multiplicative noise, and their compute 6ND."""
    rng = np.random.default_rng(seed)
    params = 10.0 ** rng.uniform(7.0, 10.0, count)
    tokens = params * 10.0 ** rng.uniform(np.log10(2.0), np.log10(200.0), count)
    loss = EPOCH_240.predict(params, tokens) * np.exp(rng.normal(0.0, NOISE, count))
    return Runs.of(params, tokens, loss), 6.0 * params * tokens


def spec_named(label: str) -> MethodSpec:
    return next(s for s in SCALE_SPECS if s.label == label)


# -- (a) peak memory, one fresh process per method -----------------------------------------------


@dataclass(frozen=True)
class MemoryRow:
    label: str
    runs: int
    peak_rss_bytes: int
    seconds: float  # the fit alone, as the child timed it (NaN if it did not finish)
    cpu_seconds: float  # the whole child's user + system CPU time
    chosen: str = ""
    failure: str = ""
    stopped: bool = False  # killed at the deadline: the peak is the peak so far


def _child(label: str, count: int) -> int:
    """Build the runs, fit by `label` (or not, for `baseline`), print a JSON line. BLAS runs on
    one thread, as in the server's solver processes."""
    threadpool_limits(1)
    runs, compute = synthetic_runs(count)
    begin = time.perf_counter()
    result: dict[str, object] = {"label": label}
    if label != "baseline":
        fitted = spec_named(label).job(runs, compute).validated().fit()
        result["law"] = fitted.law.to_mapping()
        if fitted.choice is not None:
            result["chosen"] = fitted.choice.chosen.label
    result["seconds"] = time.perf_counter() - begin
    print(json.dumps(result), flush=True)
    return 0


def _limit_address_space() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (CHILD_ADDRESS_SPACE, CHILD_ADDRESS_SPACE))


def peak_rss(label: str, count: int, deadline: float) -> MemoryRow:
    """Run the child for `label` and read its peak RSS from the kernel as it is reaped; a child
    still fitting after `deadline` seconds is killed and reports its peak so far."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.scale", "--child", label, str(count)],
            cwd=REPO,
            stdout=out,
            stderr=err,
            preexec_fn=_limit_address_space,
        )
        stop = time.monotonic() + deadline
        stopped = False
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > stop and not stopped:
                process.kill()
                stopped = True
            time.sleep(0.05)
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        printed, errors = out.read(), err.read()
    peak = usage.ru_maxrss * 1024  # KiB on Linux
    cpu = usage.ru_utime + usage.ru_stime
    if stopped:
        return MemoryRow(
            label,
            count,
            peak,
            float("nan"),
            cpu,
            failure=f"still fitting after {deadline:g} s; killed (peak so far)",
            stopped=True,
        )
    if process.returncode != 0:
        last = (errors.strip().splitlines() or [f"exit code {process.returncode}"])[-1]
        return MemoryRow(label, count, peak, float("nan"), cpu, failure=last)
    result = json.loads(printed.strip().splitlines()[-1])
    return MemoryRow(
        label, count, peak, float(result["seconds"]), cpu, str(result.get("chosen", ""))
    )


# -- (b) the bootstrap over worker processes -------------------------------------------------------


def _pin_blas() -> None:
    """Worker initializer, as server/fit_pool.py's: one BLAS thread per process."""
    threadpool_limits(1)


def _blas_threads() -> str:
    """Each BLAS library's thread count in this process."""
    return ", ".join(f"{i['internal_api']} {i['num_threads']}" for i in threadpool_info())


def _warm(hold: float) -> tuple[int, str]:
    """Held briefly so that every worker starts (and imports the fitters) before the clock."""
    import planner.fitting.jobs  # noqa: F401

    time.sleep(hold)
    return os.getpid(), _blas_threads()


def chunks(samples: Sequence[Index], processes: int) -> list[list[Index]]:
    """The server's split: min(resamples, max(4 x processes, resamples // 10)) chunks."""
    resamples = len(samples)
    count = min(resamples, max(4 * processes, resamples // 10))
    return [[samples[i] for i in part] for part in np.array_split(np.arange(resamples), count)]


@dataclass(frozen=True)
class BootstrapTiming:
    processes: int
    seconds: float
    failed: int
    blas_threads: str
    own_cpu: float | None  # CPU-seconds of this process and its workers meanwhile
    machine_cpu: float | None  # CPU-seconds of every process on the machine meanwhile

    @property
    def other_cores(self) -> float | None:
        """Cores other processes kept busy on average while this was timed."""
        if self.own_cpu is None or self.machine_cpu is None or self.seconds <= 0:
            return None
        return max(0.0, self.machine_cpu - self.own_cpu) / self.seconds


def time_bootstrap(
    job: FitJob, start: Law, samples: Sequence[Index], processes: int
) -> BootstrapTiming:
    """Wall time of the bootstrap's chunks on `processes` warm forkserver workers (the
    server's start method), with the CPU the workers and the rest of the machine used."""
    context = multiprocessing.get_context("forkserver")
    with ProcessPoolExecutor(processes, mp_context=context, initializer=_pin_blas) as pool:
        warm = [pool.submit(_warm, 0.5) for _ in range(processes)]
        threads = sorted({f.result()[1] for f in warm})
        parts = chunks(samples, PROCESSES)
        own, busy = process_tree_cpu(os.getpid()), machine_busy_cpu()
        begin = time.perf_counter()
        vectors = list(pool.map(job.bootstrap, parts, [start] * len(parts)))
        elapsed = time.perf_counter() - begin
        own_after, busy_after = process_tree_cpu(os.getpid()), machine_busy_cpu()
    stacked = np.concatenate(vectors)
    failed = int(np.sum(~np.all(np.isfinite(stacked), axis=1)))
    return BootstrapTiming(
        processes,
        elapsed,
        failed,
        "; ".join(threads),
        None if own is None or own_after is None else own_after - own,
        None if busy is None or busy_after is None else busy_after - busy,
    )


@dataclass(frozen=True)
class BootstrapBench:
    method: str
    runs: int
    resamples: int
    chunks: int
    parallel: BootstrapTiming
    single: BootstrapTiming

    @property
    def speedup(self) -> float:
        return self.single.seconds / self.parallel.seconds


@dataclass(frozen=True)
class ScaleBench:
    memory: tuple[MemoryRow, ...]
    bootstraps: tuple[BootstrapBench, ...]
    quick: bool


def bootstrap_bench(method: str, count: int, resamples: int) -> BootstrapBench:
    """The bootstrap on PROCESSES workers, then the same chunks on one worker."""
    runs, compute = synthetic_runs(count, seed=1)
    job = spec_named(method).job(runs, compute).validated()
    start = job.fit().law
    samples = cluster_resamples(job.selected, resamples, seed=2)
    log(f"scale: {resamples}-resample {method} bootstrap of {count:,} runs on {PROCESSES} workers")
    parallel = time_bootstrap(job, start, samples, PROCESSES)
    log(f"  {parallel.seconds:.1f} s; now on 1 worker")
    single = time_bootstrap(job, start, samples, 1)
    log(f"  {single.seconds:.1f} s: {single.seconds / parallel.seconds:.2f}x")
    return BootstrapBench(
        method, count, resamples, len(chunks(samples, PROCESSES)), parallel, single
    )


def run(quick: bool) -> ScaleBench:
    fit_runs = 300 if quick else FIT_RUNS
    memory = []
    for label in ("baseline", *(s.label for s in SCALE_SPECS)):
        log(f"scale: peak RSS of fitting {fit_runs:,} runs by {label} (fresh process)")
        row = peak_rss(label, fit_runs, 120.0 if quick else CHILD_DEADLINE)
        log(
            f"  {row.peak_rss_bytes / 2**20:,.0f} MiB, {row.seconds:.1f} s"
            + (f", failed: {row.failure}" if row.failure else "")
        )
        memory.append(row)
    boot_runs, resamples = (1_000, 20) if quick else (BOOTSTRAP_RUNS, RESAMPLES)
    bootstraps = tuple(bootstrap_bench(m, boot_runs, resamples) for m in ("vpnls", "huber"))
    return ScaleBench(tuple(memory), bootstraps, quick)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.scale")
    parser.add_argument("--child", nargs=2, metavar=("METHOD", "RUNS"), required=True)
    args = parser.parse_args(argv)
    label, count = args.child
    return _child(label, int(count))


if __name__ == "__main__":
    sys.exit(main())
