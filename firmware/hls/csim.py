"""C simulation: build each project's own testbench with g++ and compare bit for bit.

The project's C++ (hls4ml's headers, our lossless testbench) is compiled once per content
hash and cached. Events are written to a binary file, split over worker processes that each
run the compiled testbench in a plain loop, and every output is compared with the QKeras
reference as an integer code at the output type's LSB. The compiled code never runs inside
this process: an assertion in hls4ml's C++ becomes a per-configuration error, not a crash.
On a mismatch, the testbench is rerun on that event with hls4ml's layer trace enabled, and
the first layer whose output differs from the Keras layer output is named.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from firmware.config import HardwareConfig, add_selection_arguments, selected_configs
from firmware.hls.project import DEFAULT_FIRMWARE_DIR, PROJECT_NAME, TESTBENCH, FirmwareProject, ensure_projects
from firmware.verify.stimuli import verification_sets
from firmware.verify.verdict import Verdict, compare, remember, remembered
from smartpix import artifacts, paths, processes
from smartpix.artifacts import write_json, write_text
from smartpix.cache import content_key
from smartpix.errors import PipelineError

log = logging.getLogger(__name__)

DEFAULT_CACHE = paths.CACHE / "csim"
DEFAULT_REPORTS = paths.REPORTS
CXXFLAGS = ("-O3", "-std=c++14", "-w")


@dataclass
class ConfigReport:
    config: str
    backend: str
    io_type: str
    strategy: str
    build_seconds: float = 0.0
    build_cached: bool = False
    verdicts: list[Verdict] = field(default_factory=list)
    error: str | None = None
    verdicts_cached: bool = False  # an earlier run verified this very build on these events

    @property
    def exact(self) -> bool:
        return self.error is None and bool(self.verdicts) and all(v.exact for v in self.verdicts)


# --------------------------------------------------------------------------- build

def compiler() -> str:
    """Path of the C++ compiler (CXX, default g++), once checked: `--version` runs, and it builds
    a small C++ program that runs."""
    cxx = os.environ.get("CXX", "g++")
    path = shutil.which(cxx)
    if path is None:
        raise PipelineError(f"C++ compiler {cxx!r} not found on PATH (install g++, or set CXX)")
    _check_compiler(cxx, path)
    return path


_PROBE = """#include <vector>
template <typename T> T twice(T x) { return x + x; }
int main() { std::vector<int> v(1, 21); return twice(v[0]) == 42 ? 0 : 1; }
"""
_NO_SPACE = "No space left on device"


@functools.cache  # a failed check raises, and is not remembered
def _check_compiler(cxx: str, path: str) -> None:
    def fail(why: str) -> PipelineError:
        return PipelineError(f"C++ compiler {cxx!r} {why} (install g++, or set CXX to a C++ compiler)")

    def run(command: list[str], **kwargs: Any) -> subprocess.CompletedProcess:
        try:
            return processes.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True, **kwargs)
        except OSError as err:
            raise fail(f"cannot be run: {err.strerror or err}") from err

    version = run([path, "--version"])
    if version.returncode != 0:
        raise fail(f"does not run: '{cxx} --version' exited with status {version.returncode}")
    scratch = tempfile.gettempdir()
    try:
        artifacts.sweep_stale_temporaries(scratch, "smartpix-cxx-check")
        work = artifacts.make_temporary_dir(scratch, "smartpix-cxx-check")
        (work / "probe.cpp").write_text(_PROBE)
    except OSError as err:
        raise PipelineError(f"checking the C++ compiler in {scratch} failed: {err.strerror or err}") from err
    try:
        build = run([path, "-std=c++14", "probe.cpp", "-o", "probe"], cwd=work)
        if build.returncode != 0:
            raise _build_failure(f"C++ compiler {cxx!r}: building a C++ test program", build.stdout + build.stderr)
        if not _is_program(work / "probe"):
            raise fail("is not a C++ compiler: it exited with success but wrote no program")
        probe = run([str(work / "probe")])
        if probe.returncode != 0:
            raise fail(f"built a test program that fails (status {probe.returncode})")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _is_program(path: Path) -> bool:
    """True when `path` is a non-empty executable file."""
    return path.is_file() and path.stat().st_size > 0 and os.access(path, os.X_OK)


def _include_flags(project: Path) -> list[str]:
    firmware = project / "firmware"
    if (firmware / "ap_types").is_dir():
        return [f"-I{firmware / 'ap_types'}", f"-I{firmware}", f"-I{project}"]
    return [f"-I{firmware / 'ac_types' / 'include'}", f"-I{firmware / 'ac_math' / 'include'}",
            f"-I{firmware / 'ac_simutils' / 'include'}", f"-I{firmware / 'nnet_utils'}",
            f"-I{firmware}", f"-I{project}"]


def build_key(project: Path) -> str:
    """Content key of the testbench binary: every source it is built from, the flags and the compiler."""
    sources = sorted(p for p in (project / "firmware").rglob("*") if p.is_file()) + [project / TESTBENCH]
    return content_key(__name__, "csim-build", CXXFLAGS,
                       [(str(p.relative_to(project)), p) for p in sources])


def build_testbench(project: Path, cache_dir: Path = DEFAULT_CACHE) -> tuple[Path, float, bool]:
    """The compiled testbench of `project` (built unless cached): (binary, seconds, cached).

    The build runs in a folder of the cache named after this process; only a program that
    compiled and linked without error is renamed into the cache. Folders that killed builds
    left behind are removed first."""
    project = Path(project).resolve()
    cache_dir = Path(cache_dir).resolve()
    cxx = compiler()
    key = build_key(project)
    binary = cache_dir / key / "csim"
    if _is_program(binary):
        return binary, 0.0, True
    started = time.perf_counter()
    try:
        artifacts.sweep_stale_temporaries(cache_dir)
        work = artifacts.make_temporary_dir(cache_dir, key)
        try:
            built = _compile_and_link(cxx, project, work)
            binary.parent.mkdir(exist_ok=True)
            os.replace(built, binary)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    except OSError as err:
        raise PipelineError(f"building the testbench in {cache_dir} failed: {err.strerror or err}") from err
    return binary, time.perf_counter() - started, False


def _compile_and_link(cxx: str, project: Path, work: Path) -> Path:
    """Compile the firmware and the testbench in `work` (in parallel) and link them: the program."""
    name = Path(cxx).name
    sources = [project / "firmware" / f"{PROJECT_NAME}.cpp", project / TESTBENCH]
    objects = [work / (source.stem + ".o") for source in sources]
    running: list[subprocess.Popen] = []
    try:
        for source, obj in zip(sources, objects):
            command = [cxx, *CXXFLAGS, *_include_flags(project), "-c", str(source), "-o", str(obj)]
            running.append(processes.popen(command, cwd=project, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                           stderr=subprocess.STDOUT, text=True))
        for process, source, obj in zip(running, sources, objects):
            output, _ = process.communicate()
            if process.returncode != 0:
                raise _build_failure(f"{name} failed on {source.name}", output)
            if not (obj.is_file() and obj.stat().st_size > 0):
                raise PipelineError(f"C++ compiler {name!r} exited with success but wrote no object file for "
                                    f"{source.name}")
    finally:
        for process in running:
            if process.poll() is None:
                process.kill()
                process.wait()
    program = work / "csim"
    link = processes.run([cxx, *map(str, objects), "-o", str(program)], stdin=subprocess.DEVNULL,
                         capture_output=True, text=True)
    if link.returncode != 0:
        raise _build_failure("linking the testbench", link.stdout + link.stderr)
    if not _is_program(program):
        raise PipelineError(f"C++ compiler {name!r} exited with success but wrote no testbench program")
    return program


def _build_failure(what: str, output: str) -> PipelineError:
    """One line for a failed compile or link. A full disk is named: the linker's own summary
    ("ld returned 1 exit status") would hide it."""
    full = [line.strip() for line in output.splitlines() if _NO_SPACE in line]
    if full:
        return PipelineError(f"{what} failed: no space left on device: {full[0]}")
    return PipelineError(f"{what} failed: {_first_error(output)}")


def _first_error(output: str) -> str:
    lines = [line for line in output.splitlines() if "error" in line]
    return (lines[0] if lines else (output.strip().splitlines() or ["(no output)"])[-1]).strip()


# --------------------------------------------------------------------------- run

def run_testbench(binary: Path, project: Path, inputs: np.ndarray, n_outputs: int,
                  workers: int | None = None, trace: bool = False) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Outputs (n, n_outputs) float64 of the testbench on `inputs`, split over `workers`
    processes; with `trace`, also every traced layer's outputs (one process)."""
    project = Path(project).resolve()
    flat = np.ascontiguousarray(inputs.reshape(len(inputs), -1), dtype=np.float32)
    if not np.array_equal(flat.astype(np.float64), inputs.reshape(len(inputs), -1).astype(np.float64)):
        raise PipelineError("testbench inputs are not exact in float32")
    workers = 1 if trace else max(1, min(workers or os.cpu_count() or 1, len(flat)))
    shards = np.array_split(np.arange(len(flat)), workers)
    artifacts.sweep_stale_temporaries(tempfile.gettempdir(), "smartpix-csim")
    work = artifacts.make_temporary_dir(tempfile.gettempdir(), "smartpix-csim")
    running: list[tuple[subprocess.Popen, Path, int]] = []
    try:
        for k, shard in enumerate(shards):
            in_path, out_path = work / f"in{k}.f32", work / f"out{k}.f64"
            flat[shard].tofile(in_path)
            command = [str(binary), str(in_path), str(out_path)]
            if trace:
                command.append(str(work / "trace.f64"))
            running.append((processes.popen(command, cwd=project, stdin=subprocess.DEVNULL,
                                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True),
                            out_path, len(shard)))
        outputs = []
        for process, out_path, count in running:
            _, stderr = process.communicate()
            if process.returncode != 0:
                raise PipelineError(_describe_exit(process.returncode, stderr))
            values = np.fromfile(out_path, dtype=np.float64)
            if values.size != count * n_outputs:
                raise PipelineError(f"the testbench wrote {values.size} values, expected {count * n_outputs}")
            outputs.append(values.reshape(count, n_outputs))
        traces: dict[str, np.ndarray] = {}
        if trace:
            index = (work / "trace.f64.index").read_text().split("\n")
            data = np.fromfile(work / "trace.f64", dtype=np.float64)
            layout = [(line.split()[0], int(line.split()[1])) for line in index if line.strip()]
            per_event = sum(size for _, size in layout)
            data = data.reshape(len(flat), per_event)
            offset = 0
            for name, size in layout:
                traces[name] = data[:, offset:offset + size]
                offset += size
    finally:
        for process, _, _ in running:
            if process.poll() is None:
                process.kill()
                process.wait()
        shutil.rmtree(work, ignore_errors=True)
    return np.concatenate(outputs), traces


