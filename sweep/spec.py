"""Sweep files: one YAML in sweeps/ declaring a grid of design points over the model spec, the
data, training and the hardware, validated like model specs and hardware configurations.

```yaml
name: default                        # must match the file name
description: ...
data_dir: build/data/synthetic       # the dataset every point trains on (default: make data's)
base:                                # what every point starts from
  model: {architecture: baseline}    # any key of a model spec's `model:`
  data: {time_slices: [0, 19]}       # any key of a model spec's `data:`
  training: {epochs: 3}              # any key of a model spec's `training:`
  hardware: {backend: Vitis, part: xcvu13p-flga2577-2-e, clock_period_ns: 5}   # a configuration's keys
evaluation: {max_events: 5000}       # test events scored per point (default: all)
axes:                                # the grid is their cartesian product
  model.architecture: [baseline, xysum]        # a dotted key: one value per grid line
  data.time_slices: [[0, 19], [0, 1, 2, ...]]
  precision:                                   # any other name: values set several keys at once
    - {label: w4a4, model.conv_weight_bits: 4, model.conv_activation_bits: 4}
```

Every point becomes a model spec (`train.specs.spec_from_dict`) and a hardware configuration
(`firmware.config.config_from_dict`), so a point is validated exactly like a shipped file; every
error is one line naming the sweep file and the key.
"""

from __future__ import annotations

import copy
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware.config import config_from_dict
from smartpix import paths
from smartpix.errors import PipelineError
from smartpix.yamlfile import named_file_header, read_mapping
from sweep.points import POINT_NAME
from train.specs import spec_from_dict

DEFAULT_SWEEP_DIR = paths.ROOT / "sweeps"
TOP_KEYS = ("name", "description", "data_dir", "mode", "base", "evaluation", "axes")
SECTIONS = ("model", "data", "training", "hardware")
MODES = ("grid",)
EVALUATION_KEYS = ("max_events", "label_mean_events")
_SAFE = re.compile(r"[^A-Za-z0-9_.-]+")
_ABBREVIATIONS = {"weight": "w", "activation": "a", "bits": "b", "conv": "c", "dense": "d", "pool": "p",
                  "input": "in", "integer": "i", "filters": "f", "clock_period_ns": "clk", "n": ""}


@dataclass(frozen=True)
class Point:
    """One design point: a label for tables and plots, the model spec (as a spec file's mapping,
    without its name) and the hardware configuration (without name and model)."""

    label: str
    spec: dict[str, Any]
    hardware: dict[str, Any]
    coordinates: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "spec": self.spec, "hardware": self.hardware, "coordinates": self.coordinates}


@dataclass(frozen=True)
class Sweep:
    name: str
    source: Path | None
    points: tuple[Point, ...]
    data_dir: Path
    evaluation: dict[str, int]
    description: str = ""
    axes: tuple[str, ...] = ()


def load_sweep(path: str | Path) -> Sweep:
    """Read and validate one sweep file, its grid expanded into points."""
    path = Path(path)
    return sweep_from_dict(read_mapping(path, "sweep file"), path)


def sweep_from_dict(data: dict[str, Any], path: Path | str = "<sweep>") -> Sweep:
    where = str(path)

    def fail(key: str, message: str) -> PipelineError:
        return PipelineError(f"{where}: key {key!r} {message}")

    name, description = named_file_header(data, path, TOP_KEYS)
    mode = data.get("mode", "grid")
    if mode not in MODES:
        raise fail("mode", f"is {mode!r}; allowed: {', '.join(MODES)}")
    data_dir = data.get("data_dir", str(paths.DATA))
    if not isinstance(data_dir, str) or not data_dir.strip():
        raise fail("data_dir", f"must be the path of a dataset folder, got {data_dir!r}")
    evaluation = data.get("evaluation") or {}
    if not isinstance(evaluation, dict):
        raise fail("evaluation", f"must be a mapping with {', '.join(EVALUATION_KEYS)}, got {evaluation!r}")
    for key, value in evaluation.items():
        if key not in EVALUATION_KEYS:
            raise PipelineError(f"{where}: unknown key 'evaluation.{key}'; allowed: {', '.join(EVALUATION_KEYS)}")
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise PipelineError(f"{where}: key 'evaluation.{key}' must be a positive integer, got {value!r}")
    base = data.get("base") or {}
    if not isinstance(base, dict):
        raise fail("base", f"must be a mapping with {', '.join(SECTIONS)}, got {base!r}")
    for section, value in base.items():
        if section not in SECTIONS:
            raise PipelineError(f"{where}: unknown key 'base.{section}'; allowed: {', '.join(SECTIONS)}")
        if not isinstance(value, dict):
            raise PipelineError(f"{where}: key 'base.{section}' must be a mapping, got {value!r}")
    base = {section: dict(base.get(section) or {}) for section in SECTIONS}
    axes = _axes(data.get("axes"), where)

    # each value of each axis alone on the base: an error names the axis and its value
    _check(base, f"{where}: key 'base'")
    for axis, values in axes.items():
        for index, (_, settings) in enumerate(values):
            _check(_apply(base, settings), f"{where}: key 'axes.{axis}' (value {index + 1})")
    points: list[Point] = []
    labels: dict[str, int] = {}
    for combination in itertools.product(*axes.values()) if axes else [()]:
        point = base
        parts, coordinates = [], {}
        for axis, (label, settings) in zip(axes, combination):
            point = _apply(point, settings)
            parts.append(label)
            coordinates[axis] = label
        label = "_".join(parts) or name
        labels[label] = labels.get(label, 0) + 1
        if labels[label] > 1:
            label = f"{label}.{labels[label]}"
        _check(point, f"{where}: point {label}")
        spec = {k: point[k] for k in ("model", "data", "training") if point[k]}
        points.append(Point(label, spec, point["hardware"], coordinates))
    return Sweep(name, Path(path) if isinstance(path, Path) else None, tuple(points), paths.from_root(data_dir),
                 dict(evaluation), description, tuple(axes))


