"""The one checked walk of a QKeras model, which both flows (the hls4ml project and the da4ml
replay) read: its layers in evaluation order with their exact fixed-point types, and the refusal,
naming the layer, of everything that either flow cannot make bit-exact. A model is accepted by
both flows or refused by both with the same message.

`model_graph` reads the structure from `model.get_config()` (inbound layers, consumers) and the
types from the QKeras quantizers. Each supported quantizer maps to the one fixed-point type whose
values, rounding and saturation are those of the quantizer, so the hardware takes the same
decision as Python for every input:
- quantized_bits(b, i, keep_negative=1): fixed<b, i+1>, unsigned (keep_negative=0): ufixed<b, i>;
- quantized_tanh(b): fixed<b, 1> (hls4ml's hard_tanh: QKeras' tanh uses the hard sigmoid);
- quantized_tanh(b, use_real_tanh=True), in a QActivation: fixed<b, 1>, computed by threshold
  comparisons on the input codes (`firmware.tanh`), where QKeras' float32 tanh is exact;
- quantized_relu(b, i): ufixed<b, i>.
QKeras rounds half to even (tf.round) -> RND_CONV; it clips -> SAT, or SAT_SYM when the
quantizer is symmetric. A quantizer whose result is not a fixed-point grid (alpha other than 1,
stochastic rounding, a sigmoid) cannot be exact and is refused by name.

Supported layers: the input, QActivation, QDense, QConv1D, QConv2D, QSeparableConv2D (valid
padding, bias, no fused activation), AveragePooling1D/2D (valid, non-overlapping), Flatten,
Reshape, Concatenate, and Dropout (the identity at inference; hls4ml removes it).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from firmware.fixedpoint import Precision, on_grid
from firmware.tanh import TanhThresholds, float32_agrees, tanh_thresholds
from firmware.thirdparty import qkeras_tanh_sigmoid_is_hard
from smartpix.errors import PipelineError


def _config_of(quantizer: Any) -> tuple[str, dict[str, Any]]:
    if quantizer is None:
        return "linear", {}
    if isinstance(quantizer, str):
        from qkeras import get_quantizer

        quantizer = get_quantizer(quantizer)
    name = type(quantizer).__name__
    config = quantizer.get_config() if hasattr(quantizer, "get_config") else {}
    return name, dict(config)


def refusal(where: str, reason: str) -> PipelineError:
    """The error for a layer that cannot be implemented bit-exactly, naming it and the reason."""
    return PipelineError(f"layer {where}: {reason}; it cannot be made bit-exact")


def _check_common(name: str, config: dict[str, Any], where: str) -> None:
    if config.get("use_stochastic_rounding"):
        raise refusal(where, f"{name} uses stochastic rounding")
    if float(config.get("qnoise_factor", 1.0) or 1.0) != 1.0:
        raise refusal(where, f"{name} has qnoise_factor {config['qnoise_factor']} (only 1 gives a fixed-point grid)")


def is_real_tanh(quantizer: Any) -> bool:
    """True for QKeras' quantized_tanh(use_real_tanh=True), a function of its input rather than
    a rounding of it."""
    name, config = _config_of(quantizer)
    return name == "quantized_tanh" and bool(config.get("use_real_tanh"))


def quantizer_precision(quantizer: Any, where: str, real_tanh: bool = False) -> Precision:
    """The exact hls4ml type of a QKeras quantizer's output (an activation or input quantizer).
    The real tanh is accepted only where the caller implements it (`real_tanh`): in a QActivation
    of its own, not as the input quantizer or the rounding of an average."""
    name, config = _config_of(quantizer)
    _check_common(name, config, where)
    if name == "quantized_bits":
        alpha = config.get("alpha")
        if alpha not in (None, 1, 1.0):
            raise refusal(where, f"quantized_bits has alpha={alpha!r} (a scale that is not 1)")
        bits, integer = int(config["bits"]), int(config.get("integer", 0))
        symmetric = bool(config.get("symmetric", 0))
        if bits - int(bool(config.get("keep_negative", True))) <= 0:
            raise refusal(where, f"quantized_bits({bits}) is a sign (binary) quantizer")
        if config.get("keep_negative", True):
            return Precision(bits, integer + 1, True, "RND_CONV", "SAT_SYM" if symmetric else "SAT")
        return Precision(bits, integer, False, "RND_CONV", "SAT")
    if name == "quantized_tanh":
        if config.get("use_real_tanh") and not real_tanh:
            raise refusal(where, "quantized_tanh(use_real_tanh=True) is supported only in a QActivation after a "
                                 "layer, not as the input quantizer or after an average pooling")
        if not config.get("use_real_tanh") and not qkeras_tanh_sigmoid_is_hard():
            raise refusal(where, "quantized_tanh with QKeras' internal sigmoid other than 'hard'")
        bits = int(config["bits"])
        return Precision(bits, 1, True, "RND_CONV", "SAT_SYM" if config.get("symmetric") else "SAT")
    if name == "quantized_relu":
        if config.get("negative_slope", 0.0):
            raise refusal(where, "quantized_relu with a negative slope is not supported")
        if config.get("use_sigmoid"):
            raise refusal(where, "quantized_relu(use_sigmoid=True) is not supported")
        if config.get("relu_upper_bound") is not None and not config.get("is_quantized_clip", True):
            raise refusal(where, "quantized_relu with relu_upper_bound clips off the fixed-point grid")
        return Precision(int(config["bits"]), int(config.get("integer", 0)), False, "RND_CONV", "SAT")
    raise refusal(where, f"quantizer {name} is not supported (supported: quantized_bits, quantized_tanh, quantized_relu)")


def weight_precision(quantizer: Any, where: str) -> Precision:
    """The exact type of quantized weights: the same grid, no rounding needed (values lie on it)."""
    if quantizer is None:
        raise refusal(where, "has float weights without a quantizer")
    exact = quantizer_precision(quantizer, where)
    return Precision(exact.width, exact.integer, exact.signed)


def average_pool_precision(
    data: Precision, pool_elements: int, following: Precision | None, where: str
) -> Precision:
    """Accumulator/result type of an average pooling that takes the same rounding decision
    as Python.

    The mean S/N of N inputs with LSB 2^-g is divided with truncation to F fraction bits and then
    rounded by the following quantizer to f bits. A decision boundary b lies on the 2^-(f+1)
    grid; a mean that is not on it is at least 1/(N 2^(f+1)) away from it. With
    2^-F <= 1/(N 2^(f+1)), truncation (toward zero or toward minus infinity) can neither cross
    nor land on b, so F = f + 1 + ceil(log2 N) suffices; a tie (exactly on b) is kept exactly
    since F >= f + 1. For N a power of two the mean is exact with g + log2 N fraction bits.
    """
    extra = math.ceil(math.log2(pool_elements)) if pool_elements > 1 else 0
    integer = data.integer + extra + (0 if data.signed else 1)  # signed, so one more bit for unsigned data
    if pool_elements & (pool_elements - 1) == 0:
        fraction = data.fraction + extra
    else:
        if following is None:
            raise refusal(
                where,
                f"average pooling over {pool_elements} values (not a power of two) must be followed by "
                f"a quantizer (one QActivation, its only consumer) that decides the rounding",
            )
        fraction = max(following.fraction + 1 + extra, data.fraction + extra)
    return Precision(integer + fraction, integer, True)


# --------------------------------------------------------------------------- the model walk

WEIGHT_ROLES: dict[str, tuple[str, ...]] = {
    "QDense": ("kernel", "bias"),
    "QConv1D": ("kernel", "bias"),
    "QConv2D": ("kernel", "bias"),
    "QSeparableConv2D": ("depthwise", "pointwise", "bias"),
}
POOLING = ("AveragePooling1D", "AveragePooling2D")
PASS_THROUGH = ("Flatten", "Reshape", "Dropout", "Concatenate")
SUPPORTED = ("InputLayer", "QActivation", *WEIGHT_ROLES, *POOLING, *PASS_THROUGH)
# Layer types refused with a reason of their own (the rest: "not supported").
_REFUSED = {
    "QDepthwiseConv2D": "hls4ml's C++ for it aborts under the Resource strategy in Vivado io_parallel "
                        "and takes no depth multiplier but 1",
    "QSeparableConv1D": "hls4ml's Catapult C++ for it does not compile in io_parallel",
    "Activation": "a Keras activation has no fixed-point grid; use a QActivation with a QKeras quantizer",
}


@dataclass(frozen=True, eq=False)
class LayerRecord:
    """One layer of the model as both flows see it.

    `output` is the exact type of the layer's output, or None for the sum of a weighted layer
    (exact at any width; each flow sizes it). `weights` maps each weight role (kernel, bias,
    depthwise, pointwise) to its exact type; the stored values are on those grids. A pooling
    layer's `rounded_by` is the QActivation that alone follows it and rounds its mean."""

    name: str
    kind: str
    keras: Any = field(repr=False)
    inbound: tuple[str, ...]
    consumers: tuple[str, ...]
    shape: tuple[int, ...]  # output shape of one event
    output: Precision | None
    weights: dict[str, Precision] = field(default_factory=dict)
    rounded_by: str | None = None
    tanh: TanhThresholds | None = None  # a QActivation of the real tanh: its thresholds

    def weight_values(self) -> dict[str, np.ndarray]:
        """The stored weights by role (float arrays, on their types' grids)."""
        return dict(zip(self.weights, self.keras.get_weights()))

    def weight_codes(self, role: str) -> tuple[np.ndarray, int]:
        """Integer codes of one weight role and their fraction bits: value = code * 2**-fraction."""
        precision = self.weights[role]
        return on_grid(self.weight_values()[role], precision), precision.fraction