def _describe_exit(code: int, stderr: str) -> str:
    tail = (stderr.strip().splitlines() or [""])[-1]
    if code < 0:
        name = signal.Signals(-code).name
        return f"the testbench was killed by {name}" + (f": {tail}" if tail else "")
    return f"the testbench exited with status {code}" + (f": {tail}" if tail else "")


# --------------------------------------------------------------------------- locate

def first_differing_layer(project: FirmwareProject, binary: Path, model, event_input: np.ndarray) -> dict[str, Any] | None:
    """Rerun one event with the layer trace and name the first layer that differs from Keras."""
    import tensorflow as tf

    n_out = int(np.prod(model.output_shape[1:]))
    _, traces = run_testbench(binary, project.directory, event_input[None], n_out, trace=True)
    keras_names = {layer.name: layer for layer in model.layers}
    # Pooling outputs are approximations by design (decided by the next quantizer): skip them.
    comparable = [
        name for name in traces
        if _keras_name(name, keras_names) is not None
        and not type(keras_names[_keras_name(name, keras_names)]).__name__.startswith("AveragePooling")
    ]
    probes = tf.keras.Model(model.inputs, [keras_names[_keras_name(n, keras_names)].output for n in comparable])
    values = probes.predict(event_input[None], verbose=0)
    values = values if isinstance(values, list) else [values]
    for name, keras_value in zip(comparable, values):
        hls = traces[name][0]
        ref = np.asarray(keras_value, dtype=np.float64).reshape(-1)
        if hls.shape != ref.shape:
            continue
        differs = np.flatnonzero(hls != ref)
        if len(differs):
            i = int(differs[0])
            return {"layer": name, "keras_layer": _keras_name(name, keras_names), "index": i,
                    "expected": float(ref[i]), "got": float(hls[i]), "differing_values": int(len(differs))}
    return None


