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


@pytest.mark.parametrize("integer, kept", [(0, -1.0), (1, -1.5)])
def test_output_bias_integer_bits_widen_its_range(integer, kept):
    """A diagonal Cholesky bias of -1.5 is clipped to the edge of quantized_bits(12, 0), kept
    with one integer bit."""
    import numpy as np

    model = build_model(ModelSpec(output_bias_bits=12, output_bias_integer=integer), (13, 21, 2))
    layer = model.get_layer("mdn_output")
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel, np.full_like(bias, -1.5)])
    snap_weights_to_quantized(model)
    assert np.all(layer.get_weights()[1] == kept)
    # only the output layer's bias: the hidden layers keep quantized_bits(8, 0)
    assert model.get_layer("dense_2").bias_quantizer_internal.integer == 0


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


def _random_xysum(seed: int, events: int, **spec):
    """An xysum model (`spec`: more model options) with seeded random weights on its grids (exact
    inference), sparse random clusters, its outputs on them (float64), and the random generator
    for what follows."""
    import numpy as np

    from tests.helpers import randomize_quantized_weights
    from train.models import disable_ste

    model = build_model(ModelSpec(architecture="xysum", **spec), (13, 21, 2))
    randomize_quantized_weights(model, seed=seed)
    disable_ste(model)
    rng = np.random.default_rng(seed)
    shape = (events, 13, 21, 2)
    x = (rng.integers(0, 64, shape) * (rng.random(shape) < 0.2) / 4).astype(np.float32)
    return model, x, model.predict(x, verbose=0).astype(np.float64), rng


@pytest.mark.parametrize("output_bias_bits, step", [(0, 2.0 ** -7), (12, 2.0 ** -11)])
def test_bias_correction_removes_the_mean_offset_to_within_half_a_bias_step(output_bias_bits, step):
    """quantized_bits(8, 0), the dense weights' type, is the output bias's grid unless
    output_bias_bits gives it its own."""
    import numpy as np

    from train.fit import correct_mean_bias
    from train.loss import MEAN_INDEX

    model, x, before, _ = _random_xysum(seed=5, events=600, output_bias_bits=output_bias_bits)
    offset = np.array([0.1, -0.05, 0.21, 0.013])  # the means' bias (scaled units) to remove
    labels = (before[:, MEAN_INDEX] - offset).astype(np.float32)
    old_bias = model.get_layer("mdn_output").get_weights()[1].copy()
    batches = [(x[i:i + 200], labels[i:i + 200]) for i in range(0, 600, 200)]

    shift = correct_mean_bias(model, batches)

    after = model.predict(x, verbose=0).astype(np.float64)
    residual = (after[:, MEAN_INDEX] - labels).mean(axis=0)
    assert np.all(np.abs(residual) <= step / 2 + 1e-6), residual
    assert np.allclose(shift, -offset, atol=step / 2 + 1e-6)
    new_bias = model.get_layer("mdn_output").get_weights()[1]
    others = [i for i in range(14) if i not in MEAN_INDEX]
    assert np.array_equal(new_bias[others], old_bias[others])  # the covariance outputs are untouched
    assert np.array_equal(np.rint(new_bias / step), new_bias / step)  # on the grid
    assert np.allclose(after[:, others], before[:, others])


def test_sigma_calibration_brings_every_pull_width_to_one_and_leaves_the_means():
    import numpy as np

    from train.fit import calibrate_sigmas
    from train.loss import MEAN_INDEX, core_width_68, covariance

    model, x, before, rng = _random_xysum(seed=6, events=2000)
    sigma = np.sqrt(np.diagonal(covariance(before), axis1=1, axis2=2))
    # labels whose scatter around the means is 0.8 to 1.3 times the predicted sigma (within what
    # the 8-bit biases of the sigma outputs can correct)
    scatter = np.array([0.8, 0.9, 1.15, 1.3])
    labels = (before[:, MEAN_INDEX] + rng.normal(size=(2000, 4)) * sigma * scatter).astype(np.float32)
    batches = [(x[i:i + 500], labels[i:i + 500]) for i in range(0, 2000, 500)]

    widths = calibrate_sigmas(model, batches)

    assert np.allclose(widths[0], scatter, rtol=0.1)
    after = model.predict(x, verbose=0).astype(np.float64)
    new_sigma = np.sqrt(np.diagonal(covariance(after), axis1=1, axis2=2))
    pulls = (after[:, MEAN_INDEX] - labels) / new_sigma
    assert [core_width_68(pulls[:, t]) for t in range(4)] == pytest.approx([1.0] * 4, abs=0.03)
    assert np.array_equal(after[:, MEAN_INDEX], before[:, MEAN_INDEX])


def test_a_sigma_bias_at_the_end_of_its_range_is_named_when_the_calibration_cannot_reach_one():
    """quantized_bits(8, 0) holds biases in [-1, 1 - 2^-7]: x's sigma bias set to -1 cannot move
    lower, so x's pulls, narrower than 1, stay narrow; y's, as narrow but with room, reach 1."""
    import numpy as np

    from train.fit import calibrate_sigmas, sigma_biases_at_their_limit
    from train.loss import DIAG_INDEX, MEAN_INDEX, covariance

    model, x, _, rng = _random_xysum(seed=7, events=2000)
    layer = model.get_layer("mdn_output")
    kernel, bias = layer.get_weights()
    bias[DIAG_INDEX[0]], bias[DIAG_INDEX[1]] = -1.0, 0.0
    layer.set_weights([kernel, bias])
    outputs = model.predict(x, verbose=0).astype(np.float64)
    sigma = np.sqrt(np.diagonal(covariance(outputs), axis1=1, axis2=2))
    scatter = np.array([0.8, 0.8, 1.0, 1.0])
    labels = (outputs[:, MEAN_INDEX] + rng.normal(size=(2000, 4)) * sigma * scatter).astype(np.float32)
    batches = [(x[i:i + 500], labels[i:i + 500]) for i in range(0, 2000, 500)]

    widths = calibrate_sigmas(model, batches)

    stuck = sigma_biases_at_their_limit(model, widths[-1])
    assert [(target, b, q) for target, _, b, q in stuck] == [("x-midplane", -1.0, "quantized_bits(8, 0)")]
    assert stuck[0][1] < 0.95
    assert widths[-1][1] == pytest.approx(1.0, abs=0.03)
