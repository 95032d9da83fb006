"""Evaluation: residuals, pulls, resolution and calibration of trained MDNs on their test files.

Every model directory is evaluated on its own test files (model.json `files.test`), with its own
data options. Two baselines put the numbers in context: a Gaussian with the label mean and
covariance of the training files (what a network learns when the pixels tell it nothing), and
the full-precision Keras twin of the architecture (what quantization costs).

Written to `build/reports/evaluation/`:
- resolution.csv / .json / .md   one row per model (or baseline) and target
- calibration.csv                predicted sigma vs observed residual RMS in sigma-quantile bins
- resolution_vs_abs_cotalpha.csv x resolution in bins of the true |cotAlpha|
- residuals.png, pulls.png, calibration.png, resolution_vs_abs_cotalpha.png

Widths are "68% half-widths": half the central 68.27% interval (+-1 sigma of a Gaussian), which
a few badly reconstructed events cannot inflate the way they inflate the RMS.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from smartpix import paths
from smartpix.artifacts import atomic_path, write_json, write_text
from smartpix.errors import PipelineError
from train.loss import CORE_FRACTION, DIAG_FLOOR, DIAG_INDEX, MEAN_INDEX, N_TARGETS, OFFDIAG_POSITIONS, core_width_68

log = logging.getLogger(__name__)

DEFAULT_OUT = paths.EVALUATION
# The training targets, in the order of the network outputs (train.dataset.TARGETS).
TARGETS = ("x-midplane", "y-midplane", "cotAlpha", "cotBeta")
UNITS = {"x-midplane": "um", "y-midplane": "um", "cotAlpha": "", "cotBeta": ""}
CALIBRATION_BINS = 10
ALPHA_BINS = 8
LABEL_MEAN_EVENTS = 200_000
PREDICT_BATCH = 8192
LABEL_MEAN_NAME = "label_mean"
RESOLUTION_COLUMNS = ("model", "kind", "target", "unit", "events", "core_width_68", "rms", "bias",
                      "pull_mean", "pull_width_68", "pull_std", "nll")
CALIBRATION_COLUMNS = ("model", "kind", "target", "unit", "bin", "events", "sigma_low", "sigma_high",
                       "mean_sigma", "rms_sigma", "rms_residual", "ratio")
ALPHA_COLUMNS = ("model", "kind", "target", "unit", "abs_cotalpha_low", "abs_cotalpha_high", "events",
                 "core_width_68", "rms", "bias")


# ---------------------------------------------------------------- pure numpy summaries

def _rms(values: np.ndarray) -> float:
    values = np.asarray(values, dtype=np.float64)
    return float(np.sqrt(np.mean(values * values))) if values.size else math.nan


def resolution_table(residuals: np.ndarray, pulls: np.ndarray | None, units: Sequence[str],
                     targets: Sequence[str] = TARGETS) -> list[dict[str, Any]]:
    """One row per target: 68% half-width, RMS and mean of the residuals (pred - true), and the
    mean, 68% half-width and standard deviation of the pulls (None without pulls)."""
    residuals = np.asarray(residuals, dtype=np.float64)
    if residuals.ndim != 2 or residuals.shape[1] != len(units) or len(units) != len(targets):
        raise ValueError(f"residuals {residuals.shape} do not match {len(units)} units and {len(targets)} targets")
    if pulls is not None:
        pulls = np.asarray(pulls, dtype=np.float64)
        if pulls.shape != residuals.shape:
            raise ValueError(f"pulls {pulls.shape} and residuals {residuals.shape} differ in shape")
    rows = []
    for i, (target, unit) in enumerate(zip(targets, units)):
        r = residuals[:, i]
        row: dict[str, Any] = {
            "target": target, "unit": unit, "events": int(r.size),
            "core_width_68": core_width_68(r), "rms": _rms(r),
            "bias": float(np.mean(r)) if r.size else math.nan,
            "pull_mean": None, "pull_width_68": None, "pull_std": None,
        }
        if pulls is not None and r.size:
            p = pulls[:, i]
            row.update(pull_mean=float(np.mean(p)), pull_width_68=core_width_68(p), pull_std=float(np.std(p)))
        rows.append(row)
    return rows


def calibration_table(sigma: np.ndarray, residuals: np.ndarray, units: Sequence[str],
                      targets: Sequence[str] = TARGETS, n_bins: int = CALIBRATION_BINS) -> list[dict[str, Any]]:
    """Per target, events sorted by predicted sigma and cut into `n_bins` equally populated bins;
    for a calibrated model the residual RMS in a bin equals the RMS of the predicted sigmas."""
    sigma = np.asarray(sigma, dtype=np.float64)
    residuals = np.asarray(residuals, dtype=np.float64)
    if sigma.shape != residuals.shape or sigma.ndim != 2 or sigma.shape[1] != len(targets):
        raise ValueError(f"sigma {sigma.shape} and residuals {residuals.shape} do not match {len(targets)} targets")
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    rows = []
    for i, (target, unit) in enumerate(zip(targets, units)):
        # a stable sort keeps ties (e.g. a constant sigma) in event order: deterministic bins
        order = np.argsort(sigma[:, i], kind="stable")
        for k, chunk in enumerate(np.array_split(order, n_bins)):
            if chunk.size == 0:
                continue
            s, r = sigma[chunk, i], residuals[chunk, i]
            rms_sigma, rms_residual = _rms(s), _rms(r)
            rows.append({
                "target": target, "unit": unit, "bin": k, "events": int(chunk.size),
                "sigma_low": float(s.min()), "sigma_high": float(s.max()),
                "mean_sigma": float(s.mean()), "rms_sigma": rms_sigma, "rms_residual": rms_residual,
                "ratio": rms_residual / rms_sigma if rms_sigma > 0 else math.nan,
            })
    return rows


def binned_resolution(residual: np.ndarray, variable: np.ndarray, edges: np.ndarray) -> list[dict[str, Any]]:
    """68% half-width, RMS and mean of `residual` in bins [edges[k], edges[k+1]) of `variable`
    (the last bin includes its upper edge)."""
    residual = np.asarray(residual, dtype=np.float64)
    variable = np.asarray(variable, dtype=np.float64)
    edges = np.asarray(edges, dtype=np.float64)
    rows = []
    for k in range(len(edges) - 1):
        low, high = edges[k], edges[k + 1]
        upper = variable <= high if k == len(edges) - 2 else variable < high
        r = residual[(variable >= low) & upper]
        rows.append({"low": float(low), "high": float(high), "events": int(r.size),
                     "core_width_68": core_width_68(r), "rms": _rms(r),
                     "bias": float(r.mean()) if r.size else math.nan})
    return rows


def quantile_edges(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin edges at the quantiles of `values` (duplicates removed, so never an empty-width bin)."""
    edges = np.unique(np.quantile(np.asarray(values, dtype=np.float64), np.linspace(0.0, 1.0, n_bins + 1)))
    return edges if edges.size >= 2 else np.array([edges[0], edges[0]])


