"""The sweep: sweep files, Pareto fronts, the report, and whole sweeps on a real Dask LocalCluster
(resumed after a SIGKILL)."""

from __future__ import annotations

import csv
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from smartpix.errors import PipelineError
from sweep import points as sweep_points
from sweep.pareto import agreement, non_dominated
from sweep.report import mark_fronts, point_row, write_report
from sweep.spec import load_sweep, sweep_from_dict

REPO = Path(__file__).resolve().parents[1]

# small enough that a point trains, converts, compiles and traces in well under a minute
TINY_MODEL = {"architecture": "xysum", "hidden": 4, "n_filters": 2}
CATAPULT = {"backend": "Catapult", "part": "nangate-45nm", "clock_period_ns": 25}


def sweep_text(name: str, data_dir: Path, bits: list[int]) -> str:
    precision = "\n".join(
        f"    - {{label: w{b}, model.conv_weight_bits: {b}, model.conv_activation_bits: {b}, "
        f"model.dense_weight_bits: {b}, model.dense_activation_bits: {b}}}" for b in bits)
    return (f"name: {name}\n"
            f"data_dir: {data_dir}\n"
            f"base:\n"
            f"  model: {json.dumps(TINY_MODEL)}\n"
            f"  training: {{epochs: 1}}\n"
            f"  hardware: {json.dumps(CATAPULT)}\n"
            f"evaluation: {{label_mean_events: 400}}\n"
            f"axes:\n  precision:\n{precision}\n")


def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.read_text().splitlines()))


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    from train.generator import generate_dataset

    out = tmp_path_factory.mktemp("sweepdata") / "data"
    generate_dataset(out, n_files=4, events_per_file=200, seed=11)
    return out


# ------------------------------------------------------------------------------ sweep files

def test_grid_is_the_cartesian_product_and_every_point_a_valid_spec(tmp_path):
    sweep = sweep_from_dict({
        "name": "g", "data_dir": str(tmp_path),
        "base": {"model": {"architecture": "baseline"}, "hardware": CATAPULT},
        "axes": {"model.architecture": ["baseline", "xysum"],
                 "data.time_slices": [[0, 19], list(range(20))],
                 "hardware.clock_period_ns": [10, 25]},
    })
    assert len(sweep.points) == 8
    assert len({p.label for p in sweep.points}) == 8
    first = sweep.points[0]
    assert first.label == "baseline_t2_clk10"
    assert first.spec["model"]["architecture"] == "baseline" and first.hardware["clock_period_ns"] == 10
    assert sweep.points[-1].spec["data"]["time_slices"] == list(range(20))


@pytest.mark.parametrize("axes, key", [
    ({"model.conv_weight_bits": [4, "four"]}, "'axes.model.conv_weight_bits' (value 2): key 'model.conv_weight_bits'"),
    ({"modle.conv_weight_bits": [4]}, "'axes.modle.conv_weight_bits'"),
    ({"model.conv_weight_bits": []}, "'axes.model.conv_weight_bits' must be a non-empty list"),
    ({"hardware.clock_period_ns": [5, -1]}, "'axes.hardware.clock_period_ns' (value 2): key 'clock_period_ns'"),
    ({"precision": [{"label": "a", "model.no_such_bits": 3}]}, "unknown key 'model.no_such_bits'"),
])
def test_sweep_file_errors_name_the_file_and_the_key(tmp_path, axes, key):
    path = tmp_path / "bad.yml"
    path.write_text(json.dumps({"name": "bad", "base": {"hardware": CATAPULT}, "axes": axes}))
    with pytest.raises(PipelineError) as err:
        load_sweep(path)
    message = str(err.value)
    assert message.startswith(f"{path}: ") and key in message and "\n" not in message


def test_cli_reports_a_sweep_file_error_on_one_line(tmp_path, capsys):
    from smartpix.cli import main

    path = tmp_path / "broken.yml"
    path.write_text("name: broken\nbase: {hardware: {backend: Vivado}}\nunknown_key: 1\n")
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: {path}: unknown key 'unknown_key'; allowed keys: " \
                  "name, description, data_dir, mode, base, evaluation, axes"


# ------------------------------------------------------------------------------ fronts

