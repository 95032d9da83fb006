"""hls4ml optimizer passes of this project, registered through hls4ml's own pass registry.

Catapult's nnet::avg() sums in the pooling input type itself unless that type is a plain
ac_fixed<W,I,true> (default rounding and overflow modes), for which it has an overload that sums
with ceil(log2 N) more integer bits and divides keeping the input's fraction bits. Types derived
from QKeras carry RND_CONV/SAT modes, so the generic overload saturates the sum: on a 3x3 pool
of quantized_tanh(4) values the mean comes out wrong by up to 0.86. The pass below puts a cast
node (a linear activation) in front of every average pooling, whose plain, wide type is the
pooling's exact accumulator type, so that the division keeps every bit the following
quantizer's rounding needs.

Catapult's streaming nnet::concatenate1d (templates/catapult/nnet_utils/nnet_merge_stream.h in
hls4ml 1.3.0) is a copy of an old, broken Vivado version: for every input packet it copies
res_T::size elements out of an input packet that holds only input_T::size (reading past its
end), at offset 0 instead of after the elements already taken, and writes one output packet per
input packet instead of one in all. A 1D concatenation in io_stream (two flattened streams, as in
the xysum model) thus comes out as garbage. The second pass below rewrites such a concatenation
into parts of hls4ml that are right: each input is repacked (nnet::repack_stream) into rows of
a common packet size, the rows are concatenated along the first axis (nnet::concatenate2d_0,
which copies packet by packet), and an in-place flatten gives the consumers the 1D tensor they
expect, in the same element order.

For every backend, hls4ml's merge_linear_activation (in its 'convert' flow) removes a linear
activation that follows a Dense or convolution whose own result type is not set, and carries
over to that layer only the type of a quantizer attribute the activation may have. A QKeras
QActivation with quantized_bits is such an activation without that attribute: its rounding and
saturation (here RND_CONV, SAT) were dropped with it, and the layer's result stayed its wide
accumulator. The third pass gives each linear activation of a set type a quantizer attribute of
that very type before the merge runs, so the merge moves the type onto the layer's result, which
then rounds and saturates exactly as QKeras does.

In io_stream, hls4ml's inplace_stream_flatten makes a Flatten after a convolution a view of the
convolution's stream, whose packets hold one pixel's channels, so that a Dense after it gathers
its inputs packet by packet. An activation right after such a Flatten (a QActivation that rounds
the flattened values, say) is not a Dense: its C++ reads n_in / res_T::size packets and copies
res_T::size elements out of each, but res_T is the flattened tensor of one packet of every value,
so it reads one packet of a pixel's channels and past its end, and every event comes out wrong.
An elementwise function commutes with a flatten, so the fifth pass moves the activation in front
of the Flatten, where its packets are the pixels' channels like those it reads; the Flatten after
it stays an in-place view, and no repacking buffer is added.

hls4ml converts a QActivation of quantized_tanh(use_real_tanh=True) into an Activation 'tanh'
(keeping the quantizer's config as its `activation_quantizer`), which Vivado and Vitis evaluate
with a lookup table (by default 1024 entries over [-4, 4), truncated to its table type) and
Catapult with ac_math's piecewise-linear tanh: next to a step of the quantized output both often
land on the neighbouring level. The exact function is a count of threshold comparisons
(firmware.tanh), and the fourth pass replaces such a node by a layer of this project that counts
them: its C++ (templates/<backend>/nnet_real_tanh.h, io_parallel and io_stream) adds one LSB of
the quantizer's type per threshold at or below the input and takes one away per threshold at or
above it. The thresholds are computed when the layer's C++ is written, for the fraction bits of
its input's C++ type as hls4ml finally chose it (a finer grid than the exact sum's gives the
same function), and written as constants of that very type: a dyadic value of at most 53
significant bits is an exact double literal, and a threshold outside the type's range, which no
input reaches, is left out rather than wrapped or saturated into one that some input would
reach.
"""

from __future__ import annotations

import math
from fractions import Fraction
from pathlib import Path

from hls4ml.backends.template import FunctionCallTemplate, LayerConfigTemplate
from hls4ml.model.attributes import Attribute
from hls4ml.model.layers import Layer
from hls4ml.model.optimizer import OptimizerPass

from firmware.fixedpoint import Precision
from firmware.tanh import tanh_thresholds
from smartpix.errors import PipelineError

