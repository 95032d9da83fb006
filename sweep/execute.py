"""Running a sweep's points on Dask: a LocalCluster sized to the machine by default, or an existing
cluster by address (a dask-jobqueue cluster on SLURM, HTCondor or PBS included).

Each point is one task, `sweep.points.run_point`, a pure function of the point whose Dask key is
the point's content key. A point that fails is retried once (on another worker when there is
one), then reported with its error; the finished points are on disk whatever happens to the rest.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from smartpix.errors import PipelineError

log = logging.getLogger(__name__)

SCHEDULER_ENV = "SMARTPIX_DASK_SCHEDULER"
RETRIES = 1
# every library below TensorFlow that starts its own thread pool: one thread per worker process
_ONE_THREAD = {name: "1" for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                                       "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", "NUMBA_NUM_THREADS")}
# TensorFlow's start-up messages, as smartpix.cli.quiet_libraries silences them in the CLI's process
_QUIET = {"TF_CPP_MIN_LOG_LEVEL": "3"}


@dataclass(frozen=True)
class Job:
    """One task: the function's keyword arguments, and the key that names the task and its result."""

    key: str
    kwargs: dict[str, Any]


@dataclass
class Outcome:
    key: str
    result: Any = None
    error: str | None = None


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


@contextlib.contextmanager
def client_for(scheduler: str | None = None, workers: int | None = None) -> Iterator[Any]:
    """A Dask client: of the scheduler at `scheduler` (or $SMARTPIX_DASK_SCHEDULER), else of a new
    LocalCluster of `workers` single-threaded worker processes (default: one per core)."""
    from distributed import Client, LocalCluster

    if not log.isEnabledFor(logging.DEBUG):
        # the scheduler's and nannies' lifecycle messages say nothing about the sweep
        for name in ("distributed", "distributed.scheduler", "distributed.nanny", "distributed.core",
                     "distributed.worker", "distributed.http.proxy"):
            logging.getLogger(name).setLevel(logging.ERROR)
    scheduler = scheduler or os.environ.get(SCHEDULER_ENV) or None
    if scheduler:
        try:
            client = Client(scheduler, timeout="30s")
        except (OSError, TimeoutError) as err:
            raise PipelineError(f"cannot reach the Dask scheduler at {scheduler}: {err}") from None
        with client:
            yield client
        return
    cores = available_cores()
    if workers is not None and workers < 1:
        raise PipelineError(f"--workers must be at least 1, got {workers}")
    n = min(workers or cores, cores)
    if workers and workers > cores:
        log.warning("%d workers asked for, %d cores here: starting %d", workers, cores, n)
    # a point's TensorFlow and g++ hold far more than Dask's default share of memory per worker
    # would allow before pausing; the machine's own limits apply instead
    with contextlib.ExitStack() as stack:
        cluster = stack.enter_context(LocalCluster(
            n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
            memory_limit=0, env={**_ONE_THREAD, **_QUIET}, silence_logs=logging.ERROR))
        client = stack.enter_context(Client(cluster))
        log.info("Dask LocalCluster: %d workers x 1 thread", n)
        yield client


def run_jobs(client: Any, function: Callable[..., Any], jobs: Sequence[Job], desc: str = "points",
             on_done: Callable[[Outcome], None] | None = None) -> list[Outcome]:
    """Run `function(**job.kwargs)` for every job on the client, with a progress bar; a job that
    fails is retried once, then reported with its error. Outcomes in the order of `jobs`."""
    from distributed import as_completed
    from tqdm import tqdm

    if not jobs:
        return []
    futures = {client.submit(_call, function, job.kwargs, key=job.key, retries=RETRIES, pure=True): job
               for job in jobs}
    outcomes: dict[str, Outcome] = {}
    with tqdm(total=len(jobs), desc=desc, unit="point", disable=None, smoothing=0) as bar:
        for future in as_completed(futures):
            job = futures[future]
            outcome = Outcome(job.key)
            try:
                outcome.result = future.result()
            except PipelineError as err:
                outcome.error = str(err)
            except Exception as err:  # noqa: BLE001 - a point's failure is its row's error, not the sweep's end
                outcome.error = f"{type(err).__name__}: {_first_line(err)}"
            if outcome.error:
                log.warning("point %s failed: %s", job.key[:12], outcome.error)
            outcomes[job.key] = outcome
            if on_done is not None:
                on_done(outcome)
            bar.update(1)
    return [outcomes[job.key] for job in jobs]


def _call(function: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    # the keyword arguments travel as one mapping: a task's own `key` must not collide with Dask's
    return function(**kwargs)


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else ""
