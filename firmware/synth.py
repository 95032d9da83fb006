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
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from firmware.config import HardwareConfig, add_selection_arguments, selected_configs
from firmware.hls.project import DEFAULT_FIRMWARE_DIR, ensure_projects
from firmware.hls.vendor import VendorResult, run_vendor
from smartpix import paths
from smartpix.artifacts import write_json
from smartpix.errors import PipelineError

log = logging.getLogger(__name__)

DEFAULT_REPORTS = paths.REPORTS
@dataclass
class SynthResult:
    config: str
    vendor: VendorResult
    open_flow: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return (self.vendor.status == "failed" or self.open_flow.get("status") == "failed"
                or self.open_flow.get("rtl_exact") is False)


def run_open_flow(config: HardwareConfig, out_dir: Path, cache_dir: Path | None = None) -> dict[str, Any]:
    """Verilog, Verilator RTL simulation and Yosys figures of the configuration's model; a
    configuration the flow cannot build is reported as failed with the reason, not raised."""
    from firmware.rtl import flow as openflow

    try:
        return openflow.open_flow(config, out_dir, cache_dir or openflow.DEFAULT_CACHE).to_dict()
    except PipelineError as err:
        return {"config": config.name, "status": "failed", "message": str(err)}


def run_synthesis(configs: list[HardwareConfig], firmware_dir: Path = DEFAULT_FIRMWARE_DIR, vsynth: bool = False,
                  cosim: bool = False, open_flow: bool = True, cache_dir: Path | None = None) -> list[SynthResult]:
    projects = ensure_projects(configs, firmware_dir)
    results = []
    for config, project in zip(configs, projects):
        if isinstance(project, PipelineError):
            vendor = VendorResult(config.name, config.backend, "failed", message=str(project))
        else:
            vendor = run_vendor(config, project.directory, vsynth, cosim)
        line = f"{config.name}: {config.backend} HLS: {vendor.status}" + (f" ({vendor.message})" if vendor.message else "")
        print(line)
        flow = run_open_flow(config, paths.rtl_project(firmware_dir, config.name), cache_dir) if open_flow else {}
        if flow:
            print(f"{config.name}: open RTL flow: {_describe_open_flow(flow)}")
        results.append(SynthResult(config.name, vendor, flow))
    return results


def _describe_open_flow(flow: dict[str, Any]) -> str:
    if flow.get("rtl_exact") is None:
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
    parser.add_argument("--cache-dir", type=Path, default=paths.CACHE / "openflow",
                        help="content cache of the open flow (Verilog, Verilator builds, verdicts, Yosys)")


def run(args: argparse.Namespace) -> int:
    configs = selected_configs(args)
    results = run_synthesis(configs, args.firmware_dir, args.vsynth, args.cosim, not args.no_open_flow,
                            args.cache_dir)
    path = write_json(Path(args.reports) / "synth.json",
                      {"configs": [{"config": r.config, "vendor": asdict(r.vendor), "open_flow": r.open_flow}
                                   for r in results]})
    print(f"wrote {path}")
    return 1 if any(r.failed for r in results) else 0