def test_pareto_front_of_hand_made_points():
    points = [(1.0, 5.0), (2.0, 3.0), (3.0, 3.0), (4.0, 1.0), (2.0, 6.0), (math.nan, 0.5), (2.0, 3.0), (5.0, 1.0)]
    # (3,3) is dominated by (2,3); (2,6) by (1,5); (5,1) by (4,1); NaN never on the front; equal points both stay
    assert non_dominated(points) == [0, 1, 3, 6]
    assert non_dominated([]) == []
    assert non_dominated([(1.0, 1.0, 1.0), (0.0, 2.0, 1.0), (1.0, 1.0, 2.0)]) == [0, 1]


def test_agreement_of_estimate_and_synthesis():
    result = agreement([100, 200, 400, 800], [110, 190, 500, 700])
    assert result.points == 4 and result.spearman == pytest.approx(1.0)
    assert result.median_ratio == pytest.approx((100 / 110 + 200 / 190) / 2)
    assert result.worst_ratio == pytest.approx(0.8)
    assert agreement([], []).spearman is None


def _record(x: float, y: float, luts: float, verdict: str = "exact") -> dict:
    resolution = {t: {"width_68": v, "rms": v, "pull_width_68": 1.0, "unit": ""}
                  for t, v in (("x", x), ("y", y), ("cotAlpha", 0.3), ("cotBeta", 0.1))}
    sets = {"held-out": {"events": 10, "mismatching_events": 0 if verdict == "exact" else 3,
                         "max_lsb_difference": 0, "error": None, "first_differing_layer": {"layer": "dense_1"}}}
    return {"resolution": resolution, "params": 100, "verdict": verdict, "seconds": {"total": 1.0},
            "csim": {"exact": verdict == "exact", "error": None, "sets": sets},
            "estimate": {"luts": luts, "latency_cycles": 3, "clock_period_ns": 5.0, "latency_ns": 15.0,
                         "layers": [{"name": "input_quant", "estimated_luts": 0.0, "share": 0.0},
                                    {"name": "dense_1", "estimated_luts": 0.75 * luts, "share": 0.75},
                                    {"name": "mdn_output", "estimated_luts": 0.25 * luts, "share": 0.25}]}}


