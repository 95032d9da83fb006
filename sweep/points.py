"""One design point's pipeline, a pure function of the point: train -> evaluate -> hls4ml firmware
and its bit-exact C-simulation verdict -> the da4ml Verilog and its resource estimate.

Everything a point produced is written to `<points dir>/<key>/` in one atomic rename, with
`point.json` holding the numbers; the key is `smartpix.cache.content_key` of the point's model
spec, hardware configuration, dataset, evaluation options and the code that runs it. A folder that
exists is a finished point: a resumed sweep, or a widened grid, runs only the points it lacks.
"""

from __future__ import annotations

import contextlib
import io
import logging
import math
import time
import warnings
from pathlib import Path
from typing import Any

from smartpix import cache, paths
from smartpix.artifacts import atomic_dir, write_json
from smartpix.errors import PipelineError

log = logging.getLogger(__name__)

POINT_FILE = "point.json"
# the names inside a point (model spec, configuration): fixed, so that the key and the firmware
# depend on what a point is, not on its label in one sweep file
POINT_NAME = "point"
TARGET_NAMES = {"x-midplane": "x", "y-midplane": "y", "cotAlpha": "cotAlpha", "cotBeta": "cotBeta"}
DEFAULT_LABEL_MEAN_EVENTS = 20_000


def point_key(spec: dict[str, Any], hardware: dict[str, Any], data_dir: Path, evaluation: dict[str, Any]) -> str:
    """The content key of one point: what it is, the data it learns from, and the code that runs it."""
    return cache.content_key(__name__, "sweep-point", spec, hardware, Path(data_dir), evaluation)


def point_dir(points_dir: Path, key: str) -> Path:
    return Path(points_dir) / key


def load_point(points_dir: Path, key: str) -> dict[str, Any] | None:
    """The finished point's record, or None when it has not run (or its folder is not a point)."""
    import json

    path = point_dir(points_dir, key) / POINT_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _single_threaded_tensorflow() -> None:
    """One thread per task: a Dask worker runs one point at a time on one core, and TensorFlow's
    own thread pools would otherwise compete with the other workers for every core."""
    import tensorflow as tf

    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    # as smartpix.cli.quiet_libraries: Keras' warnings about serializing QKeras objects are noise
    warnings.filterwarnings("ignore", category=UserWarning, module=r"keras(\.|$)")
    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        log.debug("TensorFlow already initialized: thread pools left as they are")


