"""Vendor report parsing: Vivado/Vitis HLS C-synthesis reports and Vivado report_utilization.

Designers synthesize on licensed build servers and copy the results back, so these readers
take the files exactly as the tools wrote them and never guess: a figure the file does not
hold is a PipelineError naming the file and the figure, not a silent default.

- `read_csynth_xml`          `<top>_csynth.xml` (or Vitis' `csynth.xml`), Vivado HLS and Vitis HLS
- `read_csynth_rpt`          `<top>_csynth.rpt`, the text twin of the XML
- `read_vivado_utilization`  `vivado_synth.rpt` written by `report_utilization` (7-series
                             "Slice" rows, UltraScale+ "CLB" rows, with or without "Prohibited")
- `read_reports`             a project folder or a single file -> one JSON-ready dict

Traps handled on purpose: `csynth.xml` may describe an AXI wrapper rather than the network
(the top is chosen from hls4ml's project files or the report names, and a wrapper named
`<top>_*` yields to `<top>`); multi-SLR parts list per-SLR capacities ("Available SLR")
that are kept apart from the device totals; the report's own real-time latency is computed
by the tool from the *estimated* clock when timing fails, so both it and cycles x target
clock are kept.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from smartpix.artifacts import write_json
from smartpix.errors import PipelineError

log = logging.getLogger(__name__)

# the keys of HlsReport.resources and UtilizationReport.used
HLS_RESOURCES = ("LUT", "FF", "DSP", "BRAM_18K", "URAM")
VIVADO_RESOURCES = ("LUT", "FF", "DSP", "BRAM_TILE", "URAM")

# report key -> normalized key; Vivado HLS writes DSP48E, Vitis HLS writes DSP
_HLS_KEY_ALIASES = {
    "LUT": "LUT",
    "FF": "FF",
    "DSP": "DSP",
    "DSP48E": "DSP",
    "DSP48E1": "DSP",
    "DSP48E2": "DSP",
    "BRAM_18K": "BRAM_18K",
    "URAM": "URAM",
}

# normalized key -> Site Type rows of report_utilization, 7-series and UltraScale(+) spellings
_VIVADO_ROWS = {
    "LUT": ("CLB LUTs", "Slice LUTs"),
    "FF": ("CLB Registers", "Slice Registers"),
    "DSP": ("DSPs",),
    "BRAM_TILE": ("Block RAM Tile",),
    "URAM": ("URAM",),
}
_VIVADO_REQUIRED = ("LUT", "FF", "DSP", "BRAM_TILE")  # URAM rows exist only on parts that have it

_TIME_UNITS_NS = {"ps": 1e-3, "ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9, "sec": 1e9}

# hls4ml's default project name, the last resort when nothing else names the top
_HLS4ML_DEFAULT_TOP = "myproject"


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


# ---------------------------------------------------------------------------------------------
# parsing primitives


def _read_text(path: Path) -> str:
    if not path.exists():
        raise PipelineError(f"{path}: no such file")
    if not path.is_file():
        raise PipelineError(f"{path}: not a file")
    try:
        # reports are ASCII; a stray byte must not hide the figures around it
        return path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as err:
        raise PipelineError(f"{path}: cannot read ({err.strerror})") from err


def _int(text: str | None, path: Path, what: str) -> int:
    try:
        return int(str(text).strip())
    except ValueError:
        raise PipelineError(f"{path}: {what} is not an integer ({text!r})") from None


def _float(text: str | None, path: Path, what: str) -> float:
    try:
        value = float(str(text).strip())
    except ValueError:
        raise PipelineError(f"{path}: {what} is not a number ({text!r})") from None
    if not math.isfinite(value):
        raise PipelineError(f"{path}: {what} is not a finite number ({text!r})")
    return value


def _time_ns(text: str, path: Path, what: str, default_unit: str = "ns") -> float:
    """'0.480 ms' -> 480000.0; a bare number is in `default_unit` (older reports omit it)."""
    match = re.fullmatch(r"\s*([-+0-9.eE]+)\s*([a-z]*)\s*", text)
    if not match:
        raise PipelineError(f"{path}: {what} is not a time ({text!r})")
    unit = match.group(2) or default_unit
    if unit not in _TIME_UNITS_NS:
        raise PipelineError(f"{path}: {what} has an unknown time unit ({text!r})")
    return round(_float(match.group(1), path, what) * _TIME_UNITS_NS[unit], 6)


def _utilization(
    resources: dict[str, int], available: dict[str, int], path: Path
) -> dict[str, float]:
    """100 x used / available, for the resources whose capacity is known and non-zero.

    A resource the part does not have (available 0) and that is not used counts as 0 %.
    """
    pct: dict[str, float] = {}
    for key, used in resources.items():
        total = available.get(key)
        if total is None:
            continue
        if total > 0:
            pct[key] = round(100.0 * used / total, 2)
        elif used == 0:
            pct[key] = 0.0
        else:
            log.warning("%s: %d %s used, but the part has none", path, used, key)
    return pct


def _pipeline_kind(pipeline_type: str | None) -> str | None:
    if pipeline_type is None:
        return None
    value = pipeline_type.strip().lower()
    if "dataflow" in value:
        return "dataflow"
    if value in ("yes", "function", "pipeline", "pipelined") or value.startswith("loop"):
        return "pipelined"
    if value in ("no", "none", "-", ""):
        return "none"
    return None


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version))


# ---------------------------------------------------------------------------------------------
# csynth.xml


def _xml_child_text(node: ET.Element | None, tag: str) -> str | None:
    if node is None:
        return None
    child = node.find(tag)
    if child is None or child.text is None or not child.text.strip():
        return None
    return child.text.strip()


def _xml_resources(
    node: ET.Element | None, path: Path, where: str
) -> tuple[dict[str, int], dict[str, str]]:
    values: dict[str, int] = {}
    raw_keys: dict[str, str] = {}
    if node is None:
        return values, raw_keys
    for child in node:
        key = _HLS_KEY_ALIASES.get(child.tag)
        if key is None or key in values:
            continue
        values[key] = _int(child.text, path, f"{where}/{child.tag}")
        raw_keys[key] = child.tag
    return values, raw_keys


def _hls_tool_from_xml(version: str, user: ET.Element | None, dsp_key: str | None) -> str:
    """The XML never names the tool; Vitis HLS writes FlowTarget and the key "DSP",
    Vivado HLS "DSP48E", and Vivado HLS ended with 2020.1."""
    if _xml_child_text(user, "FlowTarget") is not None or dsp_key == "DSP":
        return "Vitis HLS"
    if _version_tuple(version) >= (2020, 2):
        return "Vitis HLS"
    return "Vivado HLS"


def read_csynth_xml(path: str | os.PathLike[str]) -> HlsReport:
    """Read a `<top>_csynth.xml` (or Vitis `csynth.xml`): the top-level summary only."""
    path = Path(path)
    text = _read_text(path)
    try:
        root = ET.fromstring(text)
    except ET.ParseError as err:
        raise PipelineError(
            f"{path}: not well-formed XML ({err}); is the file truncated?"
        ) from None
    if root.tag != "profile":
        raise PipelineError(
            f"{path}: not an HLS C-synthesis report (root element <{root.tag}>, expected <profile>)"
        )

    # direct children only: Vitis' csynth.xml repeats these blocks per sub-module further down
    user = root.find("UserAssignments")
    perf = root.find("PerformanceEstimates")
    timing = perf.find("SummaryOfTimingAnalysis") if perf is not None else None
    overall = perf.find("SummaryOfOverallLatency") if perf is not None else None
    area = root.find("AreaEstimates")

    required = {
        "ReportVersion/Version": _xml_child_text(root.find("ReportVersion"), "Version"),
        "UserAssignments/TopModelName": _xml_child_text(user, "TopModelName"),
        "UserAssignments/TargetClockPeriod": _xml_child_text(user, "TargetClockPeriod"),
        "PerformanceEstimates/SummaryOfTimingAnalysis/EstimatedClockPeriod": _xml_child_text(
            timing, "EstimatedClockPeriod"
        ),
        "SummaryOfOverallLatency/Best-caseLatency": _xml_child_text(overall, "Best-caseLatency"),
        "SummaryOfOverallLatency/Worst-caseLatency": _xml_child_text(overall, "Worst-caseLatency"),
    }
    missing = [name for name, value in required.items() if value is None]
    resources, raw_keys = _xml_resources(
        area.find("Resources") if area is not None else None, path, "AreaEstimates/Resources"
    )
    if not resources:
        missing.append("AreaEstimates/Resources")
    interval = _xml_interval(overall, path)
    if interval is None:
        missing.append("SummaryOfOverallLatency/Interval-min and Interval-max")
    if missing or interval is None:
        raise PipelineError(f"{path}: HLS report is missing {', '.join(missing)}")

    unit = _xml_child_text(user, "unit") or "ns"
    version = required["ReportVersion/Version"] or ""
    target_text = required["UserAssignments/TargetClockPeriod"]
    target = _time_ns(f"{target_text} {unit}", path, "TargetClockPeriod")
    uncertainty_text = _xml_child_text(user, "ClockUncertainty")
    timing_unit = _xml_child_text(timing, "unit") or unit
    estimated_key = "PerformanceEstimates/SummaryOfTimingAnalysis/EstimatedClockPeriod"
    best = _int(required["SummaryOfOverallLatency/Best-caseLatency"], path, "Best-caseLatency")
    worst = _int(required["SummaryOfOverallLatency/Worst-caseLatency"], path, "Worst-caseLatency")
    average_text = _xml_child_text(overall, "Average-caseLatency")
    available, _ = _xml_resources(
        area.find("AvailableResources") if area is not None else None,
        path,
        "AreaEstimates/AvailableResources",
    )
    best_rt = _xml_child_text(overall, "Best-caseRealTimeLatency")
    worst_rt = _xml_child_text(overall, "Worst-caseRealTimeLatency")
    pipeline_type = _xml_child_text(perf, "PipelineType")
    return HlsReport(
        source=str(path),
        tool=_hls_tool_from_xml(version, user, raw_keys.get("DSP")),
        tool_version=version,
        top=required["UserAssignments/TopModelName"] or "",
        part=_xml_child_text(user, "Part"),
        family=_xml_child_text(user, "ProductFamily"),
        clock_target_ns=target,
        clock_uncertainty_ns=(
            _time_ns(f"{uncertainty_text} {unit}", path, "ClockUncertainty")
            if uncertainty_text is not None
            else None
        ),
        clock_estimated_ns=_time_ns(
            f"{required[estimated_key]} {timing_unit}", path, "EstimatedClockPeriod"
        ),
        latency_best_cycles=best,
        latency_worst_cycles=worst,
        latency_average_cycles=(
            _int(average_text, path, "Average-caseLatency") if average_text is not None else None
        ),
        latency_best_ns=round(best * target, 6),
        latency_worst_ns=round(worst * target, 6),
        interval_min=interval[0],
        interval_max=interval[1],
        pipeline_type=pipeline_type,
        resources=resources,
        available=available,
        available_per_slr={},
        utilization_pct=_utilization(resources, available, path),
        pipeline_kind=_pipeline_kind(pipeline_type),
        resource_keys=raw_keys,
        latency_best_ns_reported=(
            _time_ns(best_rt, path, "Best-caseRealTimeLatency") if best_rt is not None else None
        ),
        latency_worst_ns_reported=(
            _time_ns(worst_rt, path, "Worst-caseRealTimeLatency") if worst_rt is not None else None
        ),
    )


def _xml_interval(overall: ET.Element | None, path: Path) -> tuple[int, int] | None:
    """Interval-min/max, else the dataflow throughput (a number or a min/max range), else the
    pipeline II: the three ways HLS versions have written the initiation interval."""
    low = _xml_child_text(overall, "Interval-min")
    high = _xml_child_text(overall, "Interval-max")
    if low is not None and high is not None:
        return _int(low, path, "Interval-min"), _int(high, path, "Interval-max")
    if overall is None:
        return None
    throughput = overall.find("DataflowPipelineThroughput")
    if throughput is not None:
        span = throughput.find("range")
        if span is not None:
            low, high = _xml_child_text(span, "min"), _xml_child_text(span, "max")
            if low is not None and high is not None:
                return (
                    _int(low, path, "DataflowPipelineThroughput/range/min"),
                    _int(high, path, "DataflowPipelineThroughput/range/max"),
                )
        elif throughput.text and throughput.text.strip():
            value = _int(throughput.text, path, "DataflowPipelineThroughput")
            return value, value
    ii = _xml_child_text(overall, "PipelineInitiationInterval")
    if ii is not None:
        value = _int(ii, path, "PipelineInitiationInterval")
        return value, value
    return None


# ---------------------------------------------------------------------------------------------
# csynth.rpt


_RPT_HEADER = re.compile(r"^==\s*(Vivado HLS|Vitis HLS)\s+Report for '([^']+)'", re.MULTILINE)


def _rpt_field(lines: list[str], name: str) -> str | None:
    pattern = re.compile(rf"^\*\s*{re.escape(name)}:\s*(.*?)\s*$")
    for line in lines:
        match = pattern.match(line)
        if match and match.group(1):
            return match.group(1)
    return None


def _find(lines: list[str], pattern: str, start: int = 0, stop: int | None = None) -> int | None:
    regex = re.compile(pattern)
    for index in range(start, len(lines) if stop is None else min(stop, len(lines))):
        if regex.search(lines[index]):
            return index
    return None


_BORDER = re.compile(r"^\s*\+-")  # "+----+---+"; section markers such as "+ Timing:" are not


def _split_row(line: str) -> list[str]:
    text = line.strip()
    if text.startswith("|"):
        text = text[1:]
    if text.endswith("|"):
        text = text[:-1]
    return [cell.strip() for cell in text.split("|")]


def _table_after(lines: list[str], start: int, stop: int | None = None) -> list[list[str]] | None:
    """Rows (cells stripped) of the first ASCII table after line `start`, before `stop`."""
    end = len(lines) if stop is None else min(stop, len(lines))
    index = start + 1
    while index < end and not _BORDER.match(lines[index]):
        index += 1
    if index >= end:
        return None
    rows = []
    while index < len(lines):
        line = lines[index]
        if line.lstrip().startswith("|"):
            rows.append(_split_row(line))
        elif not _BORDER.match(line):
            break
        index += 1
    return rows


def read_csynth_rpt(path: str | os.PathLike[str]) -> HlsReport:
    """Read a `<top>_csynth.rpt`: header, timing, latency/interval summary and the
    utilization summary ("Total", "Available", "Available SLR" rows)."""
    path = Path(path)
    text = _read_text(path)
    header = _RPT_HEADER.search(text)
    if header is None:
        raise PipelineError(
            f"{path}: not an HLS C-synthesis report "
            "(no \"== Vivado HLS Report for '<top>'\" or \"== Vitis HLS Report for '<top>'\" line)"
        )
    tool, top = header.group(1), header.group(2)
    lines = text.splitlines()
    version_text = _rpt_field(lines, "Version")
    missing = []
    if version_text is None:
        missing.append("'* Version:' line")

    perf = _find(lines, r"^==\s*Performance Estimates")
    util = _find(lines, r"^==\s*Utilization Estimates")
    timing_at = _find(lines, r"^\+\s*Timing", perf) if perf is not None else None
    latency_at = _find(lines, r"^\+\s*Latency", perf) if perf is not None else None
    timing_rows = latency_rows = util_rows = None
    if timing_at is not None:
        timing_rows = _table_after(lines, timing_at, latency_at)
    if latency_at is not None:
        detail = _find(lines, r"^\s*\+\s*Detail", latency_at)
        latency_rows = _table_after(lines, latency_at, detail or util)
    if util is not None:
        util_rows = _table_after(lines, util, _find(lines, r"^\s*\+\s*Detail", util))
    if not timing_rows or len(timing_rows) < 2:
        missing.append("timing summary table (Clock | Target | Estimated | Uncertainty)")
    if not latency_rows or len(latency_rows) < 3:
        missing.append("latency summary table (Latency | Interval | Pipeline Type)")
    if not util_rows or len(util_rows) < 2:
        missing.append("utilization summary table (Name | BRAM_18K | DSP | FF | LUT | URAM)")
    if missing or not timing_rows or not latency_rows or not util_rows or version_text is None:
        raise PipelineError(f"{path}: HLS report is missing {', '.join(missing)}")

    # timing: header row names the columns; the first clock row is the design clock
    columns = [cell.lower() for cell in timing_rows[0]]
    clock_row = timing_rows[1]

    def timing_cell(name: str) -> str | None:
        if name in columns and columns.index(name) < len(clock_row):
            value = clock_row[columns.index(name)]
            return value or None
        return None

    target_text, estimated_text = timing_cell("target"), timing_cell("estimated")
    if target_text is None or estimated_text is None:
        raise PipelineError(f"{path}: timing summary has no Target/Estimated clock ({clock_row})")
    uncertainty_text = timing_cell("uncertainty")
    target = _time_ns(target_text, path, "target clock")

    # latency: two header rows, then one data row; 7 columns (cycles, absolute, interval,
    # type) since 2019.2, 5 columns (cycles, interval, type) before
    data = latency_rows[2]
    if len(data) == 7:
        best_text, worst_text, best_rt, worst_rt, ii_low, ii_high, pipeline_type = data
    elif len(data) == 5:
        best_text, worst_text, ii_low, ii_high, pipeline_type = data
        best_rt = worst_rt = None
    else:
        raise PipelineError(f"{path}: latency summary row has {len(data)} columns, expected 7 or 5")
    best = _int(best_text, path, "latency min (cycles)")
    worst = _int(worst_text, path, "latency max (cycles)")

    # utilization: a header row with the resource names, then named rows
    names = util_rows[0][1:]
    rows = {row[0]: row[1:] for row in util_rows[1:] if row}
    if "Total" not in rows:
        raise PipelineError(f"{path}: utilization summary has no 'Total' row")
    raw_keys: dict[str, str] = {}
    for name in names:
        key = _HLS_KEY_ALIASES.get(name)
        if key is not None and key not in raw_keys:
            raw_keys[key] = name

    def row_values(label: str) -> dict[str, int]:
        values: dict[str, int] = {}
        cells = rows.get(label)
        if cells is None:
            return values
        for key, raw in raw_keys.items():
            position = names.index(raw)
            if position < len(cells):
                values[key] = _int(cells[position], path, f"utilization '{label}' {raw}")
        return values

    resources = row_values("Total")
    available = row_values("Available")
    per_slr = row_values("Available SLR")
    if not resources:
        raise PipelineError(
            f"{path}: utilization summary 'Total' row has no LUT/FF/DSP/BRAM_18K/URAM column"
        )
    report = HlsReport(
        source=str(path),
        tool=tool,
        tool_version=version_text.split()[0],
        top=top,
        part=_rpt_field(lines, "Target device"),
        family=_rpt_field(lines, "Product family"),
        clock_target_ns=target,
        clock_uncertainty_ns=(
            _time_ns(uncertainty_text, path, "clock uncertainty") if uncertainty_text else None
        ),
        clock_estimated_ns=_time_ns(estimated_text, path, "estimated clock"),
        latency_best_cycles=best,
        latency_worst_cycles=worst,
        latency_average_cycles=None,  # the text report gives min and max only
        latency_best_ns=round(best * target, 6),
        latency_worst_ns=round(worst * target, 6),
        interval_min=_int(ii_low, path, "interval min"),
        interval_max=_int(ii_high, path, "interval max"),
        pipeline_type=pipeline_type or None,
        resources=resources,
        available=available,
        available_per_slr=per_slr,
        utilization_pct=_utilization(resources, available, path),
        pipeline_kind=_pipeline_kind(pipeline_type),
        resource_keys=raw_keys,
        latency_best_ns_reported=(
            _time_ns(best_rt, path, "latency min (absolute)") if best_rt else None
        ),
        latency_worst_ns_reported=(
            _time_ns(worst_rt, path, "latency max (absolute)") if worst_rt else None
        ),
    )
    _check_reported_percentages(path, rows, raw_keys, names, report)
    return report


def _check_reported_percentages(
    path: Path,
    rows: dict[str, list[str]],
    raw_keys: dict[str, str],
    names: list[str],
    report: HlsReport,
) -> None:
    """The tool prints floor(100 x used / available) ("~0" below 1 %); a different figure means
    the columns were read wrongly or the file was edited, worth a warning, not a failure."""
    checks = (
        ("Utilization (%)", report.available),
        ("Utilization SLR (%)", report.available_per_slr),
    )
    for label, totals in checks:
        cells = rows.get(label)
        if cells is None:
            continue
        for key, raw in raw_keys.items():
            position = names.index(raw)
            total = totals.get(key)
            if position >= len(cells) or not total:
                continue
            printed = cells[position]
            expected = math.floor(100.0 * report.resources[key] / total)
            if printed == "~0":
                ok = expected == 0
            else:
                ok = printed.isdigit() and int(printed) == expected
            if not ok:
                log.warning("%s: %s %s is %r, but %d/%d gives %d", path, label, raw, printed,
                            report.resources[key], total, expected)


# ---------------------------------------------------------------------------------------------
# Vivado report_utilization


def read_vivado_utilization(path: str | os.PathLike[str]) -> UtilizationReport:
    """Read a Vivado `report_utilization` file (`vivado_synth.rpt`): LUT, FF, DSP, BRAM tiles
    and URAM with their Available and Util% columns, located by column name."""
    path = Path(path)
    text = _read_text(path)
    lines = text.splitlines()
    header: dict[str, str] = {}
    for line in lines:
        if line.strip() == "Utilization Design Information" or line.lstrip().startswith("+"):
            break
        match = re.match(r"^\|\s*([A-Za-z][A-Za-z ]*?)\s*:\s*(.*?)\s*$", line)
        if match:
            header.setdefault(match.group(1), match.group(2))
    tool_line = header.get("Tool Version")
    version = re.search(r"Vivado\s+v\.?(\S+)", tool_line or "")
    if version is None:
        raise PipelineError(
            f"{path}: not a Vivado utilization report "
            "(no '| Tool Version : Vivado v.<version>' line)"
        )
    command = header.get("Command")
    if command is not None and not command.startswith("report_utilization"):
        raise PipelineError(f"{path}: written by '{command.split()[0]}', not report_utilization")

    rows = _vivado_site_rows(lines, path)
    used: dict[str, float] = {}
    available: dict[str, float] = {}
    pct: dict[str, float] = {}
    site_types: dict[str, str] = {}
    for key, spellings in _VIVADO_ROWS.items():
        for spelling in spellings:
            if spelling in rows:
                raw_name, used_value, available_value, pct_text = rows[spelling]
                used[key] = used_value
                available[key] = available_value
                site_types[key] = raw_name
                pct[key] = _vivado_pct(pct_text, used_value, available_value, path, raw_name)
                break
    missing = [
        " or ".join(f"'{name}'" for name in _VIVADO_ROWS[key])
        for key in _VIVADO_REQUIRED
        if key not in used
    ]
    if missing:
        raise PipelineError(
            f"{path}: utilization report has no {', '.join(missing)} row "
            "(in a Site Type | Used | Available | Util% table)"
        )
    return UtilizationReport(
        source=str(path),
        tool="Vivado",
        tool_version=version.group(1),
        top=header.get("Design") or None,
        device=header.get("Device") or None,
        used=used,
        available=available,
        utilization_pct=pct,
        design_state=header.get("Design State") or None,
        site_types=site_types,
    )


def _vivado_site_rows(lines: list[str], path: Path) -> dict[str, tuple[str, float, float, str]]:
    """Site Type -> (name as written, used, available, Util% text), first table that has it.

    Only tables whose header has Used, Available and Util% columns count: the per-SLR tables
    of multi-SLR parts repeat the same site names with other columns.
    """
    rows: dict[str, tuple[str, float, float, str]] = {}
    columns: dict[str, int] | None = None
    for line in lines:
        stripped = line.lstrip()
        if not stripped.startswith(("|", "+")):
            columns = None
            continue
        if not stripped.startswith("|"):
            continue
        cells = _split_row(line)
        if "Site Type" in cells:
            names = {cell: index for index, cell in enumerate(cells)}
            columns = names if {"Used", "Available", "Util%"} <= names.keys() else None
            continue
        if columns is None:
            continue
        raw_name = cells[columns["Site Type"]]
        name = raw_name.rstrip("*").strip()
        if name in rows or len(cells) <= max(columns.values()):
            continue
        used_text = cells[columns["Used"]]
        available_text = cells[columns["Available"]]
        if not used_text or not available_text:
            continue  # sub-rows such as "RAMB18E2 only" carry no capacity
        rows[name] = (
            raw_name,
            _float(used_text, path, f"'{raw_name}' Used"),
            _float(available_text, path, f"'{raw_name}' Available"),
            cells[columns["Util%"]],
        )
    return rows


def _vivado_pct(text: str, used: float, available: float, path: Path, name: str) -> float:
    if text and not text.startswith("<"):
        return _float(text, path, f"'{name}' Util%")
    # "<0.01" (or blank): the report only bounds it, so compute it from the counts it gives
    return round(100.0 * used / available, 2) if available else 0.0


# ---------------------------------------------------------------------------------------------
# folders


def _walk(folder: Path) -> list[Path]:
    """Every file under `folder`, skipping hidden folders (.autopilot, .Xil, .git: tool
    scratch space that holds thousands of files and no final report)."""
    found = []
    for directory, subdirs, files in os.walk(folder):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith(".") and d != "__pycache__")
        found.extend(Path(directory) / name for name in sorted(files))
    return found


def _depth(path: Path, root: Path) -> int:
    return len(path.relative_to(root).parts)


def _xml_top(path: Path) -> str | None:
    """TopModelName of a csynth.xml, or None if unreadable (discovery must not fail on it)."""
    try:
        root = ET.fromstring(_read_text(path))
    except (ET.ParseError, PipelineError):
        return None
    return _xml_child_text(root.find("UserAssignments"), "TopModelName")


def _rpt_top(path: Path) -> str | None:
    try:
        match = _RPT_HEADER.search(_read_text(path))
    except PipelineError:
        return None
    return match.group(2) if match else None


def _project_name(files: list[Path], folder: Path) -> str | None:
    """hls4ml's own record of the top: `ProjectName` in hls4ml_config.yml, else
    `set project_name "..."` in project.tcl; the shallowest file wins."""
    patterns = {
        "hls4ml_config.yml": re.compile(r"^ProjectName:\s*['\"]?([A-Za-z_]\w*)", re.MULTILINE),
        "project.tcl": re.compile(r"^\s*set\s+project_name\s+\"?([A-Za-z_]\w*)", re.MULTILINE),
    }
    for name, pattern in patterns.items():
        candidates = sorted(
            (f for f in files if f.name == name), key=lambda f: (_depth(f, folder), str(f))
        )
        found = {}
        for candidate in candidates:
            if _depth(candidate, folder) != _depth(candidates[0], folder):
                break
            try:
                match = pattern.search(_read_text(candidate))
            except PipelineError:
                continue
            if match:
                found[match.group(1)] = candidate
        if len(found) == 1:
            project, source = next(iter(found.items()))
            log.debug("top '%s' from %s", project, source)
            return project
        if len(found) > 1:
            raise PipelineError(
                f"{folder}: holds several hls4ml projects ({', '.join(sorted(found))}); "
                "pass --top NAME or point at one project folder"
            )
    return None


def _named_and_hls_tops(files: list[Path]) -> tuple[set[str], set[str]]:
    """Tops named by `<top>_csynth.*` file names, and tops that Vitis/Vivado HLS wrote into
    `csynth.xml`/`csynth.rpt` (the function synthesized as the HLS top, maybe a wrapper)."""
    named: set[str] = set()
    hls_tops: set[str] = set()
    for file in files:
        match = re.fullmatch(r"(.+)_csynth\.(xml|rpt)", file.name)
        top = None
        if match:
            named.add(match.group(1))
        elif file.name == "csynth.xml":
            top = _xml_top(file)
        elif file.name == "csynth.rpt":
            top = _rpt_top(file)
        if top:
            hls_tops.add(top)
    return named, hls_tops


def _report_tops(files: list[Path]) -> set[str]:
    named, hls_tops = _named_and_hls_tops(files)
    return named | hls_tops


def _choose_top(files: list[Path], folder: Path) -> str | None:
    """The network's top function: hls4ml's project files first, then the reports present,
    preferring `<top>` over a wrapper `<top>_*` (an AXI wrapper is often the HLS top)."""
    project = _project_name(files, folder)
    if project is not None:
        return project
    named, hls_tops = _named_and_hls_tops(files)
    if hls_tops:
        resolved = set()
        for top in hls_tops:
            inner = [name for name in named if top.startswith(name + "_")]
            resolved.add(max(inner, key=len) if inner else top)
        if len(resolved) == 1:
            return resolved.pop()
        named |= resolved
    elif len(named) == 1:
        return next(iter(named))
    if not named:
        return None
    if _HLS4ML_DEFAULT_TOP in named:
        log.info("%s: several reports (%s); reading hls4ml's default top '%s'",
                 folder, ", ".join(sorted(named)), _HLS4ML_DEFAULT_TOP)
        return _HLS4ML_DEFAULT_TOP
    raise PipelineError(
        f"{folder}: reports of several top functions ({', '.join(sorted(named))}); pass --top NAME"
    )


def _pick(candidates: list[Path], folder: Path, what: str) -> Path | None:
    """The shallowest candidate; equally shallow ones must be byte-identical copies."""
    if not candidates:
        return None
    candidates = sorted(candidates, key=lambda f: (_depth(f, folder), str(f)))
    shallowest = [c for c in candidates if _depth(c, folder) == _depth(candidates[0], folder)]
    first = shallowest[0]
    for other in shallowest[1:]:
        if _read_text(other) != _read_text(first):
            raise PipelineError(
                f"{folder}: several different {what} ({first}, {other}); "
                "point at one project folder or solution"
            )
    if len(candidates) > 1:
        log.debug("%s: reading %s of %d candidates", what, first, len(candidates))
    return first


def find_reports(folder: str | os.PathLike[str], top: str | None = None) -> ReportFiles:
    """Locate the reports of `top` (discovered when None) anywhere under `folder`."""
    folder = Path(folder)
    files = _walk(folder)
    if top is None:
        top = _choose_top(files, folder)
    xml = rpt = None
    if top is not None:
        # `<top>_csynth.*` first; Vitis' csynth.* only when its own top is `top`
        xml = _pick([f for f in files if f.name == f"{top}_csynth.xml"], folder, "csynth XML")
        if xml is None:
            xml = _pick(
                [f for f in files if f.name == "csynth.xml" and _xml_top(f) == top],
                folder,
                "csynth XML",
            )
        rpt = _pick([f for f in files if f.name == f"{top}_csynth.rpt"], folder, "csynth report")
        if rpt is None:
            rpt = _pick(
                [f for f in files if f.name == "csynth.rpt" and _rpt_top(f) == top],
                folder,
                "csynth report",
            )
    vivado_files = [f for f in files if f.name == "vivado_synth.rpt"]
    vivado = _pick(vivado_files, folder, "vivado_synth.rpt")
    return ReportFiles(top=top, csynth_xml=xml, csynth_rpt=rpt, vivado_synth=vivado)


def _check_agreement(xml: HlsReport, rpt: HlsReport) -> None:
    """The XML and the text report of one run hold the same figures; a difference means they
    come from different runs and neither can be trusted alone."""
    fields = (
        "top", "tool_version", "part", "family", "clock_target_ns", "clock_estimated_ns",
        "latency_best_cycles", "latency_worst_cycles", "interval_min", "interval_max",
        "pipeline_kind", "resources",
    )
    for name in fields:
        a, b = getattr(xml, name), getattr(rpt, name)
        if a != b:
            raise PipelineError(
                f"{xml.source} and {rpt.source} disagree on {name} ({a} vs {b}); "
                "are they from different synthesis runs?"
            )
    if xml.clock_uncertainty_ns is not None and rpt.clock_uncertainty_ns is not None:
        if xml.clock_uncertainty_ns != rpt.clock_uncertainty_ns:
            raise PipelineError(
                f"{xml.source} and {rpt.source} disagree on clock_uncertainty_ns "
                f"({xml.clock_uncertainty_ns} vs {rpt.clock_uncertainty_ns})"
            )
    if xml.available and rpt.available and xml.available != rpt.available:
        raise PipelineError(
            f"{xml.source} and {rpt.source} disagree on available resources "
            f"({xml.available} vs {rpt.available})"
        )


def _merge_hls(xml: HlsReport, rpt: HlsReport) -> HlsReport:
    """The XML's figures, plus what only the text report holds: the tool's name (the XML never
    states it) and the per-SLR capacities of multi-SLR parts."""
    _check_agreement(xml, rpt)
    if xml.tool != rpt.tool:
        log.debug("%s: tool is %s per %s", xml.source, rpt.tool, rpt.source)
    return dataclasses.replace(
        xml,
        tool=rpt.tool,
        available=xml.available or rpt.available,
        available_per_slr=xml.available_per_slr or rpt.available_per_slr,
        utilization_pct=xml.utilization_pct or rpt.utilization_pct,
    )


def _classify(path: Path) -> str:
    """'xml' | 'rpt' | 'vivado' from the file's content (copied files get renamed)."""
    head = _read_text(path)[:20000]
    if not head.strip():
        raise PipelineError(f"{path}: empty file, not a report")
    if head.lstrip().startswith("<"):
        return "xml"
    if _RPT_HEADER.search(head):
        return "rpt"
    if re.search(r"Tool Version\s*:\s*Vivado", head):
        return "vivado"
    raise PipelineError(
        f"{path}: not a recognised report (expected an HLS <top>_csynth.xml/.rpt "
        "or a Vivado report_utilization file)"
    )


