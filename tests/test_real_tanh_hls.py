"""QKeras' quantized_tanh(use_real_tanh=True) in the hls4ml flow: the threshold layer of
firmware/hls/passes.py, in C simulation against QKeras (and its exact integer replay), and
hls4ml's own lookup table, which is not exact."""

from __future__ import annotations

import re

import numpy as np
import pytest
import yaml

from firmware.hls.csim import verify_project
from tests.helpers import assert_exact, hls_layers, hls_project, randomize_quantized_weights


class _HlsConfigLoader(yaml.SafeLoader):
    """hls4ml_config.yml, its tagged values (the Keras model's path: !keras_model) read as None."""


_HlsConfigLoader.add_multi_constructor("!", lambda loader, suffix, node: None)


def _conv_dense_model():
    """A 3x3 convolution and a dense layer, each followed by a real tanh (4 bits symmetric, 8 bits
    not: one more level below)."""
    import tensorflow as tf
    from qkeras import QActivation, QConv2D, QDense, quantized_bits, quantized_tanh

    from train.models import disable_ste

    def bits(b: int):
        return quantized_bits(b, 0, alpha=1)

    inp = tf.keras.Input(shape=(5, 5, 2), name="x")
    x = QActivation(quantized_bits(6, 2, alpha=1), name="input_quant")(inp)
    x = QConv2D(3, (3, 3), kernel_quantizer=bits(4), bias_quantizer=bits(4), name="conv")(x)
    x = QActivation(quantized_tanh(4, symmetric=True, use_real_tanh=True), name="conv_act")(x)
    x = tf.keras.layers.Flatten(name="flat")(x)
    x = QDense(8, kernel_quantizer=bits(8), bias_quantizer=bits(8), name="hidden")(x)
    x = QActivation(quantized_tanh(8, symmetric=False, use_real_tanh=True), name="hidden_act")(x)
    x = QDense(4, kernel_quantizer=bits(6), bias_quantizer=bits(6), name="out")(x)
    model = tf.keras.Model(inp, x, name="real_tanh")
    randomize_quantized_weights(model, seed=1)
    disable_ste(model)
    return model


def _conv_dense_inputs(events: int = 40) -> np.ndarray:
    return (np.random.default_rng(0).integers(-32, 32, size=(events, 5, 5, 2)) * 0.125).astype(np.float32)


def _identity_model(integer: int = 0):
    """Every code of an 8-bit input (`integer` integer bits) passed unchanged (an identity dense
    layer) to an asymmetric 8-bit real tanh, the model's output."""
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits, quantized_tanh

    from train.models import disable_ste

    inp = tf.keras.Input(shape=(16,), name="x")
    x = QActivation(quantized_bits(8, integer, alpha=1), name="input_quant")(inp)
    one = quantized_bits(2, 1, alpha=1)  # -2, -1, 0, 1
    x = QDense(16, kernel_quantizer=one, bias_quantizer=one, name="identity")(x)
    x = QActivation(quantized_tanh(8, symmetric=False, use_real_tanh=True), name="tanh")(x)
    model = tf.keras.Model(inp, x, name="identity_tanh")
    model.get_layer("identity").set_weights([np.eye(16, dtype=np.float32), np.zeros(16, np.float32)])
    disable_ste(model)
    return model


@pytest.mark.slow
@pytest.mark.parametrize("backend,io_type", [
    ("Vitis", "io_parallel"), ("Catapult", "io_parallel"), ("Vitis", "io_stream"), ("Catapult", "io_stream"),
])
def test_real_tanh_is_exact(tmp_path, backend, io_type):
    project = hls_project(_conv_dense_model(), tmp_path, _conv_dense_inputs(), backend, io_type=io_type)
    layers = hls_layers(project.directory)
    assert layers["conv_act"]["class"] == layers["hidden_act"]["class"] == "QuantizedRealTanh"
    assert "nnet::tanh<" not in (project.directory / "firmware" / "myproject.cpp").read_text()
    written = yaml.load((project.directory / "hls4ml_config.yml").read_text(), _HlsConfigLoader)
    written = written["HLSConfig"]["LayerName"]
    for name in ("conv_act", "hidden_act"):  # no lookup table, so none of hls4ml's table settings
        assert "TableSize" not in written[name] and "table" not in written[name]["Precision"]
    assert_exact(verify_project(project, tmp_path / "cache", adversarial=True))


@pytest.mark.slow
def test_every_input_code_is_exact_with_out_of_range_thresholds_left_out(tmp_path):
    """The tanh's input type, sized from the weights, is fixed<9,2> ([-2, 2)), its magnitude
    ac_fixed<10,3> ([0, 2]): the thresholds beyond the input's reach are left out of the C++
    (emitted, they would wrap into ones that inputs reach), and all 256 input codes, every
    reachable threshold on both sides, come out exact."""
    codes = np.arange(-128, 128).reshape(16, 16)
    project = hls_project(_identity_model(), tmp_path, codes / 128.0, "Catapult", accumulators="weight_range")
    parameters = (project.directory / "firmware" / "parameters.h").read_text()
    magnitude = "ac_fixed<10,3,true,AC_TRN,AC_WRAP>"
    assert f"const {magnitude} magnitude = x < 0" in parameters
    rising = [float(v) for v in re.findall(rf"if \(magnitude >= {re.escape(magnitude)}\(([-0-9.e]+)\)\)", parameters)]
    # 127 rising thresholds, 4 beyond 2; the one more falling level of the asymmetric tanh, at
    # -atanh(255/256) = -3.1, is beyond -2 and not compared at all
    assert len(rising) == 123 and max(rising) < 2
    assert "if (x <= data_T(" not in parameters
    assert_exact(verify_project(project, tmp_path / "cache", adversarial=False))


@pytest.mark.slow
def test_every_input_code_is_exact_down_to_the_lowest_level_of_an_asymmetric_tanh(tmp_path):
    """Inputs in [-4, 4) reach the one level below -(1 - 1/128) that an asymmetric tanh has, at
    -atanh(255/256) = -3.12: it is compared on the input itself, after the sign is given."""
    codes = np.arange(-128, 128).reshape(16, 16)
    project = hls_project(_identity_model(integer=2), tmp_path, codes / 32.0, "Vitis", accumulators="weight_range")
    parameters = (project.directory / "firmware" / "parameters.h").read_text()
    (lowest,) = re.findall(r"if \(x <= data_T\(([-0-9.e]+)\)\) y -= lsb;", parameters)
    assert -3.2 < float(lowest) < -3.1
    assert_exact(verify_project(project, tmp_path / "cache", adversarial=False))


@pytest.mark.slow
def test_hls4ml_lookup_table_tanh_is_not_exact(tmp_path, monkeypatch):
    """Without the threshold layer, hls4ml's tanh lookup table misses the quantized steps."""
    import firmware.hls.passes as passes

    monkeypatch.setattr(passes.ExactRealTanh, "match", lambda self, node: False)
    project = hls_project(_conv_dense_model(), tmp_path, _conv_dense_inputs(), "Vitis")
    assert "QuantizedRealTanh" not in [layer["class"] for layer in hls_layers(project.directory).values()]
    report = verify_project(project, tmp_path / "cache", adversarial=False)
    assert report.error is None, report.error
    verdict = report.verdicts[0]
    assert verdict.error is None, verdict.error
    assert verdict.mismatching_events > verdict.events // 2
    assert verdict.first_differing_layer["layer"] in ("conv_act", "hidden_act")
