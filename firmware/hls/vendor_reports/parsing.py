"""Parsing primitives every reader shares: reading a report file, numbers and times that name
the file and the figure when they are malformed, and the cells of an ASCII table row."""

from __future__ import annotations

import math
import re
from pathlib import Path

from smartpix.errors import PipelineError

_TIME_UNITS_NS = {"ps": 1e-3, "ns": 1.0, "us": 1e3, "ms": 1e6, "s": 1e9, "sec": 1e9}


def read_text(path: Path) -> str:
    if not path.exists():
        raise PipelineError(f"{path}: no such file")
    if not path.is_file():
        raise PipelineError(f"{path}: not a file")
    try:
        # reports are ASCII; a stray byte must not hide the figures around it
        return path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as err:
        raise PipelineError(f"{path}: cannot read ({err.strerror})") from err


def parse_int(text: str | None, path: Path, what: str) -> int:
    try:
        return int(str(text).strip())
    except ValueError:
        raise PipelineError(f"{path}: {what} is not an integer ({text!r})") from None


def parse_float(text: str | None, path: Path, what: str) -> float:
    try:
        value = float(str(text).strip())
    except ValueError:
        raise PipelineError(f"{path}: {what} is not a number ({text!r})") from None
    if not math.isfinite(value):
        raise PipelineError(f"{path}: {what} is not a finite number ({text!r})")
    return value


def parse_time_ns(text: str, path: Path, what: str, default_unit: str = "ns") -> float:
    """'0.480 ms' -> 480000.0; a bare number is in `default_unit` (older reports omit it)."""
    match = re.fullmatch(r"\s*([-+0-9.eE]+)\s*([a-z]*)\s*", text)
    if not match:
        raise PipelineError(f"{path}: {what} is not a time ({text!r})")
    unit = match.group(2) or default_unit
    if unit not in _TIME_UNITS_NS:
        raise PipelineError(f"{path}: {what} has an unknown time unit ({text!r})")
    return round(parse_float(match.group(1), path, what) * _TIME_UNITS_NS[unit], 6)


def split_row(line: str) -> list[str]:
    """The stripped cells of a `| a | b |` table row."""
    text = line.strip()
    if text.startswith("|"):
        text = text[1:]
    if text.endswith("|"):
        text = text[:-1]
    return [cell.strip() for cell in text.split("|")]