WIDEN_PASS = "smartpix_widen_average_pooling"
KEEP_QUANTIZER_PASS = "smartpix_keep_linear_quantizer"
CONCATENATE_PASS = "smartpix_stream_concatenate_1d"
REAL_TANH_PASS = "smartpix_exact_real_tanh"
FLATTEN_PASS = "smartpix_activation_before_stream_flatten"
REAL_TANH_SOURCES = {
    "Vivado": Path(__file__).with_name("templates") / "vivado" / "nnet_real_tanh.h",
    "Vitis": Path(__file__).with_name("templates") / "vivado" / "nnet_real_tanh.h",
    "Catapult": Path(__file__).with_name("templates") / "catapult" / "nnet_real_tanh.h",
}
_registered = False


class WidenAveragePoolingInput(OptimizerPass):
    def match(self, node) -> bool:
        if node.class_name not in ("Pooling1D", "Pooling2D") or node.get_attr("pool_op") != "Average":
            return False
        return not node.get_input_node().name.endswith("_widen")

    def transform(self, model, node) -> bool:
        accum = node.get_attr("accum_t").precision
        name = f"{node.name}_widen"
        precision = f"fixed<{accum.width},{accum.integer}>"  # plain: truncation, wrap-around
        settings = {"Precision": {"result": precision}, "Trace": True}
        model.config.set_name_config(name, settings)
        model.config.parse_name_config(name, settings)
        cast = model.make_node(
            "Activation",
            name,
            {"activation": "linear", "n_in": node.get_input_variable().size(), "trace": True},
            node.inputs.copy(),
        )
        model.insert_node(cast, before=node)
        return True


def _packet_size(variable) -> int:
    """Elements per stream packet: the last dimension of the tensor an in-place flatten links to."""
    while getattr(variable, "input_var", None) is not None:
        variable = variable.input_var
    return int(variable.shape[-1])


