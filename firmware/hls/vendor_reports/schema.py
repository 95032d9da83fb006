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