@dataclass(frozen=True)
class LabelStatistics:
    """Mean and covariance (ddof=0) of the scaled training labels."""

    mean: np.ndarray
    covariance: np.ndarray
    events: int


def label_statistics(chunks: Iterable[np.ndarray]) -> LabelStatistics:
    """Mean and covariance of label chunks (n_k, d), merged chunk by chunk (Chan et al.) so that
    the training files are streamed rather than held in memory."""
    count, mean, scatter = 0, None, None
    for chunk in chunks:
        chunk = np.asarray(chunk, dtype=np.float64)
        if chunk.ndim != 2 or chunk.shape[0] == 0:
            continue
        n_b = chunk.shape[0]
        mean_b = chunk.mean(axis=0)
        centred = chunk - mean_b
        scatter_b = centred.T @ centred
        if mean is None:
            count, mean, scatter = n_b, mean_b, scatter_b
            continue
        delta = mean_b - mean
        total = count + n_b
        scatter = scatter + scatter_b + np.outer(delta, delta) * (count * n_b / total)
        mean = mean + delta * (n_b / total)
        count = total
    if mean is None:
        raise PipelineError("no training labels to compute the label-mean baseline from")
    return LabelStatistics(mean=mean, covariance=scatter / count, events=count)


def constant_outputs(mean: np.ndarray, covariance: np.ndarray) -> np.ndarray:
    """The 14 MDN outputs (train.loss layout) of a Gaussian N(mean, covariance): the label-mean
    baseline as a 'network' that ignores its input, so it is scored exactly like the models."""
    mean = np.asarray(mean, dtype=np.float64)
    cov = np.asarray(covariance, dtype=np.float64)
    # a tiny ridge keeps a degenerate target (constant label) from breaking the factorization
    ridge = 1e-12 * max(float(np.trace(cov)) / N_TARGETS, 1.0)
    chol = np.linalg.cholesky(cov + ridge * np.eye(N_TARGETS))
    outputs = np.zeros(14)
    outputs[list(MEAN_INDEX)] = mean
    diag = np.maximum(np.diag(chol) - DIAG_FLOOR, 1e-12)
    outputs[list(DIAG_INDEX)] = diag + np.log(-np.expm1(-diag))  # inverse of softplus
    for k, (r, c) in enumerate(OFFDIAG_POSITIONS):
        outputs[8 + k] = chol[r, c]
    return outputs