@dataclass(frozen=True, eq=False)
class ModelGraph:
    """The layers of a model in evaluation order, the input layer first, and the name of the
    layer whose output is the model's output."""

    name: str
    layers: tuple[LayerRecord, ...]
    output: str
    input_quantizer: str  # the QActivation that the model input feeds

    @property
    def input(self) -> LayerRecord:
        return self.layers[0]

    @property
    def input_precision(self) -> Precision:
        """The type of the model input: its input quantizer's."""
        assert self.input.output is not None
        return self.input.output

    def __getitem__(self, name: str) -> LayerRecord:
        for record in self.layers:
            if record.name == name:
                return record
        raise KeyError(name)

    def __iter__(self) -> Iterator[LayerRecord]:
        return iter(self.layers)


def model_graph(model) -> ModelGraph:
    """The checked walk of a QKeras model: every layer with its exact types; a PipelineError
    naming the layer for anything that either flow cannot implement bit-exactly."""
    model = _functional(model)
    config = model.get_config()
    input_name, output_name = _single_input_output(config)
    kinds, inbound, consumers = _structure(config)
    walk = _Walk(model, kinds, inbound, consumers, _input_quantizer_name(input_name, kinds, consumers))
    for entry in config["layers"]:
        walk.read(entry["name"])
    return ModelGraph(model.name, tuple(walk.records.values()), output_name, walk.input_quantizer)


