"""The open RTL flow of one hardware configuration: da4ml Verilog, a Verilator verdict against
QKeras, and Yosys figures, with no vendor tool and no license.

The flow builds the configuration's model fully parallel, one event per clock (II = 1), pipelined
for the configuration's clock period; io_type, strategy and reuse factor are HLS settings and do
not apply to it. The RTL simulation runs the same event sets as the C simulation (the model's
held-out reference events and the adversarial sets of `firmware.stimuli`). Every step is cached
by content under build/cache/openflow, so configurations that share a model and a clock share one
Verilog project, one Verilator build, one verdict and one synthesis, and a re-run redoes nothing.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from firmware.config import HardwareConfig
from firmware.rtl import replay, verilator, verilog, yosys
from firmware.verify.verdict import Verdict, remember, remembered
from smartpix import paths
from smartpix.artifacts import atomic_dir, write_json
from smartpix.cache import content_key
from smartpix.errors import PipelineError

log = logging.getLogger(__name__)

DEFAULT_CACHE = paths.CACHE / "openflow"
_HERE = Path(__file__).resolve().parent


@dataclass
class OpenFlowResult:
    """What the open flow produced for one configuration (the summary report reads `to_dict`)."""

    config: str
    status: str = "done"  # "done" | "failed"
    message: str = ""
    project: str | None = None
    top: str | None = None
    latency_cycles: int | None = None
    clock_period_ns: float | None = None
    rtl_exact: bool | None = None
    verdicts: list[dict[str, Any]] = field(default_factory=list)
    yosys: dict[str, int | None] = field(default_factory=dict)
    source: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _model_file(config: HardwareConfig, name: str) -> Path:
    path = Path(config.model) / name
    if not path.is_file():
        raise PipelineError(f"{config.name}: {path} is missing (train the model first: make train)")
    return path


def verilog_project(config: HardwareConfig, out_dir: Path, cache_dir: Path = DEFAULT_CACHE) -> verilog.RtlProject:
    """The configuration's Verilog project in `out_dir`, generated once per (model, clock) and
    copied from the cache otherwise."""
    if config.input_precision is not None:
        # an input_precision other than the model's is refused on a cache hit too
        from firmware.graph import check_input_precision, model_graph

        check_input_precision(model_graph(verilog.load_quantized_model(config.model)), config.input_precision)
    key = content_key(verilog.__name__, "rtl-verilog", _model_file(config, "model.h5"), config.clock_period_ns)
    cached = Path(cache_dir) / "verilog" / key
    if not (cached / verilog.PROJECT_FILE).is_file():
        log.info("%s: Verilog from the quantized model (da4ml), %g ns clock", config.name, config.clock_period_ns)
        verilog.build_rtl(config.model, cached, clock_period_ns=config.clock_period_ns)
    project = verilog.RtlProject.load(cached)
    out_dir = Path(out_dir)
    current = out_dir / verilog.PROJECT_FILE
    if not current.is_file() or json.loads(current.read_text()).get("content_hash") != project.content_hash:
        with atomic_dir(out_dir) as tmp:
            shutil.copytree(cached, tmp, dirs_exist_ok=True)
    return verilog.RtlProject.load(out_dir)



def rtl_verdicts(project: verilog.RtlProject, config: HardwareConfig, cache_dir: Path = DEFAULT_CACHE,
                 seed: int = 0) -> list[Verdict]:
    """Verilator verdicts of the project against QKeras on the held-out and adversarial events;
    an exact result is remembered for this build, model and event sets."""
    from firmware.graph import quantizer_precision
    from firmware.verify import stimuli
    from train.models import disable_ste

    sim = verilator.build_simulator(project, Path(cache_dir) / "verilator")
    key = content_key(__name__, "rtl-verdict", sim.key, _model_file(config, "model.h5"),
                      _model_file(config, "reference.npz"), seed)
    verdict_file = Path(cache_dir) / "verdicts" / f"{key}.json"
    known = remembered(verdict_file)
    if known is not None:
        return known
    model = verilog.load_quantized_model(config.model)
    disable_ste(model)
    graph = replay.extract_graph(model)
    input_quantizer = model.get_layer(graph.input.name).quantizer
    sets = stimuli.verification_sets(Path(config.model), model, quantizer_precision(input_quantizer, graph.input.name),
                                     seed)
    log.info("%s: RTL simulation of %d events (Verilator)", config.name, sum(len(s[1]) for s in sets))
    verdicts = verilator.compare_sets(sim, model, sets, graph)
    remember(verdict_file, verdicts)
    return verdicts


def figures(project: verilog.RtlProject, part: str, cache_dir: Path = DEFAULT_CACHE, jobs: int = 2) -> yosys.SynthFigures:
    """Yosys' figures of the project for `part`, once per design content, target and Yosys."""
    tool = yosys.find_yosys()
    target = yosys.synthesis_target(part)
    key = content_key(yosys.__name__, "yosys", project.content_hash, target, tool.version)
    remembered = Path(cache_dir) / "yosys" / f"{key}.json"
    if remembered.is_file():
        cached = yosys.SynthFigures.from_dict(json.loads(remembered.read_text()))
        cached.part = part
        return cached
    log.info("%s: Yosys (%s)", project.top, target)
    result = yosys.synthesize(project, part, jobs=jobs)
    write_json(remembered, result.to_dict())
    return result


