"""The private or unstable third-party APIs the pipeline relies on, one small wrapper each.

Written for the versions pinned in requirements.lock.txt: da4ml 0.5.2, QKeras 0.9.0, hls4ml 1.3.0
(numba as da4ml pins it). Every other module imports these names from here, never the private
ones, so a version bump means re-checking this file only. Each wrapper says what it relies on:

- qkeras_tanh_sigmoid_is_hard: `qkeras.quantizers._sigmoid`, the module global that
  quantized_tanh evaluates (set by `set_internal_sigmoid`), compared with `hard_sigmoid`;
- add_supported_quantized_objects: `qkeras.utils._add_supported_quantized_objects`, which fills a
  dict with every QKeras layer and quantizer class a saved model may name;
- hls4ml_quantizer_precision: `hls4ml.utils.config._get_precision_from_quantizer`, hls4ml's own
  mapping of a QKeras quantizer to a fixed-point type;
- da4ml_variables: the `_vars` attribute of `da4ml.trace.FixedVariableArray`, the object array of
  its FixedVariables (da4ml has no public accessor);
- solve_constant_matrix: `da4ml.cmvm.api.solve` with `da4ml.cmvm.types.QInterval` bounds and
  arrival times passed as numba typed lists (its jit-compiled core accepts nothing else);
- minimal_kif and port_word_kif: `da4ml.cmvm.types._minimal_kif`, and the layout of
  `generate_io_wrapper`, which packs every port element in one word of the widest integer part
  and the finest fraction of all elements (`hetero_io_map(..., merge=True)`);
- variable_costs: `da4ml.trace.tracer.gather_variables` and `_recursive_gather` (the walks
  `comb_trace` makes from the outputs back to the inputs), and the `id`, `cost` and `_from`
  attributes of a FixedVariable;
- uses_lookup_tables: opcode 8 of da4ml's Op encoding is a lookup table;
- emit_verilog and verilog_library: `da4ml.trace.pipeline.to_pipeline`, the generators of
  `da4ml.codegen.rtl.verilog` (`comb_logic_gen`, `pipeline_logic_gen`, `generate_io_wrapper`),
  the attributes `solutions`, `inp_qint`, `out_qint` of their results, and the folder of static
  Verilog modules shipped inside the package (`codegen/rtl/verilog/source`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# --------------------------------------------------------------------------------------- QKeras


def qkeras_tanh_sigmoid_is_hard() -> bool:
    """True when QKeras' quantized_tanh uses the hard sigmoid (its default), the one hls4ml's
    hard_tanh and the replay implement."""
    from qkeras import quantizers

    return quantizers._sigmoid is quantizers.hard_sigmoid


def add_supported_quantized_objects(objects: dict[str, Any]) -> None:
    """Add every QKeras class a saved model may name to `objects` (Keras' `custom_objects`)."""
    from qkeras.utils import _add_supported_quantized_objects

    _add_supported_quantized_objects(objects)


# --------------------------------------------------------------------------------------- hls4ml


def hls4ml_quantizer_precision(quantizer: Any) -> Any:
    """hls4ml's own fixed-point type for a QKeras quantizer object (its PrecisionType)."""
    from hls4ml.utils import config

    return config._get_precision_from_quantizer({"class_name": type(quantizer).__name__,
                                                 "config": quantizer.get_config()})


# --------------------------------------------------------------------------------------- da4ml


def da4ml_variables(array: Any) -> np.ndarray:
    """The FixedVariables of a da4ml FixedVariableArray, as a numpy object array of its shape."""
    return array._vars


def solve_constant_matrix(kernel: np.ndarray, variables: Sequence[Any], hard_dc: int, adder_size: int,
                          carry_size: int) -> Any:
    """da4ml's constant-matrix optimiser for `kernel` (K, O) on K input variables, given their value
    ranges and arrival times; the result maps K variables to O output variables."""
    from da4ml.cmvm.api import solve
    from da4ml.cmvm.types import QInterval
    from numba.typed import List

    qintervals = List([QInterval(float(v.low), float(v.high), float(v.step)) for v in variables])
    latencies = List([float(v.latency) for v in variables])
    return solve(kernel, method0="wmc", method1="auto", hard_dc=hard_dc, decompose_dc=-2,
                 qintervals=qintervals, latencies=latencies, adder_size=adder_size,
                 carry_size=carry_size, search_all_decompose_dc=True)


def minimal_kif(qinterval: Any) -> tuple[int, int, int]:
    """(sign bit, integer bits, fraction bits) of the smallest word that holds a da4ml QInterval."""
    from da4ml.cmvm.types import _minimal_kif

    k, i, f = _minimal_kif(qinterval)
    return int(k), int(i), int(f)


def port_word_kif(qintervals: Sequence[Any]) -> tuple[int, int, int]:
    """The one word da4ml's I/O wrapper gives every element of a port: the widest integer part
    and the finest fraction of all elements, signed when any element is."""
    kifs = [minimal_kif(q) for q in qintervals]
    return max(k for k, _, _ in kifs), max(i for _, i, _ in kifs), max(f for _, _, f in kifs)


def variable_costs(inputs: Sequence[Any], outputs: Sequence[Any]) -> dict[Any, float]:
    """{variable id: its adder cost} of every variable `comb_trace(inputs, outputs)` keeps: the
    same operations, so the costs sum to the traced logic's `cost`."""
    from da4ml.trace.tracer import gather_variables

    live, _ = gather_variables(list(inputs), list(outputs))
    return {v.id: float(v.cost) for v in live}


def variables_behind(outputs: Sequence[Any], seen: dict[Any, Any]) -> None:
    """Add to `seen` (id -> variable) every variable `outputs` are computed from, stopping at the
    ones already in it."""
    from da4ml.trace.tracer import _recursive_gather

    for variable in outputs:
        if hasattr(variable, "_from"):  # a constant folded to a number has no history
            _recursive_gather(variable, seen)


def uses_lookup_tables(comb: Any) -> bool:
    """True when traced combinational logic contains a lookup table."""
    return any(op.opcode == 8 for op in comb.ops)


@dataclass(frozen=True)
class VerilogSources:
    """The Verilog of one design as da4ml writes it: file name -> text, the number of pipeline
    stages (0: combinational), and the value intervals of the input and output elements."""

    files: dict[str, str]
    stages: int
    inputs: Sequence[Any]
    outputs: Sequence[Any]


def emit_verilog(comb: Any, name: str, latency_cutoff: float) -> VerilogSources:
    """Verilog of traced logic: module `name` and its I/O wrapper `name_wrapper`, pipelined at
    `latency_cutoff` adder levels per stage, or one combinational block when it is 0 or less."""
    from da4ml.codegen.rtl.verilog import comb_logic_gen, generate_io_wrapper, pipeline_logic_gen
    from da4ml.trace.pipeline import to_pipeline

    if latency_cutoff > 0:
        # The trace already starts every operation that would straddle a stage boundary at the
        # boundary (the cutoff is in its HWConfig), so da4ml's retiming search gains nothing.
        pipe = to_pipeline(comb, latency_cutoff, retiming=False, verbose=False)
        files = {f"{k}.v": v for k, v in pipeline_logic_gen(pipe, name, print_latency=True).items()}
        files[f"{name}_wrapper.v"] = generate_io_wrapper(pipe, name, True)
        return VerilogSources(files, len(pipe.solutions), pipe.inp_qint, pipe.out_qint)
    files = {f"{name}.v": comb_logic_gen(comb, name, print_latency=True, timescale="`timescale 1 ns / 1 ps")}
    files[f"{name}_wrapper.v"] = generate_io_wrapper(comb, name, False)
    return VerilogSources(files, 0, comb.inp_qint, comb.out_qint)


def verilog_library() -> Path:
    """The folder of da4ml's static Verilog modules (adders, shifts, lookup tables) that the
    generated modules instantiate."""
    import da4ml.codegen.rtl as rtl

    return Path(rtl.__file__).parent / "verilog" / "source"