def run_point(key: str, spec: dict[str, Any], hardware: dict[str, Any], data_dir: str | Path,
              evaluation: dict[str, Any], points_dir: str | Path, cache_dir: str | Path | None = None) -> dict[str, Any]:
    """Run one point (unless its folder exists) and return its record (point.json's content).

    `key` must be `point_key` of the other inputs: it names the folder. `cache_dir` holds the C
    simulation's compiled testbenches, shared by the points."""
    points_dir, data_dir = Path(points_dir), Path(data_dir)
    known = load_point(points_dir, key)
    if known is not None:
        return known
    from firmware.config import config_from_dict
    from firmware.hls.csim import verify_project
    from firmware.hls.project import convert
    from firmware.rtl.verilog import build_rtl
    from train.evaluate import evaluate
    from train.fit import train
    from train.specs import spec_from_dict

    _single_threaded_tensorflow()
    cache_dir = Path(cache_dir) if cache_dir is not None else paths.CACHE / "csim"
    where = f"point {key}"
    spec_file = spec_from_dict({"name": POINT_NAME, **spec}, where)
    seconds: dict[str, float] = {}
    started = time.perf_counter()

    def lap(step: str) -> None:
        nonlocal started
        now = time.perf_counter()
        seconds[step] = round(now - started, 1)
        started = now

    # Keras writes its epoch lines to stdout: they go to this point's log, not the sweep's terminal
    chatter = io.StringIO()
    with atomic_dir(point_dir(points_dir, key)) as tmp, contextlib.redirect_stdout(chatter):
        model_dir = tmp / "model"
        trained = train(data_dir, model_dir, spec_file.model, spec_file.data_options(), spec_file.train_options())
        lap("train")
        report = evaluate([model_dir], data_dir, tmp / "evaluation", max_events=evaluation.get("max_events"),
                          label_mean_events=evaluation.get("label_mean_events", DEFAULT_LABEL_MEAN_EVENTS),
                          plots=False)
        lap("evaluate")
        config = config_from_dict({"name": POINT_NAME, "model": str(model_dir), **hardware}, where)
        project = convert(config, tmp / "hls", model_dir=model_dir)
        lap("firmware")
        csim = verify_project(project, cache_dir=cache_dir, workers=1)
        if csim.error:
            # a build or run failure says nothing about the design: keep the point unfinished
            raise PipelineError(f"C simulation: {csim.error}")
        lap("csim")
        rtl = build_rtl(model_dir, tmp / "rtl", clock_period_ns=config.clock_period_ns,
                        input_precision=config.input_precision)
        lap("rtl")
        record = {
            "key": key,
            "spec": spec,
            "hardware": hardware,
            "params": trained.params,
            "val_loss": trained.val_loss,
            "resolution": _resolution(report),
            "csim": _csim(csim),
            "verdict": "exact" if csim.exact else "NOT EXACT",
            "estimate": {
                "luts": rtl.estimated_luts,
                "latency_cycles": rtl.latency_cycles,
                "clock_period_ns": rtl.clock_period_ns,
                "latency_ns": rtl.latency_cycles * rtl.clock_period_ns,
                "stages": rtl.stages,
                "layers": rtl.layers,
            },
            "seconds": {**seconds, "total": round(sum(seconds.values()), 1)},
        }
        write_json(tmp / POINT_FILE, record)
        (tmp / "training.log").write_text(chatter.getvalue())
    log.info("point %s: %s, x %.2f um, %d LUT (estimate)", key[:12], record["verdict"],
             record["resolution"]["x"]["width_68"], rtl.estimated_luts)
    return record


def _resolution(report: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """68% half-widths and pull widths per target, of the model (not the label-mean baseline)."""
    model = report["entries"][0]["name"]
    out = {}
    for row in report["resolution"]:
        if row["model"] == model and row["target"] in TARGET_NAMES:
            out[TARGET_NAMES[row["target"]]] = {"width_68": row["core_width_68"], "rms": row["rms"],
                                                "pull_width_68": row["pull_width_68"], "unit": row["unit"]}
    missing = [t for t in TARGET_NAMES.values() if t not in out]
    if missing:
        raise PipelineError(f"the evaluation has no resolution of {', '.join(missing)}")
    return out


def _csim(report: Any) -> dict[str, Any]:
    return {
        "exact": report.exact,
        "error": report.error,
        "events": sum(v.events for v in report.verdicts),
        "mismatching_events": sum(v.mismatching_events for v in report.verdicts),
        "sets": {v.stimulus: {"events": v.events, "mismatching_events": v.mismatching_events,
                              "max_lsb_difference": v.max_lsb_difference, "error": v.error,
                              "first_differing_layer": v.first_differing_layer} for v in report.verdicts},
    }


def finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def run_yosys(key: str, points_dir: str | Path, part: str) -> dict[str, Any]:
    """Yosys' figures of a finished point's Verilog for `part`, kept in its folder (yosys.json)."""
    import json

    from firmware.rtl.verilog import RtlProject
    from firmware.rtl.yosys import synthesize

    folder = point_dir(Path(points_dir), key)
    remembered = folder / "yosys.json"
    if remembered.is_file():
        return json.loads(remembered.read_text())
    figures = synthesize(RtlProject.load(folder / "rtl"), part, jobs=1).to_dict()
    write_json(remembered, figures)
    return figures
