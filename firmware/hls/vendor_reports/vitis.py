"""Vivado HLS and Vitis HLS C-synthesis reports: `<top>_csynth.xml` (or Vitis' `csynth.xml`) and
its text twin `<top>_csynth.rpt`, each read into one HlsReport of the top function.

Only the top-level summary is read: Vitis' csynth.xml repeats the same blocks per sub-module
further down, and the first of those is not the design. When both files of one run are
present they must agree; the text report adds what the XML lacks (the tool's name, per-SLR
capacities).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import NamedTuple

from firmware.hls.vendor_reports.parsing import (
    parse_int,
    parse_time_ns,
    read_text,
    split_row,
)
from firmware.hls.vendor_reports.schema import HlsReport
from smartpix.errors import PipelineError

log = logging.getLogger(__name__)

# report key -> normalized key; Vivado HLS writes DSP48E, Vitis HLS writes DSP
HLS_KEY_ALIASES = {
    "LUT": "LUT",
    "FF": "FF",
    "DSP": "DSP",
    "DSP48E": "DSP",
    "DSP48E1": "DSP",
    "DSP48E2": "DSP",
    "BRAM_18K": "BRAM_18K",
    "URAM": "URAM",
}

RPT_HEADER = re.compile(r"^==\s*(Vivado HLS|Vitis HLS)\s+Report for '([^']+)'", re.MULTILINE)


# ---------------------------------------------------------------------------------------------
# figures both files give


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


class _XmlBlocks(NamedTuple):
    """The top-level blocks of a csynth.xml (direct children only: Vitis' csynth.xml repeats
    them per sub-module further down)."""

    root: ET.Element
    user: ET.Element | None
    perf: ET.Element | None
    timing: ET.Element | None
    overall: ET.Element | None
    area: ET.Element | None


def xml_child_text(node: ET.Element | None, tag: str) -> str | None:
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
        key = HLS_KEY_ALIASES.get(child.tag)
        if key is None or key in values:
            continue
        values[key] = parse_int(child.text, path, f"{where}/{child.tag}")
        raw_keys[key] = child.tag
    return values, raw_keys


def _hls_tool_from_xml(version: str, user: ET.Element | None, dsp_key: str | None) -> str:
    """The XML never names the tool; Vitis HLS writes FlowTarget and the key "DSP",
    Vivado HLS "DSP48E", and Vivado HLS ended with 2020.1."""
    if xml_child_text(user, "FlowTarget") is not None or dsp_key == "DSP":
        return "Vitis HLS"
    if _version_tuple(version) >= (2020, 2):
        return "Vitis HLS"
    return "Vivado HLS"


def _xml_blocks(path: Path) -> _XmlBlocks:
    try:
        root = ET.fromstring(read_text(path))
    except ET.ParseError as err:
        raise PipelineError(
            f"{path}: not well-formed XML ({err}); is the file truncated?"
        ) from None
    if root.tag != "profile":
        raise PipelineError(
            f"{path}: not an HLS C-synthesis report (root element <{root.tag}>, expected <profile>)"
        )
    perf = root.find("PerformanceEstimates")
    return _XmlBlocks(
        root=root,
        user=root.find("UserAssignments"),
        perf=perf,
        timing=perf.find("SummaryOfTimingAnalysis") if perf is not None else None,
        overall=perf.find("SummaryOfOverallLatency") if perf is not None else None,
        area=root.find("AreaEstimates"),
    )


_ESTIMATED_KEY = "PerformanceEstimates/SummaryOfTimingAnalysis/EstimatedClockPeriod"


def _xml_required(blocks: _XmlBlocks) -> dict[str, str | None]:
    """The figures without which the report says nothing, by their path in the file."""
    return {
        "ReportVersion/Version": xml_child_text(blocks.root.find("ReportVersion"), "Version"),
        "UserAssignments/TopModelName": xml_child_text(blocks.user, "TopModelName"),
        "UserAssignments/TargetClockPeriod": xml_child_text(blocks.user, "TargetClockPeriod"),
        _ESTIMATED_KEY: xml_child_text(blocks.timing, "EstimatedClockPeriod"),
        "SummaryOfOverallLatency/Best-caseLatency": xml_child_text(
            blocks.overall, "Best-caseLatency"
        ),
        "SummaryOfOverallLatency/Worst-caseLatency": xml_child_text(
            blocks.overall, "Worst-caseLatency"
        ),
    }


def _xml_interval(overall: ET.Element | None, path: Path) -> tuple[int, int] | None:
    """Interval-min/max, else the dataflow throughput (a number or a min/max range), else the
    pipeline II: the three ways HLS versions have written the initiation interval."""
    low = xml_child_text(overall, "Interval-min")
    high = xml_child_text(overall, "Interval-max")
    if low is not None and high is not None:
        return parse_int(low, path, "Interval-min"), parse_int(high, path, "Interval-max")
    if overall is None:
        return None
    throughput = overall.find("DataflowPipelineThroughput")
    if throughput is not None:
        span = throughput.find("range")
        if span is not None:
            low, high = xml_child_text(span, "min"), xml_child_text(span, "max")
            if low is not None and high is not None:
                return (
                    parse_int(low, path, "DataflowPipelineThroughput/range/min"),
                    parse_int(high, path, "DataflowPipelineThroughput/range/max"),
                )
        elif throughput.text and throughput.text.strip():
            value = parse_int(throughput.text, path, "DataflowPipelineThroughput")
            return value, value
    ii = xml_child_text(overall, "PipelineInitiationInterval")
    if ii is not None:
        value = parse_int(ii, path, "PipelineInitiationInterval")
        return value, value
    return None


def _xml_optional_ns(text: str | None, path: Path, what: str) -> float | None:
    return parse_time_ns(text, path, what) if text is not None else None


def read_csynth_xml(path: str | os.PathLike[str]) -> HlsReport:
    """Read a `<top>_csynth.xml` (or Vitis `csynth.xml`): the top-level summary only."""
    path = Path(path)
    blocks = _xml_blocks(path)
    required = _xml_required(blocks)
    missing = [name for name, value in required.items() if value is None]
    resources, raw_keys = _xml_resources(
        blocks.area.find("Resources") if blocks.area is not None else None,
        path,
        "AreaEstimates/Resources",
    )
    if not resources:
        missing.append("AreaEstimates/Resources")
    interval = _xml_interval(blocks.overall, path)
    if interval is None:
        missing.append("SummaryOfOverallLatency/Interval-min and Interval-max")
    if missing or interval is None:
        raise PipelineError(f"{path}: HLS report is missing {', '.join(missing)}")
    return _xml_report(path, blocks, required, resources, raw_keys, interval)


def _xml_report(
    path: Path,
    blocks: _XmlBlocks,
    required: dict[str, str | None],
    resources: dict[str, int],
    raw_keys: dict[str, str],
    interval: tuple[int, int],
) -> HlsReport:
    """The HlsReport of a csynth.xml whose required figures are all present."""
    user, overall = blocks.user, blocks.overall
    unit = xml_child_text(user, "unit") or "ns"
    version = required["ReportVersion/Version"] or ""
    target = parse_time_ns(
        f"{required['UserAssignments/TargetClockPeriod']} {unit}", path, "TargetClockPeriod"
    )
    uncertainty = xml_child_text(user, "ClockUncertainty")
    timing_unit = xml_child_text(blocks.timing, "unit") or unit
    best = parse_int(required["SummaryOfOverallLatency/Best-caseLatency"], path, "Best-caseLatency")
    worst = parse_int(
        required["SummaryOfOverallLatency/Worst-caseLatency"], path, "Worst-caseLatency"
    )
    average = xml_child_text(overall, "Average-caseLatency")
    available, _ = _xml_resources(
        blocks.area.find("AvailableResources") if blocks.area is not None else None,
        path,
        "AreaEstimates/AvailableResources",
    )
    pipeline_type = xml_child_text(blocks.perf, "PipelineType")
    return HlsReport(
        source=str(path),
        tool=_hls_tool_from_xml(version, user, raw_keys.get("DSP")),
        tool_version=version,
        top=required["UserAssignments/TopModelName"] or "",
        part=xml_child_text(user, "Part"),
        family=xml_child_text(user, "ProductFamily"),
        clock_target_ns=target,
        clock_uncertainty_ns=(
            parse_time_ns(f"{uncertainty} {unit}", path, "ClockUncertainty")
            if uncertainty is not None
            else None
        ),
        clock_estimated_ns=parse_time_ns(
            f"{required[_ESTIMATED_KEY]} {timing_unit}", path, "EstimatedClockPeriod"
        ),
        latency_best_cycles=best,
        latency_worst_cycles=worst,
        latency_average_cycles=(
            parse_int(average, path, "Average-caseLatency") if average is not None else None
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
        latency_best_ns_reported=_xml_optional_ns(
            xml_child_text(overall, "Best-caseRealTimeLatency"), path, "Best-caseRealTimeLatency"
        ),
        latency_worst_ns_reported=_xml_optional_ns(
            xml_child_text(overall, "Worst-caseRealTimeLatency"), path,
            "Worst-caseRealTimeLatency",
        ),
    )


def csynth_xml_top(path: Path) -> str | None:
    """TopModelName of a csynth.xml, or None if unreadable (discovery must not fail on it)."""
    try:
        root = ET.fromstring(read_text(path))
    except (ET.ParseError, PipelineError):
        return None
    return xml_child_text(root.find("UserAssignments"), "TopModelName")


# ---------------------------------------------------------------------------------------------
# csynth.rpt


class _RptTables(NamedTuple):
    version: str
    timing: list[list[str]]  # header row, then one row per clock
    latency: list[list[str]]  # two header rows, then the summary row
    utilization: list[list[str]]  # header row with the resource names, then named rows


class _RptClock(NamedTuple):
    target_ns: float
    estimated_ns: float
    uncertainty_ns: float | None


class _RptLatency(NamedTuple):
    best: int
    worst: int
    best_ns_reported: float | None
    worst_ns_reported: float | None
    interval_min: int
    interval_max: int
    pipeline_type: str | None


class _RptUtilization(NamedTuple):
    names: list[str]  # the resource columns as written
    rows: dict[str, list[str]]  # row label -> cells
    raw_keys: dict[str, str]  # normalized key -> column name as written
    resources: dict[str, int]
    available: dict[str, int]
    available_per_slr: dict[str, int]


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
            rows.append(split_row(line))
        elif not _BORDER.match(line):
            break
        index += 1
    return rows


def _rpt_tables(lines: list[str], path: Path) -> _RptTables:
    """The version line and the timing, latency and utilization summary tables, every missing
    one named in a single error."""
    version = _rpt_field(lines, "Version")
    missing = []
    if version is None:
        missing.append("'* Version:' line")
    perf = _find(lines, r"^==\s*Performance Estimates")
    util = _find(lines, r"^==\s*Utilization Estimates")
    timing_at = _find(lines, r"^\+\s*Timing", perf) if perf is not None else None
    latency_at = _find(lines, r"^\+\s*Latency", perf) if perf is not None else None
    timing = latency = utilization = None
    if timing_at is not None:
        timing = _table_after(lines, timing_at, latency_at)
    if latency_at is not None:
        detail = _find(lines, r"^\s*\+\s*Detail", latency_at)
        latency = _table_after(lines, latency_at, detail or util)
    if util is not None:
        utilization = _table_after(lines, util, _find(lines, r"^\s*\+\s*Detail", util))
    if not timing or len(timing) < 2:
        missing.append("timing summary table (Clock | Target | Estimated | Uncertainty)")
    if not latency or len(latency) < 3:
        missing.append("latency summary table (Latency | Interval | Pipeline Type)")
    if not utilization or len(utilization) < 2:
        missing.append("utilization summary table (Name | BRAM_18K | DSP | FF | LUT | URAM)")
    if missing or not timing or not latency or not utilization or version is None:
        raise PipelineError(f"{path}: HLS report is missing {', '.join(missing)}")
    return _RptTables(version, timing, latency, utilization)


def _rpt_clock(timing_rows: list[list[str]], path: Path) -> _RptClock:
    """The header row names the columns; the first clock row is the design clock."""
    columns = [cell.lower() for cell in timing_rows[0]]
    clock_row = timing_rows[1]

    def cell(name: str) -> str | None:
        if name in columns and columns.index(name) < len(clock_row):
            return clock_row[columns.index(name)] or None
        return None

    target, estimated = cell("target"), cell("estimated")
    if target is None or estimated is None:
        raise PipelineError(f"{path}: timing summary has no Target/Estimated clock ({clock_row})")
    uncertainty = cell("uncertainty")
    target_ns = parse_time_ns(target, path, "target clock")
    return _RptClock(
        target_ns=target_ns,
        estimated_ns=parse_time_ns(estimated, path, "estimated clock"),
        uncertainty_ns=(
            parse_time_ns(uncertainty, path, "clock uncertainty") if uncertainty else None
        ),
    )


def _rpt_latency(latency_rows: list[list[str]], path: Path) -> _RptLatency:
    """Two header rows, then one data row: 7 columns (cycles, absolute, interval, type) since
    2019.2, 5 columns (cycles, interval, type) before."""
    data = latency_rows[2]
    if len(data) == 7:
        best_text, worst_text, best_rt, worst_rt, ii_low, ii_high, pipeline_type = data
    elif len(data) == 5:
        best_text, worst_text, ii_low, ii_high, pipeline_type = data
        best_rt = worst_rt = None
    else:
        raise PipelineError(f"{path}: latency summary row has {len(data)} columns, expected 7 or 5")
    best = parse_int(best_text, path, "latency min (cycles)")
    worst = parse_int(worst_text, path, "latency max (cycles)")
    return _RptLatency(
        best=best,
        worst=worst,
        best_ns_reported=(
            parse_time_ns(best_rt, path, "latency min (absolute)") if best_rt else None
        ),
        worst_ns_reported=(
            parse_time_ns(worst_rt, path, "latency max (absolute)") if worst_rt else None
        ),
        interval_min=parse_int(ii_low, path, "interval min"),
        interval_max=parse_int(ii_high, path, "interval max"),
        pipeline_type=pipeline_type or None,
    )


def _rpt_utilization(util_rows: list[list[str]], path: Path) -> _RptUtilization:
    """A header row with the resource names, then named rows ("Total", "Available",
    "Available SLR", "Utilization (%)"...)."""
    names = util_rows[0][1:]
    rows = {row[0]: row[1:] for row in util_rows[1:] if row}
    if "Total" not in rows:
        raise PipelineError(f"{path}: utilization summary has no 'Total' row")
    raw_keys: dict[str, str] = {}
    for name in names:
        key = HLS_KEY_ALIASES.get(name)
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
                values[key] = parse_int(cells[position], path, f"utilization '{label}' {raw}")
        return values

    resources = row_values("Total")
    available = row_values("Available")
    per_slr = row_values("Available SLR")
    if not resources:
        raise PipelineError(
            f"{path}: utilization summary 'Total' row has no LUT/FF/DSP/BRAM_18K/URAM column"
        )
    return _RptUtilization(names, rows, raw_keys, resources, available, per_slr)


def read_csynth_rpt(path: str | os.PathLike[str]) -> HlsReport:
    """Read a `<top>_csynth.rpt`: header, timing, latency/interval summary and the
    utilization summary ("Total", "Available", "Available SLR" rows)."""
    path = Path(path)
    text = read_text(path)
    header = RPT_HEADER.search(text)
    if header is None:
        raise PipelineError(
            f"{path}: not an HLS C-synthesis report "
            "(no \"== Vivado HLS Report for '<top>'\" or \"== Vitis HLS Report for '<top>'\" line)"
        )
    lines = text.splitlines()
    tables = _rpt_tables(lines, path)
    clock = _rpt_clock(tables.timing, path)
    latency = _rpt_latency(tables.latency, path)
    util = _rpt_utilization(tables.utilization, path)
    report = HlsReport(
        source=str(path),
        tool=header.group(1),
        tool_version=tables.version.split()[0],
        top=header.group(2),
        part=_rpt_field(lines, "Target device"),
        family=_rpt_field(lines, "Product family"),
        clock_target_ns=clock.target_ns,
        clock_uncertainty_ns=clock.uncertainty_ns,
        clock_estimated_ns=clock.estimated_ns,
        latency_best_cycles=latency.best,
        latency_worst_cycles=latency.worst,
        latency_average_cycles=None,  # the text report gives min and max only
        latency_best_ns=round(latency.best * clock.target_ns, 6),
        latency_worst_ns=round(latency.worst * clock.target_ns, 6),
        interval_min=latency.interval_min,
        interval_max=latency.interval_max,
        pipeline_type=latency.pipeline_type,
        resources=util.resources,
        available=util.available,
        available_per_slr=util.available_per_slr,
        utilization_pct=_utilization(util.resources, util.available, path),
        pipeline_kind=_pipeline_kind(latency.pipeline_type),
        resource_keys=util.raw_keys,
        latency_best_ns_reported=latency.best_ns_reported,
        latency_worst_ns_reported=latency.worst_ns_reported,
    )
    _check_reported_percentages(path, util, report)
    return report


def _check_reported_percentages(path: Path, util: _RptUtilization, report: HlsReport) -> None:
    """The tool prints floor(100 x used / available) ("~0" below 1 %); a different figure means
    the columns were read wrongly or the file was edited, worth a warning, not a failure."""
    checks = (
        ("Utilization (%)", report.available),
        ("Utilization SLR (%)", report.available_per_slr),
    )
    for label, totals in checks:
        cells = util.rows.get(label)
        if cells is None:
            continue
        for key, raw in util.raw_keys.items():
            position = util.names.index(raw)
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


def csynth_rpt_top(path: Path) -> str | None:
    """The top a csynth.rpt reports on, or None if unreadable (discovery must not fail on it)."""
    try:
        match = RPT_HEADER.search(read_text(path))
    except PipelineError:
        return None
    return match.group(2) if match else None


# ---------------------------------------------------------------------------------------------
# the two files of one run


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


def merge_hls(xml: HlsReport, rpt: HlsReport) -> HlsReport:
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
