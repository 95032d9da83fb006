"""The QKeras MDNs: the baseline's layer table, the xysum variant, the quantizer choices."""

import pytest

from smartpix.errors import PipelineError
from train.models import ModelSpec, build_model, snap_weights_to_quantized

# The original smart-pixel README's table for input (13, 21, 2), n_filters=5, pool_size=3.
BASELINE_TABLE = [
    ("QSeparableConv2D", (11, 19, 5), 33),
    ("QActivation", (11, 19, 5), 0),
    ("QConv2D", (11, 19, 5), 30),
    ("QActivation", (11, 19, 5), 0),
    ("AveragePooling2D", (3, 6, 5), 0),
    ("QActivation", (3, 6, 5), 0),
    ("Flatten", (90,), 0),
    ("QDense", (16,), 1456),
    ("QActivation", (16,), 0),
    ("QDense", (16,), 272),
    ("QActivation", (16,), 0),
    ("QDense", (14,), 238),
]


def test_baseline_layers_shapes_and_parameter_counts():
    model = build_model(ModelSpec(), (13, 21, 2))
    layers = model.layers[2:]  # after the Input layer and the input quantizer
    table = [(type(layer).__name__, tuple(layer.output_shape[1:]), layer.count_params()) for layer in layers]
    assert table == BASELINE_TABLE
    assert model.count_params() == 2029


def test_first_layer_is_the_input_quantizer():
    model = build_model(ModelSpec(), (13, 21, 2))
    first = model.layers[1]
    assert type(first).__name__ == "QActivation"
    config = first.quantizer.get_config()
    assert (config["bits"], config["integer"], config["keep_negative"]) == (6, 4, False)


def test_quantizer_bit_widths_are_parameters():
    model = build_model(ModelSpec(conv_weight_bits=6, dense_weight_bits=5, dense_activation_bits=6), (13, 21, 2))
    assert model.get_layer("conv_pointwise").kernel_quantizer_internal.bits == 6
    assert model.get_layer("dense_1").kernel_quantizer_internal.bits == 5
    assert model.get_layer("dense_1_act").quantizer.bits == 6


def test_xysum_projects_then_shares_the_dense_head():
    model = build_model(ModelSpec(architecture="xysum"), (13, 21, 2))
    assert tuple(model.get_layer("profile_y").output_shape[1:]) == (13, 2)
    assert tuple(model.get_layer("profile_x").output_shape[1:]) == (21, 2)
    assert tuple(model.get_layer("profiles").output_shape[1:]) == (11 * 5 + 19 * 5,)
    assert model.get_layer("conv_y").count_params() == 3 * 2 * 5 + 5
    assert tuple(model.output_shape[1:]) == (14,)


def test_float_twin_has_the_same_architecture_without_quantizers():
    quantized = build_model(ModelSpec(), (13, 21, 2))
    floating = build_model(ModelSpec(), (13, 21, 2), quantized=False)
    assert floating.count_params() == quantized.count_params()
    assert not any(type(layer).__name__.startswith("Q") for layer in floating.layers)


def test_snapping_puts_weights_on_their_grid_and_is_idempotent():
    import numpy as np

    model = build_model(ModelSpec(), (13, 21, 2))
    assert snap_weights_to_quantized(model) > 0
    kernel = model.get_layer("dense_1").get_weights()[0]
    assert np.array_equal(kernel * 128, np.round(kernel * 128))  # quantized_bits(8, 0): 7 fraction bits
    assert snap_weights_to_quantized(model) == 0


@pytest.mark.parametrize("kwargs, message", [
    ({"architecture": "resnet"}, "unknown architecture 'resnet'"),
    ({"n_filters": 0}, "n_filters must be at least 1"),
])
def test_bad_model_options(kwargs, message):
    with pytest.raises(PipelineError, match=message):
        ModelSpec(**kwargs)