def target_scales(unscale: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Offset and scale of an element-wise affine unscaling y_phys = offset + scale * y, read off
    the unscaling function itself so that sigmas are converted with the same numbers."""
    probe = np.array([[0.0] * N_TARGETS, [1.0] * N_TARGETS, [-2.0] * N_TARGETS, [0.5, -1.0, 3.0, -0.25]])
    values = np.asarray(unscale(probe.astype(np.float32)), dtype=np.float64)
    offset, scale = values[0], values[1] - values[0]
    if values.shape != probe.shape or not np.allclose(values, offset + scale * probe, rtol=1e-5, atol=1e-6):
        raise PipelineError("train.dataset.unscale_targets is not an element-wise affine map: "
                            "predicted sigmas cannot be converted to physical units")
    return offset, scale


# ---------------------------------------------------------------- predictions of one entry

@dataclass(frozen=True)
class Prediction:
    """What one model (or baseline) predicts on a test set, in physical units."""

    name: str
    kind: str  # "qkeras" | "float" | "label-mean"
    truth: np.ndarray  # (n, 4) true targets
    mean: np.ndarray  # (n, 4) predicted means
    sigma: np.ndarray | None  # (n, 4) predicted standard deviations
    nll: float | None = None  # mean per-event NLL on the scaled targets
    source: str = ""
    test_files: tuple[str, ...] = ()

    @property
    def residuals(self) -> np.ndarray:
        return self.mean - self.truth

    @property
    def pulls(self) -> np.ndarray | None:
        return None if self.sigma is None else self.residuals / self.sigma


def physical_prediction(name: str, kind: str, outputs: np.ndarray, labels: np.ndarray,
                        unscale: Callable[[np.ndarray], np.ndarray], source: str = "",
                        test_files: Sequence[str] = ()) -> Prediction:
    """Raw MDN outputs (n, 14) and scaled labels (n, 4) -> a Prediction in physical units (means
    and labels through `unscale`, sigmas = sqrt(diag(covariance)) times the target scales)."""
    from train.loss import nll_numpy, sigmas, unpack

    outputs = np.asarray(outputs, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.float64)
    bad = int(np.count_nonzero(~np.all(np.isfinite(outputs), axis=1)))
    if bad:
        raise PipelineError(f"{name} ({source}): {bad} of {len(outputs)} test events have non-finite outputs")
    _, scale = target_scales(unscale)
    mu, _ = unpack(outputs)
    sigma = sigmas(outputs) * np.abs(scale)
    return Prediction(
        name=name, kind=kind,
        truth=np.asarray(unscale(labels), dtype=np.float64),
        mean=np.asarray(unscale(mu), dtype=np.float64),
        sigma=sigma, nll=float(np.mean(nll_numpy(labels, outputs))),
        source=source, test_files=tuple(test_files),
    )


# ---------------------------------------------------------------- report writing

def _number(value: Any, digits: int = 6) -> Any:
    """Floats rounded to `digits` significant digits; NaN/inf -> None (valid JSON, stable bytes)."""
    if value is None or isinstance(value, (str, bool, int)):
        return value
    value = float(value)
    return float(f"{value:.{digits}g}") if math.isfinite(value) else None


def _cell(value: Any, digits: int = 6) -> str:
    value = _number(value, digits)
    if value is None:
        return ""
    return f"{value:.{digits}g}" if isinstance(value, float) else str(value)


def _csv_text(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return buffer.getvalue()


def markdown_table(rows: list[dict[str, Any]], notes: Sequence[str] = ()) -> str:
    """The resolution table as Markdown (4 significant digits)."""
    lines = [
        "# Resolution on the test files",
        "",
        "Residual = predicted - true (x, y in um; cotAlpha, cotBeta dimensionless). core_width_68: half",
        "the central 68.27% interval of the residuals; pull = residual / predicted sigma (ideal: mean 0,",
        "width 1); nll: mean negative log-likelihood per event on the scaled targets.",
        "",
        "| " + " | ".join(RESOLUTION_COLUMNS) + " |",
        "|" + "|".join("---" if c in ("model", "kind", "target", "unit") else "---:" for c in RESOLUTION_COLUMNS) + "|",
    ]
    for row in rows:
        cells = [_cell(row.get(c), 4) or "-" for c in RESOLUTION_COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    if notes:
        lines += ["", *[f"- {note}" for note in notes]]
    return "\n".join(lines) + "\n"


SHORT_NAMES = {"x-midplane": "x", "y-midplane": "y", "cotAlpha": "cotAlpha", "cotBeta": "cotBeta"}


def model_table(resolution: Sequence[dict[str, Any]], twins: dict[str, str],
                targets: Sequence[str] = TARGETS) -> list[dict[str, Any]]:
    """One row per network: its 68% half-widths, the range of its pull widths, its largest
    |bias| as a fraction of the half-width, and (for a model with a float twin) the ratios of
    its half-widths to the twin's."""
    by_model: dict[str, dict[str, dict[str, Any]]] = {}
    kinds: dict[str, str] = {}
    for row in resolution:
        by_model.setdefault(row["model"], {})[row["target"]] = row
        kinds[row["model"]] = row["kind"]
    rows = []
    for model, per_target in by_model.items():
        if kinds[model] == "label-mean":
            continue
        row: dict[str, Any] = {"model": model, "kind": kinds[model], "float_twin": twins.get(model)}
        pulls, biases = [], []
        for target in targets:
            r = per_target[target]
            short = SHORT_NAMES.get(target, target)
            row[short] = r["core_width_68"]
            pulls.append(r.get("pull_width_68", math.nan))
            biases.append(abs(r["bias"]) / r["core_width_68"] if r["core_width_68"] else math.nan)
            twin = by_model.get(twins.get(model, ""), {}).get(target)
            row[f"{short}_ratio"] = r["core_width_68"] / twin["core_width_68"] if twin else None
        row.update(pull_min=min(pulls), pull_max=max(pulls), max_bias_fraction=max(biases))
        rows.append(row)
    return rows


def model_markdown(rows: Sequence[dict[str, Any]], targets: Sequence[str] = TARGETS) -> str:
    """The models table: resolutions, pull widths, bias, and each quantized model's ratios to its
    full-precision twin (the same architecture and data, trained in float)."""
    shorts = [SHORT_NAMES.get(t, t) for t in targets]
    heads = [f"{s} ({UNITS[t]})" if UNITS.get(t) else s for s, t in zip(shorts, targets)]
    lines = ["| model | " + " | ".join(heads) + " | pull widths | max abs(bias) / width | quantized / float twin ("
             + ", ".join(shorts) + ") |",
             "|---|" + "---:|" * len(heads) + "---|---:|---|"]
    for row in rows:
        ratios = [row.get(f"{s}_ratio") for s in shorts]
        ratio_cell = " / ".join(f"{r:.2f}" for r in ratios) if all(r is not None for r in ratios) else "-"
        lines.append(f"| {row['model']} | " + " | ".join(_cell(row[s], 4) for s in shorts)
                     + f" | {row['pull_min']:.2f}-{row['pull_max']:.2f} | {row['max_bias_fraction']:.3f} | "
                     + ratio_cell + " |")
    return "\n".join(lines) + "\n"


def summarize(predictions: Sequence[Prediction], calibration_bins: int = CALIBRATION_BINS,
              alpha_bins: int = ALPHA_BINS, targets: Sequence[str] = TARGETS) -> dict[str, Any]:
    """Resolution, calibration and x-resolution-vs-|cotAlpha| rows of every prediction."""
    units = [UNITS.get(t, "") for t in targets]
    resolution, calibration, alpha = [], [], []
    alpha_index, x_index = targets.index("cotAlpha"), targets.index("x-midplane")
    # one set of |cotAlpha| bins for every entry, from the first one's test labels
    edges = quantile_edges(np.abs(predictions[0].truth[:, alpha_index]), alpha_bins)
    for p in predictions:
        head = {"model": p.name, "kind": p.kind}
        for row in resolution_table(p.residuals, p.pulls, units, targets):
            resolution.append({**head, **row, "nll": p.nll})
        if p.sigma is not None:
            calibration += [{**head, **row} for row in calibration_table(p.sigma, p.residuals, units, targets,
                                                                            calibration_bins)]
        for row in binned_resolution(p.residuals[:, x_index], np.abs(p.truth[:, alpha_index]), edges):
            alpha.append({**head, "target": targets[x_index], "unit": units[x_index],
                          "abs_cotalpha_low": row.pop("low"), "abs_cotalpha_high": row.pop("high"), **row})
    return {"resolution": resolution, "calibration": calibration, "resolution_vs_abs_cotalpha": alpha}


def write_report(predictions: Sequence[Prediction], out_dir: Path, notes: Sequence[str] = (),
                 calibration_bins: int = CALIBRATION_BINS, alpha_bins: int = ALPHA_BINS,
                 targets: Sequence[str] = TARGETS, plots: bool = True,
                 twins: dict[str, str] | None = None) -> dict[str, Any]:
    """Write the tables (and with `plots` the PNG plots) of `predictions` into `out_dir`, each
    file atomically; the same predictions give the same bytes. `twins` maps a quantized model's
    name to its float twin's, for the ratios of models.md. Returns resolution.json's content."""
    if not predictions:
        raise PipelineError("nothing to evaluate: no models and no baselines")
    names = [p.name for p in predictions]
    if len(set(names)) != len(names):
        duplicate = sorted({n for n in names if names.count(n) > 1})
        raise PipelineError(f"two entries are named {', '.join(duplicate)}: model names must be unique")
    out_dir = Path(out_dir)
    tables = summarize(predictions, calibration_bins, alpha_bins, targets)
    models = model_table(tables["resolution"], twins or {}, targets)
    report = {
        "targets": list(targets),
        "units": {t: UNITS.get(t, "") for t in targets},
        "core_fraction": CORE_FRACTION,
        "entries": [{"name": p.name, "kind": p.kind, "source": p.source, "events": int(len(p.truth)),
                     "nll": _number(p.nll), "test_files": list(p.test_files)} for p in predictions],
        "notes": list(notes),
        **{key: [{k: _number(v) for k, v in row.items()} for row in rows]
           for key, rows in {**tables, "models": models}.items()},
    }
    write_json(out_dir / "resolution.json", report)
    write_text(out_dir / "resolution.csv", _csv_text(tables["resolution"], RESOLUTION_COLUMNS))
    write_text(out_dir / "resolution.md", markdown_table(tables["resolution"], notes))
    write_text(out_dir / "models.md", model_markdown(models, targets))
    write_text(out_dir / "calibration.csv", _csv_text(tables["calibration"], CALIBRATION_COLUMNS))
    write_text(out_dir / "resolution_vs_abs_cotalpha.csv",
               _csv_text(tables["resolution_vs_abs_cotalpha"], ALPHA_COLUMNS))
    if plots:
        plot_all(predictions, tables, out_dir, targets)
    return report


# ---------------------------------------------------------------- plots

def _figure(rows: int, cols: int, size: tuple[float, float]):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=100)
    FigureCanvasAgg(fig)
    return fig, fig.subplots(rows, cols, squeeze=False)


