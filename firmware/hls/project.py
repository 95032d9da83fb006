"""Trained model + hardware configuration -> an hls4ml project with exact types.

Every type comes from the QKeras quantizers (firmware.graph); hls4ml's own derivation is not
trusted for them (it maps an unsigned quantized_bits to a signed type with one integer bit too
many, and truncates average pooling into its input type). The project is what a designer
takes to the vendor tool as it is: build_prj.tcl and the rest, a lossless testbench and
testbench data made of real held-out events, plus `smartpix.json` that records what was
derived and from what.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from firmware.config import HardwareConfig, add_selection_arguments, selected_configs
from firmware.fixedpoint import Precision
from firmware.graph import POOLING, WEIGHT_ROLES, LayerRecord, ModelGraph, check_input_precision, model_graph
from smartpix import paths, processes
from smartpix.artifacts import atomic_dir, write_json
from smartpix.cache import content_key
from smartpix.errors import PipelineError

log = logging.getLogger(__name__)

PROJECT_NAME = "myproject"
DEFAULT_FIRMWARE_DIR = paths.FIRMWARE
TESTBENCH_TEMPLATE = Path(__file__).with_name("templates") / "testbench.cpp"
MANIFEST = "smartpix.json"
TB_EVENTS = 200  # events written to tb_data/ for the vendor tools' own C simulation

_WEIGHTED = {
    "QDense": ("kernel", "bias"),
    "QConv1D": ("kernel", "bias"),
    "QConv2D": ("kernel", "bias"),
    "QSeparableConv2D": ("depthwise", "pointwise", "bias"),
}


@dataclass(frozen=True)
class LayerTypes:
    """The exact types derived for one Keras layer (hls4ml precision keys -> Precision)."""

    layer: str
    class_name: str
    precision: dict[str, Precision]
    real_tanh: bool = False  # a QActivation of the real tanh: threshold comparisons, no lookup table


@dataclass(frozen=True)
class FirmwareProject:
    config: HardwareConfig
    directory: Path
    input_precision: Precision
    output_precision: Precision
    fingerprint: str  # content hash of what the project was generated from


# --------------------------------------------------------------------------- type derivation

def derive_types(model, input_precision: Precision | None = None, weight_range: bool = False) -> list[LayerTypes]:
    """Every layer's exact hls4ml types, read from the model's checked graph (firmware.graph),
    which refuses what cannot be exact; a configured `input_precision` must be the type of the
    model's input quantizer. Dropout has no types: hls4ml removes it (the identity at inference).

    With `weight_range`, accumulators are sized from the trained weights: the largest value
    a layer can produce is bounded by sum |w| * max |x| + |b| per output, which is usually far
    below the worst case of the weight type; products keep every fraction bit."""
    graph = model_graph(model)
    check_input_precision(graph, input_precision)
    bound: dict[str, float] = {}  # largest |value| each layer's output can take
    derived: list[LayerTypes] = []
    for record in graph:
        bound[record.name] = _output_bound(record, bound)
        if record.kind != "Dropout":
            derived.append(LayerTypes(record.name, record.kind, _layer_precision(record, graph, bound, weight_range),
                                      real_tanh=record.tanh is not None))
    return derived


def _layer_precision(record: LayerRecord, graph: ModelGraph, bound: dict[str, float],
                     weight_range: bool) -> dict[str, Precision]:
    """hls4ml precision keys of one layer: its weights (and, with `weight_range`, accumulators
    sized from them), or its output type; a weighted layer's accumulator is otherwise left to
    hls4ml, which infers an exact one ('auto')."""
    if record.kind in WEIGHT_ROLES:
        precision = {("weight" if role == "kernel" else role): p for role, p in record.weights.items()}
        if weight_range:
            source = graph[record.inbound[0]]
            if source.output is None:
                raise PipelineError(f"layer {record.name}: weight_range accumulators need a quantized input")
            precision.update(_range_accumulators(record.keras, source.output, precision, bound[source.name]))
        return precision
    if record.kind in POOLING:
        return {"accum": record.output, "result": record.output}
    return {"result": record.output} if record.output else {}


def _output_bound(record: LayerRecord, bound: dict[str, float]) -> float:
    """Largest |value| of a layer's output, from the bounds of its inputs."""
    if record.kind in WEIGHT_ROLES:
        return _weighted_bound(record.keras, bound[record.inbound[0]])
    if record.kind in ("InputLayer", "QActivation"):
        return _largest_magnitude(record.output)
    return max(bound[name] for name in record.inbound)