class StreamConcatenate1D(OptimizerPass):
    def match(self, node) -> bool:
        return (
            node.class_name == "Concatenate"
            and node.get_attr("op") == "concatenate1d"
            and node.model.config.get_config_value("IOType") == "io_stream"
        )

    def transform(self, model, node) -> bool:
        inputs = [node.get_input_variable(name) for name in node.inputs]
        sizes = [int(v.size()) for v in inputs]
        packet = math.gcd(*(_packet_size(v) for v in inputs))
        for index, (variable, size) in enumerate(zip(inputs, sizes)):
            repack = model.make_node(
                "Repack", f"{node.name}_rows{index}", {"target_shape": [size // packet, packet]},
                [node.inputs[index]],
            )
            repack.get_output_variable().type.precision = variable.type.precision
            model.insert_node(repack, before=node, input_idx=index)

        precision = node.get_output_variable().type.precision
        is_output = node.outputs[0] in model.outputs
        rows = model.make_node("Concatenate", node.name, {"op": "concatenate2d", "axis": 1}, node.inputs.copy())
        rows.get_output_variable().type.precision = precision
        model.replace_node(node, rows)

        if is_output:
            # the model's output keeps its one packet of every element: repacked, not viewed
            rows.get_output_variable().type.name = f"layer{rows.index}_t"
            flat = model.make_node("Repack", f"{node.name}_flat", {"target_shape": [sum(sizes)]}, [rows.outputs[0]])
            flat.get_output_variable().type.name = "result_t"
        else:
            # made an in-place view of the rows by hls4ml's inplace_stream_flatten: no copy
            flat = model.make_node("Reshape", f"{node.name}_flat", {"target_shape": [sum(sizes)]}, [rows.outputs[0]])
        flat.get_output_variable().type.precision = precision
        model.insert_node(flat)
        return True


class _TypeOnlyQuantizer:
    """What merge_linear_activation reads of a quantizer: the type it rounds and saturates to."""

    def __init__(self, hls_type) -> None:
        self.hls_type = hls_type


class KeepLinearActivationType(OptimizerPass):
    def match(self, node) -> bool:
        from hls4ml.model.types import UnspecifiedPrecisionType

        if node.class_name != "Activation" or node.get_attr("activation") != "linear":
            return False
        if node.get_attr("quantizer") is not None:
            return False
        return not isinstance(node.get_output_variable().type.precision, UnspecifiedPrecisionType)

    def transform(self, model, node) -> bool:
        node.set_attr("quantizer", _TypeOnlyQuantizer(node.get_output_variable().type.precision))
        return False  # an attribute only: the graph is unchanged


ELEMENTWISE_NODES = ("Activation", "HardActivation", "ParametrizedActivation", "TernaryTanh")


def _is_flatten(node) -> bool:
    return (node is not None and node.class_name == "Reshape" and len(node.get_output_variable().shape) == 1
            and len(node.get_input_variable().shape) > 1)


class ActivationBeforeStreamFlatten(OptimizerPass):
    def match(self, node) -> bool:
        if node.model.config.get_config_value("IOType") != "io_stream":
            return False
        if node.class_name not in ELEMENTWISE_NODES or str(node.get_attr("activation")).lower() == "softmax":
            return False
        return _is_flatten(node.get_input_node())

    def transform(self, model, node) -> bool:
        from hls4ml.model.types import NamedType, TensorVariable

        flatten = node.get_input_node()
        precision = node.get_output_variable().type.precision
        # the attributes the converter gave it, not those hls4ml derives from its place in the graph
        structural = {"name", "class_name", "inputs", "outputs", "index"}
        attributes = {key: value for key, value in node.attributes.items()
                      if key not in structural and not isinstance(value, (NamedType, TensorVariable))}
        model.remove_node(node)
        moved = model.make_node(node.class_name, node.name, attributes, flatten.inputs.copy())
        moved.get_output_variable().type.precision = precision
        model.insert_node(moved, before=flatten)
        return True


_generic_registered = False


def register_exactness_passes() -> None:
    """Add the backend-independent passes to hls4ml's 'parse_qonnx' flow, which the 'convert' flow
    (with merge_linear_activation) requires and so runs first, before any backend's streaming
    passes make a Flatten a view (once per process)."""
    global _generic_registered
    if _generic_registered:
        return
    from hls4ml.model.flow import update_flow
    from hls4ml.model.optimizer import get_optimizer, register_pass

    passes = {KEEP_QUANTIZER_PASS: KeepLinearActivationType, FLATTEN_PASS: ActivationBeforeStreamFlatten}
    for name, cls in passes.items():
        try:
            get_optimizer(name)
        except Exception:  # not registered yet (hls4ml raises a bare Exception)
            register_pass(name, cls)
    update_flow("parse_qonnx", add_optimizers=list(passes))
    _generic_registered = True


def register_catapult_passes() -> None:
    """Add the passes to Catapult's optimization flow (once per process)."""
    global _registered
    if _registered:
        return
    from hls4ml.model.flow import update_flow
    from hls4ml.model.optimizer import get_optimizer, register_pass

    qualified = []
    for name, cls in ((WIDEN_PASS, WidenAveragePoolingInput), (CONCATENATE_PASS, StreamConcatenate1D)):
        try:
            get_optimizer(f"catapult:{name}")
        except Exception:  # not registered yet (hls4ml raises a bare Exception)
            register_pass(name, cls, backend="Catapult")
        qualified.append(f"catapult:{name}")
    update_flow("catapult:optimize", add_optimizers=qualified)
    _registered = True


def is_real_tanh_node(node) -> bool:
    """An Activation that hls4ml made of a QActivation(quantized_tanh(use_real_tanh=True))."""
    quantizer = node.get_attr("activation_quantizer")
    return (
        node.class_name == "Activation"
        and node.get_attr("activation") == "tanh"
        and isinstance(quantizer, dict)
        and quantizer.get("class_name") == "quantized_tanh"
        and bool(quantizer.get("config", {}).get("use_real_tanh"))
    )


class QuantizedRealTanh(Layer):
    _expected_attributes = [Attribute("n_in"), Attribute("bits"), Attribute("symmetric", value_type=bool)]

    def initialize(self) -> None:
        self.add_output_variable(self.get_input_variable().shape)


class ExactRealTanh(OptimizerPass):
    def match(self, node) -> bool:
        return is_real_tanh_node(node)

    def transform(self, model, node) -> bool:
        config = node.get_attr("activation_quantizer")["config"]
        bits = int(config["bits"])
        precision = node.get_output_variable().type.precision
        if (precision.width, precision.integer, precision.signed) != (bits, 1, True):
            raise PipelineError(f"layer {node.name}: the result of quantized_tanh({bits}) is its own type "
                                f"fixed<{bits},1>, not {precision}")
        attributes = {"n_in": node.get_input_variable().size(), "bits": bits,
                      "symmetric": bool(config.get("symmetric", False)), "trace": node.get_attr("trace", False)}
        tanh = model.make_node(QuantizedRealTanh, node.name, attributes, node.inputs.copy())
        tanh.get_output_variable().type.precision = precision
        model.replace_node(node, tanh)
        return True


def _exact_literal(code: int, fraction: int) -> str:
    """C++ double literal of code * 2^-fraction, exact."""
    if abs(code).bit_length() > 53:
        raise PipelineError(f"threshold code {code} has more significant bits than a double holds")
    return repr(float(Fraction(code) / Fraction(2) ** fraction))


def real_tanh_steps(node) -> list[str]:
    """The C++ statements of one real tanh element, for the fraction bits of the input's C++ type.
    tanh is odd, so a signed input's magnitude is compared with the rising thresholds alone and
    the count takes the input's sign (half the comparisons); a tanh that is not symmetric has one
    more level below, compared on the input itself. Thresholds outside the input's range (which
    no input reaches) are left out."""
    data = node.get_input_variable().type.precision
    if not hasattr(data, "integer"):
        raise PipelineError(f"layer {node.name}: the real tanh needs a fixed-point input, not {data}")
    fraction = data.width - data.integer
    low, high = Precision(data.width, data.integer, data.signed).code_range()
    thresholds = tanh_thresholds(node.get_attr("bits"), node.get_attr("symmetric"), fraction)
    if not data.signed:
        return [f"if (x >= data_T({_exact_literal(u, fraction)})) y += lsb;" for u in thresholds.up if u <= high]
    # one integer bit more than the input, so that the magnitude of its lowest value fits
    wider = Precision(data.width + 1, data.integer + 1)
    magnitude = wider.ac() if node.model.config.backend.name == "Catapult" else wider.ap()
    lowest_levels = thresholds.down[len(thresholds.up):]
    return [
        f"const {magnitude} magnitude = x < 0 ? {magnitude}(-x) : {magnitude}(x);",
        *(f"if (magnitude >= {magnitude}({_exact_literal(u, fraction)})) y += lsb;" for u in thresholds.up if u <= -low),
        "if (x < 0) y = -y;",
        *(f"if (x <= data_T({_exact_literal(d, fraction)})) y -= lsb;" for d in lowest_levels if d >= low),
    ]


_REAL_TANH_CONFIG = """struct real_tanh_config{index} {{
    static const unsigned n_in = {n_in};
    template <class data_T, class res_T> static res_T step(data_T x) {{
        const res_T lsb = {lsb};
        res_T y = 0;
{steps}
        return y;
    }}
}};
"""


class RealTanhConfigTemplate(LayerConfigTemplate):
    def __init__(self) -> None:
        super().__init__(QuantizedRealTanh)

    def format(self, node) -> str:
        steps = "\n".join(" " * 8 + line for line in real_tanh_steps(node))
        lsb = _exact_literal(1, node.get_attr("bits") - 1)
        return _REAL_TANH_CONFIG.format(index=node.index, n_in=node.get_attr("n_in"), lsb=lsb, steps=steps)


class RealTanhFunctionTemplate(FunctionCallTemplate):
    def __init__(self) -> None:
        super().__init__(QuantizedRealTanh, include_header=["nnet_utils/nnet_real_tanh.h"])

    def format(self, node) -> str:
        params = self._default_function_params(node)
        return "nnet::real_tanh<{input_t}, {output_t}, real_tanh_config{index}>({input}, {output});".format(**params)


_real_tanh_registered = False


def register_real_tanh() -> None:
    """Register the real tanh layer with its C++ for Vivado, Vitis and Catapult, and the pass that
    puts it in place at the end of their optimization flows, after hls4ml has inferred every
    type (once per process)."""
    global _real_tanh_registered
    if _real_tanh_registered:
        return
    from hls4ml.backends import get_backend
    from hls4ml.model.flow import update_flow
    from hls4ml.model.layers import layer_map, register_layer
    from hls4ml.model.optimizer import get_optimizer, register_pass

    if QuantizedRealTanh.__name__ not in layer_map:
        register_layer(QuantizedRealTanh.__name__, QuantizedRealTanh)
    for backend_name, source in REAL_TANH_SOURCES.items():
        backend = get_backend(backend_name)
        backend.register_source(source)
        if backend_name == "Vitis":
            continue  # Vitis applies Vivado's templates
        for template in (RealTanhConfigTemplate, RealTanhFunctionTemplate):
            try:
                get_optimizer(f"{backend_name.lower()}:{template().get_name()}")
            except Exception:  # not registered yet (hls4ml raises a bare Exception)
                backend.register_template(template)
    try:
        get_optimizer(REAL_TANH_PASS)
    except Exception:
        register_pass(REAL_TANH_PASS, ExactRealTanh)
    update_flow("vivado:optimize", add_optimizers=[REAL_TANH_PASS])
    update_flow("catapult:optimize", add_optimizers=[REAL_TANH_PASS])
    _real_tanh_registered = True