def read_reports(path: str | os.PathLike[str], top: str | None = None) -> dict[str, Any]:
    """Everything readable about one design from a project folder or one report file:
    {"hls": HlsReport dict | None, "vivado_synth": UtilizationReport dict | None, "files": [...]}.

    The XML is preferred over the text report; when both exist they must agree.
    """
    path = Path(path)
    if not path.exists():
        raise PipelineError(f"{path}: no such file or folder")
    if path.is_file():
        kind = _classify(path)
        if kind == "vivado":
            utilization = read_vivado_utilization(path)
            if top is not None and utilization.top not in (None, top):
                raise PipelineError(f"{path}: describes design '{utilization.top}', not '{top}'")
            return {"hls": None, "vivado_synth": utilization.to_dict(), "files": [str(path)]}
        hls = read_csynth_xml(path) if kind == "xml" else read_csynth_rpt(path)
        if top is not None and hls.top != top:
            raise PipelineError(f"{path}: describes top '{hls.top}', not '{top}'")
        return {"hls": hls.to_dict(), "vivado_synth": None, "files": [str(path)]}

    found = find_reports(path, top)
    name = found.top or "<top>"
    if found.csynth_xml is None and found.csynth_rpt is None and found.vivado_synth is None:
        others = sorted(_report_tops(_walk(path)))
        hint = f"; there are reports of {', '.join(others)}: pass --top NAME" if others else ""
        raise PipelineError(
            f"{path}: no report found (looked for {name}_csynth.xml, csynth.xml, "
            f"{name}_csynth.rpt, csynth.rpt and vivado_synth.rpt in all subfolders){hint}"
        )
    files: list[str] = []
    hls: HlsReport | None = None
    if found.csynth_xml is not None:
        hls = read_csynth_xml(found.csynth_xml)
        files.append(str(found.csynth_xml))
        if hls.top != found.top:
            raise PipelineError(f"{found.csynth_xml}: describes top '{hls.top}', not '{found.top}'")
    if found.csynth_rpt is not None:
        text_report = read_csynth_rpt(found.csynth_rpt)
        files.append(str(found.csynth_rpt))
        if text_report.top != found.top:
            raise PipelineError(
                f"{found.csynth_rpt}: describes top '{text_report.top}', not '{found.top}'"
            )
        hls = text_report if hls is None else _merge_hls(hls, text_report)
    utilization: UtilizationReport | None = None
    if found.vivado_synth is not None:
        utilization = read_vivado_utilization(found.vivado_synth)
        files.append(str(found.vivado_synth))
        if found.top is not None and utilization.top not in (None, found.top):
            log.warning("%s: Vivado synthesized '%s', the HLS top is '%s'",
                        found.vivado_synth, utilization.top, found.top)
    return {
        "hls": hls.to_dict() if hls is not None else None,
        "vivado_synth": utilization.to_dict() if utilization is not None else None,
        "files": files,
    }


# ---------------------------------------------------------------------------------------------
# command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "path",
        metavar="PATH",
        type=Path,
        help="an hls4ml project folder, a folder of copied reports, or one report file",
    )
    parser.add_argument(
        "--top",
        metavar="NAME",
        default=None,
        help="top function to read (default: hls4ml's ProjectName, else found from the reports)",
    )
    parser.add_argument(
        "--output", metavar="FILE", type=Path, default=None, help="also write the JSON to FILE"
    )


def run(args: argparse.Namespace) -> int:
    result = read_reports(args.path, top=args.top)
    if args.output is not None:
        write_json(args.output, result)
    print(json.dumps(result, indent=2, sort_keys=True))
    return 0
