"""The figures the readers return: one frozen dataclass per kind of report, JSON-ready through
`to_dict`, and the report files found in one project folder."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# the keys of HlsReport.resources
HLS_RESOURCES = ("LUT", "FF", "DSP", "BRAM_18K", "URAM")


@dataclass(frozen=True)
class HlsReport:
    """One C-synthesis report of one top function, as the HLS tool estimated it."""

    source: str
    tool: str  # "Vivado HLS" | "Vitis HLS"
    tool_version: str
    top: str
    part: str | None
    family: str | None
    clock_target_ns: float
    clock_uncertainty_ns: float | None
    clock_estimated_ns: float
    latency_best_cycles: int
    latency_worst_cycles: int
    latency_average_cycles: int | None
    latency_best_ns: float  # cycles x target clock
    latency_worst_ns: float
    interval_min: int
    interval_max: int
    pipeline_type: str | None  # as the report writes it: "dataflow", "yes", "function", "none"...
    resources: dict[str, int]  # keys LUT FF DSP BRAM_18K URAM
    available: dict[str, int]  # device totals; empty when the report gives only per-SLR ones
    available_per_slr: dict[str, int]  # "Available SLR" row of multi-SLR parts; else empty
    utilization_pct: dict[str, float]  # 100 x resources / available (device totals)
    pipeline_kind: str | None  # "dataflow" | "pipelined" | "none" (None if unrecognised)
    resource_keys: dict[str, str]  # normalized key -> key as written ("DSP" -> "DSP48E")
    latency_best_ns_reported: float | None  # the tool's own real-time figure, when given
    latency_worst_ns_reported: float | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class UtilizationReport:
    """Vivado `report_utilization` of a synthesized (or optimized/routed) netlist."""

    source: str
    tool: str  # "Vivado"
    tool_version: str
    top: str | None  # the "Design" header line
    device: str | None
    used: dict[str, float]  # keys LUT FF DSP BRAM_TILE URAM (BRAM tiles can be 0.5)
    available: dict[str, float]
    utilization_pct: dict[str, float]  # the report's Util% column
    design_state: str | None  # "Synthesized" | "Optimized" | "Routed" ...
    site_types: dict[str, str]  # normalized key -> row name as written ("Slice LUTs*")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ReportFiles:
    """The report files of one project folder that belong to one top function."""

    top: str | None
    csynth_xml: Path | None
    csynth_rpt: Path | None
    vivado_synth: Path | None
    catapult: Path | None = None  # <top>.v<N>/nnet_layer_results.txt


@dataclass(frozen=True)
class CatapultLayer:
    """One row of Catapult's per-layer table: one block of the hierarchical design."""

    name: str  # as Catapult writes it: "nnet::dense<layer9_t,q_dense_result_t,config11>"
    area: float  # in the technology library's area unit
    latency_cycles: int
    throughput_cycles: int  # cycles between two inputs the block accepts ("Thruput")


@dataclass(frozen=True)
class CatapultFifo:
    """One channel between two layers ("FIFO Interconnect" table)."""

    variable: str  # the C++ variable, "layer11_out"
    width: int  # bits
    depth: int
    area: float


@dataclass(frozen=True)
class CatapultReport:
    """Catapult's synthesis figures of one solution, per layer and in total.

    The figures it shares with HlsReport have the same names and meanings (source, tool,
    tool_version, top, part, clock_target_ns, latency_best/worst_cycles and _ns,
    interval_min/max), so a consumer reads latency and interval the same way for every tool;
    area takes the place of FPGA resources. How the overall latency is chosen is documented in
    `firmware.hls.vendor_reports.catapult.overall_latency`.
    """

    source: str  # the nnet_layer_results.txt read
    tool: str  # "Catapult"
    tool_version: str | None  # the layer table does not state it
    top: str | None
    solution: str | None  # "<top>.v<N>", the folder Catapult wrote the table into
    part: str | None  # the ASIC library or FPGA part, from the project's build script
    technology: str | None  # "asic" | "fpga"
    clock_target_ns: float | None
    latency_best_cycles: int
    latency_worst_cycles: int
    latency_best_ns: float | None  # cycles x target clock, when the clock is known
    latency_worst_ns: float | None
    latency_basis: str  # "largest layer latency" | "total stated in the report"
    latency_layers_sum_cycles: int  # the layers one after another
    interval_min: int
    interval_max: int
    area_units: str
    area_layers: float  # sum of the layer rows
    area_fifos: float  # sum of the FIFO rows
    area_total: float  # layers + FIFOs
    layers: list[CatapultLayer]
    fifos: list[CatapultFifo]
    stated_total: CatapultLayer | None  # a "Total" row of the layer table, if the file has one

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