def _save(fig, path: Path) -> Path:
    # no "Software" (version) entry and PNG has no timestamp: same figure, same bytes
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", metadata={"Software": None})
    return path


def _label(target: str) -> str:
    unit = UNITS.get(target, "")
    return f"{target} [{unit}]" if unit else target


def plot_all(predictions: Sequence[Prediction], tables: dict[str, list[dict[str, Any]]], out_dir: Path,
             targets: Sequence[str] = TARGETS) -> list[Path]:
    """residuals.png, pulls.png, calibration.png and resolution_vs_abs_cotalpha.png."""
    import matplotlib

    with matplotlib.rc_context({"font.size": 8}):
        paths = [_plot_residuals(predictions, tables, out_dir, targets), _plot_pulls(predictions, out_dir, targets),
                 _plot_calibration(tables, out_dir, targets), _plot_alpha(tables, out_dir)]
    return paths


def _learned(predictions_or_rows: Iterable[Any], kind_of: Callable[[Any], str]) -> list[Any]:
    """Entries that are networks (the label-mean baseline's scale would flatten their curves);
    all entries when there is no network."""
    items = list(predictions_or_rows)
    learned = [i for i in items if kind_of(i) != "label-mean"]
    return learned or items


def _plot_residuals(predictions, tables, out_dir, targets) -> Path:
    fig, axes = _figure(2, 2, (10, 7.5))
    for i, (ax, target) in enumerate(zip(axes.flat, targets)):
        widths = [r["core_width_68"] for r in _learned(tables["resolution"], lambda r: r["kind"])
                  if r["target"] == target and math.isfinite(r["core_width_68"])]
        half = 4 * max(widths) if widths and max(widths) > 0 else 1.0
        for p in predictions:
            r = p.residuals[:, i]
            ax.hist(r, bins=80, range=(-half, half), histtype="step", weights=np.full(r.size, 1 / max(r.size, 1)),
                    label=p.name)
        ax.set_xlabel(f"residual {_label(target)}")
        ax.set_ylabel("fraction of events")
        ax.legend(loc="upper right")
    fig.suptitle("Residuals (predicted - true)")
    fig.tight_layout()
    return _save(fig, out_dir / "residuals.png")


