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
import hashlib
import json
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

from firmware.config import add_selection_arguments, HardwareConfig, Precision, load_configs
from firmware.convert import DEFAULT_FIRMWARE_DIR, PROJECT_NAME, TESTBENCH, FirmwareProject, ensure_projects
from firmware.stimuli import verification_sets
from firmware.types import on_grid
from smartpix.artifacts import atomic_path, write_json, write_text
from smartpix.errors import PipelineError

log = logging.getLogger(__name__)

DEFAULT_CACHE = Path("build/cache/csim")
DEFAULT_REPORTS = Path("build/reports")
CXXFLAGS = ("-O3", "-std=c++14", "-w")


@dataclass
class Verdict:
    """The bit-exact verdict of one configuration on one set of events."""

    config: str
    stimulus: str
    events: int = 0
    mismatching_events: int = 0
    max_lsb_difference: int = 0
    first_mismatch: dict[str, Any] | None = None
    first_differing_layer: dict[str, Any] | None = None
    run_seconds: float = 0.0
    error: str | None = None

    @property
    def exact(self) -> bool:
        return self.error is None and self.events > 0 and self.mismatching_events == 0

    @property
    def events_per_second(self) -> float:
        return self.events / self.run_seconds if self.run_seconds > 0 else 0.0


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
    cxx = os.environ.get("CXX", "g++")
    path = shutil.which(cxx)
    if path is None:
        raise PipelineError(f"C++ compiler {cxx!r} not found on PATH (install g++, or set CXX)")
    return path


def _include_flags(project: Path) -> list[str]:
    firmware = project / "firmware"
    if (firmware / "ap_types").is_dir():
        return [f"-I{firmware / 'ap_types'}", f"-I{firmware}", f"-I{project}"]
    return [f"-I{firmware / 'ac_types' / 'include'}", f"-I{firmware / 'ac_math' / 'include'}",
            f"-I{firmware / 'ac_simutils' / 'include'}", f"-I{firmware / 'nnet_utils'}",
            f"-I{firmware}", f"-I{project}"]


