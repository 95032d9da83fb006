"""Open RTL flow, step 2: the replayed model written as a Verilog project by da4ml, pipelined at
a number of adder levels per clock cycle; the project records how to drive its top module."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import re
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from firmware.fixedpoint import Precision
from firmware.rtl.replay import HARD_DC, ReplayGraph, comb_logic, extract_graph, layer_costs, trace_graph
from firmware.thirdparty import emit_verilog, port_word_kif, uses_lookup_tables, verilog_library
from smartpix.artifacts import atomic_dir, write_json
from smartpix.errors import PipelineError

log = logging.getLogger(__name__)

PROJECT_FILE = "project.json"
# Estimated delay of one adder level (LUT + carry chain + routing) on 7-series / UltraScale+
# fabric; sets the default number of adder levels per pipeline stage from the clock period.
ADDER_LEVEL_NS = 1.0


@dataclass
class RtlProject:
    """A generated Verilog project: where its files are and how to drive its top module.

    The top module (`top`, da4ml's I/O wrapper around `core`) takes `model_inp`, element i of the
    flattened input at bits [i*w, (i+1)*w) with w = inputs[i].width, and gives `model_out` the same
    way. Pipelined designs have a `clk` port: an event presented before a rising edge appears on
    `model_out` after `latency_cycles` rising edges, one event per cycle (II = 1). A combinational
    design (latency_cycles = 0) has no clock.
    """

    path: Path
    top: str
    core: str
    verilog: tuple[Path, ...]
    inputs: tuple[Precision, ...]
    outputs: tuple[Precision, ...]
    latency_cycles: int
    stages: int
    clock_period_ns: float
    latency_cutoff: float
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    model_name: str
    content_hash: str
    estimated_luts: float
    layers: list[dict[str, Any]] = field(default_factory=list)

    @property
    def clocked(self) -> bool:
        return self.latency_cycles > 0

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["path"] = str(self.path)
        data["verilog"] = [str(p.relative_to(self.path)) for p in self.verilog]
        data["inputs"] = _compress_formats(self.inputs)
        data["outputs"] = _compress_formats(self.outputs)
        data["input_shape"] = list(self.input_shape)
        data["output_shape"] = list(self.output_shape)
        return data

    @classmethod
    def load(cls, path: str | Path) -> "RtlProject":
        """Read a project written by `build_rtl` (its project.json)."""
        path = Path(path)
        file = path / PROJECT_FILE
        if not file.is_file():
            raise PipelineError(f"{file}: no RTL project here (run the Verilog generation first)")
        try:
            data = json.loads(file.read_text())
            return cls(
                path=path,
                top=data["top"],
                core=data["core"],
                verilog=tuple(path / p for p in data["verilog"]),
                inputs=_expand_formats(data["inputs"]),
                outputs=_expand_formats(data["outputs"]),
                latency_cycles=int(data["latency_cycles"]),
                stages=int(data["stages"]),
                clock_period_ns=float(data["clock_period_ns"]),
                latency_cutoff=float(data["latency_cutoff"]),
                input_shape=tuple(data["input_shape"]),
                output_shape=tuple(data["output_shape"]),
                model_name=data["model_name"],
                content_hash=data["content_hash"],
                estimated_luts=float(data["estimated_luts"]),
                layers=list(data.get("layers", [])),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise PipelineError(f"{file}: malformed project file ({err})") from err


def _compress_formats(formats: Sequence[Precision]) -> dict[str, Any]:
    """Per-element port words as JSON (width, integer bits, sign: the words truncate and wrap);
    runs of equal words are stored once with a count."""
    runs: list[dict[str, Any]] = []
    for fmt in formats:
        word = {"width": fmt.width, "integer": fmt.integer, "signed": fmt.signed}
        if runs and runs[-1]["format"] == word:
            runs[-1]["count"] += 1
        else:
            runs.append({"format": word, "count": 1})
    return {"elements": len(formats), "runs": runs}


def _expand_formats(data: dict[str, Any]) -> tuple[Precision, ...]:
    out: list[Precision] = []
    for run in data["runs"]:
        out.extend([Precision(**run["format"])] * int(run["count"]))
    return tuple(out)


def load_quantized_model(model_dir_or_model: Any) -> Any:
    """A QKeras model, or the one saved in a trained model directory (its model.h5)."""
    if isinstance(model_dir_or_model, (str, Path)):
        from train.models import load_model

        path = Path(model_dir_or_model)
        h5 = path / "model.h5" if path.is_dir() else path
        if not h5.is_file():
            raise PipelineError(f"{h5}: no trained model (expected model.h5 in the model directory)")
        return load_model(h5)
    return model_dir_or_model


def default_latency_cutoff(clock_period_ns: float) -> float:
    """Adder levels per pipeline stage that fit the clock period (an estimate, see ADDER_LEVEL_NS)."""
    return float(max(1, math.floor(clock_period_ns / ADDER_LEVEL_NS)))


def _verilog_name(name: str) -> str:
    clean = re.sub(r"[^A-Za-z0-9_]", "_", name)
    return clean if clean and clean[0].isalpha() else f"m_{clean}"


def build_rtl(model_dir_or_model: Any, out_dir: Path, clock_period_ns: float = 5.0,
              latency_cutoff: float | None = None, *, hard_dc: int = HARD_DC,
              input_precision: Precision | None = None) -> RtlProject:
    """Replay the model on da4ml variables and write its Verilog project to `out_dir` (atomically).

    `latency_cutoff` is the number of adder levels per pipeline stage (None: from the clock
    period; 0 or less: one combinational block without registers). A configured
    `input_precision` must be the model input quantizer's type. Same model, same options ->
    byte-identical files."""
    if clock_period_ns <= 0:
        raise PipelineError(f"clock period must be positive, got {clock_period_ns} ns")
    cutoff = default_latency_cutoff(clock_period_ns) if latency_cutoff is None else float(latency_cutoff)
    if 0 < cutoff < 1:
        raise PipelineError(f"latency cutoff {cutoff}: at least one adder level per stage (or 0 for combinational)")
    graph = extract_graph(load_quantized_model(model_dir_or_model), input_precision)
    inp, traced, comb = _trace(graph, cutoff, hard_dc)
    name = _verilog_name(graph.model_name)
    sources = emit_verilog(comb, name, cutoff)
    if uses_lookup_tables(comb):
        raise PipelineError("the traced design uses lookup tables, which this flow does not emit")
    inputs = _port_formats(sources.inputs)
    outputs = _port_formats(sources.outputs)
    if inputs[0] != graph.input.input_format():
        log.debug("input port words %s (quantizer format %s)", inputs[0], graph.input.input_format())
    project = RtlProject(
        path=Path(out_dir), top=f"{name}_wrapper", core=name, verilog=(), inputs=inputs, outputs=outputs,
        # input register, one register per stage boundary, output register
        latency_cycles=sources.stages + 1 if cutoff > 0 else 0, stages=sources.stages,
        clock_period_ns=float(clock_period_ns), latency_cutoff=cutoff,
        input_shape=graph.input.out_shape, output_shape=graph.node(graph.output).out_shape,
        model_name=graph.model_name, content_hash="", estimated_luts=float(comb.cost),
        layers=_layer_summary(graph, traced, layer_costs(graph, inp, traced)),
    )
    project = _write_project(project, sources.files)
    log.info("wrote %s: top %s, %d stages (%d cycles at %.3g ns), %d inputs, %d outputs", project.path,
             project.top, project.stages, project.latency_cycles, clock_period_ns, len(inputs), len(outputs))
    return project


def _trace(graph: ReplayGraph, cutoff: float, hard_dc: int) -> tuple[Any, dict[str, Any], Any]:
    """The traced input, every node's traced variables, and the combinational logic from the
    input to the output."""
    start = time.perf_counter()
    inp, traced = trace_graph(graph, latency_cutoff=cutoff if cutoff > 0 else -1, hard_dc=hard_dc)
    comb = comb_logic(inp, traced[graph.output])
    log.info("traced %s in %.1f s: %d operations, estimated %d LUTs", graph.model_name,
             time.perf_counter() - start, len(comb.ops), round(comb.cost))
    return inp, traced, comb


def _write_project(project: RtlProject, files: dict[str, str]) -> RtlProject:
    """Write the Verilog files, the library modules they instantiate and project.json to
    `project.path` (atomically); returns the project with its file list and content hash."""
    library = verilog_library()
    # only the library modules the design instantiates (lookup_table.v reads a memory file)
    used_text = "\n".join(files.values())
    statics = sorted(p.name for p in library.glob("*.v") if re.search(rf"\b{p.stem}\s+#", used_text))
    name = project.core
    order = ([Path("src/static") / s for s in statics]
             + [Path("src") / f for f in sorted(files) if f not in (f"{name}.v", f"{name}_wrapper.v")]
             + [Path("src") / f"{name}.v", Path("src") / f"{name}_wrapper.v"])
    with atomic_dir(project.path) as tmp:
        (tmp / "src" / "static").mkdir(parents=True)
        for static in statics:
            shutil.copyfile(library / static, tmp / "src" / "static" / static)
        for fname in sorted(files):
            (tmp / "src" / fname).write_text(files[fname])
        digest = hashlib.sha256()
        for rel in order:
            digest.update(str(rel).encode() + b"\0" + (tmp / rel).read_bytes())
        project = dataclasses.replace(project, verilog=tuple(project.path / rel for rel in order),
                                      content_hash=digest.hexdigest())
        # no absolute path inside: the project can move, and equal models give equal bytes
        write_json(tmp / PROJECT_FILE, {k: v for k, v in project.to_dict().items() if k != "path"})
    return project


def _port_formats(qints: Sequence[Any]) -> tuple[Precision, ...]:
    """The uniform words of da4ml's I/O wrapper: every element aligned to the finest LSB and
    extended to the widest integer part (sign-extended when any element is signed)."""
    return tuple([Precision.from_kif(*port_word_kif(qints))] * len(qints))


def _layer_summary(graph: ReplayGraph, traced: dict[str, Any], costs: dict[str, float]) -> list[dict[str, Any]]:
    """Each node as the graph describes it, with its widest word and its part of the estimate."""
    summary = []
    total = sum(costs.values())
    for node in graph.nodes:
        item = node.describe()
        item["estimated_luts"] = costs[node.name]
        item["share"] = costs[node.name] / total if total else 0.0
        arr = traced.get(node.name)
        if arr is not None:
            kif = np.asarray(arr.kif).reshape(3, -1)
            item["max_format"] = str(Precision.from_kif(int(kif[0].max()), int(kif[1].max()), int(kif[2].max())))
        summary.append(item)
    return summary