def _keras_name(hls_name: str, keras_names: dict[str, Any]) -> str | None:
    if hls_name in keras_names:
        return hls_name
    for suffix in ("_pointwise", "_linear"):
        if hls_name.endswith(suffix) and hls_name[: -len(suffix)] in keras_names:
            return hls_name[: -len(suffix)]
    return None


# --------------------------------------------------------------------------- verify

def verify_project(project: FirmwareProject, cache_dir: Path = DEFAULT_CACHE, workers: int | None = None,
                   adversarial: bool = True, seed: int = 0,
                   build: tuple[Path, float, bool] | None = None) -> ConfigReport:
    """Build (or reuse) the testbench of one project and verify it on every event set.
    `build` is the result of an earlier build_testbench call for this project."""
    from train.models import disable_ste, load_model

    config = project.config
    report = ConfigReport(config.name, config.backend, config.io_type, config.strategy)
    try:
        binary, report.build_seconds, report.build_cached = build or build_testbench(project.directory, cache_dir)
        verdict_file = _verdict_cache(cache_dir, binary, config, adversarial, seed)
        known = remembered(verdict_file)
        if known is not None:
            report.verdicts, report.verdicts_cached = known, True
            return report
        model = load_model(Path(config.model) / "model.h5")
        disable_ste(model)
        n_out = int(np.prod(model.output_shape[1:]))
        sets = verification_sets(Path(config.model), model, project.input_precision, seed, adversarial)
        for name, inputs, expected, reference in sets:
            started = time.perf_counter()
            verdict = Verdict(config.name, name)
            try:
                got, _ = run_testbench(binary, project.directory, inputs, n_out, workers)
                verdict = compare(config.name, name, expected, got, project.output_precision)
            except PipelineError as err:
                verdict.error = str(err)
                verdict.events = len(inputs)
            verdict.reference = reference
            verdict.run_seconds = time.perf_counter() - started
            if verdict.first_mismatch is not None:
                verdict.first_differing_layer = first_differing_layer(
                    project, binary, model, inputs[verdict.first_mismatch["event"]]
                )
            report.verdicts.append(verdict)
        remember(verdict_file, report.verdicts)
    except PipelineError as err:
        report.error = str(err)
    return report