def _plot_pulls(predictions, out_dir, targets) -> Path:
    fig, axes = _figure(2, 2, (10, 7.5))
    grid = np.linspace(-5, 5, 201)
    bins = 80
    for i, (ax, target) in enumerate(zip(axes.flat, targets)):
        for p in predictions:
            if p.pulls is None:
                continue
            pulls = p.pulls[:, i]
            ax.hist(pulls, bins=bins, range=(-5, 5), histtype="step", label=p.name,
                    weights=np.full(pulls.size, bins / 10 / max(pulls.size, 1)))  # a density over all events
        ax.plot(grid, np.exp(-0.5 * grid**2) / np.sqrt(2 * np.pi), "k--", linewidth=1, label="N(0, 1)")
        ax.set_xlabel(f"pull {target}")
        ax.set_ylabel("density")
        ax.legend(loc="upper right")
    fig.suptitle("Pulls (residual / predicted sigma)")
    fig.tight_layout()
    return _save(fig, out_dir / "pulls.png")


def _plot_calibration(tables, out_dir, targets) -> Path:
    fig, axes = _figure(2, 2, (10, 7.5))
    rows = _learned(tables["calibration"], lambda r: r["kind"])
    for ax, target in zip(axes.flat, targets):
        mine = [r for r in rows if r["target"] == target]
        for name in dict.fromkeys(r["model"] for r in mine):
            points = [r for r in mine if r["model"] == name]
            ax.plot([r["rms_sigma"] for r in points], [r["rms_residual"] for r in points], "o-", markersize=3,
                    label=name)
        values = [v for r in mine for v in (r["rms_sigma"], r["rms_residual"]) if math.isfinite(v)]
        if values:
            top = max(values) * 1.05
            ax.plot([0, top], [0, top], "k--", linewidth=1, label="calibrated")
            ax.set_xlim(0, top)
            ax.set_ylim(0, top)
        ax.set_xlabel(f"predicted sigma, RMS in bin: {_label(target)}")
        ax.set_ylabel("observed residual RMS in bin")
        ax.legend(loc="upper left")
    fig.suptitle("Calibration (equally populated bins of predicted sigma)")
    fig.tight_layout()
    return _save(fig, out_dir / "calibration.png")


