"""The exact reference: the integer replay where QKeras' float32 cannot hold the values, QKeras
itself (checked against the replay) everywhere else, and C simulation exact against it."""

from __future__ import annotations

import numpy as np
import pytest

from firmware.verify.reference import exact_reference
from smartpix.errors import PipelineError
from tests.conftest import tiny_model
from tests.helpers import c_simulation, randomize_quantized_weights


def wide_model(seed: int = 5):
    """16-bit weights and activations: the output has 28 fraction bits and about 32 significant
    bits, more than float32's 24."""
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits

    from train.models import disable_ste

    bits16 = quantized_bits(16, 0, alpha=1)
    inp = tf.keras.Input(shape=(6,), name="x")
    x = QActivation(quantized_bits(8, 3, keep_negative=True, alpha=1), name="input_quant")(inp)
    x = QDense(8, kernel_quantizer=bits16, bias_quantizer=bits16, name="hidden")(x)
    x = QActivation(quantized_bits(16, 2, alpha=1), name="hidden_act")(x)
    x = QDense(4, kernel_quantizer=bits16, bias_quantizer=bits16, name="out")(x)
    model = tf.keras.Model(inp, x, name="wide")
    randomize_quantized_weights(model, seed=seed)
    disable_ste(model)
    return model


def _events(n: int, seed: int = 1) -> np.ndarray:
    return (np.random.default_rng(seed).integers(-128, 128, size=(n, 6)) / 16.0).astype(np.float32)


def test_float32_qkeras_is_inexact_for_wide_types_and_the_replay_is_the_reference():
    model = wide_model()
    events = _events(400)
    reference = exact_reference(model, events)
    keras = model.predict(events, verbose=0).astype(np.float64)
    assert not np.array_equal(keras, reference.outputs)
    assert reference.source.startswith("exact integer replay (QKeras' float32 differs on")
    # the exact outputs lie on the output grid: 15 weight + 13 activation fraction bits
    codes = reference.outputs * 2.0**28
    assert np.array_equal(codes, np.round(codes))
    # and they are what exact rational arithmetic gives for the first event
    from fractions import Fraction

    hidden, out = model.get_layer("hidden"), model.get_layer("out")
    x = [Fraction(float(v)) for v in np.clip(np.round(events[0] * 16) / 16, -8, 8 - 1 / 16)]
    (w1, b1), (w2, b2) = hidden.get_weights(), out.get_weights()
    h = [sum(x[i] * Fraction(float(w1[i, j])) for i in range(6)) + Fraction(float(b1[j])) for j in range(8)]
    step = Fraction(1, 2**13)
    h = [min(max(round(v / step) * step, Fraction(-4)), Fraction(4) - step) for v in h]  # round() is half to even
    y = [sum(h[i] * Fraction(float(w2[i, j])) for i in range(8)) + Fraction(float(b2[j])) for j in range(4)]
    assert [Fraction(v) for v in reference.outputs[0]] == y


def test_where_float32_is_exact_qkeras_is_the_reference():
    model = tiny_model()
    events = _events(300)
    reference = exact_reference(model, events)
    assert reference.source.startswith("QKeras (float32, equal to the exact integer replay")
    assert np.array_equal(reference.outputs, model.predict(events, verbose=0).astype(np.float64))


def test_a_disagreement_where_float32_is_exact_is_an_error(monkeypatch):
    model = tiny_model()
    predict = model.predict
    monkeypatch.setattr(model, "predict", lambda *a, **k: predict(*a, **k) + 2.0**-10)
    with pytest.raises(PipelineError, match="QKeras and the integer replay of model tiny disagree on event 0"):
        exact_reference(model, _events(10))


@pytest.mark.slow
def test_a_wide_model_is_exact_in_c_simulation_against_the_exact_reference(tmp_path):
    report = c_simulation(wide_model(), tmp_path, _events(300, seed=2))
    assert report.exact, report
    held_out = report.verdicts[0]
    assert held_out.stimulus == "held_out" and held_out.reference.startswith("exact integer replay")


@pytest.mark.slow
def test_a_quantized_bits_activation_after_a_dense_layer_keeps_its_rounding(tmp_path):
    """hls4ml merges a linear activation into the dense layer before it and dropped the QKeras
    quantizer's rounding and saturation on the way; float32 is exact here (8-bit types), so the
    reference is QKeras itself."""
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits

    from train.models import disable_ste

    bits8 = quantized_bits(8, 0, alpha=1)
    inp = tf.keras.Input(shape=(6,), name="x")
    x = QActivation(quantized_bits(6, 3, keep_negative=True, alpha=1), name="input_quant")(inp)
    x = QDense(8, kernel_quantizer=bits8, bias_quantizer=bits8, name="hidden")(x)
    x = QActivation(quantized_bits(6, 1, alpha=1), name="hidden_act")(x)  # saturates at +-2
    x = QDense(3, kernel_quantizer=bits8, bias_quantizer=bits8, name="out")(x)
    model = tf.keras.Model(inp, x, name="narrow_act")
    randomize_quantized_weights(model, seed=9)
    disable_ste(model)
    report = c_simulation(model, tmp_path, _events(200, seed=3), backend="Vitis")
    assert report.exact, report
    assert report.verdicts[0].reference.startswith("QKeras (float32")
