"""The evaluation stage: resolution and pull summaries against independent computations, the
baselines, unit conversion, report files, and one end-to-end run through the CLI."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import multivariate_normal, norm

from smartpix.cli import main
from smartpix.errors import PipelineError
from train import evaluate as ev

REPO = Path(__file__).resolve().parents[1]
UNITS4 = ["um", "um", "", ""]
SIGMAS = np.array([5.0, 1.5, 0.02, 0.05])


def _softplus(x):
    return np.log1p(np.exp(x))


# ---------------------------------------------------------------- widths and pulls

def test_core_width_of_a_gaussian_is_its_sigma():
    rng = np.random.default_rng(1)
    sample = rng.normal(2.0, 3.0, 400_000)
    assert ev.core_width_68(sample) == pytest.approx(3.0, rel=0.01)


def test_core_width_of_a_uniform_sample():
    # U(-a, a): the central fraction f spans [-f a, f a], so the half-width is f a
    a = 4.0
    sample = np.linspace(-a, a, 200_001)
    assert ev.core_width_68(sample) == pytest.approx(0.6826894921 * a, rel=1e-4)
    # and its 68.27% fraction is the one of a Gaussian's +-1 sigma
    assert norm.cdf(1) - norm.cdf(-1) == pytest.approx(0.6826894921, abs=1e-9)


def test_core_width_ignores_a_far_tail_that_the_rms_does_not():
    rng = np.random.default_rng(2)
    sample = np.concatenate([rng.normal(0.0, 1.0, 99_000), np.full(1_000, 1e3)])
    assert ev.core_width_68(sample) < 1.05
    assert ev._rms(sample) > 90


def _gaussian_residuals(rng, n=200_000, bias=(0.5, -0.1, 0.0, 0.01)):
    return rng.normal(0.0, 1.0, (n, 4)) * SIGMAS + np.array(bias)


def test_resolution_table_with_correct_sigmas():
    rng = np.random.default_rng(3)
    bias = np.array([0.5, -0.1, 0.0, 0.01])
    residuals = _gaussian_residuals(rng, bias=bias)
    rows = ev.resolution_table(residuals, residuals / SIGMAS, UNITS4)
    assert [r["target"] for r in rows] == ["x-midplane", "y-midplane", "cotAlpha", "cotBeta"]
    assert [r["unit"] for r in rows] == UNITS4
    for row, sigma, b in zip(rows, SIGMAS, bias):
        assert row["events"] == 200_000
        assert row["core_width_68"] == pytest.approx(sigma, rel=0.01)
        assert row["rms"] == pytest.approx(np.hypot(sigma, b), rel=0.01)
        assert row["bias"] == pytest.approx(b, abs=4 * sigma / np.sqrt(200_000))
        assert row["pull_width_68"] == pytest.approx(1.0, rel=0.01)
        assert row["pull_std"] == pytest.approx(1.0, rel=0.01)
        assert row["pull_mean"] == pytest.approx(b / sigma, abs=0.01)


def test_sigmas_half_too_small_give_pulls_twice_too_wide():
    rng = np.random.default_rng(4)
    residuals = _gaussian_residuals(rng, bias=(0, 0, 0, 0))
    rows = ev.resolution_table(residuals, residuals / (SIGMAS / 2), UNITS4)
    for row in rows:
        assert row["pull_width_68"] == pytest.approx(2.0, rel=0.01)
        assert row["pull_std"] == pytest.approx(2.0, rel=0.01)
        assert abs(row["pull_mean"]) < 0.02


def test_resolution_table_without_pulls_and_bad_shapes():
    residuals = np.array([[1.0, 2.0, 3.0, 4.0], [-1.0, -2.0, -3.0, -4.0]])
    rows = ev.resolution_table(residuals, None, UNITS4)
    assert all(r["pull_mean"] is None and r["pull_width_68"] is None for r in rows)
    assert [r["rms"] for r in rows] == pytest.approx([1.0, 2.0, 3.0, 4.0])
    assert [r["bias"] for r in rows] == pytest.approx([0.0] * 4)
    with pytest.raises(ValueError):
        ev.resolution_table(residuals[:, :3], None, UNITS4)
    with pytest.raises(ValueError):
        ev.resolution_table(residuals, residuals[:1], UNITS4)


# ---------------------------------------------------------------- calibration

def test_calibration_bins_recover_the_sigma_relation():
    rng = np.random.default_rng(5)
    n = 100_000
    sigma = np.exp(rng.normal(0.0, 0.5, (n, 4))) * SIGMAS
    k = np.array([1.0, 1.5, 0.5, 2.0])  # observed spread = k x predicted
    residuals = rng.normal(0.0, 1.0, (n, 4)) * sigma * k
    rows = ev.calibration_table(sigma, residuals, UNITS4, n_bins=10)
    assert len(rows) == 40
    for i, target in enumerate(ev.TARGETS):
        mine = [r for r in rows if r["target"] == target]
        assert [r["bin"] for r in mine] == list(range(10))
        assert sum(r["events"] for r in mine) == n
        assert all(r["events"] == n // 10 for r in mine)
        # bins are ordered and disjoint in predicted sigma
        assert all(a["sigma_high"] <= b["sigma_low"] for a, b in zip(mine, mine[1:]))
        # independent check of one bin: the events whose sigma lies in it
        third = mine[3]
        inside = (sigma[:, i] >= third["sigma_low"]) & (sigma[:, i] <= third["sigma_high"])
        assert third["mean_sigma"] == pytest.approx(sigma[inside, i].mean())
        for r in mine:
            assert r["ratio"] == pytest.approx(k[i], rel=0.05)
            assert r["rms_residual"] == pytest.approx(k[i] * r["rms_sigma"], rel=0.05)
            assert r["sigma_low"] <= r["mean_sigma"] <= r["sigma_high"]


def test_calibration_with_a_constant_sigma_keeps_equal_bins():
    rng = np.random.default_rng(6)
    residuals = rng.normal(0.0, 2.0, (1000, 4))
    rows = ev.calibration_table(np.full((1000, 4), 2.0), residuals, UNITS4, n_bins=4)
    assert [r["events"] for r in rows] == [250] * 16
    # bins take the events in order: bin 1 of x is events 250..499
    assert rows[1]["rms_residual"] == pytest.approx(np.sqrt(np.mean(residuals[250:500, 0] ** 2)))


def test_binned_resolution_counts_and_widths():
    variable = np.array([0.0, 0.1, 0.5, 0.9, 1.0, 1.5, 2.0])
    residual = np.array([1.0, -1.0, 2.0, -2.0, 3.0, 3.0, 5.0])
    rows = ev.binned_resolution(residual, variable, np.array([0.0, 1.0, 2.0]))
    assert [r["events"] for r in rows] == [4, 3]  # the last bin includes its upper edge
    assert rows[0]["bias"] == pytest.approx(0.0)
    assert rows[1]["rms"] == pytest.approx(np.sqrt((9 + 9 + 25) / 3))
    empty = ev.binned_resolution(residual, variable, np.array([5.0, 6.0]))
    assert empty[0]["events"] == 0 and np.isnan(empty[0]["core_width_68"])


# ---------------------------------------------------------------- baselines and units

def test_label_statistics_stream_equals_the_mean_and_covariance():
    rng = np.random.default_rng(7)
    labels = rng.normal(0.0, 1.0, (5000, 4)) @ np.array(
        [[1.0, 0, 0, 0], [0.3, 0.5, 0, 0], [0.1, 0.2, 2.0, 0], [0, 0, 0.4, 0.1]]) + np.array([100.0, -3, 0.2, 0])
    cuts = [0, 1, 1, 700, 2500, 4999, 5000]  # uneven chunks, an empty one, a single event
    stats = ev.label_statistics(labels[a:b] for a, b in zip(cuts, cuts[1:]))
    assert stats.events == 5000
    np.testing.assert_allclose(stats.mean, labels.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(stats.covariance, np.cov(labels.T, bias=True), rtol=1e-9, atol=1e-12)
    with pytest.raises(PipelineError):
        ev.label_statistics([])


def test_label_mean_baseline_predicts_the_training_mean():
    rng = np.random.default_rng(8)
    train_labels = rng.normal([0.1, -0.2, 1.0, 0.0], [0.5, 0.3, 0.8, 0.1], (3000, 4))
    stats = ev.label_statistics([train_labels[:1000], train_labels[1000:]])
    outputs = ev.constant_outputs(stats.mean, stats.covariance)
    test_labels = rng.normal(0.0, 1.0, (50, 4))
    scale = np.array([75.0, 18.75, 8.0, 0.5])
    p = ev.physical_prediction("label_mean", "label-mean", np.tile(outputs, (50, 1)), test_labels,
                               lambda y: np.asarray(y, dtype=np.float64) * scale)
    np.testing.assert_allclose(p.mean, np.tile(train_labels.mean(axis=0) * scale, (50, 1)), rtol=1e-9)
    np.testing.assert_allclose(p.sigma[0], train_labels.std(axis=0) * scale, rtol=1e-6)
    gaussian = multivariate_normal(train_labels.mean(axis=0), np.cov(train_labels.T, bias=True))
    assert p.nll == pytest.approx(-gaussian.logpdf(test_labels).mean(), rel=1e-6)


def test_target_scales_reads_an_affine_unscaling_and_rejects_others():
    offset, scale = ev.target_scales(lambda y: 3.0 + np.asarray(y) * np.array([75.0, 18.75, 8.0, 0.5]))
    np.testing.assert_allclose(offset, [3.0] * 4)
    np.testing.assert_allclose(scale, [75.0, 18.75, 8.0, 0.5])
    with pytest.raises(PipelineError, match="affine"):
        ev.target_scales(lambda y: np.asarray(y) ** 3)


def test_physical_prediction_converts_means_sigmas_and_labels():
    scale = np.array([75.0, 18.75, 8.0, 0.5])
    outputs = np.zeros((2, 14))
    outputs[:, [0, 2, 4, 6]] = [[0.1, -0.2, 0.3, 0.4], [1.0, 0.0, -1.0, 0.5]]
    outputs[:, [1, 3, 5, 7]] = [[0.0, -1.0, 1.0, -2.0], [0.5, 0.5, 0.5, 0.5]]
    outputs[:, 8:14] = [[0.2, 0.0, 0.3, 0.0, 0.0, 0.1], [0.0] * 6]
    labels = np.array([[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]])
    p = ev.physical_prediction("m", "qkeras", outputs, labels, lambda y: np.asarray(y, dtype=np.float64) * scale)
    # row 0 by hand: L = [[d1], [M21, d2], [M31, M32, d3], [M41, M42, M43, d4]]
    d = _softplus(outputs[0, [1, 3, 5, 7]]) + 1e-6
    sigma0 = np.sqrt([d[0] ** 2, 0.2**2 + d[1] ** 2, 0.0**2 + 0.3**2 + d[2] ** 2, 0 + 0 + 0.1**2 + d[3] ** 2])
    np.testing.assert_allclose(p.sigma[0], sigma0 * scale, rtol=1e-9)
    np.testing.assert_allclose(p.sigma[1], (_softplus(0.5) + 1e-6) * scale, rtol=1e-9)
    np.testing.assert_allclose(p.mean[0], [7.5, -3.75, 2.4, 0.2])
    np.testing.assert_allclose(p.truth[1], scale)
    np.testing.assert_allclose(p.residuals[1], [0.0, -18.75, -16.0, -0.25])
    np.testing.assert_allclose(p.pulls, p.residuals / p.sigma)
    bad = outputs.copy()
    bad[1, 3] = np.nan
    with pytest.raises(PipelineError, match="non-finite"):
        ev.physical_prediction("m", "qkeras", bad, labels, lambda y: np.asarray(y, dtype=np.float64))


# ---------------------------------------------------------------- report files

def _synthetic_predictions(seed=9, n=4000):
    rng = np.random.default_rng(seed)
    truth = np.column_stack([rng.uniform(-200, 200, n), rng.uniform(-50, 50, n),
                             rng.uniform(-6, 6, n), rng.uniform(-0.3, 0.3, n)])
    sigma = np.exp(rng.normal(0.0, 0.3, (n, 4))) * SIGMAS
    good = truth + rng.normal(0.0, 1.0, (n, 4)) * sigma
    worse = truth + rng.normal(0.0, 1.0, (n, 4)) * sigma * 1.5
    mean = truth.mean(axis=0)
    return [
        ev.Prediction("model_a", "qkeras", truth, good, sigma, nll=-3.25, source="a"),
        ev.Prediction("model_a_float", "float", truth, worse, sigma, nll=-2.5, source="b"),
        ev.Prediction("label_mean", "label-mean", truth, np.tile(mean, (n, 1)),
                      np.tile(truth.std(axis=0), (n, 1)), nll=1.0, source="c"),
    ]


TABLES = ["resolution.csv", "resolution.json", "resolution.md", "models.md", "calibration.csv",
          "resolution_vs_abs_cotalpha.csv"]
PLOTS = ["residuals.png", "pulls.png", "calibration.png", "resolution_vs_abs_cotalpha.png"]


def test_write_report_tables_rows_and_deterministic_bytes(tmp_path):
    predictions = _synthetic_predictions()
    twins = {"model_a": "model_a_float"}
    report = ev.write_report(predictions, tmp_path / "one", notes=["a note"], plots=False, twins=twins)
    ev.write_report(_synthetic_predictions(), tmp_path / "two", notes=["a note"], plots=False, twins=twins)
    for name in TABLES:
        first, second = (tmp_path / "one" / name).read_bytes(), (tmp_path / "two" / name).read_bytes()
        assert first and first == second, name
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == sorted(TABLES)  # no temporary left over

    with open(tmp_path / "one" / "resolution.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["model"], r["target"]) for r in rows] == [
        (m, t) for m in ("model_a", "model_a_float", "label_mean") for t in ev.TARGETS]
    x_row = rows[0]
    assert x_row["unit"] == "um" and rows[2]["unit"] == ""
    assert float(x_row["core_width_68"]) == pytest.approx(
        ev.core_width_68(predictions[0].residuals[:, 0]), rel=1e-5)
    assert float(x_row["nll"]) == -3.25
    # the 1.5x worse model has 1.5x wider residuals and pulls
    assert float(rows[4]["pull_width_68"]) == pytest.approx(1.5 * float(rows[0]["pull_width_68"]), rel=0.1)

    md = (tmp_path / "one" / "resolution.md").read_text()
    table = [line for line in md.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + 12 and "a note" in md
    assert table[1].split("|")[1].strip() == "model_a"

    stored = json.loads((tmp_path / "one" / "resolution.json").read_text())
    assert stored == json.loads(json.dumps(report))
    assert [e["name"] for e in stored["entries"]] == ["model_a", "model_a_float", "label_mean"]
    with open(tmp_path / "one" / "calibration.csv", newline="") as f:
        calibration = list(csv.DictReader(f))
    assert len(calibration) == 3 * 4 * ev.CALIBRATION_BINS
    ratios = [float(r["ratio"]) for r in calibration if r["model"] == "model_a_float"]
    assert np.median(ratios) == pytest.approx(1.5, rel=0.1)

    # models.md: one row per network; the quantized model's widths over its twin's
    models = [line.split("|")[1:-1] for line in (tmp_path / "one" / "models.md").read_text().splitlines()[2:]]
    assert [m[0].strip() for m in models] == ["model_a", "model_a_float"]
    expected = [ev.core_width_68(predictions[0].residuals[:, i]) / ev.core_width_68(predictions[1].residuals[:, i])
                for i in range(4)]
    assert models[0][-1].strip() == " / ".join(f"{r:.2f}" for r in expected)
    assert all(r == pytest.approx(1 / 1.5, rel=0.1) for r in expected)
    assert models[1][-1].strip() == "-"  # a twin has no twin
    with open(tmp_path / "one" / "resolution_vs_abs_cotalpha.csv", newline="") as f:
        alpha = list(csv.DictReader(f))
    assert sum(int(r["events"]) for r in alpha if r["model"] == "model_a") == 4000
    assert {r["target"] for r in alpha} == {"x-midplane"}


@pytest.mark.slow
def test_plots_are_png_with_deterministic_bytes(tmp_path):
    ev.write_report(_synthetic_predictions(n=1000), tmp_path / "one")
    ev.write_report(_synthetic_predictions(n=1000), tmp_path / "two")
    assert sorted(p.name for p in (tmp_path / "one").iterdir()) == sorted(TABLES + PLOTS)
    for name in PLOTS:
        first = (tmp_path / "one" / name).read_bytes()
        assert first[:8] == b"\x89PNG\r\n\x1a\n", name
        assert first == (tmp_path / "two" / name).read_bytes(), name
        assert b"Software" not in first and b"matplotlib" not in first, name
    # a different input gives a different picture
    ev.write_report(_synthetic_predictions(seed=10, n=1000), tmp_path / "three")
    assert (tmp_path / "three" / "pulls.png").read_bytes() != (tmp_path / "one" / "pulls.png").read_bytes()


def test_write_report_rejects_duplicate_names(tmp_path):
    a = _synthetic_predictions(n=100)[0]
    with pytest.raises(PipelineError, match="model_a"):
        ev.write_report([a, a], tmp_path)


# ---------------------------------------------------------------- user errors through the CLI

def test_cli_missing_model_directory_is_one_line(tmp_path, capsys):
    code = main(["evaluate", "--models", str(tmp_path / "nope"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert len(err.splitlines()) == 1 and "nope" in err and err.startswith("error:")
    assert not (tmp_path / "out").exists()


def test_model_directory_not_written_by_training_is_rejected(tmp_path):
    model_dir = tmp_path / "m"
    model_dir.mkdir()
    for name in ("model.h5", "reference.npz"):
        (model_dir / name).write_bytes(b"")
    (model_dir / "model.json").write_text(json.dumps({"name": "m", "data": None}))
    with pytest.raises(PipelineError, match="files.test"):
        ev.evaluate([model_dir], None, tmp_path / "out")
    with pytest.raises(PipelineError, match="max_events"):
        ev.evaluate([model_dir], None, tmp_path / "out", max_events=0)


# ---------------------------------------------------------------- end to end

def _smartpix(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "smartpix", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=1800)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_generate_train_evaluate_end_to_end(tmp_path, capsys):
    import pandas as pd

    data, models, out = tmp_path / "data", tmp_path / "models", tmp_path / "evaluation"
    done = _smartpix("generate", "--out", str(data), "--files", "6", "--events-per-file", "300", "--seed", "3")
    assert done.returncode == 0, done.stderr
    # the float twin is trained first and kept beside the quantized model (baseline/float)
    done = _smartpix("train", "--data", str(data), "--out", str(models / "baseline"), "--epochs", "1",
                     "--recipe", "float_then_quantized", "--float-epochs", "1", "--reference-events", "50")
    assert done.returncode == 0, done.stderr
    assert json.loads((models / "baseline" / "float" / "model.json").read_text())["quantized"] is False

    args = ["evaluate", "--data", str(data), "--models", str(models / "baseline")]
    assert main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("| model | x (um) | y (um) | cotAlpha | cotBeta | pull widths |")  # models.md
    ratio_cell = printed.splitlines()[2].split("|")[-2].strip()
    for name in TABLES + PLOTS:
        assert (out / name).stat().st_size > 0, name
    rows = _rows(out / "resolution.csv")
    assert [(r["model"], r["kind"], r["target"]) for r in rows] == [
        (m, k, t) for m, k in (("baseline", "qkeras"), ("baseline_float", "float"), ("label_mean", "label-mean"))
        for t in ev.TARGETS]
    assert all(float(r["core_width_68"]) > 0 and r["pull_width_68"] and r["nll"] for r in rows)
    widths = {(r["model"], r["target"]): float(r["core_width_68"]) for r in rows}
    assert ratio_cell == " / ".join(f"{widths['baseline', t] / widths['baseline_float', t]:.2f}" for t in ev.TARGETS)

    # every event of the model's own test files, read straight from the parquet labels
    description = json.loads((models / "baseline" / "model.json").read_text())
    targets = list(ev.TARGETS)
    test = pd.concat([pd.read_parquet(data / f"labels_{t}.parquet", columns=targets)
                      for t in description["files"]["test"]])
    train = pd.concat([pd.read_parquet(data / f"labels_{t}.parquet", columns=targets)
                       for t in description["files"]["train"]])
    assert all(int(r["events"]) == len(test) for r in rows)
    report = json.loads((out / "resolution.json").read_text())
    assert report["entries"][0]["test_files"] == description["files"]["test"]
    # the label-mean baseline predicts the training mean: its bias is train mean - test mean
    for r in rows[8:]:
        expected = train[r["target"]].mean() - test[r["target"]].mean()
        assert float(r["bias"]) == pytest.approx(expected, rel=1e-4, abs=1e-6), r["target"]

    # the same inputs give the same bytes
    assert main([*args, "--out", str(tmp_path / "again")]) == 0
    for name in TABLES + PLOTS:
        assert (out / name).read_bytes() == (tmp_path / "again" / name).read_bytes(), name

    # the first 50 test events are the model's reference set: the evaluation must reproduce the
    # residuals of the stored reference outputs against the stored labels
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "first50"), "--max-events", "50", "--no-plots"]) == 0
    reference = np.load(models / "baseline" / "reference.npz")
    scales = np.array(description["data"]["target_scales"])
    residual = (reference["outputs"][:, [0, 2, 4, 6]].astype(np.float64) - reference["labels"]) * scales
    first50 = [r for r in _rows(tmp_path / "first50" / "resolution.csv") if r["model"] == "baseline"]
    for i, r in enumerate(first50):
        low, high = np.percentile(residual[:, i], [15.865525393, 84.134474607])
        assert int(r["events"]) == 50
        assert float(r["core_width_68"]) == pytest.approx((high - low) / 2, rel=1e-4)
        assert float(r["bias"]) == pytest.approx(residual[:, i].mean(), rel=1e-4, abs=1e-6)
        assert float(r["rms"]) == pytest.approx(np.sqrt(np.mean(residual[:, i] ** 2)), rel=1e-4)
    nll = multivariate_nll(reference["labels"], reference["outputs"])
    assert float(first50[0]["nll"]) == pytest.approx(nll, rel=1e-4)

    # user errors: one line, non-zero exit, through the real command line
    missing = _smartpix("evaluate", "--data", str(data), "--models", str(models / "absent"), "--out", str(out))
    assert missing.returncode != 0 and len(missing.stderr.strip().splitlines()) == 1
    assert "absent" in missing.stderr
    other = tmp_path / "other"
    assert _smartpix("generate", "--out", str(other), "--files", "3", "--events-per-file", "20",
                     "--seed", "4").returncode == 0
    capsys.readouterr()
    assert main(["evaluate", "--data", str(other), "--models", str(models / "baseline"),
                 "--out", str(tmp_path / "x")]) != 0
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "test files" in err and str(other) in err


def multivariate_nll(labels: np.ndarray, outputs: np.ndarray) -> float:
    """Mean -log N(labels; mu, L L^T), with L built from the documented output layout."""
    total = 0.0
    for y, row in zip(np.asarray(labels, np.float64), np.asarray(outputs, np.float64)):
        chol = np.zeros((4, 4))
        chol[range(4), range(4)] = _softplus(row[[1, 3, 5, 7]]) + 1e-6
        chol[1, 0], chol[2, 0], chol[2, 1], chol[3, 0], chol[3, 1], chol[3, 2] = row[8:14]
        total -= multivariate_normal(row[[0, 2, 4, 6]], chol @ chol.T).logpdf(y)
    return total / len(labels)