def _plot_alpha(tables, out_dir) -> Path:
    fig, axes = _figure(1, 1, (6.5, 4.5))
    ax = axes[0, 0]
    rows = _learned(tables["resolution_vs_abs_cotalpha"], lambda r: r["kind"])
    for name in dict.fromkeys(r["model"] for r in rows):
        points = [r for r in rows if r["model"] == name]
        centres = [(r["abs_cotalpha_low"] + r["abs_cotalpha_high"]) / 2 for r in points]
        ax.plot(centres, [r["core_width_68"] for r in points], "o-", markersize=3, label=name)
    ax.set_xlabel("true |cotAlpha| (bin centre)")
    ax.set_ylabel("x-midplane residual 68% half-width [um]")
    ax.set_ylim(bottom=0)
    ax.set_title("x resolution vs track angle")
    ax.legend(loc="best")
    fig.tight_layout()
    return _save(fig, out_dir / "resolution_vs_abs_cotalpha.png")


# ---------------------------------------------------------------- models and data

@dataclass
class _Model:
    directory: Path
    name: str
    kind: str
    description: dict[str, Any]
    keras: Any = None


def _describe(model_dir: Path, role: str) -> _Model:
    from train.fit import read_model_description

    description = read_model_description(Path(model_dir))
    data, files = description.get("data"), description.get("files")
    if not isinstance(data, dict) or not isinstance(files, dict) or not isinstance(files.get("test"), list):
        raise PipelineError(f"{Path(model_dir) / 'model.json'}: no 'data' options or 'files.test' list "
                            f"(the {role} was not written by `smartpix train`)")
    if not files["test"]:
        raise PipelineError(f"{Path(model_dir) / 'model.json'}: 'files.test' is empty, nothing to evaluate on")
    kind = "qkeras" if description.get("quantized", True) else "float"
    return _Model(Path(model_dir), str(description.get("name") or Path(model_dir).name), kind, description)


