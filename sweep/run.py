"""`smartpix sweep`: the co-design study in one command. Resolution against silicon over a grid of
design points (sweeps/<name>.yml), every point trained, evaluated, converted to firmware and
proven bit-exact in C simulation, with a resource estimate; Yosys for the Pareto points on request.

Points run on Dask (see sweep.execute) and are kept by content key in
build/sweeps/<sweep>/points/<key>/, so an interrupted sweep resumes where it stopped and a widened
grid runs only the new points. The report goes to build/reports/sweep/<sweep>/.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smartpix import paths
from smartpix.errors import PipelineError
from sweep import execute, points, report
from sweep.spec import DEFAULT_SWEEP_DIR, Sweep, find_sweep, load_sweep

log = logging.getLogger(__name__)

DEFAULT_SWEEP = DEFAULT_SWEEP_DIR / "default.yml"
DEFAULT_WORK = paths.BUILD / "sweeps"
DEFAULT_REPORTS = paths.REPORTS / "sweep"


@dataclass
class SweepResult:
    sweep: Sweep
    rows: list[dict[str, Any]]
    report_dir: Path
    seconds: float
    ran: int  # points computed by this run (the others were on disk)

    @property
    def all_exact(self) -> bool:
        return all(r["verdict"] == "exact" for r in self.rows)


def run_sweep(sweep: Sweep, work_dir: Path = DEFAULT_WORK, report_dir: Path | None = None,
              scheduler: str | None = None, workers: int | None = None, yosys: bool = False,
              cache_dir: Path | None = None, plots: bool = True) -> SweepResult:
    """Run every point of `sweep` that is not on disk yet, then write the report."""
    data_dir = Path(sweep.data_dir)
    if not data_dir.is_dir():
        raise PipelineError(f"{sweep.source or sweep.name}: key 'data_dir': {data_dir} does not exist "
                            "(make data generates the default dataset)")
    points_dir = Path(work_dir) / sweep.name / "points"
    report_dir = Path(report_dir) if report_dir is not None else DEFAULT_REPORTS / sweep.name
    keys = [points.point_key(p.spec, p.hardware, data_dir, sweep.evaluation) for p in sweep.points]
    records: dict[str, dict[str, Any] | None] = {k: points.load_point(points_dir, k) for k in keys}
    todo = [execute.Job(k, {"key": k, "spec": p.spec, "hardware": p.hardware, "data_dir": str(data_dir),
                            "evaluation": sweep.evaluation, "points_dir": str(points_dir),
                            "cache_dir": str(cache_dir) if cache_dir else None})
            for k, p in _unique(zip(keys, sweep.points)) if records[k] is None]
    log.info("sweep %s: %d points, %d on disk, %d to run", sweep.name, len(keys), len(keys) - len(todo), len(todo))
    errors: dict[str, str] = {}
    started = time.perf_counter()
    need_client = bool(todo) or yosys
    if need_client:
        with execute.client_for(scheduler, workers) as client:
            labels = {k: p.label for k, p in zip(keys, sweep.points)}

            def finished(outcome: execute.Outcome) -> None:
                if outcome.result is not None:
                    r = outcome.result
                    log.info("%s: %s, x %.2f um, %d LUT (estimate), %.0f s", labels[outcome.key], r["verdict"],
                             r["resolution"]["x"]["width_68"], r["estimate"]["luts"], r["seconds"]["total"])

            for outcome in execute.run_jobs(client, points.run_point, todo, on_done=finished):
                records[outcome.key] = outcome.result
                if outcome.error:
                    errors[outcome.key] = outcome.error
            rows = _rows(sweep, keys, records, errors, points_dir)
            if yosys:
                _synthesize_fronts(client, sweep, keys, rows, points_dir)
                rows = _rows(sweep, keys, records, errors, points_dir)
    else:
        rows = _rows(sweep, keys, records, errors, points_dir)
    seconds = time.perf_counter() - started
    notes = [f"{len(todo)} points computed in {seconds:.0f} s by this run, {len(keys) - len(todo)} read from "
             f"{points_dir}"]
    report.write_report(rows, report_dir, sweep.name, notes, plots=plots)
    return SweepResult(sweep, rows, report_dir, seconds, len(todo))


def _unique(pairs):
    """Points that are the same design (equal keys) run once."""
    seen = set()
    for key, point in pairs:
        if key not in seen:
            seen.add(key)
            yield key, point


def _rows(sweep: Sweep, keys: list[str], records: dict[str, Any], errors: dict[str, str],
          points_dir: Path) -> list[dict[str, Any]]:
    import json

    rows = []
    for key, point in zip(keys, sweep.points):
        yosys_file = points.point_dir(points_dir, key) / "yosys.json"
        figures = json.loads(yosys_file.read_text()) if yosys_file.is_file() else None
        rows.append(report.point_row(point.label, key, records.get(key), errors.get(key), point.coordinates, figures))
    return rows


def _synthesize_fronts(client: Any, sweep: Sweep, keys: list[str], rows: list[dict[str, Any]],
                       points_dir: Path) -> None:
    """Yosys for the points on any front: synthesis is the slow part, and only they are choices."""
    on_front = {label for labels in report.mark_fronts(rows).values() for label in labels}
    jobs, seen = [], set()
    for key, point, row in zip(keys, sweep.points, rows):
        if point.label in on_front and key not in seen:
            seen.add(key)
            jobs.append(execute.Job(f"yosys-{key}", {"key": key, "points_dir": str(points_dir),
                                                     "part": point.hardware["part"]}))
    log.info("Yosys for the %d points on the Pareto fronts", len(jobs))
    for outcome in execute.run_jobs(client, points.run_yosys, jobs, desc="yosys"):
        if outcome.error:
            log.warning("yosys of %s failed: %s", outcome.key, outcome.error)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sweep", nargs="?", default=str(DEFAULT_SWEEP),
                        help="sweep file, or the name of one in sweeps/ (default sweeps/default.yml)")
    parser.add_argument("--scheduler", default=None,
                        help=f"address of a running Dask scheduler (default ${execute.SCHEDULER_ENV}, else a "
                             "LocalCluster on this machine)")
    parser.add_argument("--workers", type=int, default=None,
                        help="LocalCluster worker processes, one thread each (default: one per core)")
    parser.add_argument("--yosys", action="store_true", help="Yosys figures for the points on the Pareto fronts")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK,
                        help="points are kept in <work-dir>/<sweep>/points/<key>/")
    parser.add_argument("--out", type=Path, default=None, help="report folder (default build/reports/sweep/<sweep>)")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="compiled C-simulation testbenches, shared by the points (default build/cache/csim)")
    parser.add_argument("--no-plots", dest="plots", action="store_false", help="write the tables only")


def run(args: argparse.Namespace) -> int:
    # the CLI sets its own packages' loggers; this one speaks at the same level
    logging.getLogger("sweep").setLevel(logging.getLogger("smartpix").level)
    sweep = load_sweep(find_sweep(args.sweep))
    result = run_sweep(sweep, args.work_dir, args.out, scheduler=args.scheduler, workers=args.workers,
                       yosys=args.yosys, cache_dir=args.cache_dir, plots=args.plots)
    print((result.report_dir / "points.md").read_text(), end="")
    print(f"wrote {result.report_dir}")
    bad = [r for r in result.rows if r["verdict"] != "exact"]
    if bad:
        print(f"error: {len(bad)} of {len(result.rows)} points are not bit-exact or failed: "
              f"{', '.join(r['label'] for r in bad[:5])}{' ...' if len(bad) > 5 else ''}", file=sys.stderr)
        return 1
    return 0