def input_quantizer_layer(model) -> Any:
    """The QActivation that the model input feeds, found through the graph (never by its name)."""
    model = _functional(model)
    config = model.get_config()
    input_name, _ = _single_input_output(config)
    kinds, _, consumers = _structure(config)
    return model.get_layer(_input_quantizer_name(input_name, kinds, consumers))


def check_input_precision(graph: ModelGraph, configured: Precision | None) -> Precision:
    """The hardware input type, which is the model input quantizer's in both flows. A configured
    `input_precision` must have the same grid (width, integer bits, sign): a narrower one would
    make the hardware differ from the model, and a wider one changes nothing the model sees."""
    derived = graph.input_precision
    if configured is None or _grid(configured) == _grid(derived):
        return derived
    c_low, c_high = configured.code_range()
    d_low, d_high = derived.code_range()
    wider = (configured.fraction >= derived.fraction and c_low * configured.lsb <= d_low * derived.lsb
             and c_high * configured.lsb >= d_high * derived.lsb)
    why = ("a wider type changes nothing the model sees" if wider
           else "it cannot hold every value of the model's input, so the hardware would differ from the model")
    raise PipelineError(
        f"key 'input_precision': {configured.hls4ml()} is not the model's input type {derived.hls4ml()} "
        f"(its input quantizer, layer {graph.input_quantizer}): {why}; "
        f"omit input_precision: it is derived from the model's input quantizer"
    )


def _grid(precision: Precision) -> tuple[int, int, bool]:
    return precision.width, precision.integer, precision.signed


def _functional(model):
    """A Sequential model as the equivalent functional one (whose config lists inbound layers)."""
    if "input_layers" in model.get_config():
        return model
    import tensorflow as tf

    return tf.keras.Model(model.inputs, model.outputs, name=model.name)


def _single_input_output(config: dict[str, Any]) -> tuple[str, str]:
    inputs = [entry[0] for entry in config.get("input_layers", [])]
    outputs = [entry[0] for entry in config.get("output_layers", [])]
    if len(inputs) != 1:
        raise refusal(", ".join(inputs), f"the model has {len(inputs)} inputs; both flows take one input")
    if len(outputs) != 1:
        raise refusal(", ".join(outputs), f"the model has {len(outputs)} outputs; both flows give one output")
    return inputs[0], outputs[0]


