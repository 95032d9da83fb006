"""Synthetic generator throughput (full 3D output), against a naive per-event loop of the
same physical model, in one run.

- vectorized: train.generator.simulate (draw + transport + sharing + time + readout);
- naive baseline: the same drawn tracks, then for each event and each depth segment the
  closed-form sharing over every pixel boundary, added into the segment's slice, cumulated
  and read out; its output is checked against the vectorized one (equal to 1 electron);
- end to end: generate_dataset (simulation plus the three parquet files per chunk).
Prints events/s (wall clock and CPU time of this process, which is the fairer number on a
shared machine) and the ratio vectorized / naive.

    .venv/bin/python bench/bench_generator.py [--events N] [--naive-events N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.special import ndtr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train import generator as S  # noqa: E402


def naive_collect(tracks: S.Tracks, g: S.Geometry, table: S.DriftTable) -> np.ndarray:
    """The model written the obvious way: loops over events and segments, all pixels each time."""
    x_edges = (np.arange(g.cols + 1) - g.cols / 2) * g.pitch_x
    y_edges = (np.arange(g.rows + 1) - g.rows / 2) * g.pitch_y
    n = len(tracks.x_mid)
    out = np.zeros((n, g.n_time_slices, g.rows, g.cols), dtype=np.float32)
    half = g.thickness / 2
    for e in range(n):
        increments = np.zeros((g.n_time_slices, g.rows, g.cols))
        for s in range(table.n_segments):
            if table.slice_index[s] >= g.n_time_slices:
                continue
            z_lo, z_hi, sigma = table.z_lo[s], table.z_hi[s], table.sigma[s]
            xa = tracks.x_mid[e] + tracks.cot_alpha[e] * (z_lo - half)
            xb = tracks.x_mid[e] + tracks.cot_alpha[e] * (z_hi - half)
            if abs(xb - xa) < 1e-6 * sigma:
                cdf_x = ndtr((x_edges - 0.5 * (xa + xb)) / sigma)
            else:
                cdf_x = sigma * (S._normal_antiderivative((x_edges - xa) / sigma)
                                 - S._normal_antiderivative((x_edges - xb) / sigma)) / (xb - xa)
            zm = 0.5 * (z_lo + z_hi)
            yc = tracks.y_mid[e] + tracks.cot_beta[e] * (zm - half) + g.tan_lorentz * zm
            sy = np.sqrt(sigma**2 + ((tracks.cot_beta[e] + g.tan_lorentz) * (z_hi - z_lo)) ** 2 / 12.0)
            fy = np.diff(ndtr((y_edges - yc) / sy))
            increments[table.slice_index[s]] += tracks.deposits[e, s] * np.outer(fy, np.diff(cdf_x))
        reading = np.rint(np.cumsum(increments, axis=0) + tracks.noise[e].reshape(g.rows, g.cols))
        reading[reading < g.threshold_electrons] = 0.0
        out[e] = np.maximum(reading, 0.0)
    return out


def timed(function, *args):
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--naive-events", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    g = S.Geometry()
    S.simulate(500, seed=0)  # warm up (imports, allocator)

    best_wall, best_cpu = np.inf, np.inf
    for repeat in range(args.repeats):
        _, wall, cpu = timed(S.simulate, args.events, repeat + 1)
        best_wall, best_cpu = min(best_wall, wall), min(best_cpu, cpu)
    fast_wall, fast_cpu = args.events / best_wall, args.events / best_cpu

    table = S.drift_table(g)

    def naive(n: int) -> np.ndarray:
        tracks = S.draw_tracks(n, np.random.default_rng(7), g, table)
        return naive_collect(tracks, g, table)

    slow, wall, cpu = timed(naive, args.naive_events)
    slow_wall, slow_cpu = args.naive_events / wall, args.naive_events / cpu
    tracks = S.draw_tracks(args.naive_events, np.random.default_rng(7), g, table)
    difference = np.abs(S.collect(tracks, g, table) - slow).max()

    with tempfile.TemporaryDirectory() as tmp:
        files, per_file = 2, 5000
        _, wall, cpu = timed(S.generate_dataset, Path(tmp) / "data", files, per_file, 1)
        e2e_wall, e2e_cpu = files * per_file / wall, files * per_file / cpu

    print(f"{'generator':<42} {'events/s (wall)':>16} {'events/s (cpu)':>15}")
    print(f"{'vectorized simulate, 3D output':<42} {fast_wall:>16,.0f} {fast_cpu:>15,.0f}")
    print(f"{'naive per-event loop, same model':<42} {slow_wall:>16,.0f} {slow_cpu:>15,.0f}")
    print(f"{'generate_dataset (with parquet writing)':<42} {e2e_wall:>16,.0f} {e2e_cpu:>15,.0f}")
    print(f"ratio vectorized / naive: {fast_wall / slow_wall:.0f}x (wall), {fast_cpu / slow_cpu:.0f}x (cpu)")
    print(f"naive and vectorized outputs differ by at most {difference:.0f} electron(s) "
          f"on {args.naive_events} events")
    return 0


if __name__ == "__main__":
    sys.exit(main())