def _verdict_cache(cache_dir: Path, binary: Path, config: HardwareConfig, adversarial: bool, seed: int) -> Path:
    """Where an exact verdict is kept: keyed by the compiled testbench, the model and its reference
    events, the stimuli options and the code that compares them."""
    model = Path(config.model)
    key = content_key(__name__, "csim-verdict", binary.parent.name, model / "model.h5", model / "reference.npz",
                      adversarial, seed)
    return Path(cache_dir) / "verdicts" / f"{key}.json"


def verify_configs(configs: list[HardwareConfig], firmware_dir: Path = DEFAULT_FIRMWARE_DIR,
                   cache_dir: Path = DEFAULT_CACHE, jobs: int = 2, adversarial: bool = True) -> list[ConfigReport]:
    """Convert what is stale, build what is not cached (in parallel), then verify each."""
    from tqdm import tqdm

    projects = ensure_projects(configs, firmware_dir, jobs)
    reports: dict[str, ConfigReport] = {}
    ready = []
    for config, project in zip(configs, projects):
        if isinstance(project, PipelineError):
            reports[config.name] = ConfigReport(config.name, config.backend, config.io_type, config.strategy,
                                                error=str(project))
        else:
            ready.append(project)
    # Builds are single-threaded compiles: run as many as there are jobs.
    builds: dict[str, tuple[Path, float, bool]] = {}
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = {p.config.name: pool.submit(_build_or_error, p, cache_dir) for p in ready}
        for name, future in tqdm(futures.items(), desc="build", unit="config", disable=None):
            result = future.result()
            if isinstance(result, str):
                cfg = next(p.config for p in ready if p.config.name == name)
                reports[name] = ConfigReport(name, cfg.backend, cfg.io_type, cfg.strategy, error=result)
            else:
                builds[name] = result
    for project in tqdm([p for p in ready if p.config.name not in reports], desc="csim", unit="config",
                        disable=None):
        reports[project.config.name] = verify_project(project, cache_dir, adversarial=adversarial,
                                                      build=builds[project.config.name])
    return [reports[c.name] for c in configs]