def test_a_non_exact_point_is_never_on_a_front_and_is_marked(tmp_path):
    rows = [point_row("small", "k1", _record(10, 3, 1000), None, {}),
            point_row("cheap_but_wrong", "k2", _record(5, 1, 10, "NOT EXACT"), None, {}),
            point_row("big", "k3", _record(8, 2, 5000), None, {}),
            point_row("failed", "k4", None, "PipelineError: boom", {})]
    fronts = mark_fronts([dict(r) for r in rows])
    assert fronts["x-LUT"] == ["small", "big"]
    content = write_report(rows, tmp_path, "hand")
    assert content["verdicts"] == {"exact": 2, "NOT EXACT": 1, "error": 1}
    table = read_csv(tmp_path / "points.csv")
    by_label = {r["label"]: r for r in table}
    assert by_label["cheap_but_wrong"]["verdict"] == "NOT EXACT" and by_label["cheap_but_wrong"]["pareto"] == ""
    assert "3 events differ on held-out, first at dense_1" == by_label["cheap_but_wrong"]["error"]
    assert by_label["failed"]["verdict"] == "error" and by_label["failed"]["error"] == "PipelineError: boom"
    # equal latencies: only the better resolution is on the x-latency front
    assert by_label["small"]["pareto"] == "x-LUT, y-LUT"
    assert by_label["big"]["pareto"] == "x-LUT, y-LUT, x-latency"
    assert "**NOT EXACT**" in (tmp_path / "points.md").read_text()
    for name in ("x-LUT", "y-LUT", "x-latency"):
        assert (tmp_path / f"front_{name}.png").read_bytes()[:4] == b"\x89PNG"
    # the x-LUT front's points, each with its layers' shares (free layers left out)
    assert by_label["small"]["largest_layer"] == "dense_1 75%"
    markdown = (tmp_path / "points.md").read_text()
    layer_table = markdown[markdown.index("## Where the LUT estimate goes"):]
    assert "| small | 1000 | dense_1 75%, mdn_output 25% |" in layer_table
    assert "| big | 5000 |" in layer_table and "cheap_but_wrong" not in layer_table
    assert (tmp_path / "layer_costs.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_exits_non_zero_when_a_point_is_not_exact(tmp_path, capsys):
    """Points already on disk are read, not run: the exit status comes from their verdicts."""
    from smartpix.cli import main

    data = tmp_path / "data"
    data.mkdir()
    (data / "placeholder").write_text("x")
    path = tmp_path / "ondisk.yml"
    path.write_text(sweep_text("ondisk", data, [2, 4]))
    sweep = load_sweep(path)
    work = tmp_path / "work"
    for point, record in zip(sweep.points, (_record(10, 3, 1000), _record(9, 3, 2000, "NOT EXACT"))):
        key = sweep_points.point_key(point.spec, point.hardware, data, sweep.evaluation)
        folder = work / "ondisk" / "points" / key
        folder.mkdir(parents=True)
        (folder / "point.json").write_text(json.dumps(record))
    assert main(["sweep", str(path), "--work-dir", str(work), "--out", str(tmp_path / "report")]) == 1
    assert "w4" in capsys.readouterr().err
    table = read_csv(tmp_path / "report" / "points.csv")
    assert [r["verdict"] for r in table] == ["exact", "NOT EXACT"]


# ------------------------------------------------------------------------------ whole sweeps

@pytest.mark.slow
def test_three_point_sweep_on_a_local_cluster(tmp_path, tiny_data):
    from sweep.run import run_sweep

    path = tmp_path / "three.yml"
    path.write_text(sweep_text("three", tiny_data, [2, 4, 6]))
    result = run_sweep(load_sweep(path), tmp_path / "work", tmp_path / "report", workers=2,
                       cache_dir=tmp_path / "cache")
    assert result.ran == 3
    table = read_csv(tmp_path / "report" / "points.csv")
    assert [r["label"] for r in table] == ["w2", "w4", "w6"]
    assert {"verdict", "pareto", "x_um", "est_luts", "latency_cycles"} <= set(table[0])
    assert [r["verdict"] for r in table] == ["exact"] * 3, [r["error"] for r in table]
    assert all(float(r["x_um"]) > 0 and float(r["est_luts"]) > 0 for r in table)
    assert any("x-LUT" in r["pareto"] for r in table)
    content = json.loads((tmp_path / "report" / "points.json").read_text())
    assert set(content["fronts"]) == {"x-LUT", "y-LUT", "x-latency"}
    for name in content["fronts"]:
        assert (tmp_path / "report" / f"front_{name}.png").read_bytes()[:4] == b"\x89PNG"
    for row in content["points"]:
        record = json.loads((tmp_path / "work" / "three" / "points" / row["key"] / "point.json").read_text())
        assert record["csim"]["exact"] and record["csim"]["events"] > 0
        assert set(record["csim"]["sets"]) > {"held_out"}  # adversarial sets too
        layers = {layer["name"]: layer["estimated_luts"] for layer in record["estimate"]["layers"]}
        assert sum(layers.values()) == record["estimate"]["luts"] and layers["dense_1"] > 0
    # a second run finds every point on disk and starts no cluster
    again = run_sweep(load_sweep(path), tmp_path / "work", tmp_path / "report2", workers=2,
                      cache_dir=tmp_path / "cache")
    assert again.ran == 0 and [r["verdict"] for r in again.rows] == ["exact"] * 3


@pytest.mark.slow
def test_a_killed_sweep_resumes_with_only_the_missing_points(tmp_path, tiny_data):
    path = tmp_path / "resume.yml"
    path.write_text(sweep_text("resume", tiny_data, [3, 5]))
    work, points_dir = tmp_path / "work", tmp_path / "work" / "resume" / "points"
    command = [sys.executable, "-m", "smartpix", "sweep", str(path), "--workers", "1", "--work-dir", str(work),
               "--out", str(tmp_path / "report"), "--cache-dir", str(tmp_path / "cache"), "--no-plots"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while not list(points_dir.glob("*/point.json")):
            assert process.poll() is None, "the sweep ended before its first point was written"
            assert time.monotonic() < deadline, "no point finished in 300 s"
            time.sleep(0.2)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the whole sweep: CLI, scheduler, nanny and worker
        process.wait()
    finished = {p.parent.name: p.stat().st_mtime_ns for p in points_dir.glob("*/point.json")}
    assert len(finished) == 1

    rerun = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    after = {p.parent.name: p.stat().st_mtime_ns for p in points_dir.glob("*/point.json")}
    assert len(after) == 2
    for key, mtime in finished.items():
        assert after[key] == mtime  # the finished point was not run again
    assert "1 points computed" in (tmp_path / "report" / "points.md").read_text()
    assert not [p for p in points_dir.iterdir() if p.name.endswith(".tmp")]  # the killed run's temporary is gone
