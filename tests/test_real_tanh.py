"""The exact quantized real tanh (QKeras' quantized_tanh(use_real_tanh=True)): its thresholds, the
model walk's acceptance and refusals, and the open flow's replay, trace and Verilog.

Expected codes come from numpy's float64 tanh and rint (half to even), independent of the
thresholds under test; on grids of at most 12 fraction bits every input is more than 2^-14 from a
threshold, far beyond float64's error."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from firmware.graph import model_graph
from firmware.rtl import replay, verilator, verilog
from firmware.tanh import float32_agrees, tanh_thresholds
from firmware.verify import stimuli
from smartpix.errors import PipelineError
from tests.helpers import randomize_quantized_weights, real_tanh_events, real_tanh_model, reference_outputs
from train.models import disable_ste


def _expected_codes(codes: np.ndarray, bits: int, symmetric: bool, fraction: int) -> np.ndarray:
    m = 2 ** (bits - 1)
    rounded = np.rint(np.tanh(codes * 2.0**-fraction) * m)
    return np.clip(rounded, -(m - 1) if symmetric else -m, m - 1).astype(np.int64)


@pytest.mark.parametrize("bits", [2, 4, 8])
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("fraction", [-1, 0, 3, 12])
def test_thresholds_give_the_rounded_tanh_on_every_code(bits, symmetric, fraction):
    thresholds = tanh_thresholds(bits, symmetric, fraction)
    codes = np.arange(-(2 ** max(fraction + 4, 4)), 2 ** max(fraction + 4, 4) + 1)
    assert np.array_equal(thresholds.codes(codes), _expected_codes(codes, bits, symmetric, fraction))
    assert len(thresholds.up) == 2 ** (bits - 1) - 1
    assert len(thresholds.down) == 2 ** (bits - 1) - int(symmetric)


def test_first_threshold_of_four_bits_at_ten_fraction_bits():
    # tanh(x) * 8 reaches 1/2 at x = atanh(1/16) = 0.062581..., i.e. 64.08 codes of 2^-10
    assert tanh_thresholds(4, True, 10).up[0] == 65


def test_float32_tanh_agrees_on_fine_grids_only():
    assert float32_agrees(tanh_thresholds(8, True, 14))
    assert float32_agrees(tanh_thresholds(4, True, 15))
    assert not float32_agrees(tanh_thresholds(8, True, 20))


def test_walk_gives_each_real_tanh_the_thresholds_of_its_input_grid():
    graph = model_graph(real_tanh_model())
    # the convolution sums 3-fraction-bit inputs times 3-fraction-bit weights; the dense layer
    # 7-bit inputs times 7-bit weights
    assert graph["conv_act"].tanh == tanh_thresholds(4, True, 6)
    assert graph["hidden_act"].tanh == tanh_thresholds(8, False, 14)
    assert graph["requant"].tanh is None


def test_real_tanh_on_too_fine_a_grid_or_as_input_quantizer_is_refused_by_name():
    with pytest.raises(PipelineError, match=r"layer hidden_act: quantized_tanh\(8, use_real_tanh=True\) on an input "
                                            r"with 22 fraction bits"):
        model_graph(real_tanh_model(dense_input_bits=12, dense_weight_bits=12))

    from qkeras import QActivation, quantized_tanh

    inp = tf.keras.Input(shape=(3,), name="x")
    out = QActivation(quantized_tanh(4, use_real_tanh=True), name="input_quant")(inp)
    with pytest.raises(PipelineError, match="layer input_quant: quantized_tanh.use_real_tanh=True. is supported only"):
        model_graph(tf.keras.Model(inp, out))


def test_replay_and_trace_equal_qkeras_and_the_real_tanh_is_not_the_hard_one():
    model = real_tanh_model()
    graph = replay.extract_graph(model)
    events = real_tanh_events(2000)
    replayed = replay.replay_numpy(graph, events)
    assert np.array_equal(replayed[graph.output].values(), reference_outputs(model, events).astype(np.float64))
    # on these events the real and the hard tanh part ways (the hard one is clip(x, -1, 1))
    conv_sum = replayed["conv"]
    hard = np.clip(np.rint(conv_sum.values() * 8), -7, 7)
    assert np.count_nonzero(hard != replayed["conv_act"].codes) > 100
    inp, traced = replay.trace_graph(graph)
    assert replay.locate_first_difference(graph, model, events[:300], traced=traced, inp=inp)["layer"] is None


def test_trace_stays_exact_through_a_chain_of_real_tanh_layers():
    """Four dense layers, each with a real tanh: a trace whose comparisons carry a shrinking
    scale from layer to layer, or compare exactly at a threshold, goes wrong after two or three."""
    from qkeras import QActivation, QDense, quantized_bits, quantized_tanh

    inp = tf.keras.Input(shape=(6,), name="x")
    x = QActivation(quantized_bits(6, 2, alpha=1), name="input_quant")(inp)
    for k in range(4):
        x = QDense(8, kernel_quantizer=quantized_bits(8, 0, alpha=1), bias_quantizer=quantized_bits(8, 0, alpha=1),
                   name=f"dense_{k}")(x)
        x = QActivation(quantized_tanh(8, symmetric=True, use_real_tanh=True), name=f"tanh_{k}")(x)
    x = QDense(2, kernel_quantizer=quantized_bits(8, 0, alpha=1), bias_quantizer=quantized_bits(8, 0, alpha=1),
               name="out")(x)
    model = tf.keras.Model(inp, x, name="tanh_chain")
    randomize_quantized_weights(model, seed=0)
    disable_ste(model)
    events = (np.random.default_rng(0).integers(-64, 64, size=(3000, 6)) / 8).astype(np.float32)
    graph = replay.extract_graph(model)
    inp_vars, traced = replay.trace_graph(graph)
    assert replay.locate_first_difference(graph, model, events, traced=traced, inp=inp_vars)["layer"] is None


def test_adversarial_events_put_the_first_real_tanh_next_to_its_thresholds():
    model = real_tanh_model()
    graph = model_graph(model)
    thresholds = graph["conv_act"].tanh
    edges = [*thresholds.up, *thresholds.down, *(c - 1 for c in thresholds.up), *(c + 1 for c in thresholds.down)]
    replayed = replay.extract_graph(model)

    def edge_hits(events: np.ndarray) -> int:
        sums = replay.replay_numpy(replayed, events)["conv"]
        assert sums.frac == thresholds.input_fraction
        return int(np.isin(sums.codes, edges).sum())

    chosen = stimuli.midpoint_events(model, graph.input_precision, np.random.default_rng(0), n_events=50,
                                     n_candidates=2000, n_quantizers=1)
    assert edge_hits(chosen) > 3 * edge_hits(real_tanh_events(50)) > 0


@pytest.mark.slow
def test_real_tanh_verilog_is_bit_exact(tmp_path):
    model = real_tanh_model()
    project = verilog.build_rtl(model, tmp_path / "rtl", clock_period_ns=2.0)
    sim = verilator.build_simulator(project, tmp_path / "cache")
    events = real_tanh_events(3000, seed=3)
    (verdict,) = verilator.compare_sets(sim, model, [("random", events, reference_outputs(model, events))])
    assert verdict.exact, verdict
    assert verdict.events == 3000
