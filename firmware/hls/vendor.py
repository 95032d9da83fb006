"""Vendor HLS tool runs: detected on PATH, never assumed (vivado_hls for Vivado, vitis-run or
vitis_hls for Vitis, catapult for Catapult, also found through $MGC_HOME or $CATAPULT_HOME).
hls4ml's own build script runs in the project folder with its log kept beside it, and the
reports it writes (Vivado/Vitis C-synthesis reports, Catapult's layer table) are read back into
the figure schema of `firmware.hls.vendor_reports`."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firmware.config import HardwareConfig
from smartpix.errors import PipelineError

log = logging.getLogger(__name__)

INSTALL_HINTS = {
    "Vivado": "install Vivado HLS (<= 2020.1) and source its settings64.sh so that vivado_hls is on PATH",
    "Vitis": "install Vitis HLS (>= 2020.2) and source its settings64.sh so that vitis-run (or vitis_hls) is on PATH",
    "Catapult": "install Catapult HLS and put $MGC_HOME/bin on PATH (or set MGC_HOME / CATAPULT_HOME)",
}


@dataclass
class VendorResult:
    config: str
    backend: str
    status: str  # "done" | "tool missing" | "failed" (the tool's exit status, not its figures)
    tool: str | None = None
    message: str = ""
    seconds: float = 0.0
    log: str | None = None
    reports: dict[str, Any] | None = None


def find_vendor_tool(backend: str) -> str | None:
    """Path of the backend's HLS tool, or None."""
    names = {"Vivado": ["vivado_hls"], "Vitis": ["vitis-run", "vitis_hls"], "Catapult": ["catapult"]}[backend]
    for name in names:
        path = shutil.which(name)
        if path:
            return path
    if backend == "Catapult":
        for variable in ("MGC_HOME", "CATAPULT_HOME"):
            home = os.environ.get(variable)
            if home and os.access(Path(home) / "bin" / "catapult", os.X_OK):
                return str(Path(home) / "bin" / "catapult")
    return None


def vendor_command(backend: str, tool: str, csynth: bool, vsynth: bool, cosim: bool) -> list[str]:
    """hls4ml's build invocation for the backend (the same options its ModelGraph.build uses)."""
    flags = {"reset": 0, "csim": 0, "synth": int(csynth), "cosim": int(cosim), "validation": 0,
             "export": int(vsynth), "vsynth": int(vsynth), "fifo_opt": 0}
    argv = " ".join(f"{k}={v}" for k, v in flags.items())
    if backend == "Vivado":
        return [tool, "-f", "build_prj.tcl", argv]
    if backend == "Vitis":
        if Path(tool).name == "vitis_hls":
            return [tool, "-f", "build_prj.tcl"]
        return [tool, "--tcl", "build_prj.tcl", "--mode", "hls"]
    return [tool, "-product", "ultra", "-shell", "-f", "build_prj.tcl", "-eval", f'set ::argv "{argv}"']


def _write_build_options(project: Path, csynth: bool, vsynth: bool, cosim: bool) -> None:
    """Vitis' build_prj.tcl reads its options from build_opt.tcl."""
    options = {"reset": 0, "csim": 0, "synth": int(csynth), "cosim": int(cosim), "validation": 0,
               "export": int(vsynth), "vsynth": int(vsynth), "fifo_opt": 0}
    body = "".join(f"    {k:<10} {v}\n" for k, v in options.items())
    (project / "build_opt.tcl").write_text("array set opt {\n" + body + "}\n")


def run_vendor(config: HardwareConfig, project: Path, vsynth: bool = False, cosim: bool = False) -> VendorResult:
    """C synthesis (and optionally logic synthesis / co-simulation) with the vendor tool."""
    tool = find_vendor_tool(config.backend)
    if tool is None:
        return VendorResult(config.name, config.backend, "tool missing",
                            message=f"{config.backend} HLS not found: {INSTALL_HINTS[config.backend]}")
    if config.backend == "Vitis":
        _write_build_options(project, True, vsynth, cosim)
    log_path = project / "vendor_build.log"
    started = time.perf_counter()
    with open(log_path, "w") as log_file:
        process = subprocess.run(vendor_command(config.backend, tool, True, vsynth, cosim), cwd=project,
                                 stdout=log_file, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - started
    result = VendorResult(config.name, config.backend, "done", tool=tool, seconds=round(seconds, 1), log=str(log_path))
    _read_back(result, project, process.returncode, log_path)
    return result


def _read_back(result: VendorResult, project: Path, returncode: int, log_path: Path) -> None:
    """Judge the run by the tool's exit status and attach whatever figures it left.

    Figures that cannot be read after a run that succeeded do not make it failed (the tool
    did its work; a Catapult without hls4ml's /HLS4ML flow package writes no layer table),
    but the message says why the figures are missing, and the summary repeats it.
    """
    from firmware.hls.vendor_reports import read_reports

    try:
        result.reports = read_reports(project)
        unreadable = None
    except PipelineError as err:
        unreadable = str(err)
    if returncode != 0:
        result.status = "failed"
        tool = Path(result.tool or "").name
        result.message = f"{tool} exited with status {returncode}: {_last_error(log_path)}"
    elif unreadable is not None:
        result.message = f"synthesis finished, but its figures could not be read: {unreadable}"


def _last_error(log_path: Path) -> str:
    lines = log_path.read_text(errors="replace").splitlines() if log_path.is_file() else []
    errors = [line.strip() for line in lines if "ERROR" in line or "Error" in line]
    return errors[-1] if errors else (lines[-1].strip() if lines else "(empty log)")


