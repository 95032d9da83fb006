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
"""

from __future__ import annotations

import math

from hls4ml.model.optimizer import OptimizerPass

WIDEN_PASS = "smartpix_widen_average_pooling"
KEEP_QUANTIZER_PASS = "smartpix_keep_linear_quantizer"
CONCATENATE_PASS = "smartpix_stream_concatenate_1d"
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


_generic_registered = False


def register_exactness_passes() -> None:
    """Add the backend-independent pass to hls4ml's 'parse_qonnx' flow, which the 'convert' flow
    (with merge_linear_activation) requires and so runs first (once per process)."""
    global _generic_registered
    if _generic_registered:
        return
    from hls4ml.model.flow import update_flow
    from hls4ml.model.optimizer import get_optimizer, register_pass

    try:
        get_optimizer(KEEP_QUANTIZER_PASS)
    except Exception:  # not registered yet (hls4ml raises a bare Exception)
        register_pass(KEEP_QUANTIZER_PASS, KeepLinearActivationType)
    update_flow("parse_qonnx", add_optimizers=[KEEP_QUANTIZER_PASS])
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
