"""io_stream: an activation right after the Flatten of a convolution's output (a QActivation that
rounds the flattened values), for Vitis and Catapult, in C simulation against QKeras."""

from __future__ import annotations

import json

import pytest

from firmware.hls.csim import verify_project
from tests.helpers import assert_exact, hls_project, randomize_quantized_weights, real_tanh_events


def _flatten_then_activation_model(activation: str):
    import tensorflow as tf
    from qkeras import QActivation, QConv2D, QDense, quantized_bits, quantized_tanh

    from train.models import disable_ste

    quantizer = {"quantized_bits": quantized_bits(6, 2, alpha=1), "hard_tanh": quantized_tanh(4)}[activation]
    inp = tf.keras.Input(shape=(4, 5, 2), name="x")
    x = QActivation(quantized_bits(6, 2, alpha=1), name="input_quant")(inp)
    x = QConv2D(3, (3, 3), kernel_quantizer=quantized_bits(4, 0, alpha=1), bias_quantizer=quantized_bits(4, 0, alpha=1),
                name="conv")(x)
    x = tf.keras.layers.Flatten(name="flatten")(x)
    x = QActivation(quantizer, name="flat_act")(x)
    x = QDense(4, kernel_quantizer=quantized_bits(8, 0, alpha=1), bias_quantizer=quantized_bits(8, 0, alpha=1),
               name="out")(x)
    model = tf.keras.Model(inp, x, name="flatten_then_activation")
    randomize_quantized_weights(model, seed=3)
    disable_ste(model)
    return model


@pytest.mark.slow
@pytest.mark.parametrize("backend, activation", [("Vitis", "quantized_bits"), ("Catapult", "hard_tanh")])
def test_activation_after_a_stream_flatten_is_exact(tmp_path, backend, activation):
    project = hls_project(_flatten_then_activation_model(activation), tmp_path, real_tanh_events(40), backend=backend,
                          io_type="io_stream")
    order = [layer["name"] for layer in json.loads((project.directory / "smartpix.json").read_text())["hls_layers"]]
    # the activation runs on the convolution's packets of 3 channels (or, a rounding, becomes the
    # convolution's result type): nothing but the dense reads the flattened view
    assert order[order.index("flatten") + 1:] == ["out"]
    assert_exact(verify_project(project, tmp_path / "cache", adversarial=True))