def _structure(config: dict[str, Any]) -> tuple[dict[str, str], dict[str, list[str]], dict[str, list[str]]]:
    """Each layer's class name, the layers it reads and the layers that read it."""
    kinds: dict[str, str] = {}
    inbound: dict[str, list[str]] = {}
    for entry in config["layers"]:
        nodes = entry.get("inbound_nodes", [])
        if len(nodes) > 1:
            raise refusal(entry["name"], "a layer called more than once (a shared layer) is not supported")
        kinds[entry["name"]] = entry["class_name"]
        inbound[entry["name"]] = [item[0] for item in nodes[0]] if nodes else []
    consumers: dict[str, list[str]] = {name: [] for name in inbound}
    for name, sources in inbound.items():
        for source in sources:
            consumers[source].append(name)
    return kinds, inbound, consumers


def _input_quantizer_name(input_name: str, kinds: dict[str, str], consumers: dict[str, list[str]]) -> str:
    first = consumers[input_name]
    if len(first) != 1 or kinds[first[0]] != "QActivation":
        raise refusal(
            input_name,
            "the model input must feed exactly one input quantizer (a QActivation) so that Python "
            "and hardware see the same fixed-point input",
        )
    return first[0]


def _activation_quantizer(layer):
    quantizer = getattr(layer, "quantizer", None)
    return quantizer if quantizer is not None else layer.activation


_READERS: dict[str, Callable[..., LayerRecord]] = {}


def _reads(*kinds: str) -> Callable:
    def register(fn: Callable[..., LayerRecord]) -> Callable[..., LayerRecord]:
        for kind in kinds:
            _READERS[kind] = fn
        return fn

    return register


class _Walk:
    """The state of one walk: the model's structure and the records read so far."""

    def __init__(self, model, kinds: dict[str, str], inbound: dict[str, list[str]],
                 consumers: dict[str, list[str]], input_quantizer: str):
        self.model = model
        self.kinds = kinds
        self.inbound = inbound
        self.consumers = consumers
        self.input_quantizer = input_quantizer
        self.records: dict[str, LayerRecord] = {}

    def read(self, name: str) -> None:
        kind = self.kinds[name]
        reader = _READERS.get(kind)
        if reader is None:
            reason = _REFUSED.get(kind, f"supported: {', '.join(SUPPORTED)}")
            raise refusal(name, f"{kind} is not supported ({reason})")
        layer = self.model.get_layer(name)
        shape = self.model.input_shape if kind == "InputLayer" else layer.output_shape
        if isinstance(shape, list):
            raise refusal(name, "a layer with several outputs is not supported")
        self.records[name] = reader(self, name, kind, layer, tuple(int(d) for d in shape[1:]))

    def source(self, name: str) -> LayerRecord:
        """The record of the one layer that feeds `name`."""
        return self.records[self.inbound[name][0]]

    def record(self, name: str, kind: str, layer, shape: tuple[int, ...], output: Precision | None,
               **extra: Any) -> LayerRecord:
        return LayerRecord(name, kind, layer, tuple(self.inbound[name]), tuple(self.consumers[name]), shape,
                           output, **extra)


@_reads("InputLayer")
def _read_input(walk: _Walk, name: str, kind: str, layer, shape: tuple[int, ...]) -> LayerRecord:
    quantizer = walk.model.get_layer(walk.input_quantizer)
    precision = quantizer_precision(_activation_quantizer(quantizer), walk.input_quantizer)
    return walk.record(name, kind, layer, shape, precision)


@_reads("QActivation")
def _read_activation(walk: _Walk, name: str, kind: str, layer, shape: tuple[int, ...]) -> LayerRecord:
    quantizer = _activation_quantizer(layer)
    source = walk.source(name)
    output = quantizer_precision(quantizer, name, real_tanh=source.kind != "InputLayer" and source.kind not in POOLING)
    if not is_real_tanh(quantizer):
        return walk.record(name, kind, layer, shape, output)
    config = _config_of(quantizer)[1]
    thresholds = tanh_thresholds(output.width, bool(config.get("symmetric")), input_fraction(source, walk.records))
    if not float32_agrees(thresholds):
        raise refusal(name, f"quantized_tanh({output.width}, use_real_tanh=True) on an input with "
                            f"{thresholds.input_fraction} fraction bits: QKeras' float32 tanh rounds to another "
                            f"level than the exact tanh next to a threshold (at most 15 fraction bits are exact)")
    return walk.record(name, kind, layer, shape, output, tanh=thresholds)


def input_fraction(source: LayerRecord, records: dict[str, LayerRecord]) -> int:
    """Fraction bits of the values `source` outputs: its type's, or for the exact sum of a
    weighted layer those of its products (data and every multiplying weight) or of its bias."""
    if source.output is not None:
        return source.output.fraction
    if source.kind in PASS_THROUGH:
        return input_fraction(records[source.inbound[0]], records)
    data = records[source.inbound[0]].output
    if data is None:
        raise refusal(source.name, "a weighted layer must read quantized values (put a QActivation before it)")
    product = data.fraction + sum(p.fraction for role, p in source.weights.items() if role != "bias")
    return max(product, source.weights["bias"].fraction)