def _largest_magnitude(precision: Precision) -> float:
    low, high = precision.code_range()
    return max(abs(low), abs(high)) * precision.lsb


def _weighted_bound(layer, in_bound: float) -> float:
    """Largest |output| of a weighted layer for inputs bounded by `in_bound`."""
    weights = layer.get_weights()
    if type(layer).__name__ == "QSeparableConv2D":
        depthwise, pointwise, bias = weights
        per_channel = np.abs(depthwise).reshape(-1, depthwise.shape[-2]).sum(axis=0) * in_bound
        return float(np.max(np.abs(pointwise[0, 0]).T @ per_channel + np.abs(bias)))
    kernel, bias = weights
    per_output = np.abs(kernel).reshape(-1, kernel.shape[-1]).sum(axis=0) * in_bound
    return float(np.max(per_output + np.abs(bias)))


def _accumulator(bound: float, fraction: int) -> Precision:
    integer = max(1, math.ceil(math.log2(bound + 2.0**-fraction)) + 1)  # + sign bit
    return Precision(integer + fraction, integer, True)


def _range_accumulators(layer, data: Precision, weights: dict[str, Precision], in_bound: float) -> dict[str, Precision]:
    if type(layer).__name__ == "QSeparableConv2D":
        depthwise, _, _ = layer.get_weights()
        dw_fraction = data.fraction + weights["depthwise"].fraction
        dw_bound = float(np.max(np.abs(depthwise).reshape(-1, depthwise.shape[-2]).sum(axis=0)) * in_bound)
        dw = _accumulator(dw_bound, dw_fraction)
        pw = _accumulator(_weighted_bound(layer, in_bound),
                          max(dw_fraction + weights["pointwise"].fraction, weights["bias"].fraction))
        return {"depthwise_accum": dw, "depthwise_result": dw, "pointwise_accum": pw, "result": pw}
    fraction = max(data.fraction + weights["weight"].fraction, weights["bias"].fraction)
    accum = _accumulator(_weighted_bound(layer, in_bound), fraction)
    return {"accum": accum, "result": accum}


# --------------------------------------------------------------------------- hls4ml configuration

def hls_configuration(model, config: HardwareConfig, derived: list[LayerTypes]) -> dict[str, Any]:
    """The hls4ml configuration dict: derived exact types, strategy, reuse, trace, overrides."""
    import hls4ml

    cfg = hls4ml.utils.config_from_keras_model(
        model, granularity="name", backend=config.backend, default_precision="fixed<16,6>"
    )
    cfg["Model"]["Strategy"] = config.strategy
    cfg["Model"]["ReuseFactor"] = config.reuse_factor
    layers = cfg["LayerName"]
    for entry in layers.values():
        entry["Trace"] = True
        if "ReuseFactor" in entry:
            entry["ReuseFactor"] = config.reuse_factor
    for types in derived:
        entry = layers.setdefault(types.layer, {})
        precision = entry.setdefault("Precision", {})
        for key, p in types.precision.items():
            if types.class_name == "QSeparableConv2D" and key == "weight":
                continue
            precision[key] = p.hls4ml()
        if types.real_tanh:  # computed by threshold comparisons (firmware/hls/passes.py)
            entry.pop("TableSize", None)
            precision.pop("table", None)
        linear = layers.get(f"{types.layer}_linear")
        if linear is not None and "result" in types.precision:
            # hls4ml's linear activation node after a weighted layer casts to its own type:
            # give it the layer's exact type so that it stays a no-op
            linear.setdefault("Precision", {})["result"] = types.precision["result"].hls4ml()
        keras_layer = model.get_layer(types.layer)
        if types.class_name == "QSeparableConv2D":
            if config.strategy == "Resource" and config.backend in ("Vivado", "Vitis"):
                # hls4ml has no Resource implementation of depthwise/separable convolutions in
                # these backends (the C++ asserts); this layer is built with Latency.
                entry["Strategy"] = "Latency"
            depthwise, pointwise = _multiplication_shapes(keras_layer)
            entry["DepthwiseReuseFactor"] = valid_reuse_factor(config, *depthwise)
            entry["PointwiseReuseFactor"] = valid_reuse_factor(config, *pointwise)
            entry["ReuseFactor"] = entry["PointwiseReuseFactor"]
        elif types.class_name in _WEIGHTED:
            entry["ReuseFactor"] = valid_reuse_factor(config, *_multiplication_shapes(keras_layer)[0])
    for name, override in config.layer_overrides.items():
        if name not in layers:
            raise PipelineError(
                f"{config.source or config.name}: layer_overrides names layer {name!r}, which the model "
                f"does not have; its layers are {', '.join(sorted(layers))}"
            )
        entry = layers[name]
        for key, p in override.precision.items():
            entry.setdefault("Precision", {})[key] = p.hls4ml()
        linear = layers.get(f"{name}_linear")
        if linear is not None and "result" in override.precision:
            # the layer's linear node casts to its own type: it must carry the override too, or
            # the output falls back to hls4ml's default type
            linear.setdefault("Precision", {})["result"] = override.precision["result"].hls4ml()
        if override.reuse_factor is not None:
            entry["ReuseFactor"] = override.reuse_factor
        if override.strategy is not None:
            entry["Strategy"] = override.strategy
    return cfg