def build_key(project: Path, cxx: str) -> str:
    """Content hash of every source the testbench binary is built from, and how."""
    digest = hashlib.sha256()
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout.splitlines()[:1]
    digest.update(repr((CXXFLAGS, version)).encode())
    sources = sorted(p for p in (project / "firmware").rglob("*") if p.is_file())
    for path in sources + [project / TESTBENCH]:
        digest.update(str(path.relative_to(project)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:20]


def build_testbench(project: Path, cache_dir: Path = DEFAULT_CACHE) -> tuple[Path, float, bool]:
    """The compiled testbench of `project` (built unless cached): (binary, seconds, cached)."""
    project = Path(project).resolve()
    cxx = compiler()
    key = build_key(project, cxx)
    binary = Path(cache_dir).resolve() / key / "csim"
    if binary.is_file():
        return binary, 0.0, True
    started = time.perf_counter()
    binary.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=binary.parent) as work:
        objects = []
        commands = []
        for source in (project / "firmware" / f"{PROJECT_NAME}.cpp", project / TESTBENCH):
            obj = Path(work) / (source.stem + ".o")
            objects.append(obj)
            commands.append([cxx, *CXXFLAGS, *_include_flags(project), "-c", str(source), "-o", str(obj)])
        # the two translation units compile in parallel
        processes = [subprocess.Popen(c, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                     for c in commands]
        for process, command in zip(processes, commands):
            output, _ = process.communicate()
            if process.returncode != 0:
                raise PipelineError(f"g++ failed on {Path(command[-3]).name}: {_first_error(output)}")
        with atomic_path(binary) as tmp:
            link = subprocess.run([cxx, *map(str, objects), "-o", str(tmp)], capture_output=True, text=True)
            if link.returncode != 0:
                raise PipelineError(f"linking the testbench failed: {_first_error(link.stderr)}")
            tmp.chmod(0o755)
    return binary, time.perf_counter() - started, False


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
    with tempfile.TemporaryDirectory(prefix="smartpix-csim-") as work:
        processes = []
        for k, shard in enumerate(shards):
            in_path, out_path = Path(work) / f"in{k}.f32", Path(work) / f"out{k}.f64"
            flat[shard].tofile(in_path)
            command = [str(binary), str(in_path), str(out_path)]
            if trace:
                command.append(str(Path(work) / "trace.f64"))
            processes.append((subprocess.Popen(command, cwd=project, stdout=subprocess.DEVNULL,
                                               stderr=subprocess.PIPE, text=True), out_path, len(shard)))
        outputs = []
        for process, out_path, count in processes:
            _, stderr = process.communicate()
            if process.returncode != 0:
                raise PipelineError(_describe_exit(process.returncode, stderr))
            values = np.fromfile(out_path, dtype=np.float64)
            if values.size != count * n_outputs:
                raise PipelineError(f"the testbench wrote {values.size} values, expected {count * n_outputs}")
            outputs.append(values.reshape(count, n_outputs))
        traces: dict[str, np.ndarray] = {}
        if trace:
            index = (Path(work) / "trace.f64.index").read_text().split("\n")
            data = np.fromfile(Path(work) / "trace.f64", dtype=np.float64)
            layout = [(line.split()[0], int(line.split()[1])) for line in index if line.strip()]
            per_event = sum(size for _, size in layout)
            data = data.reshape(len(flat), per_event)
            offset = 0
            for name, size in layout:
                traces[name] = data[:, offset:offset + size]
                offset += size
    return np.concatenate(outputs), traces


def _describe_exit(code: int, stderr: str) -> str:
    tail = (stderr.strip().splitlines() or [""])[-1]
    if code < 0:
        name = signal.Signals(-code).name
        return f"the testbench was killed by {name}" + (f": {tail}" if tail else "")
    return f"the testbench exited with status {code}" + (f": {tail}" if tail else "")


# --------------------------------------------------------------------------- compare

def compare(config: str, stimulus: str, expected: np.ndarray, got: np.ndarray, precision: Precision) -> Verdict:
    """Equality of raw fixed-point codes, event by event."""
    verdict = Verdict(config, stimulus, events=len(expected))
    want = on_grid(expected, precision)
    if want is None:
        verdict.error = (f"the QKeras reference is not on the grid of the output type {precision.hls4ml()}: "
                         f"the output type cannot represent Python's values")
        return verdict
    have = on_grid(got, precision)
    if have is None:
        verdict.error = f"the testbench wrote values off the grid of {precision.hls4ml()}"
        return verdict
    difference = np.abs(have - want.reshape(have.shape))
    bad = np.flatnonzero(difference.max(axis=1) > 0)
    verdict.mismatching_events = int(len(bad))
    verdict.max_lsb_difference = int(difference.max(initial=0))
    if len(bad):
        event = int(bad[0])
        output = int(np.argmax(difference[event]))
        verdict.first_mismatch = {
            "event": event, "output": output,
            "expected": float(expected.reshape(have.shape)[event, output]), "got": float(got[event, output]),
        }
    return verdict


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
        if verdict_file.is_file():
            return _cached_report(verdict_file, report)
        model = load_model(Path(config.model) / "model.h5")
        disable_ste(model)
        n_out = int(np.prod(model.output_shape[1:]))
        sets = verification_sets(Path(config.model), model, project.input_precision, seed, adversarial)
        for name, inputs, expected in sets:
            started = time.perf_counter()
            verdict = Verdict(config.name, name)
            try:
                got, _ = run_testbench(binary, project.directory, inputs, n_out, workers)
                verdict = compare(config.name, name, expected, got, project.output_precision)
            except PipelineError as err:
                verdict.error = str(err)
                verdict.events = len(inputs)
            verdict.run_seconds = time.perf_counter() - started
            if verdict.first_mismatch is not None:
                verdict.first_differing_layer = first_differing_layer(
                    project, binary, model, inputs[verdict.first_mismatch["event"]]
                )
            report.verdicts.append(verdict)
        if report.exact:
            write_json(verdict_file, [asdict(v) for v in report.verdicts])
    except PipelineError as err:
        report.error = str(err)
    return report


def _verdict_cache(cache_dir: Path, binary: Path, config: HardwareConfig, adversarial: bool, seed: int) -> Path:
    """Where an exact verdict is kept: keyed by the compiled testbench, the reference set, the
    stimuli and this module, so that a warm run re-verifies only what changed."""
    digest = hashlib.sha256()
    digest.update(binary.parent.name.encode())
    digest.update((Path(config.model) / "reference.npz").read_bytes())
    digest.update((Path(config.model) / "model.h5").read_bytes())
    digest.update(repr((adversarial, seed)).encode())
    for module in (Path(__file__), Path(__file__).with_name("stimuli.py")):
        digest.update(module.read_bytes())
    return Path(cache_dir) / "verdicts" / f"{digest.hexdigest()[:24]}.json"


def _cached_report(path: Path, report: ConfigReport) -> ConfigReport:
    report.verdicts = [Verdict(**v) for v in json.loads(path.read_text())]
    report.verdicts_cached = True
    return report


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
    configs = load_configs(args.config_dir, args.configs or None)
    compiler()  # one clear line when g++ is missing, before any work
    reports = verify_configs(configs, args.firmware_dir, args.cache_dir, args.jobs, not args.no_adversarial)
    md_path, json_path = write_reports(reports, args.reports)
    print(md_path.read_text())
    print(f"wrote {md_path} and {json_path}")
    return 0 if all(r.exact for r in reports) else 1
