"""Bit-exact verification throughput, against hls4ml's own ModelGraph.predict, in one run.

For each configuration (default: every shipped one whose model exists), on the same events:
- QKeras predict (the Python reference),
- hls4ml predict: the same project compiled by hls4ml into a shared library, called from Python,
- the compiled testbench in one process (the fixed-point emulation alone),
- our verification: the cached testbench split over every core, compared as raw codes.
Prints events/s and the ratios: ours / hls4ml predict, and ours / (cores x one process).

    .venv/bin/python bench/bench_csim.py [CONFIG ...] [--events N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from firmware.config import load_configs  # noqa: E402
from firmware.hls.csim import build_testbench, run_testbench  # noqa: E402
from firmware.hls.project import _convert_quietly, derive_types, ensure_projects, hls_configuration  # noqa: E402
from firmware.verify.verdict import compare  # noqa: E402
from train.models import disable_ste, load_model  # noqa: E402


def _timed(function, *args, **kwargs):
    started = time.perf_counter()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - started


def bench(config, events: int, cache: Path) -> dict:
    model = load_model(Path(config.model) / "model.h5")
    disable_ste(model)
    reference = np.load(Path(config.model) / "reference.npz")["inputs"]
    inputs = np.concatenate([reference] * int(np.ceil(events / len(reference))))[:events]
    n_out = int(np.prod(model.output_shape[1:]))
    cores = os.cpu_count() or 1

    expected, t_qkeras = _timed(model.predict, inputs, batch_size=1024, verbose=0)

    project = ensure_projects([config])[0]
    binary, _, _ = build_testbench(project.directory, cache)
    _, t_single = _timed(run_testbench, binary, project.directory, inputs, n_out, 1)

    def verify():
        got, _ = run_testbench(binary, project.directory, inputs, n_out, cores)
        return compare(config.name, "bench", expected, got, project.output_precision)

    verdict, t_ours = _timed(verify)

    with tempfile.TemporaryDirectory() as work:
        hls_model = _convert_quietly(model, hls_configuration(model, config, derive_types(model, config.input_precision)),
                                     config, Path(work))
        hls_model.compile()
        _, t_predict = _timed(hls_model.predict, np.ascontiguousarray(inputs))

    rate = {k: events / t for k, t in
            (("qkeras", t_qkeras), ("hls4ml_predict", t_predict), ("testbench_1proc", t_single), ("ours", t_ours))}
    return {"config": config.name, "cores": cores, "exact": verdict.exact, **rate}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("configs", nargs="*")
    parser.add_argument("--events", type=int, default=10000)
    parser.add_argument("--cache", type=Path, default=Path("build/cache/csim"))
    args = parser.parse_args()
    configs = [c for c in load_configs(Path("hls_configs"), args.configs or None) if Path(c.model).is_dir()]
    if not configs:
        print("no configuration with a trained model: run `make train` first", file=sys.stderr)
        return 1
    print(f"{'config':34} {'QKeras':>9} {'hls4ml':>9} {'tb 1proc':>9} {'ours':>9} "
          f"{'ours/hls4ml':>12} {'ours/(cores*1proc)':>19}")
    for config in configs:
        r = bench(config, args.events, args.cache)
        print(f"{r['config']:34} {r['qkeras']:9.0f} {r['hls4ml_predict']:9.0f} {r['testbench_1proc']:9.0f} "
              f"{r['ours']:9.0f} {r['ours'] / r['hls4ml_predict']:12.2f} "
              f"{r['ours'] / (r['cores'] * r['testbench_1proc']):19.2f}" + ("" if r["exact"] else "  NOT EXACT"))
    print("events/s; 'ours' is the whole verification: inputs written, testbenches run, codes compared")
    return 0


if __name__ == "__main__":
    sys.exit(main())
