"""Model specs as files: one YAML per model in model_specs/, validated like hls_configs/.

A spec names the model, then either an architecture of this pipeline with its quantizer bit
widths (`model:`), or a QKeras model file trained elsewhere (`model_file:`) together with the
input quantizer its inputs were quantized with outside the model (`input_quantizer:`). Both
carry the data options the model reads (`data:`) and, for an architecture, how to train it
(`training:`). Every error names the file and the key, on one line.

```yaml
name: baseline_t20
description: all 20 time slices
model: {architecture: baseline, conv_weight_bits: 4}   # any ModelSpec field; defaults otherwise
data: {time_slices: [0, 1, ..., 19]}                    # any DataOptions field
training: {epochs: 30, recipe: float_then_quantized}   # any TrainOptions field
```
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from smartpix import paths
from smartpix.errors import PipelineError
from smartpix.yamlfile import load_folder, named_file_header, read_mapping
from train.models import ModelSpec

DEFAULT_SPEC_DIR = paths.ROOT / "model_specs"
TOP_KEYS = ("name", "description", "model", "model_file", "input_quantizer", "data", "training")
INPUT_QUANTIZER_KEYS = ("bits", "integer", "signed")


@dataclass(frozen=True)
class InputQuantizer:
    """quantized_bits(bits, integer, keep_negative=signed): the grid the inputs were put on."""

    bits: int
    integer: int
    signed: bool = False


@dataclass(frozen=True)
class ModelSpecFile:
    """One validated spec file: what to build (or import) and how to train it."""

    name: str
    source: Path | None
    model: ModelSpec | None = None
    model_file: Path | None = None
    input_quantizer: InputQuantizer | None = None
    data: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    description: str = ""

    @property
    def imported(self) -> bool:
        """True for a model trained elsewhere: it is imported, not trained."""
        return self.model_file is not None

    def data_options(self):
        from train import dataset

        return dataset.DataOptions.from_dict(self.data)

    def train_options(self, **overrides: Any):
        from train.fit import TrainOptions

        return dataclasses.replace(TrainOptions(**self.training), **overrides)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "model": self.model.to_dict() if self.model else None,
            "model_file": str(self.model_file) if self.model_file else None,
            "input_quantizer": dataclasses.asdict(self.input_quantizer) if self.input_quantizer else None,
            "data": dict(self.data),
            "training": dict(self.training),
        }


def load_spec(path: str | Path) -> ModelSpecFile:
    """Read and validate one spec file."""
    path = Path(path)
    return spec_from_dict(read_mapping(path, "model spec"), path)


def spec_from_dict(data: dict[str, Any], path: Path | str = "<spec>") -> ModelSpecFile:
    where = str(path)

    def fail(key: str, message: str) -> PipelineError:
        return PipelineError(f"{where}: key {key!r} {message}")

    name, description = named_file_header(data, path, TOP_KEYS)
    has_model, has_file = data.get("model") is not None, data.get("model_file") is not None
    if has_model == has_file:
        raise PipelineError(f"{where}: give exactly one of 'model' (an architecture of this pipeline) "
                            f"and 'model_file' (a QKeras model trained elsewhere)")
    spec_kwargs: dict[str, Any] = {"name": name, "source": Path(path) if isinstance(path, Path) else None,
                                   "description": description}
    if has_model:
        if "input_quantizer" in data:
            raise fail("input_quantizer", "goes with 'model_file'; an architecture sets input_bits, "
                                          "input_integer and input_signed under 'model'")
        spec_kwargs["model"] = _model_spec(data["model"], where)
    else:
        if not isinstance(data["model_file"], str) or not data["model_file"].strip():
            raise fail("model_file", f"must be the path of a saved QKeras model (.h5), got {data['model_file']!r}")
        spec_kwargs["model_file"] = paths.from_root(data["model_file"])
        if "training" in data:
            raise fail("training", "does not apply to a model trained elsewhere ('model_file')")
        if data.get("input_quantizer") is not None:
            spec_kwargs["input_quantizer"] = _input_quantizer(data["input_quantizer"], where)
    spec_kwargs["data"] = _data_options(data.get("data") or {}, where)
    spec_kwargs["training"] = _training(data.get("training") or {}, where)
    spec = ModelSpecFile(**spec_kwargs)
    _check_combination(spec, where)
    return spec


def _mapping(value: Any, key: str, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise PipelineError(f"{where}: key {key!r} must be a mapping, got {value!r}")
    return value


def _model_spec(raw: Any, where: str) -> ModelSpec:
    raw = _mapping(raw, "model", where)
    fields = {f.name: f for f in dataclasses.fields(ModelSpec)}
    for key, value in raw.items():
        if key not in fields:
            raise PipelineError(f"{where}: unknown key 'model.{key}'; allowed: {', '.join(fields)}")
        default = fields[key].default
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        else:
            ok = isinstance(value, type(default))
        if not ok:
            raise PipelineError(f"{where}: key 'model.{key}' must be {type(default).__name__}, got {value!r}")
    try:
        return ModelSpec(**raw)
    except PipelineError as err:
        raise PipelineError(f"{where}: key 'model': {err}") from None


def _input_quantizer(raw: Any, where: str) -> InputQuantizer:
    raw = _mapping(raw, "input_quantizer", where)
    unknown = sorted(set(raw) - set(INPUT_QUANTIZER_KEYS))
    if unknown:
        raise PipelineError(f"{where}: unknown key 'input_quantizer.{unknown[0]}'; "
                            f"allowed: {', '.join(INPUT_QUANTIZER_KEYS)}")
    for key in ("bits", "integer"):
        value = raw.get(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise PipelineError(f"{where}: key 'input_quantizer.{key}' must be an integer, got {value!r}")
    signed = raw.get("signed", False)
    if not isinstance(signed, bool):
        raise PipelineError(f"{where}: key 'input_quantizer.signed' must be true or false, got {signed!r}")
    if raw["bits"] < 1 + int(signed):
        raise PipelineError(f"{where}: key 'input_quantizer.bits' must be at least {1 + int(signed)}, got {raw['bits']}")
    return InputQuantizer(raw["bits"], raw["integer"], signed)


def _data_options(raw: Any, where: str) -> dict[str, Any]:
    from train import dataset

    raw = _mapping(raw, "data", where)
    try:
        dataset.DataOptions.from_dict(raw)
    except PipelineError as err:
        raise PipelineError(f"{where}: key 'data': {err}") from None
    return dict(raw)


def _training(raw: Any, where: str) -> dict[str, Any]:
    from train.fit import TrainOptions

    raw = _mapping(raw, "training", where)
    fields = {f.name: f for f in dataclasses.fields(TrainOptions)}
    for key, value in raw.items():
        if key not in fields:
            raise PipelineError(f"{where}: unknown key 'training.{key}'; allowed: {', '.join(fields)}")
        default = fields[key].default
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if isinstance(default, int) and not isinstance(default, bool):
            ok = number and float(value).is_integer()
            value = int(value) if ok else value
        elif isinstance(default, float):
            ok = number and math.isfinite(value)
        else:
            ok = isinstance(value, type(default))
        if not ok:
            raise PipelineError(f"{where}: key 'training.{key}' must be {type(default).__name__}, got {value!r}")
        raw = {**raw, key: value}
    try:
        TrainOptions(**raw).check()
    except PipelineError as err:
        raise PipelineError(f"{where}: key 'training': {err}") from None
    return dict(raw)


def _check_combination(spec: ModelSpecFile, where: str) -> None:
    """Refuse now what could only fail later: inputs the input quantizer cannot hold exactly, a
    real tanh the firmware cannot make exact."""
    options = spec.data_options()
    if spec.model is None:
        return
    if spec.model.tanh == "real":
        _check_real_tanh(spec.model, options.input_shape(), where)
    levels = _input_levels(options)
    if levels is None:
        return
    m = spec.model
    # codes of quantized_bits(bits, integer, keep_negative): integer part of `integer` bits
    largest = 2.0 ** m.input_integer - 2.0 ** (m.input_integer - m.input_bits + int(m.input_signed))
    if max(levels) > largest:
        raise PipelineError(
            f"{where}: key 'model.input_bits': the input quantizer quantized_bits({m.input_bits}, "
            f"{m.input_integer}) tops out at {largest:g}, but the digitized input reaches {max(levels):g}"
        )


def _check_real_tanh(model_spec: ModelSpec, input_shape: tuple[int, int, int], where: str) -> None:
    """The real tanh is exact where QKeras' float32 tanh decides as the exact one, which depends on
    the grids of the sums it reads, not on the weights: the model walk of both flows decides it on
    the untrained model."""
    from firmware.graph import model_graph
    from train.models import build_model, snap_weights_to_quantized

    model = build_model(model_spec, input_shape, quantized=True)
    snap_weights_to_quantized(model)
    try:
        model_graph(model)
    except PipelineError as err:
        raise PipelineError(f"{where}: key 'model.tanh': {err}") from None


def _input_levels(options) -> list[float] | None:
    """The values a digitized input can take (None when the input is not digitized)."""
    if options.adc_thresholds is not None:
        return [float(k) for k in range(len(options.adc_thresholds) + 1)]
    if options.adc_bits is not None:
        return [k * options.adc_lsb / options.charge_unit for k in range(2**options.adc_bits)]
    return None


def load_specs(spec_dir: Path = DEFAULT_SPEC_DIR, names: list[str] | None = None) -> list[ModelSpecFile]:
    """Every spec in `spec_dir` (sorted by name), or only the named ones."""
    return load_folder(spec_dir, load_spec, "model spec", names)


def dump(spec: ModelSpecFile) -> str:
    """The spec as YAML text that `load_spec` reads back to an equal spec."""
    data = {k: v for k, v in spec.to_dict().items() if v not in (None, "", {})}
    return yaml.safe_dump(data, sort_keys=False)
