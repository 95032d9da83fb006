"""Catapult HLS results: the per-layer table
`<ProjectDir>/<ProjectName>.v<N>/nnet_layer_results.txt` that hls4ml's Catapult build script
has Catapult write (`flow run /HLS4ML/collect_reports`), read into a CatapultReport.

The file holds fixed-width tables, each under a title underlined with '=' and a header framed
by dash rules whose runs of dashes mark the columns:

    Layer
    =====
    ------------------------------  ------  --  ------  -------  -------  --------  ...
    Layer                           Unroll  II  Area    Latency  Thruput  TotalPwr  ...
    ------------------------------  ------  --  ------  -------  -------  --------  ...
    nnet::dense<...,config11>                   212730  18       18       NaN       ...

Cells are cut at the columns' start positions, so blank cells (Unroll and II usually are) stay
blank instead of shifting the figures left. The table states neither the part nor the clock:
those come from the project's build_prj.tcl or hls4ml_config.yml when they sit beside it.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import NamedTuple

from firmware.hls.vendor_reports.parsing import parse_float, parse_int, read_text
from firmware.hls.vendor_reports.schema import CatapultFifo, CatapultLayer, CatapultReport
from smartpix.errors import PipelineError

RESULTS_FILE = "nnet_layer_results.txt"
AREA_UNITS = "library area units"
SOLUTION = re.compile(r"(?P<top>.+)\.v(?P<version>\d+)")  # Catapult's "<top>.v<N>" folders

_RULE = re.compile(r"^\s*-+(?:\s+-+)*\s*$")
_UNDERLINE = re.compile(r"^\s*=+\s*$")
_LAYER_COLUMNS = ("Layer", "Area", "Latency", "Thruput")
_FIFO_COLUMNS = ("C++ Variable", "Width", "Depth", "Area")
_TOTAL_NAMES = ("total", "design total")


class ProjectContext(NamedTuple):
    """What the project's own files say about the run that the layer table does not."""

    top: str | None
    part: str | None
    technology: str | None
    clock_ns: float | None


# ---------------------------------------------------------------------------------------------
# the fixed-width tables


def is_catapult_layer_table(text: str) -> bool:
    """Whether a file reads like the layer table (a copy may have been renamed)."""
    sections = _sections(text.splitlines())
    return "Layer" in sections and any("Thruput" in line for line in sections["Layer"])


def _sections(lines: list[str]) -> dict[str, list[str]]:
    """Title -> the lines below it up to the next title; a title is underlined with '='."""
    sections: dict[str, list[str]] = {}
    title: str | None = None
    for index, line in enumerate(lines):
        below = lines[index + 1] if index + 1 < len(lines) else ""
        if line.strip() and not _UNDERLINE.match(line) and _UNDERLINE.match(below):
            title = line.strip()
            sections[title] = []
        elif title is not None:
            sections[title].append(line)
    return sections


def _cut(line: str, starts: list[int], path: Path) -> list[str]:
    """The cells of `line` at the columns starting at `starts`; a word across a column border
    means the row does not line up with the header, and its figures cannot be trusted."""
    for start in starts[1:]:
        if 0 < start < len(line) and line[start - 1] != " " and line[start] != " ":
            raise PipelineError(
                f"{path}: row does not line up with its table's columns: {line.strip()!r}"
            )
    ends = starts[1:] + [len(line)]
    return [line[start:end].strip() for start, end in zip(starts, ends)]


def _table(
    lines: list[str], path: Path, title: str, required: tuple[str, ...]
) -> list[dict[str, str]]:
    """The rows of the first table in a section, as column name -> cell."""
    rules = [index for index, line in enumerate(lines) if _RULE.match(line)]
    if len(rules) < 2 or rules[1] != rules[0] + 2:
        raise PipelineError(f"{path}: '{title}' has no table (a header between two dash rules)")
    starts = [match.start() for match in re.finditer(r"-+", lines[rules[0]])]
    names = _cut(lines[rules[0] + 1], starts, path)
    missing = [name for name in required if name not in names]
    if missing:
        raise PipelineError(f"{path}: '{title}' table has no {', '.join(missing)} column")
    rows = []
    for line in lines[rules[1] + 1:]:
        if not line.strip() or _RULE.match(line):
            break
        rows.append(dict(zip(names, _cut(line, starts, path))))
    return rows


# ---------------------------------------------------------------------------------------------
# layers, FIFOs and the overall figures


def _layer(row: dict[str, str], path: Path) -> CatapultLayer:
    name = row["Layer"]
    return CatapultLayer(
        name=name,
        area=_area(row["Area"], path, f"area of layer {name}"),
        latency_cycles=parse_int(row["Latency"], path, f"latency of layer {name}"),
        throughput_cycles=parse_int(row["Thruput"], path, f"throughput of layer {name}"),
    )


def _fifo(row: dict[str, str], path: Path) -> CatapultFifo:
    name = row["C++ Variable"]
    return CatapultFifo(
        variable=name,
        width=parse_int(row["Width"], path, f"width of FIFO {name}"),
        depth=parse_int(row["Depth"], path, f"depth of FIFO {name}"),
        area=_area(row["Area"], path, f"area of FIFO {name}"),
    )


def _area(text: str, path: Path, what: str) -> float:
    """Areas as written: integers stay integers, so sums print as the tool's figures do."""
    if re.fullmatch(r"\d+", text.strip()):
        return int(text)
    return parse_float(text, path, what)


