"""Vivado `report_utilization` (hls4ml's `vivado_synth.rpt`): LUT, FF, DSP, BRAM tiles and URAM
of the synthesized netlist, in 7-series ("Slice") and UltraScale(+) ("CLB") spellings, with or
without the "Prohibited" column."""

from __future__ import annotations

import os
import re
from pathlib import Path

from firmware.hls.vendor_reports.parsing import parse_float, read_text, split_row
from firmware.hls.vendor_reports.schema import UtilizationReport
from smartpix.errors import PipelineError

# normalized key -> Site Type rows of report_utilization, 7-series and UltraScale(+) spellings
_VIVADO_ROWS = {
    "LUT": ("CLB LUTs", "Slice LUTs"),
    "FF": ("CLB Registers", "Slice Registers"),
    "DSP": ("DSPs",),
    "BRAM_TILE": ("Block RAM Tile",),
    "URAM": ("URAM",),
}
_VIVADO_REQUIRED = ("LUT", "FF", "DSP", "BRAM_TILE")  # URAM rows exist only on parts that have it

# Site Type -> (name as written, used, available, Util% text)
_SiteRows = dict[str, tuple[str, float, float, str]]


def _header(lines: list[str], path: Path) -> tuple[dict[str, str], str]:
    """The `| Key : value` lines above the first table, and the Vivado version they state."""
    header: dict[str, str] = {}
    for line in lines:
        if line.strip() == "Utilization Design Information" or line.lstrip().startswith("+"):
            break
        match = re.match(r"^\|\s*([A-Za-z][A-Za-z ]*?)\s*:\s*(.*?)\s*$", line)
        if match:
            header.setdefault(match.group(1), match.group(2))
    version = re.search(r"Vivado\s+v\.?(\S+)", header.get("Tool Version") or "")
    if version is None:
        raise PipelineError(
            f"{path}: not a Vivado utilization report "
            "(no '| Tool Version : Vivado v.<version>' line)"
        )
    command = header.get("Command")
    if command is not None and not command.startswith("report_utilization"):
        raise PipelineError(f"{path}: written by '{command.split()[0]}', not report_utilization")
    return header, version.group(1)


def read_vivado_utilization(path: str | os.PathLike[str]) -> UtilizationReport:
    """Read a Vivado `report_utilization` file (`vivado_synth.rpt`): LUT, FF, DSP, BRAM tiles
    and URAM with their Available and Util% columns, located by column name."""
    path = Path(path)
    lines = read_text(path).splitlines()
    header, version = _header(lines, path)
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
        tool_version=version,
        top=header.get("Design") or None,
        device=header.get("Device") or None,
        used=used,
        available=available,
        utilization_pct=pct,
        design_state=header.get("Design State") or None,
        site_types=site_types,
    )


def _vivado_site_rows(lines: list[str], path: Path) -> _SiteRows:
    """Site Type -> (name as written, used, available, Util% text), first table that has it.

    Only tables whose header has Used, Available and Util% columns count: the per-SLR tables
    of multi-SLR parts repeat the same site names with other columns.
    """
    rows: _SiteRows = {}
    columns: dict[str, int] | None = None
    for line in lines:
        stripped = line.lstrip()
        if not stripped.startswith(("|", "+")):
            columns = None
            continue
        if not stripped.startswith("|"):
            continue
        cells = split_row(line)
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
            parse_float(used_text, path, f"'{raw_name}' Used"),
            parse_float(available_text, path, f"'{raw_name}' Available"),
            cells[columns["Util%"]],
        )
    return rows


def _vivado_pct(text: str, used: float, available: float, path: Path, name: str) -> float:
    if text and not text.startswith("<"):
        return parse_float(text, path, f"'{name}' Util%")
    # "<0.01" (or blank): the report only bounds it, so compute it from the counts it gives
    return round(100.0 * used / available, 2) if available else 0.0


def is_vivado_utilization(head: str) -> bool:
    """Whether the start of a file reads like a Vivado report (a report renamed when copied)."""
    return re.search(r"Tool Version\s*:\s*Vivado", head) is not None