def check_overrides(model, config: HardwareConfig) -> None:
    """Refuse a precision in layer_overrides that would make the hardware differ from the model:
    a weight, accumulator or result type must hold every value the layer can produce (sized from
    the trained weights), and a quantizer's result type is the quantizer's own, rounding and
    saturation included."""
    given = {name: o.precision for name, o in config.layer_overrides.items() if o.precision}
    if not given:
        return
    needed = {t.layer: (t.class_name, t.precision) for t in derive_types(model, config.input_precision, weight_range=True)}
    for name, precisions in given.items():
        layer = name.removesuffix("_linear") if name not in needed else name
        kind, exact = needed.get(layer, ("", {}))
        for key, override in precisions.items():
            required = exact.get(key) if name == layer else exact.get("result")
            if required is None:
                continue
            where = f"{config.source or config.name}: key 'layer_overrides.{name}.precision.{key}'"
            if kind not in ("QActivation", "InputLayer") or key != "result":
                if not override.holds(required):
                    raise PipelineError(f"{where}: layer {layer}: {override.hls4ml()} cannot hold every value of "
                                        f"{required.hls4ml()}; it cannot be made bit-exact")
            elif (override.width, override.integer, override.signed, override.rounding, override.saturation) != (
                    required.width, required.integer, required.signed, required.rounding, required.saturation):
                raise PipelineError(f"{where}: layer {layer}: the result of a quantizer is its own type "
                                    f"{required.hls4ml()}, not {override.hls4ml()}; it cannot be made bit-exact")


def _multiplication_shapes(layer) -> list[tuple[int, int]]:
    """(n_in, n_out) of each matrix-vector product a weighted layer performs."""
    kind = type(layer).__name__
    channels = int(layer.input_shape[-1])
    if kind == "QDense":
        return [(channels, int(layer.units))]
    if kind == "QSeparableConv2D":
        kernel = int(np.prod(layer.kernel_size))
        return [(kernel, 1), (channels, int(layer.filters))]
    return [(int(np.prod(layer.kernel_size)) * channels, int(layer.filters))]


def valid_reuse_factor(config: HardwareConfig, n_in: int, n_out: int) -> int:
    """The reuse factor closest to the configured one that hls4ml's C++ accepts for an
    n_in x n_out product (an invalid one makes the C++ assert at run time)."""
    if config.reuse_factor == 1:
        return 1
    from hls4ml.backends import get_backend

    backend = get_backend(config.backend)
    valid = backend.get_valid_reuse_factors(n_in, n_out)
    chosen = backend.get_closest_reuse_factor(valid, config.reuse_factor)
    if chosen != config.reuse_factor:
        log.info("%s: reuse factor %d is not valid for a %dx%d product; using %d",
                 config.name, config.reuse_factor, n_in, n_out, chosen)
    return int(chosen)


# --------------------------------------------------------------------------- project writing