def open_flow(config: HardwareConfig, out_dir: Path, cache_dir: Path = DEFAULT_CACHE, seed: int = 0,
              jobs: int = 2, synthesis: bool = True) -> OpenFlowResult:
    """Verilog, RTL verdict and (with `synthesis`) Yosys figures of one configuration. The RTL
    simulation and Yosys run side by side: both are long and neither needs the other."""
    result = OpenFlowResult(config.name)
    start = time.perf_counter()
    project = verilog_project(config, out_dir, cache_dir)
    result.seconds["verilog"] = round(time.perf_counter() - start, 1)
    result.project, result.top = str(project.path), project.top
    result.latency_cycles, result.clock_period_ns = project.latency_cycles, project.clock_period_ns

    def timed(step: str, fn, *args):
        begin = time.perf_counter()
        value = fn(*args)
        result.seconds[step] = round(time.perf_counter() - begin, 1)
        return value

    with ThreadPoolExecutor(max_workers=2) as pool:
        verdicts_future = pool.submit(timed, "rtlsim", rtl_verdicts, project, config, cache_dir, seed)
        figures_future = pool.submit(timed, "yosys", figures, project, config.part, cache_dir, jobs) if synthesis else None
        verdicts = verdicts_future.result()
        synth, synth_error = None, None
        if figures_future is not None:
            # the RTL verdict stands on its own: a synthesis that fails does not hide it
            try:
                synth = figures_future.result()
            except PipelineError as err:
                synth_error = str(err)
    result.seconds["total"] = round(time.perf_counter() - start, 1)
    result.verdicts = [asdict(v) for v in verdicts]
    result.rtl_exact = all(v.exact for v in verdicts)
    messages = []
    if not result.rtl_exact:
        bad = next(v for v in verdicts if not v.exact)
        messages.append(f"RTL differs from QKeras on {bad.stimulus}: {bad.error or bad.first_mismatch}; "
                        f"first differing layer {bad.first_differing_layer}")
    if synth_error is not None:
        result.status = "failed"
        messages.append(synth_error)
    result.message = "; ".join(messages)
    if synth is not None:
        result.yosys = {"LUT": synth.luts, "FF": synth.ffs, "CARRY": synth.carry, "DSP": synth.dsps,
                        "GATES": synth.gates}
        result.source = synth.source
        write_json(project.path / "yosys.json", synth.to_dict())
    write_json(project.path / "open_flow.json", result.to_dict())
    return result
