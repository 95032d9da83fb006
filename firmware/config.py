"""One hardware configuration: a YAML file in hls_configs/ loaded into a validated object.

The vocabulary follows hls4ml's (backend, part, io type, strategy, reuse factor, precision
strings), so that a YAML file reads like an hls4ml configuration.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from firmware.fixedpoint import Precision, parse_precision
from smartpix import paths
from smartpix.errors import PipelineError
from smartpix.yamlfile import load_folder, read_mapping

BACKENDS = ("Vivado", "Vitis", "Catapult")
IO_TYPES = ("io_parallel", "io_stream")
STRATEGIES = ("Latency", "Resource", "distributed_arithmetic")
# How accumulators are sized: from the input and weight types' worst case (hls4ml's 'auto'),
# or from the trained weights' actual values (narrower, still exact for every input).
ACCUMULATOR_SIZING = ("worst_case", "weight_range")
PRECISION_KEYS = ("result", "accum", "weight", "bias", "depthwise", "pointwise",
                  "depthwise_accum", "pointwise_accum", "depthwise_result")
LAYER_OVERRIDE_KEYS = ("precision", "reuse_factor", "strategy")
DEFAULT_CONFIG_DIR = paths.CONFIGS


@dataclass(frozen=True)
class LayerOverride:
    precision: dict[str, Precision] = field(default_factory=dict)
    reuse_factor: int | None = None
    strategy: str | None = None


@dataclass(frozen=True)
class HardwareConfig:
    """Everything that defines one firmware build of one trained model."""

    name: str
    model: Path
    backend: str
    part: str
    clock_period_ns: float
    io_type: str = "io_parallel"
    strategy: str = "Latency"
    reuse_factor: int = 1
    input_precision: Precision | None = None
    accumulators: str = "worst_case"
    layer_overrides: dict[str, LayerOverride] = field(default_factory=dict)
    description: str = ""
    source: Path | None = None  # the YAML file it came from

    def to_dict(self) -> dict[str, Any]:
        """A plain, JSON-ready form (precisions as hls4ml strings)."""
        return {
            "name": self.name,
            "model": str(self.model),
            "backend": self.backend,
            "part": self.part,
            "clock_period_ns": self.clock_period_ns,
            "io_type": self.io_type,
            "strategy": self.strategy,
            "reuse_factor": self.reuse_factor,
            "input_precision": self.input_precision.hls4ml() if self.input_precision else None,
            "accumulators": self.accumulators,
            "layer_overrides": {
                layer: {
                    "precision": {k: p.hls4ml() for k, p in o.precision.items()},
                    "reuse_factor": o.reuse_factor,
                    "strategy": o.strategy,
                }
                for layer, o in sorted(self.layer_overrides.items())
            },
            "description": self.description,
        }


_FIELDS = {f.name: f for f in dataclasses.fields(HardwareConfig) if f.name != "source"}
_REQUIRED = ("name", "model", "backend", "part", "clock_period_ns")


def load_config(path: str | Path) -> HardwareConfig:
    """Load and validate one YAML configuration; every error names the file and the key."""
    path = Path(path)
    return config_from_dict(read_mapping(path, "configuration"), path)


def config_from_dict(data: dict[str, Any], path: Path | str = "<config>") -> HardwareConfig:
    where = str(path)
    unknown = sorted(set(map(str, data)) - set(_FIELDS))
    if unknown:
        raise PipelineError(
            f"{where}: unknown key {unknown[0]!r}; allowed keys: {', '.join(sorted(_FIELDS))}"
        )
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise PipelineError(f"{where}: missing required key {missing[0]!r}")

    def expect(key: str, kind: type | tuple[type, ...], description: str) -> Any:
        value = data[key]
        if isinstance(value, bool) or not isinstance(value, kind):
            raise PipelineError(f"{where}: key {key!r} must be {description}, got {value!r}")
        return value

    def choice(key: str, allowed: tuple[str, ...]) -> str:
        value = data[key]
        if value not in allowed:
            raise PipelineError(f"{where}: key {key!r} is {value!r}; allowed: {', '.join(allowed)}")
        return value

    name = expect("name", str, "a string")
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", name):
        raise PipelineError(f"{where}: key 'name' must be a file-name-safe identifier, got {name!r}")
    if isinstance(path, Path) and path.stem != name:
        raise PipelineError(f"{where}: key 'name' is {name!r} but the file is named {path.name!r}; make them agree")
    clock = expect("clock_period_ns", (int, float), "a positive number of nanoseconds")
    if not 0 < clock < float("inf"):  # NaN fails both comparisons
        raise PipelineError(f"{where}: key 'clock_period_ns' must be positive and finite, got {clock}")
    model = expect("model", str, "a path to a trained model directory")
    part = expect("part", str, "an FPGA part or ASIC technology name")
    # an empty path would be the working directory, an empty part the vendor tool's default
    for key, value in (("model", model), ("part", part)):
        if not value.strip():
            raise PipelineError(f"{where}: key {key!r} is empty")
    kwargs: dict[str, Any] = {
        "name": name,
        "model": paths.from_root(model),
        "backend": choice("backend", BACKENDS),
        "part": part,
        "clock_period_ns": float(clock),
        "source": Path(path) if isinstance(path, Path) else None,
    }
    if "io_type" in data:
        kwargs["io_type"] = choice("io_type", IO_TYPES)
    if "strategy" in data:
        kwargs["strategy"] = choice("strategy", STRATEGIES)
    if "reuse_factor" in data:
        kwargs["reuse_factor"] = expect("reuse_factor", int, "a positive integer")
        if kwargs["reuse_factor"] < 1:
            raise PipelineError(f"{where}: key 'reuse_factor' must be at least 1, got {kwargs['reuse_factor']}")
    if "accumulators" in data:
        kwargs["accumulators"] = choice("accumulators", ACCUMULATOR_SIZING)
    if "description" in data:
        kwargs["description"] = expect("description", str, "a string")
    if data.get("input_precision") is not None:
        kwargs["input_precision"] = parse_precision(data["input_precision"], f"{where}: key 'input_precision'")
    if data.get("layer_overrides"):
        kwargs["layer_overrides"] = _parse_overrides(data["layer_overrides"], where)
    if kwargs.get("strategy") == "distributed_arithmetic" and kwargs["backend"] == "Catapult":
        raise PipelineError(f"{where}: strategy 'distributed_arithmetic' is available for Vivado and Vitis only")
    return HardwareConfig(**kwargs)


def _parse_overrides(raw: Any, where: str) -> dict[str, LayerOverride]:
    if not isinstance(raw, dict):
        raise PipelineError(f"{where}: key 'layer_overrides' must map layer names to settings")
    overrides = {}
    for layer, settings in raw.items():
        key = f"layer_overrides.{layer}"
        if not isinstance(settings, dict):
            raise PipelineError(f"{where}: key {key!r} must be a mapping with {', '.join(LAYER_OVERRIDE_KEYS)}")
        unknown = sorted(str(k) for k in set(settings) - set(LAYER_OVERRIDE_KEYS))
        if unknown:
            raise PipelineError(
                f"{where}: unknown key '{key}.{unknown[0]}'; allowed: {', '.join(LAYER_OVERRIDE_KEYS)}"
            )
        raw_precision = settings.get("precision")
        if raw_precision is None:
            raw_precision = {}
        if not isinstance(raw_precision, dict):
            raise PipelineError(
                f"{where}: key '{key}.precision' must map keys such as result or accum to precision strings "
                f"(e.g. {{accum: 'ap_fixed<18,5>'}}), got {raw_precision!r}"
            )
        precision = {}
        for pkey, text in raw_precision.items():
            if pkey not in PRECISION_KEYS:
                raise PipelineError(
                    f"{where}: unknown key '{key}.precision.{pkey}'; allowed: {', '.join(PRECISION_KEYS)}"
                )
            precision[pkey] = parse_precision(text, f"{where}: key '{key}.precision.{pkey}'")
        reuse = settings.get("reuse_factor")
        if reuse is not None and (isinstance(reuse, bool) or not isinstance(reuse, int) or reuse < 1):
            raise PipelineError(f"{where}: key '{key}.reuse_factor' must be a positive integer, got {reuse!r}")
        strategy = settings.get("strategy")
        if strategy is not None and strategy not in STRATEGIES:
            raise PipelineError(f"{where}: key '{key}.strategy' is {strategy!r}; allowed: {', '.join(STRATEGIES)}")
        overrides[str(layer)] = LayerOverride(precision, reuse, strategy)
    return overrides


def load_configs(config_dir: Path = DEFAULT_CONFIG_DIR, names: list[str] | None = None) -> list[HardwareConfig]:
    """All configurations in `config_dir` (sorted by name), or only the named ones."""
    return load_folder(config_dir, load_config, "configuration", names)


def with_models_dir(configs: list[HardwareConfig], models_dir: Path | None) -> list[HardwareConfig]:
    """The configurations with each model read from `models_dir`/<its folder name> instead (the
    same specs trained under another profile, or elsewhere)."""
    if models_dir is None:
        return configs
    return [dataclasses.replace(c, model=Path(models_dir) / Path(c.model).name) for c in configs]


def selected_configs(args) -> list[HardwareConfig]:
    """The configurations a stage's command line selects (see `add_selection_arguments`)."""
    return with_models_dir(load_configs(args.config_dir, args.configs or None), args.models_dir)


def add_selection_arguments(parser, firmware_dir: Path, reports_dir: Path | None = None) -> None:
    """The command-line arguments every per-configuration stage shares."""
    parser.add_argument("configs", nargs="*", help="configuration names (default: every file in --config-dir)")
    parser.add_argument("--config-dir", type=Path, default=DEFAULT_CONFIG_DIR)
    parser.add_argument("--models-dir", type=Path, default=None,
                        help="read each configuration's model from DIR/<name of its model folder> "
                             "(e.g. build/models-quick: the specs trained with the quick profile)")
    parser.add_argument("--firmware-dir", type=Path, default=firmware_dir,
                        help="one project folder per configuration below this")
    if reports_dir is not None:
        parser.add_argument("--reports", type=Path, default=reports_dir)