def _build_or_error(project: FirmwareProject, cache_dir: Path) -> tuple[Path, float, bool] | str:
    try:
        return build_testbench(project.directory, cache_dir)
    except PipelineError as err:
        return str(err)


# --------------------------------------------------------------------------- reports

def write_reports(reports: list[ConfigReport], out_dir: Path = DEFAULT_REPORTS) -> tuple[Path, Path]:
    data = {
        "configs": [
            {**{k: v for k, v in asdict(r).items() if k != "verdicts"},
             "exact": r.exact,
             "verdicts": [{**asdict(v), "exact": v.exact, "events_per_second": round(v.events_per_second, 1)}
                          for v in r.verdicts]}
            for r in reports
        ],
        "all_exact": all(r.exact for r in reports),
    }
    json_path = write_json(Path(out_dir) / "csim.json", data)
    lines = [
        "# C simulation: bit-exact verdicts",
        "",
        "Every output of every event compared with the QKeras reference as a raw fixed-point code.",
        "",
        "| config | backend | io | strategy | events | mismatching | max diff (LSB) | build s | events/s | verdict |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in reports:
        events = sum(v.events for v in r.verdicts)
        bad = sum(v.mismatching_events for v in r.verdicts)
        worst = max((v.max_lsb_difference for v in r.verdicts), default=0)
        held = next((v for v in r.verdicts if v.stimulus == "held_out"), None)
        rate = f"{held.events_per_second:,.0f}" if held and held.events_per_second else "-"
        build = "cached" if r.build_cached else f"{r.build_seconds:.1f}"
        if r.verdicts_cached:
            rate += " (earlier run)"
        verdict = "exact" if r.exact else ("ERROR" if r.error or any(v.error for v in r.verdicts) else "NOT EXACT")
        lines.append(f"| {r.config} | {r.backend} | {r.io_type} | {r.strategy} | {events} | {bad} | {worst} | "
                     f"{build} | {rate} | {verdict} |")
    details = [_details(r) for r in reports if not r.exact]
    if details:
        lines += ["", "## Problems", ""] + details
    md_path = write_text(Path(out_dir) / "csim.md", "\n".join(lines) + "\n")
    return md_path, json_path


def _details(report: ConfigReport) -> str:
    if report.error:
        return f"- **{report.config}**: {report.error}"
    parts = []
    for v in report.verdicts:
        if v.error:
            parts.append(f"- **{report.config}** / {v.stimulus}: {v.error}")
        elif v.mismatching_events:
            m = v.first_mismatch or {}
            text = (f"- **{report.config}** / {v.stimulus}: {v.mismatching_events} of {v.events} events differ, "
                    f"first at event {m.get('event')} output {m.get('output')}: expected {m.get('expected')!r}, "
                    f"got {m.get('got')!r}")
            layer = v.first_differing_layer
            if layer:
                text += (f"; first differing layer `{layer['layer']}` (value {layer['index']}: "
                         f"Keras {layer['expected']!r}, firmware {layer['got']!r})")
            parts.append(text)
    return "\n".join(parts)


# --------------------------------------------------------------------------- CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_selection_arguments(parser, DEFAULT_FIRMWARE_DIR, DEFAULT_REPORTS)
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--no-adversarial", action="store_true", help="held-out events only")


def run(args: argparse.Namespace) -> int:
    configs = selected_configs(args)
    compiler()  # one clear line when g++ is missing, before any work
    reports = verify_configs(configs, args.firmware_dir, args.cache_dir, args.jobs, not args.no_adversarial)
    md_path, json_path = write_reports(reports, args.reports)
    print(md_path.read_text())
    print(f"wrote {md_path} and {json_path}")
    return 0 if all(r.exact for r in reports) else 1