@_reads(*WEIGHT_ROLES)
def _read_weighted(walk: _Walk, name: str, kind: str, layer, shape: tuple[int, ...]) -> LayerRecord:
    activation = getattr(layer, "activation", None)
    fused = getattr(activation, "__name__", None) or type(activation).__name__
    if activation is not None and fused != "linear":
        raise refusal(name, f"a fused activation ({fused}) is not supported; put it in a QActivation layer of its own")
    if not getattr(layer, "use_bias", True):
        raise refusal(name, "layers without bias are not supported")
    if kind == "QDense":
        if len(walk.source(name).shape) != 1:
            raise refusal(name, f"QDense on a {len(walk.source(name).shape)}-D input is not supported (flatten it first)")
    else:
        _check_convolution(layer, name)
    weights = {role: weight_precision(quantizer, f"{name} ({role})")
               for role, quantizer in zip(WEIGHT_ROLES[kind], layer.get_quantizers())}
    _check_weights_on_grid(layer, name, weights)
    return walk.record(name, kind, layer, shape, None, weights=weights)


def _check_convolution(layer, name: str) -> None:
    if layer.padding != "valid":
        raise refusal(name, f"padding {layer.padding!r} is not supported (only 'valid')")
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise refusal(name, "data_format 'channels_first' is not supported")
    dilation = tuple(int(d) for d in np.ravel(getattr(layer, "dilation_rate", 1)))
    if any(d != 1 for d in dilation):
        raise refusal(name, f"dilation {dilation} is not supported")
    if getattr(layer, "groups", 1) != 1:
        raise refusal(name, "grouped convolution is not supported")
    if getattr(layer, "depth_multiplier", 1) != 1:
        raise refusal(name, f"depth_multiplier {layer.depth_multiplier} is not supported (hls4ml's C++ takes only 1)")


def _check_weights_on_grid(layer, name: str, weights: dict[str, Precision]) -> None:
    """Stored weights must already be quantized (the training stage snaps them)."""
    values = layer.get_weights()
    if len(values) != len(weights):
        raise refusal(name, f"expected the weights {', '.join(weights)}, found {len(values)} arrays")
    for (role, precision), array in zip(weights.items(), values):
        codes = on_grid(array, precision)
        low, high = precision.code_range()
        if codes is None or codes.min(initial=0) < low or codes.max(initial=0) > high:
            raise refusal(
                name,
                f"{role} values are not on the grid of {precision} (the model was saved with float "
                f"weights; retrain or snap them with the training stage)",
            )


@_reads(*POOLING)
def _read_pooling(walk: _Walk, name: str, kind: str, layer, shape: tuple[int, ...]) -> LayerRecord:
    pool = tuple(int(p) for p in np.ravel(layer.pool_size))
    strides = tuple(int(s) for s in np.ravel(layer.strides))
    if layer.padding != "valid":
        raise refusal(name, f"padding {layer.padding!r} is not supported (only 'valid' pooling)")
    if strides != pool:
        raise refusal(name, f"strides {strides} differ from the pool size {pool} (only non-overlapping pooling)")
    if getattr(layer, "data_format", "channels_last") != "channels_last":
        raise refusal(name, "data_format 'channels_first' is not supported")
    data = walk.source(name).output
    if data is None:
        raise refusal(name, "average pooling must read quantized values (put a QActivation before it)")
    following = walk.consumers[name]
    rounded_by = following[0] if len(following) == 1 and walk.kinds[following[0]] == "QActivation" else None
    rounding = None
    if rounded_by is not None:
        rounding = quantizer_precision(_activation_quantizer(walk.model.get_layer(rounded_by)), rounded_by)
    precision = average_pool_precision(data, int(np.prod(pool)), rounding, name)
    return walk.record(name, kind, layer, shape, precision, rounded_by=rounded_by)


@_reads(*PASS_THROUGH)
def _read_pass_through(walk: _Walk, name: str, kind: str, layer, shape: tuple[int, ...]) -> LayerRecord:
    precisions = {walk.records[source].output for source in walk.inbound[name]}
    if len(precisions) != 1:
        raise refusal(
            name,
            f"concatenated inputs must share one fixed-point type, got "
            f"{sorted(p.hls4ml() if p else 'auto' for p in precisions)}",
        )
    return walk.record(name, kind, layer, shape, precisions.pop())