def overall_latency(
    layers: list[CatapultLayer], total: CatapultLayer | None
) -> tuple[int, int, str]:
    """(latency cycles, interval cycles, basis) of the whole design.

    A total the report states wins. Otherwise the latency is the largest per-layer latency
    and the interval the largest per-layer throughput. Why the largest and not the sum: the
    layers are concurrent Catapult blocks joined by FIFO channels, and in a streamed design
    (channels a pixel wide, as in the smart-pixel table) a layer starts on the first pixels
    while the one before is still reading the rest, so one event's path overlaps the layers
    and the slowest block bounds it from below and dominates it. The sum of the per-layer
    latencies, kept beside it as `latency_layers_sum_cycles`, is the figure when every layer
    starts only after the previous one finished (channels that carry a whole array), the
    other end of the range. Neither is a cycle-accurate end-to-end measurement: that takes
    Catapult's own simulation (SCVerify), which the layer table does not report.
    """
    if total is not None:
        return total.latency_cycles, total.throughput_cycles, "total stated in the report"
    return (
        max(layer.latency_cycles for layer in layers),
        max(layer.throughput_cycles for layer in layers),
        "largest layer latency",
    )


# ---------------------------------------------------------------------------------------------
# the project around the table


def project_context(output_dir: Path | None) -> ProjectContext:
    """Top, part, technology and clock from hls4ml's build_prj.tcl (what Catapult ran), else
    hls4ml_config.yml, in the hls4ml output folder; each None when neither states it.

    Both are read with patterns, not a YAML parser: hls4ml_config.yml holds a `!keras_model`
    tag that yaml.safe_load refuses.
    """
    found: dict[str, str] = {}
    if output_dir is not None:
        script = _optional_text(output_dir / "build_prj.tcl")
        config = _optional_text(output_dir / "hls4ml_config.yml")
        patterns = (
            ("top", script, r"^\s*set\s+design_top\s+(\S+)"),
            ("asic", script, r"^\s*setup_asic_libs\s+\{?([^}\s]+)"),
            ("fpga", script, r"^\s*setup_xilinx_part\s+\{?([^}\s]+)"),
            ("clock", script, r"^\s*set\s+hls_clock_period\s+([0-9.]+)"),
            ("top", config, r"^ProjectName:\s*['\"]?([A-Za-z_]\w*)"),
            ("technology", config, r"^Technology:\s*['\"]?(\w+)"),
            ("asic", config, r"^ASICLibs:\s*['\"]?([^'\"\s]+)"),
            ("fpga", config, r"^Part:\s*['\"]?([^'\"\s]+)"),
            ("clock", config, r"^ClockPeriod:\s*([0-9.]+)"),
        )
        for key, text, pattern in patterns:
            match = re.search(pattern, text, re.MULTILINE)
            if match and key not in found:
                found[key] = match.group(1)
    technology = found.get("technology")
    if technology is None:
        technology = "asic" if "asic" in found else "fpga" if "fpga" in found else None
    part = found.get("asic") if technology == "asic" else found.get("fpga")
    clock = float(found["clock"]) if "clock" in found else None
    return ProjectContext(found.get("top"), part, technology, clock)


def _optional_text(path: Path) -> str:
    return read_text(path) if path.is_file() else ""


def output_dir_of(results: Path) -> Path | None:
    """hls4ml's output folder of a `<ProjectDir>/<top>.v<N>/nnet_layer_results.txt`, or None
    when the file does not sit in such a folder (a copy on its own)."""
    if SOLUTION.fullmatch(results.parent.name) is None:
        return None
    return results.parent.parent.parent


# ---------------------------------------------------------------------------------------------
# the reader


def read_catapult_layers(path: str | os.PathLike[str]) -> CatapultReport:
    """Read a Catapult `nnet_layer_results.txt` (and the project files around it, if present)."""
    path = Path(path)
    sections = _sections(read_text(path).splitlines())
    if "Layer" not in sections:
        raise PipelineError(
            f"{path}: not a Catapult layer report (no 'Layer' title underlined with '=')"
        )
    rows = [_layer(row, path) for row in _table(sections["Layer"], path, "Layer", _LAYER_COLUMNS)]
    layers = [row for row in rows if row.name.lower() not in _TOTAL_NAMES]
    totals = [row for row in rows if row.name.lower() in _TOTAL_NAMES]
    if not layers:
        raise PipelineError(f"{path}: the 'Layer' table has no layer rows")
    fifo_lines = sections.get("FIFO Interconnect")
    fifos = (
        [_fifo(row, path) for row in _table(fifo_lines, path, "FIFO Interconnect", _FIFO_COLUMNS)]
        if fifo_lines is not None else []
    )
    return _report(path, layers, fifos, totals[0] if totals else None)


def _report(
    path: Path, layers: list[CatapultLayer], fifos: list[CatapultFifo], total: CatapultLayer | None
) -> CatapultReport:
    solution = SOLUTION.fullmatch(path.parent.name)
    context = project_context(output_dir_of(path))
    latency, interval, basis = overall_latency(layers, total)
    clock = context.clock_ns
    area_layers = sum(layer.area for layer in layers)
    area_fifos = sum(fifo.area for fifo in fifos)
    return CatapultReport(
        source=str(path),
        tool="Catapult",
        tool_version=None,
        top=solution.group("top") if solution else context.top,
        solution=path.parent.name if solution else None,
        part=context.part,
        technology=context.technology,
        clock_target_ns=clock,
        latency_best_cycles=latency,
        latency_worst_cycles=latency,
        latency_best_ns=round(latency * clock, 6) if clock is not None else None,
        latency_worst_ns=round(latency * clock, 6) if clock is not None else None,
        latency_basis=basis,
        latency_layers_sum_cycles=sum(layer.latency_cycles for layer in layers),
        interval_min=interval,
        interval_max=interval,
        area_units=AREA_UNITS,
        area_layers=area_layers,
        area_fifos=area_fifos,
        area_total=area_layers + area_fifos,
        layers=layers,
        fifos=fifos,
        stated_total=total,
    )
