"""Time the open RTL flow on one model as `make synth` runs it: Verilog generation (da4ml), then
the Verilator build with a 100k-event RTL simulation (checked bit for bit against QKeras) side by
side with Yosys. Prints each step, the wall-clock total against the 5-minute target, the RTL
simulation's throughput against QKeras' own predict on the same events, and with --flat-baseline
the two-part Yosys run against one flattened run of the same design, each alone, in this process.

    .venv/bin/python bench/bench_rtl.py [--model build/models/baseline] [--arch baseline]
                                        [--events 100000] [--part xcvu13p-flga2577-2-e] [--flat-baseline]

Without --model, the model is built with seeded random weights on the quantizers' grids.
hls4ml's Latency-strategy Verilog needs a vendor HLS tool (Vivado/Vitis HLS) to exist at all, so
a same-tool (Yosys) comparison with it is not possible on a machine without one; the script says so.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from firmware.rtl import replay, verilator, verilog, yosys  # noqa: E402
from tests.helpers import randomize_quantized_weights, reference_outputs  # noqa: E402

TARGET_SECONDS = 300.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="trained model directory (default: random weights)")
    parser.add_argument("--arch", default="baseline", choices=("baseline", "xysum"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--clock-period", type=float, default=5.0)
    parser.add_argument("--part", default="xcvu13p-flga2577-2-e")
    parser.add_argument("--work", type=Path, default=None, help="work directory (default: a temporary one)")
    parser.add_argument("--flat-baseline", action="store_true", help="also time one flattened Yosys run")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    from train.models import ModelSpec, build_model, disable_ste

    if args.model is not None:
        model = verilog.load_quantized_model(args.model)
        name = args.model.name
    else:
        model = build_model(ModelSpec(architecture=args.arch), (13, 21, 2))
        randomize_quantized_weights(model, seed=args.seed)
        name = f"{args.arch} (random weights, seed {args.seed})"
    disable_ste(model)
    graph = replay.extract_graph(model)

    rng = np.random.default_rng(args.seed)
    low, high = graph.input.quant.low, graph.input.quant.high
    size = int(np.prod(graph.input.out_shape))
    dense = rng.integers(low, high + 1, size=(args.events, size))
    keep = rng.random((args.events, size)) < rng.uniform(0.02, 0.5, size=(args.events, 1))
    lsb = 2.0 ** -graph.input.quant.frac
    events = (np.where(keep, dense, 0) * lsb).astype(np.float32).reshape(-1, *graph.input.out_shape)
    start = time.perf_counter()
    reference = reference_outputs(model, events)
    qkeras_seconds = time.perf_counter() - start

    work_ctx = tempfile.TemporaryDirectory(prefix="bench_rtl.") if args.work is None else None
    work = Path(work_ctx.name) if work_ctx else args.work
    times: dict[str, float] = {}

    flow_start = time.perf_counter()
    project = verilog.build_rtl(model, work / "rtl", clock_period_ns=args.clock_period)
    times["Verilog generation (da4ml)"] = time.perf_counter() - flow_start

    def simulation():
        begin = time.perf_counter()
        sim = verilator.build_simulator(project, work / "cache")
        times["Verilator build"] = time.perf_counter() - begin
        begin = time.perf_counter()
        (verdict,) = verilator.compare_sets(sim, model, [("bench", events, reference)], graph)
        times[f"RTL simulation, {args.events} events"] = time.perf_counter() - begin
        return verdict

    def synthesis():
        begin = time.perf_counter()
        figures = yosys.synthesize(project, part=args.part, jobs=2)
        times["Yosys (two parts)"] = time.perf_counter() - begin
        return figures

    with ThreadPoolExecutor(max_workers=2) as pool:
        verdict_future, figures_future = pool.submit(simulation), pool.submit(synthesis)
        verdict, figures = verdict_future.result(), figures_future.result()
    total = time.perf_counter() - flow_start

    print(f"open RTL flow on {name}: {project.stages} stages, latency {project.latency_cycles} cycles "
          f"at {args.clock_period:g} ns, da4ml estimate {project.estimated_luts:.0f} LUTs")
    for step, seconds in times.items():
        print(f"  {step:<38s} {seconds:8.1f} s")
    print(f"  {'total (wall clock, simulation and Yosys side by side)':<38s} {total:8.1f} s   "
          f"(target {TARGET_SECONDS:.0f} s: {'met' if total <= TARGET_SECONDS else 'missed'})")
    sim_rate = args.events / verdict.run_seconds
    keras_rate = args.events / qkeras_seconds
    print(f"  RTL simulation {sim_rate:,.0f} events/s; QKeras predict {keras_rate:,.0f} events/s; "
          f"ratio RTL/QKeras {sim_rate / keras_rate:.2f}")
    print(f"  bit-exact: {verdict.exact} ({verdict.mismatching_events} mismatching events of {verdict.events})")
    print(f"  Yosys ({figures.tool_version}, {figures.target}): {figures.luts} LUT, {figures.ffs} FF, "
          f"{figures.carry} CARRY, {figures.dsps} DSP")
    if args.flat_baseline:
        # both alone on the machine, one after the other: the ratio of the cut itself
        alone = yosys.synthesize(project, part=args.part, jobs=2)
        flat = yosys.synthesize(project, part=args.part, jobs=1, parts=1)
        print(f"  Yosys alone: two parts {alone.seconds:.1f} s, one flattened run {flat.seconds:.1f} s "
              f"({flat.luts} LUT, {flat.ffs} FF, {flat.carry} CARRY); ratio {alone.seconds / flat.seconds:.2f}x the "
              f"time, LUT {alone.luts / flat.luts - 1:+.2%}, FF {alone.ffs / flat.ffs - 1:+.2%}")
    print("  hls4ml Latency strategy on the same tool: not measurable here (its Verilog only exists after "
          "Vivado/Vitis HLS, which this machine does not have)")
    if work_ctx:
        work_ctx.cleanup()
    return 0 if verdict.exact else 1


if __name__ == "__main__":
    sys.exit(main())