def convert(config: HardwareConfig, out_dir: Path | None = None, model_dir: Path | None = None) -> FirmwareProject:
    """Write the hls4ml project of `config` to `out_dir` (default build/firmware/<name>)."""
    from train.fit import read_model_description
    from train.models import disable_ste, load_model

    model_dir = Path(model_dir or config.model)
    out_dir = Path(out_dir or paths.hls_project(DEFAULT_FIRMWARE_DIR, config.name))
    description = read_model_description(model_dir)
    if not description.get("quantized", True):
        raise PipelineError(f"{model_dir}: an unquantized model cannot be made bit-exact; convert a QKeras model")
    fingerprint = project_fingerprint(config, model_dir)
    model = load_model(model_dir / "model.h5")
    disable_ste(model)
    derived = derive_types(model, config.input_precision, weight_range=config.accumulators == "weight_range")
    check_overrides(model, config)
    hls_config = hls_configuration(model, config, derived)
    reference = np.load(model_dir / "reference.npz")

    with atomic_dir(out_dir) as tmp:
        hls_model = _convert_quietly(model, hls_config, config, tmp)
        # Trace calls are compiled only outside synthesis (#ifndef __SYNTHESIS__); the testbench
        # enables them only to locate a mismatch.
        hls_model.config.trace_output = True
        _write_quietly(hls_model, tmp)
        output_precision = _output_precision(hls_model)
        input_precision = derived[0].precision["result"]
        _write_testbench(tmp, hls_model, config)
        _write_tb_data(tmp, reference["inputs"][:TB_EVENTS], reference["outputs"][:TB_EVENTS])
        _pin_volatile_content(tmp, out_dir, fingerprint, model_dir / "model.h5")
        write_json(tmp / MANIFEST, {
            "config": config.to_dict(),
            "model_dir": str(model_dir),
            "fingerprint": fingerprint,
            "project_name": PROJECT_NAME,
            "input_precision": input_precision.hls4ml(),
            "output_precision": output_precision.hls4ml(),
            "derived_types": {t.layer: {k: p.hls4ml() for k, p in t.precision.items()} for t in derived},
            "hls_layers": [_layer_record(layer) for layer in hls_model.get_layers()],
            "keras_layers": [layer.name for layer in model.layers],
        })
    log.info("%s: wrote %s", config.name, out_dir)
    return FirmwareProject(config, out_dir, input_precision, output_precision, fingerprint)


def _convert_quietly(model, hls_config, config: HardwareConfig, out_dir: Path):
    """hls4ml's conversion, its chatter sent to the debug log, its failures made one line."""
    import contextlib
    import io

    import hls4ml

    kwargs: dict[str, Any] = dict(
        hls_config=hls_config,
        output_dir=str(out_dir),
        project_name=PROJECT_NAME,
        backend=config.backend,
        io_type=config.io_type,
        clock_period=config.clock_period_ns,
    )
    if config.backend in ("Vivado", "Vitis"):
        # The C simulation must use the weights compiled into the firmware, as synthesis does,
        # not a second copy read from text files at run time.
        kwargs["write_weights_txt"] = False
    if config.backend == "Catapult" and not config.part.lower().startswith("xc"):
        kwargs.update(tech="asic", asiclibs=config.part)
    else:
        kwargs["part"] = config.part
    from firmware.hls.passes import register_catapult_passes, register_exactness_passes, register_real_tanh

    register_exactness_passes()
    register_real_tanh()
    if config.backend == "Catapult":
        register_catapult_passes()
    chatter = io.StringIO()
    try:
        with contextlib.redirect_stdout(chatter):
            hls_model = hls4ml.converters.convert_from_keras_model(model, **kwargs)
    except PipelineError:
        raise
    except Exception as err:  # hls4ml raises bare Exceptions/asserts for unsupported layers
        raise PipelineError(f"{config.name}: hls4ml could not convert the model: {err}") from err
    log.debug(chatter.getvalue())
    return hls_model


def _write_quietly(hls_model, out_dir: Path) -> None:
    """hls4ml's project writing, its chatter ("copying AC ... headers") sent to the debug log.
    Catapult's writer also archives the project beside it (`<dir>.tar.gz`): not part of it."""
    import contextlib
    import io

    chatter = io.StringIO()
    try:
        with contextlib.redirect_stdout(chatter):
            hls_model.write()
    finally:
        Path(f"{out_dir}.tar.gz").unlink(missing_ok=True)
        log.debug(chatter.getvalue())


def _output_precision(hls_model) -> Precision:
    variables = hls_model.get_output_variables()
    if len(variables) != 1:
        raise PipelineError(f"expected one model output, got {len(variables)}")
    p = variables[0].type.precision
    rounding = str(getattr(p, "rounding_mode", "TRN")).split(".")[-1].replace("AP_", "") or "TRN"
    saturation = str(getattr(p, "saturation_mode", "WRAP")).split(".")[-1].replace("AP_", "") or "WRAP"
    return Precision(p.width, p.integer, bool(p.signed), rounding, saturation)


def _layer_record(layer) -> dict[str, Any]:
    variable = layer.get_output_variable()
    return {
        "name": layer.name,
        "class": layer.class_name,
        "size": int(variable.size()),
        "result": str(variable.type.precision),
    }


