"""Synthesis: the vendor HLS tool where it is installed, and the open RTL flow everywhere.

Vendor tools are detected on PATH, never assumed: vivado_hls (Vivado backend), vitis-run or
vitis_hls (Vitis), catapult (Catapult, also found through $MGC_HOME or $CATAPULT_HOME). When
one is there, hls4ml's own build script runs in the project folder (C synthesis; Vivado logic
synthesis and co-simulation on request), its log kept beside the project, and the reports it
writes are read back. When it is missing, one line says so and how to point to it. The open
flow (da4ml Verilog, Verilator, Yosys) needs no license and runs for every configuration it
supports. Results go to build/reports/synth.json; the exit status says whether anything that
was requested and could run failed.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import subprocess
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from firmware.config import add_selection_arguments, HardwareConfig, load_configs
from firmware.convert import DEFAULT_FIRMWARE_DIR, ensure_projects
from smartpix.artifacts import write_json
from smartpix.errors import PipelineError

log = logging.getLogger(__name__)

DEFAULT_REPORTS = Path("build/reports")
INSTALL_HINTS = {
    "Vivado": "install Vivado HLS (<= 2020.1) and source its settings64.sh so that vivado_hls is on PATH",
    "Vitis": "install Vitis HLS (>= 2020.2) and source its settings64.sh so that vitis-run (or vitis_hls) is on PATH",
    "Catapult": "install Catapult HLS and put $MGC_HOME/bin on PATH (or set MGC_HOME / CATAPULT_HOME)",
}


@dataclass
class VendorResult:
    config: str
    backend: str
    status: str  # "done" | "tool missing" | "failed"
    tool: str | None = None
    message: str = ""
    seconds: float = 0.0
    log: str | None = None
    reports: dict[str, Any] | None = None


@dataclass
class SynthResult:
    config: str
    vendor: VendorResult
    open_flow: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return (self.vendor.status == "failed" or self.open_flow.get("status") == "failed"
                or self.open_flow.get("rtl_exact") is False)


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
    try:
        from firmware.reports import read_reports

        result.reports = read_reports(project)
    except PipelineError as err:
        result.status = "failed"
        result.message = f"{err}; last error in the log: {_last_error(log_path)}"
    if process.returncode != 0 and result.status == "done":
        result.status = "failed"
        result.message = f"{Path(tool).name} exited with status {process.returncode}: {_last_error(log_path)}"
    return result


def _last_error(log_path: Path) -> str:
    lines = log_path.read_text(errors="replace").splitlines() if log_path.is_file() else []
    errors = [line.strip() for line in lines if "ERROR" in line or "Error" in line]
    return errors[-1] if errors else (lines[-1].strip() if lines else "(empty log)")


def run_open_flow(config: HardwareConfig, out_dir: Path, cache_dir: Path | None = None) -> dict[str, Any]:
    """Verilog, Verilator RTL simulation and Yosys figures of the configuration's model; a
    configuration the flow cannot build is reported as failed with the reason, not raised."""
    from firmware import openflow

    try:
        return openflow.open_flow(config, out_dir, cache_dir or openflow.DEFAULT_CACHE).to_dict()
    except PipelineError as err:
        return {"config": config.name, "status": "failed", "message": str(err)}


def synthesize(configs: list[HardwareConfig], firmware_dir: Path = DEFAULT_FIRMWARE_DIR, vsynth: bool = False,
               cosim: bool = False, open_flow: bool = True) -> list[SynthResult]:
    projects = ensure_projects(configs, firmware_dir)
    results = []
    for config, project in zip(configs, projects):
        if isinstance(project, PipelineError):
            vendor = VendorResult(config.name, config.backend, "failed", message=str(project))
        else:
            vendor = run_vendor(config, project.directory, vsynth, cosim)
        line = f"{config.name}: {config.backend} HLS: {vendor.status}" + (f" ({vendor.message})" if vendor.message else "")
        print(line)
        flow = run_open_flow(config, Path(firmware_dir) / config.name / "rtl") if open_flow else {}
        if flow:
            print(f"{config.name}: open RTL flow: {_describe_open_flow(flow)}")
        results.append(SynthResult(config.name, vendor, flow))
    return results


def _describe_open_flow(flow: dict[str, Any]) -> str:
    if flow.get("status") != "done":
        return f"{flow.get('status')} ({flow.get('message')})"
    events = sum(v["events"] for v in flow.get("verdicts", []))
    verdict = "RTL exact" if flow.get("rtl_exact") else "RTL NOT EXACT"
    figures = ", ".join(f"{v} {k}" for k, v in (flow.get("yosys") or {}).items() if v is not None)
    return (f"{verdict} on {events} events, {flow.get('latency_cycles')} cycles at {flow.get('clock_period_ns'):g} ns"
            + (f"; Yosys: {figures}" if figures else "") + (f"; {flow['message']}" if flow.get("message") else ""))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_selection_arguments(parser, DEFAULT_FIRMWARE_DIR, DEFAULT_REPORTS)
    parser.add_argument("--vsynth", action="store_true", help="also run Vivado logic synthesis (vendor tool)")
    parser.add_argument("--cosim", action="store_true", help="also run RTL co-simulation (vendor tool)")
    parser.add_argument("--no-open-flow", action="store_true", help="skip the Verilator/Yosys flow")


def run(args: argparse.Namespace) -> int:
    configs = load_configs(args.config_dir, args.configs or None)
    results = synthesize(configs, args.firmware_dir, args.vsynth, args.cosim, not args.no_open_flow)
    path = write_json(Path(args.reports) / "synth.json",
                      {"configs": [{"config": r.config, "vendor": asdict(r.vendor), "open_flow": r.open_flow}
                                   for r in results]})
    print(f"wrote {path}")
    return 1 if any(r.failed for r in results) else 0
