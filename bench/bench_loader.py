"""Loader throughput for 2 time slices from recon3D files, against a naive baseline, in one run.

- streaming loader: train.dataset.iterate_batches (pyarrow, only the 546 needed columns,
  shuffled batches), and the same through the tf.data pipeline of make_dataset;
- naive baseline: pandas.read_parquet of every whole recon3D and labels file, then slicing
  slices 0 and 19 out of the 5460 columns and scaling the targets.
Both read the same files, written to a temporary directory with the generator. Prints
events/s (wall clock and CPU time of this process) and the ratio loader / baseline.

    .venv/bin/python bench/bench_loader.py [--files N] [--events-per-file N] [--no-tf]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from train import dataset as D  # noqa: E402
from train import generator as S  # noqa: E402


def naive_epoch(pairs: list[D.FilePair], options: D.DataOptions) -> int:
    import pandas as pd

    n = 0
    scales = np.asarray(options.target_scales, dtype=np.float32)
    for pair in pairs:
        pixels = pd.read_parquet(pair.recon).to_numpy(dtype=np.float32)
        labels = pd.read_parquet(pair.labels)
        cube = pixels.reshape(len(pixels), D.N_TIME_SLICES, D.PIXEL_ROWS, D.PIXEL_COLS)
        x = np.ascontiguousarray(np.moveaxis(cube[:, list(options.time_slices)], 1, -1)) / options.charge_unit
        y = labels[list(options.targets)].to_numpy(dtype=np.float32) / scales
        n += min(len(x), len(y))
    return n


def loader_epoch(pairs: list[D.FilePair], options: D.DataOptions) -> int:
    return sum(len(x) for x, _ in D.iterate_batches(pairs, options, 256, shuffle=True, seed=1))


def tf_epoch(dataset) -> int:
    return sum(int(x.shape[0]) for x, _ in dataset)


def timed(function, *args):
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args)
    return result, time.perf_counter() - wall, time.process_time() - cpu


def best_of(repeats: int, function, *args) -> tuple[int, float, float]:
    runs = [timed(function, *args) for _ in range(repeats)]
    return runs[0][0], min(r[1] for r in runs), min(r[2] for r in runs)


def check(n: int, total: int, name: str) -> None:
    if n != total:
        raise SystemExit(f"{name} read {n} events of {total}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=6)
    parser.add_argument("--events-per-file", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-tf", action="store_true", help="skip the tf.data measurement")
    args = parser.parse_args()
    options = D.DataOptions()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        S.generate_dataset(data, args.files, args.events_per_file, seed=1)
        pairs = D.discover(data)
        total = sum(p.n_events for p in pairs)
        loader_epoch(pairs[:1], options)  # warm the page cache and imports for both
        naive_epoch(pairs[:1], options)
        n, wall, cpu = best_of(args.repeats, loader_epoch, pairs, options)
        check(n, total, "streaming loader")
        rows.append(("streaming loader (numpy batches)", n / wall, n / cpu))
        if not args.no_tf:
            dataset = D.make_dataset(pairs, options, 256, shuffle=True, seed=1)
            tf_epoch(dataset)
            n, wall, cpu = best_of(args.repeats, tf_epoch, dataset)
            check(n, total, "tf.data loader")
            rows.append(("streaming loader (tf.data make_dataset)", n / wall, n / cpu))
        n, wall, cpu = best_of(args.repeats, naive_epoch, pairs, options)
        check(n, total, "naive loader")
        rows.append(("naive: pandas.read_parquet whole files", n / wall, n / cpu))
    print(f"{args.files} recon3D files x {args.events_per_file} events, 2 slices (546 of 5460 columns)")
    print(f"{'loader':<42} {'events/s (wall)':>16} {'events/s (cpu)':>15}")
    for name, wall_rate, cpu_rate in rows:
        print(f"{name:<42} {wall_rate:>16,.0f} {cpu_rate:>15,.0f}")
    naive = rows[-1]
    print(f"ratio streaming loader / naive: {rows[0][1] / naive[1]:.1f}x (wall), {rows[0][2] / naive[2]:.1f}x (cpu)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