_DATA_BLOCK = re.compile(
    r"// hls-fpga-machine-learning insert data\n(?P<data>.*?)"
    r"\s*// hls-fpga-machine-learning insert top-level-function\n(?P<call>[^\n]+)\n",
    re.S,
)
_WEIGHT_DECLARATIONS = re.compile(r"// hls-fpga-machine-learning insert declare weights\n(?P<decl>(?:[^\n]+;\n)*)")
# Catapult's C++ reads its weights from text files in C simulation, from a directory that the
# testbench names; the testbench runs in the project folder.
_CATAPULT_PRELUDE = """static std::string s_weights_dir = "firmware/weights";
const char *get_weights_dir() { return s_weights_dir.c_str(); }"""
_PRINT = re.compile(r"nnet::print_result<(?P<type>[^,]+),\s*(?P<size>[^>]+)>\((?P<var>\w+),\s*fout\);")
_TRACE = re.compile(r'nnet::save_layer_output<[^>]+>\((?P<var>\w+), "(?P<name>[^"]+)", (?P<size>[^;]+)\);')


TESTBENCH = "smartpix_test.cpp"


def _write_testbench(project: Path, hls_model, config: HardwareConfig) -> None:
    """Write the lossless batch testbench (smartpix_test.cpp), made from the parts of hls4ml's
    generated testbench that call the firmware. For Vivado and Vitis it also takes the stock
    testbench's file name, so that build_prj.tcl's C simulation writes lossless results too;
    Catapult's SCVerify flow keeps its own (CCS_MAIN) testbench."""
    stock_path = project / f"{PROJECT_NAME}_test.cpp"
    stock = stock_path.read_text()
    catapult = config.backend == "Catapult"
    declarations = _WEIGHT_DECLARATIONS.search(stock) if catapult else None
    match = _DATA_BLOCK.search(stock)
    prints = _PRINT.findall(stock)
    if not match or not prints:
        raise PipelineError(f"{config.name}: unexpected layout of hls4ml's testbench {stock_path.name}")
    streamed = config.io_type == "io_stream"
    collect = "\n".join(
        f"    smartpix_tb::{'collect_stream' if streamed else 'collect'}<{t.strip()}, {s.strip()}>({v}, out);"
        for t, s, v in prints[:1]
    )
    firmware_cpp = (project / "firmware" / f"{PROJECT_NAME}.cpp").read_text()
    traces = dict.fromkeys((m["name"], m["size"].strip().rstrip(")")) for m in _TRACE.finditer(firmware_cpp))
    trace_lines = "\n".join(f'        trace.add("{name}", {size});' for name, size in traces)
    n_in = int(sum(v.size() for v in hls_model.get_input_variables()))
    n_out = int(sum(v.size() for v in hls_model.get_output_variables()))
    text = (
        TESTBENCH_TEMPLATE.read_text()
        .replace("@PROJECT@", PROJECT_NAME)
        .replace("@N_IN@", str(n_in))
        .replace("@N_OUT@", str(n_out))
        .replace("@DATA@", _indent(match["data"]))
        .replace("@CALL@", _indent(match["call"]))
        .replace("@COLLECT@", collect)
        .replace("@TRACE_LAYERS@", trace_lines)
        .replace("@PRELUDE@", _CATAPULT_PRELUDE if catapult else "")
        .replace("@GLOBALS@", declarations["decl"] if declarations else "")
    )
    (project / TESTBENCH).write_text(text)
    if not catapult:
        stock_path.write_text(text)


def _indent(block: str) -> str:
    return "\n".join("    " + line.strip() for line in block.strip().splitlines())


def _write_tb_data(project: Path, inputs: np.ndarray, outputs: np.ndarray) -> None:
    tb = project / "tb_data"
    tb.mkdir(exist_ok=True)
    for name, values in (("tb_input_features.dat", inputs), ("tb_output_predictions.dat", outputs)):
        rows = values.reshape(len(values), -1).astype(np.float64)
        (tb / name).write_text("".join(" ".join(f"{v:.17g}" for v in row) + "\n" for row in rows))


# hls4ml's random library id in hls4ml_config.yml: 8 hex digits, which YAML quotes when they
# are all decimal digits (Stamp: '79338552')
_STAMP = re.compile(r"""(?m)^(Stamp: )(?:'\w+'|"\w+"|\w+)$""")