def _load_keras(entry: _Model) -> None:
    from train.models import disable_ste, load_model

    path = entry.directory / "model.h5"
    try:
        model = load_model(path)
    except (OSError, ValueError, KeyError, TypeError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise PipelineError(f"{path}: cannot load the model ({reason})") from None
    disable_ste(model)  # exactly q(x) at inference, as in the reference outputs
    expected = tuple(entry.description.get("input_shape") or ())
    if expected and tuple(model.input_shape[1:]) != expected:
        raise PipelineError(f"{path}: input shape {tuple(model.input_shape[1:])} differs from model.json {expected}")
    entry.keras = model


def _predict(model, x: np.ndarray, batch_size: int = PREDICT_BATCH) -> np.ndarray:
    from tqdm import tqdm

    starts = range(0, len(x), batch_size)
    # a bar only for big single arrays (--max-events); file-by-file runs have one per file
    bar = tqdm(starts, desc=f"predict {model.name}", unit="batch", disable=None if len(starts) > 20 else True)
    outputs = [np.asarray(model.predict_on_batch(x[i:i + batch_size])) for i in bar]
    return np.concatenate(outputs).astype(np.float32) if outputs else np.zeros((0, 14), np.float32)


def _test_pairs(entry: _Model, data_dir: Path, options) -> list:
    from train import dataset

    if not data_dir.is_dir():
        raise PipelineError(f"data directory {data_dir} does not exist (for model {entry.directory})")
    wanted = list(entry.description["files"]["test"])
    pairs = [p for p in dataset.discover(data_dir, options.layout) if p.tag in set(wanted)]
    missing = sorted(set(wanted) - {p.tag for p in pairs})
    if missing:
        raise PipelineError(f"data directory {data_dir} lacks {len(missing)} of the {len(wanted)} test files of "
                            f"{entry.directory} (e.g. {missing[0]!r})")
    return pairs


def _chunks(pairs: list, options, max_events: int | None, seed: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The test events: every file in turn (bounded memory), or the first `max_events` at once."""
    from tqdm import tqdm

    from train import dataset

    if max_events is not None:
        yield dataset.load_arrays(pairs, options, max_events=max_events, seed=seed)
        return
    for pair in tqdm(pairs, desc="evaluate", unit="file", disable=None):
        yield dataset.load_arrays([pair], options, seed=seed)


def _label_mean_statistics(entry: _Model, data_dir: Path, options, cap: int, seed: int) -> LabelStatistics:
    """Label statistics of the entry's training files, read one file at a time up to `cap` events."""
    from train import dataset

    wanted = set(entry.description["files"].get("train") or [])
    pairs = [p for p in dataset.discover(data_dir, options.layout) if p.tag in wanted]
    if not pairs:
        raise PipelineError(f"data directory {data_dir} has none of the training files of {entry.directory} "
                            "(needed for the label-mean baseline)")

    def chunks() -> Iterator[np.ndarray]:
        remaining = cap
        for pair in pairs:
            if remaining <= 0:
                return
            _, y = dataset.load_arrays([pair], options, max_events=remaining, seed=seed)
            remaining -= len(y)
            yield y

    return label_statistics(chunks())


def evaluate(model_dirs: list[Path], data_dir: Path | None, out_dir: Path = DEFAULT_OUT,
             float_baseline: Path | None = None, max_events: int | None = None, seed: int | None = None,
             label_mean_events: int = LABEL_MEAN_EVENTS, calibration_bins: int = CALIBRATION_BINS,
             plots: bool = True) -> dict:
    """Evaluate each model directory on its own test files against the label-mean and float
    baselines; write the tables and plots to `out_dir` and return resolution.json's content.

    `data_dir` None means each model's recorded data directory; `max_events` takes the first events
    of the test files; `seed` (noise of the inputs, if the data options add noise) defaults to each
    model's training seed, which reproduces the inputs of its reference set."""
    if not model_dirs:
        raise PipelineError("no model directory given (--models)")
    for name, value in (("max_events", max_events), ("label_mean_events", label_mean_events),
                        ("calibration_bins", calibration_bins)):
        if value is not None and value < 1:
            raise PipelineError(f"{name} must be at least 1, got {value}")
    notes: list[str] = []
    twins: dict[str, str] = {}
    entries = _entries(model_dirs, float_baseline, notes, twins)
    groups = _test_sets(entries, data_dir, seed)
    if len(groups) > 1:
        notes.append("the entries do not all share one test set (data directory, options or test files differ); "
                     "each is evaluated on its own")
    predictions, first_test_set = _predictions(groups, max_events)
    baseline = _label_mean_prediction(entries[0], predictions[entries[0].name], first_test_set, label_mean_events,
                                      notes)
    ordered = [predictions[e.name] for e in entries] + [baseline]
    report = write_report(ordered, Path(out_dir), notes, calibration_bins=calibration_bins, plots=plots,
                          twins=twins)
    log.info("wrote %s", Path(out_dir))
    return report


def _entries(model_dirs: list[Path], float_baseline: Path | None, notes: list[str],
             twins: dict[str, str]) -> list[_Model]:
    """The models to evaluate, each followed by its float twin when it has one (the float
    baseline last), each name used once; `twins` is filled with {model: its twin}."""
    from train.fit import FLOAT_TWIN

    entries = []
    for directory in model_dirs:
        entry = _describe(directory, "model")
        entries.append(entry)
        # the full-precision twin the quantized model was fine-tuned from, saved beside it
        if entry.kind == "qkeras" and (Path(directory) / FLOAT_TWIN / "model.json").is_file():
            twin = _describe(Path(directory) / FLOAT_TWIN, "float twin")
            twins[entry.name] = twin.name
            entries.append(twin)
    if float_baseline is not None:
        float_entry = _describe(float_baseline, "float baseline")
        if float_entry.kind != "float":
            raise PipelineError(f"float baseline {float_baseline} is a quantized model (model.json 'quantized'); "
                                "train the full-precision twin with `smartpix train --float`")
        entries.append(float_entry)
    elif not twins:
        log.info("no float twin and no --float-baseline: the full-precision baseline is skipped")
        notes.append("full-precision baseline skipped (no float twin and no --float-baseline model directory)")
    seen: dict[str, Path] = {}
    for entry in entries:
        if entry.name == LABEL_MEAN_NAME or entry.name in seen:
            other = seen.get(entry.name, "the label-mean baseline")
            raise PipelineError(f"model name {entry.name!r} of {entry.directory} is also the name of {other}: "
                                "names must be unique")
        seen[entry.name] = entry.directory
    return entries


_TestSet = tuple[str, str, int, tuple[str, ...]]  # data directory, options, seed, test files


def _test_sets(entries: list[_Model], data_dir: Path | None, seed: int | None) -> dict[_TestSet, list[_Model]]:
    """Entries grouped by test set: those with the same data, options, seed and test files share
    one pass over the data (dicts keep order: the first group is the first model's)."""
    from train import dataset

    groups: dict[_TestSet, list[_Model]] = {}
    for entry in entries:
        targets = tuple(dataset.DataOptions.from_dict(entry.description["data"]).targets)
        if targets != TARGETS:
            raise PipelineError(f"{entry.directory / 'model.json'}: data targets {', '.join(targets)}; "
                                f"the evaluation needs {', '.join(TARGETS)}")
        if data_dir is None and not entry.description.get("data_dir"):
            raise PipelineError(f"{entry.directory / 'model.json'} records no data_dir: pass --data")
        directory = Path(data_dir if data_dir is not None else entry.description["data_dir"])
        # by default the model's own seed: the same (noisy) inputs as its reference set
        entry_seed = int(entry.description.get("seed", 0)) if seed is None else seed
        key = (str(directory), json.dumps(entry.description["data"], sort_keys=True), entry_seed,
               tuple(sorted(entry.description["files"]["test"])))
        groups.setdefault(key, []).append(entry)
    return groups


def _predictions(groups: dict[_TestSet, list[_Model]], max_events: int | None
                 ) -> tuple[dict[str, Prediction], tuple[np.ndarray, Any, Path, int]]:
    """Every entry's prediction on its test set, and the first test set's (labels, options,
    data directory, seed), on which the label-mean baseline is scored."""
    from train import dataset

    predictions: dict[str, Prediction] = {}
    first: tuple[np.ndarray, Any, Path, int] = (np.zeros((0, N_TARGETS)), None, Path(), 0)
    for index, ((directory, options_json, group_seed, _), members) in enumerate(groups.items()):
        options = dataset.DataOptions.from_dict(json.loads(options_json))
        pairs = _test_pairs(members[0], Path(directory), options)
        for entry in members:
            _load_keras(entry)
        outputs: dict[str, list[np.ndarray]] = {e.name: [] for e in members}
        labels: list[np.ndarray] = []
        for x, y in _chunks(pairs, options, max_events, group_seed):
            labels.append(np.asarray(y, dtype=np.float32))
            for entry in members:
                outputs[entry.name].append(_predict(entry.keras, np.asarray(x, dtype=np.float32)))
        y_all = np.concatenate(labels) if labels else np.zeros((0, N_TARGETS), np.float32)
        if len(y_all) == 0:
            raise PipelineError(f"the test files of {members[0].directory} in {directory} hold no events")
        log.info("%d test events from %d files for %s", len(y_all), len(pairs), ", ".join(e.name for e in members))
        unscale = _unscaler(options)
        for entry in members:
            predictions[entry.name] = physical_prediction(
                entry.name, entry.kind, np.concatenate(outputs[entry.name]), y_all, unscale,
                source=str(entry.directory), test_files=[p.tag for p in pairs])
        if index == 0:
            first = (y_all, options, Path(directory), group_seed)
    return predictions, first


def _label_mean_prediction(first: _Model, first_prediction: Prediction, test_set: tuple[np.ndarray, Any, Path, int],
                           label_mean_events: int, notes: list[str]) -> Prediction:
    """The label-mean baseline: the first model's training labels, scored on its test events."""
    y_ref, options, directory, first_seed = test_set
    stats = _label_mean_statistics(first, directory, options, label_mean_events, first_seed)
    log.info("label-mean baseline from %d training events of %s", stats.events, first.name)
    constant = np.tile(constant_outputs(stats.mean, stats.covariance), (len(y_ref), 1))
    notes.append(f"{LABEL_MEAN_NAME}: a Gaussian with the mean and covariance of {stats.events} training labels "
                 f"of {first.name}, on the test events of {first.name}")
    return physical_prediction(LABEL_MEAN_NAME, "label-mean", constant, y_ref, _unscaler(options),
                               source=f"training labels of {first.directory} ({stats.events} events)",
                               test_files=first_prediction.test_files)


def _unscaler(options) -> Callable[[np.ndarray], np.ndarray]:
    from train import dataset

    return lambda y: np.asarray(dataset.unscale_targets(np.asarray(y, dtype=np.float64), options), dtype=np.float64)


# ---------------------------------------------------------------- CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", type=Path, nargs="+", required=True, help="trained model directories")
    parser.add_argument("--data", type=Path, default=None,
                        help="data directory (default: the one recorded in each model.json)")
    parser.add_argument("--float-baseline", type=Path, default=None,
                        help="model directory of the full-precision twin (smartpix train --float)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory for tables and plots")
    parser.add_argument("--max-events", type=int, default=None, help="the first N test events only (default: all)")
    parser.add_argument("--seed", type=int, default=None,
                        help="seed of the input noise, if the data options add noise (default: each model's own)")
    parser.add_argument("--label-mean-events", type=int, default=LABEL_MEAN_EVENTS,
                        help="cap on the training events read for the label-mean baseline")
    parser.add_argument("--calibration-bins", type=int, default=CALIBRATION_BINS,
                        help="equally populated bins of predicted sigma in calibration.csv")
    parser.add_argument("--no-plots", dest="plots", action="store_false", help="write the tables only")


def run(args: argparse.Namespace) -> int:
    evaluate(args.models, args.data, args.out, float_baseline=args.float_baseline, max_events=args.max_events,
             seed=args.seed, label_mean_events=args.label_mean_events, calibration_bins=args.calibration_bins,
             plots=args.plots)
    print((Path(args.out) / "models.md").read_text(), end="")
    print(f"wrote {args.out} (every target and baseline in resolution.md)")
    return 0