def _axes(raw: Any, where: str) -> dict[str, list[tuple[str, dict[str, dict[str, Any]]]]]:
    """Each axis as (label, {section: {key: value}}) per value, in file order."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise PipelineError(f"{where}: key 'axes' must map axis names to lists of values, got {raw!r}")
    axes = {}
    for axis, values in raw.items():
        key = f"axes.{axis}"
        if not isinstance(values, list) or not values:
            raise PipelineError(f"{where}: key {key!r} must be a non-empty list of values, got {values!r}")
        section, _, option = str(axis).partition(".")
        entries = []
        if option:
            if section not in SECTIONS or not option or "." in option:
                raise PipelineError(f"{where}: key {key!r}: a dotted axis is <section>.<key> with a section of "
                                    f"{', '.join(SECTIONS)}")
            for value in values:
                entries.append((_label(section, option, value), {section: {option: value}}))
        else:
            for index, value in enumerate(values):
                if not isinstance(value, dict) or not value:
                    raise PipelineError(f"{where}: key '{key}' value {index + 1} must be a mapping of dotted keys "
                                        f"(e.g. model.conv_weight_bits: 4) and an optional label, got {value!r}")
                settings: dict[str, dict[str, Any]] = {}
                for dotted, setting in value.items():
                    if dotted == "label":
                        continue
                    section, _, option = str(dotted).partition(".")
                    if section not in SECTIONS or not option or "." in option:
                        raise PipelineError(f"{where}: key '{key}' value {index + 1}: {dotted!r} is not "
                                            f"<section>.<key> with a section of {', '.join(SECTIONS)}")
                    settings.setdefault(section, {})[option] = setting
                label = value.get("label")
                if label is None:
                    label = "_".join(_label(s, o, v) for s, opts in settings.items() for o, v in opts.items())
                if not isinstance(label, (str, int)) or not _SAFE.sub("", str(label)):
                    raise PipelineError(f"{where}: key '{key}' value {index + 1}: label must be a short name, "
                                        f"got {label!r}")
                entries.append((_SAFE.sub("-", str(label)), settings))
        labels = [label for label, _ in entries]
        if len(set(labels)) != len(labels):
            twice = next(label for label in labels if labels.count(label) > 1)
            raise PipelineError(f"{where}: key {key!r} has two values labelled {twice!r}; give distinct values "
                                "(or labels)")
        axes[str(axis)] = entries
    return axes


def _label(section: str, option: str, value: Any) -> str:
    """A short name for one axis value: `t2` for two time slices, `cwb4` for conv_weight_bits 4."""
    if option == "time_slices" and isinstance(value, list):
        return f"t{len(value)}"
    if option in ("architecture", "backend", "part") and isinstance(value, str):
        return _SAFE.sub("-", value)
    if option == "adc_thresholds":
        return "adc" + (f"{len(value) + 1}" if isinstance(value, list) else "-off")
    short = _ABBREVIATIONS.get(option) or "".join(_ABBREVIATIONS.get(word, word[:1]) for word in option.split("_"))
    text = "-".join(map(str, value)) if isinstance(value, list) else str(value)
    return _SAFE.sub("-", f"{short}{text}")


def _apply(point: dict[str, dict[str, Any]], settings: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = copy.deepcopy(point)
    for section, options in settings.items():
        out[section].update(copy.deepcopy(options))
    return out


def _check(point: dict[str, dict[str, Any]], where: str) -> None:
    """Validate a point as a spec file and a configuration would be validated."""
    spec_from_dict({"name": POINT_NAME, **{k: point[k] for k in ("model", "data", "training")}}, where)
    hardware = point["hardware"]
    for key in ("name", "model"):
        if key in hardware:
            raise PipelineError(f"{where}: key 'hardware.{key}' is set by the sweep for each point")
    config_from_dict({"name": POINT_NAME, "model": f"build/models/{POINT_NAME}", **hardware}, where)


def find_sweep(name_or_path: str | Path) -> Path:
    """A sweep file given by path, or by name in sweeps/."""
    path = Path(name_or_path)
    if path.suffix in (".yml", ".yaml") or path.exists():
        return path
    return DEFAULT_SWEEP_DIR / f"{path}.yml"
