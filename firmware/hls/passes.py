"""hls4ml optimizer passes of this project, registered through hls4ml's own pass registry.

Catapult's nnet::avg() sums in the pooling input type itself unless that type is a plain
ac_fixed<W,I,true> (default rounding and overflow modes), for which it has an overload that sums
with ceil(log2 N) more integer bits and divides keeping the input's fraction bits. Types derived
from QKeras carry RND_CONV/SAT modes, so the generic overload saturates the sum: on a 3x3 pool
of quantized_tanh(4) values the mean comes out wrong by up to 0.86. The pass below puts a cast
node (a linear activation) in front of every average pooling, whose plain, wide type is the
pooling's exact accumulator type, so that the division keeps every bit the following
quantizer's rounding needs.
"""

from __future__ import annotations

from hls4ml.model.optimizer import OptimizerPass

WIDEN_PASS = "smartpix_widen_average_pooling"
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


def register_catapult_passes() -> None:
    """Add the pass to Catapult's optimization flow (once per process)."""
    global _registered
    if _registered:
        return
    from hls4ml.model.flow import update_flow
    from hls4ml.model.optimizer import get_optimizer, register_pass

    qualified = f"catapult:{WIDEN_PASS}"
    try:
        get_optimizer(qualified)
    except Exception:  # not registered yet (hls4ml raises a bare Exception)
        register_pass(WIDEN_PASS, WidenAveragePoolingInput, backend="Catapult")
    update_flow("catapult:optimize", add_optimizers=[qualified])
    _registered = True
