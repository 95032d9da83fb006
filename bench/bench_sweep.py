"""Sweep throughput: the same design points run one after another in this process, then on a
2-worker Dask LocalCluster (1 thread each), each from an empty point folder and an empty
C-simulation cache; prints points per hour of both and their ratio. Then Yosys on every point of
the cluster run, and how well da4ml's LUT estimate agrees with it (Spearman rank correlation,
median and worst ratio estimate / Yosys).

    .venv/bin/python bench/bench_sweep.py [SWEEP_FILE] [--points N] [--no-yosys]

Without a sweep file, a small sweep (xysum, 4 precisions, 1 epoch, Catapult C++, UltraScale+ part) on a generated
dataset of 4 x 500 events.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sweep import execute, points  # noqa: E402
from sweep.pareto import agreement  # noqa: E402
from sweep.spec import Sweep, load_sweep, sweep_from_dict  # noqa: E402


def small_sweep(data_dir: Path) -> Sweep:
    bits = (2, 3, 4, 6)
    precision = [{"label": f"w{b}", "model.conv_weight_bits": b, "model.conv_activation_bits": b,
                  "model.dense_weight_bits": b, "model.dense_activation_bits": b} for b in bits]
    return sweep_from_dict({
        "name": "bench", "data_dir": str(data_dir),
        "base": {"model": {"architecture": "xysum", "hidden": 8, "n_filters": 3}, "training": {"epochs": 1},
                 # an FPGA part: Yosys then counts LUTs, what the estimate is in
                 "hardware": {"backend": "Catapult", "part": "xcvu13p-flga2577-2-e", "clock_period_ns": 5}},
        "evaluation": {"label_mean_events": 1000},
        "axes": {"precision": precision},
    })


def jobs_for(sweep: Sweep, work: Path, cache: Path) -> list[execute.Job]:
    jobs = []
    for point in sweep.points:
        key = points.point_key(point.spec, point.hardware, sweep.data_dir, sweep.evaluation)
        jobs.append(execute.Job(key, {"key": key, "spec": point.spec, "hardware": point.hardware,
                                      "data_dir": str(sweep.data_dir), "evaluation": sweep.evaluation,
                                      "points_dir": str(work / "points"), "cache_dir": str(cache)}))
    return jobs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", nargs="?", type=Path, default=None)
    parser.add_argument("--points", type=int, default=4, help="the first N points of the sweep")
    parser.add_argument("--no-yosys", dest="yosys", action="store_false")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.sweep is None:
            from train.generator import generate_dataset

            generate_dataset(root / "data", n_files=4, events_per_file=500, seed=3)
            sweep = small_sweep(root / "data")
        else:
            sweep = load_sweep(args.sweep)
        sweep = Sweep(sweep.name, sweep.source, sweep.points[: args.points], sweep.data_dir, sweep.evaluation)
        n = len(sweep.points)

        serial_jobs = jobs_for(sweep, root / "serial", root / "serial-cache")
        started = time.perf_counter()
        for job in serial_jobs:
            points.run_point(**job.kwargs)
        serial = time.perf_counter() - started

        cluster_jobs = jobs_for(sweep, root / "cluster", root / "cluster-cache")
        with execute.client_for(workers=2) as client:
            started = time.perf_counter()
            outcomes = execute.run_jobs(client, points.run_point, cluster_jobs)
            parallel = time.perf_counter() - started
            failed = [o for o in outcomes if o.error]
            if failed:
                print(f"{len(failed)} points failed on the cluster: {failed[0].error}")
                return 1
            print(f"{n} points, {execute.available_cores()} cores")
            print(f"serial (this process):          {serial:8.1f} s  {3600 * n / serial:7.1f} points/h  "
                  f"({serial / n:.1f} s per point)")
            print(f"LocalCluster, 2 workers x 1:    {parallel:8.1f} s  {3600 * n / parallel:7.1f} points/h")
            print(f"ratio cluster / serial:         {serial / parallel:8.2f}x")
            if args.yosys:
                yosys_jobs = [execute.Job(f"yosys-{job.key}", {"key": job.key, "points_dir": job.kwargs["points_dir"],
                                                               "part": job.kwargs["hardware"]["part"]})
                              for job in cluster_jobs]
                started = time.perf_counter()
                figures = execute.run_jobs(client, points.run_yosys, yosys_jobs, desc="yosys")
                seconds = time.perf_counter() - started
                estimates = [o.result["estimate"]["luts"] for o in outcomes]
                measured = [None if f.error else (f.result["luts"] if f.result["luts"] is not None
                                                  else f.result["gates"]) for f in figures]
                what = "LUTs" if figures and not figures[0].error and figures[0].result["luts"] is not None \
                    else "generic gate cells"
                result = agreement(estimates, measured)
                print(f"Yosys on {n} points in {seconds:.0f} s; estimate vs Yosys {what} over {result.points} points:")
                for (job, est, mea) in zip(cluster_jobs, estimates, measured):
                    print(f"  {job.key[:12]}  estimate {est:9.0f}  Yosys {mea if mea is not None else 'failed'}")
                rho = "n/a" if result.spearman is None else f"{result.spearman:.3f}"
                print(f"  Spearman {rho}, median ratio {result.median_ratio:.3g}, worst ratio {result.worst_ratio:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