def _pin_volatile_content(project: Path, final: Path, fingerprint: str, model_file: Path) -> None:
    """Make the project byte-identical for the same model and configuration: hls4ml stamps a
    random library id and the (temporary) output path into a few text files, and saves a copy
    of the Keras model whose archive carries the save time; the project points to the trained
    model file instead."""
    stamp = fingerprint[:8]
    (project / "keras_model.keras").unlink(missing_ok=True)
    config_yml = project / "hls4ml_config.yml"
    if config_yml.is_file():
        text = re.sub(r"(?m)^KerasModel: .*$", f"KerasModel: !keras_model '{model_file.resolve()}'",
                      config_yml.read_text())
        config_yml.write_text(text)
    for path in project.rglob("*"):
        if not path.is_file() or path.suffix not in (".yml", ".sh", ".tcl", ".cpp", ".h", ".txt"):
            continue
        text = path.read_text(errors="surrogateescape")
        pinned = text.replace(str(project), str(final))
        pinned = re.sub(r"(LIB_STAMP=)\w+", rf"\g<1>{stamp}", pinned)
        pinned = _STAMP.sub(rf"\g<1>'{stamp}'", pinned)
        if pinned != text:
            path.write_text(pinned, errors="surrogateescape")


def project_fingerprint(config: HardwareConfig, model_dir: Path) -> str:
    """Content key of the project: the configuration, the model files, and this converter with
    everything it imports (types, passes, templates) and the tool versions."""
    return content_key(__name__, "hls-project", config.to_dict(), model_dir / "model.h5", model_dir / "reference.npz")


def is_current(config: HardwareConfig, out_dir: Path) -> bool:
    """True when `out_dir` holds the project of exactly this model and configuration."""
    manifest = out_dir / MANIFEST
    if not manifest.is_file():
        return False
    try:
        recorded = json.loads(manifest.read_text()).get("fingerprint")
    except json.JSONDecodeError:
        return False
    return recorded == project_fingerprint(config, Path(config.model))


def ensure_projects(configs: list[HardwareConfig], firmware_dir: Path = DEFAULT_FIRMWARE_DIR,
                    jobs: int = 1) -> list[FirmwareProject | PipelineError]:
    """Convert every configuration whose project is missing or stale; reuse the rest."""
    from train.fit import read_model_description

    for config in configs:
        read_model_description(Path(config.model))  # fail early, with one line, on a missing model
    todo = [c for c in configs if not is_current(c, paths.hls_project(firmware_dir, c.name))]
    for c in configs:
        if c not in todo:
            log.info("%s: project is up to date", c.name)
    results: dict[str, FirmwareProject | PipelineError] = {}
    if todo:
        with processes.process_pool(max(1, min(jobs, len(todo)))) as pool:
            futures = {c.name: pool.submit(_convert_or_error, c, paths.hls_project(firmware_dir, c.name)) for c in todo}
            for name, future in futures.items():
                results[name] = future.result()
    projects: list[FirmwareProject | PipelineError] = []
    for c in configs:
        if c.name in results:
            projects.append(results[c.name])
        else:
            projects.append(_existing_project(c, paths.hls_project(firmware_dir, c.name)))
    return projects


def _convert_or_error(config: HardwareConfig, out_dir: Path) -> FirmwareProject | PipelineError:
    try:
        return convert(config, out_dir)
    except PipelineError as err:
        return err


def _existing_project(config: HardwareConfig, out_dir: Path) -> FirmwareProject:
    from firmware.fixedpoint import parse_precision

    manifest = json.loads((out_dir / MANIFEST).read_text())
    return FirmwareProject(
        config, out_dir,
        parse_precision(manifest["input_precision"]), parse_precision(manifest["output_precision"]),
        manifest["fingerprint"],
    )


# --------------------------------------------------------------------------- CLI

def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_selection_arguments(parser, DEFAULT_FIRMWARE_DIR)
    parser.add_argument("--jobs", type=int, default=2, help="configurations converted in parallel")


def run(args: argparse.Namespace) -> int:
    configs = selected_configs(args)
    failed = 0
    for config, result in zip(configs, ensure_projects(configs, args.firmware_dir, args.jobs)):
        if isinstance(result, PipelineError):
            failed += 1
            print(f"{config.name}: FAILED: {result}")
        else:
            print(f"{config.name}: {result.directory} (input {result.input_precision.hls4ml()}, "
                  f"output {result.output_precision.hls4ml()})")
    return 1 if failed else 0

