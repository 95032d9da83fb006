"""The one front end: the checked walk of a QKeras model that both flows read.

Expected types are written from QKeras' definitions (quantized_bits(b, i) keeps b bits, i of
them integer bits besides the sign, rounds half to even and clips), never read from the code
under test. Every refusal must be the same message in the HLS type derivation and in the RTL
replay, and every accepted model must be accepted by both."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from qkeras import (
    QActivation,
    QConv1D,
    QConv2D,
    QDense,
    QDepthwiseConv2D,
    QSeparableConv1D,
    QSeparableConv2D,
    quantized_bits,
    quantized_tanh,
)

from firmware.config import config_from_dict
from firmware.fixedpoint import Precision, parse_precision
from firmware.graph import SUPPORTED, input_quantizer_layer, model_graph
from firmware.hls.project import convert, derive_types
from firmware.rtl import replay, verilog
from firmware.rtl.flow import verilog_project
from firmware.verify import stimuli
from smartpix.errors import PipelineError
from tests.helpers import reference_outputs
from train.models import ModelSpec, build_model, disable_ste, snap_weights_to_quantized

RND_SAT = ("RND_CONV", "SAT")


def _bits(bits: int, integer: int = 0, **kwargs):
    return quantized_bits(bits, integer, alpha=1, **kwargs)


def _dense(units: int, name: str, **kwargs):
    return QDense(units, kernel_quantizer=_bits(6), bias_quantizer=_bits(6), name=name, **kwargs)


def _finish(inputs, outputs, name: str = "case"):
    """A model with its weights snapped onto their quantizers' grids by QKeras itself (the
    training stage's snapping) and without straight-through estimators."""
    model = tf.keras.Model(inputs, outputs, name=name)
    snap_weights_to_quantized(model)
    disable_ste(model)
    return model


def _messages(model, input_precision: Precision | None = None) -> tuple[str | None, str | None]:
    """What each flow says of the model: None when it accepts it, else its refusal."""
    said = []
    for flow in (derive_types, replay.extract_graph):
        try:
            flow(model, input_precision)
            said.append(None)
        except PipelineError as err:
            said.append(str(err))
    return said[0], said[1]


def _refusal(model, input_precision: Precision | None = None) -> str:
    hls, rtl = _messages(model, input_precision)
    assert hls is not None and hls == rtl, (hls, rtl)
    assert "\n" not in hls
    return hls


# --------------------------------------------------------------------------- the walk


def test_baseline_walk_has_every_layer_with_its_exact_types():
    model = build_model(ModelSpec(architecture="baseline"), (13, 21, 2))
    snap_weights_to_quantized(model)
    graph = model_graph(model)
    assert [r.name for r in graph] == [layer.name for layer in model.layers]
    assert [r.kind for r in graph][:4] == ["InputLayer", "QActivation", "QSeparableConv2D", "QActivation"]
    assert graph.input.name == "cluster" and graph.input.shape == (13, 21, 2)
    assert graph.input_quantizer == "input_quant" and graph.output == "mdn_output"
    # quantized_bits(6, 4, keep_negative=False): 6 bits, 4 of them integer, unsigned
    assert graph.input_precision == Precision(6, 4, False, *RND_SAT)
    assert graph["input_quant"].output == graph.input_precision
    assert graph["cluster"].consumers == ("input_quant",)
    assert graph["conv_separable"].inbound == ("input_quant",)
    # 4-bit weights with no integer bit: the sign and 3 fraction bits
    assert graph["conv_separable"].weights == {role: Precision(4, 1, True) for role in ("depthwise", "pointwise", "bias")}
    assert graph["conv_separable"].output is None  # an exact sum, sized by each flow
    assert graph["conv_pointwise_act"].output == Precision(4, 1, True, "RND_CONV", "SAT_SYM")
    assert graph["dense_1"].weights == {"kernel": Precision(8, 1, True), "bias": Precision(8, 1, True)}
    assert graph["pool"].rounded_by == "pool_act"
    # mean of 9 values of 3 fraction bits, rounded to 7: 7 + 1 + ceil(log2 9) fraction bits, and
    # 1 + ceil(log2 9) integer bits for the sum
    assert graph["pool"].output == Precision(17, 5, True)
    assert graph["flatten"].output == graph["pool_act"].output == Precision(8, 1, True, *RND_SAT)
    assert graph["mdn_output"].shape == (14,)
    codes, fraction = graph["dense_1"].weight_codes("kernel")
    np.testing.assert_array_equal(codes * 2.0**-fraction, model.get_layer("dense_1").get_weights()[0])


def test_xysum_walk_records_the_branches():
    model = build_model(ModelSpec(architecture="xysum"), (13, 21, 2))
    snap_weights_to_quantized(model)
    graph = model_graph(model)
    assert graph["input_quant"].consumers == ("pool_x", "pool_y")
    assert graph["profiles"].inbound == ("flatten_y", "flatten_x")
    assert graph["pool_x"].rounded_by == "pool_x_act" and graph["pool_y"].rounded_by == "pool_y_act"
    # quantized_bits(8, 4, keep_negative=False) rounds the means
    assert graph["pool_x_act"].output == Precision(8, 4, False, *RND_SAT)
    assert graph["profile_y"].shape == (13, 2) and graph["profile_x"].shape == (21, 2)


def test_a_sequential_model_walks_like_its_functional_twin():
    layers = [QActivation(_bits(6, 4, keep_negative=False), name="front"), _dense(3, "out")]
    sequential = tf.keras.Sequential([tf.keras.Input((5,)), *layers])
    snap_weights_to_quantized(sequential)
    graph = model_graph(sequential)
    assert [r.kind for r in graph] == ["InputLayer", "QActivation", "QDense"]
    assert graph.input_quantizer == "front" and graph.output == "out"
    assert _messages(sequential) == (None, None)


def test_every_supported_layer_has_a_replay_handler():
    assert set(replay._HANDLERS) == set(SUPPORTED) - {"InputLayer"}


# --------------------------------------------------------------------------- the input quantizer


def _decoy_model():
    """The input quantizer is 'front'; a later QActivation is named 'input_quant'."""
    inp = tf.keras.Input((6,), name="x")
    x = QActivation(_bits(6, 4, keep_negative=False), name="front")(inp)
    x = _dense(4, "hidden")(x)
    x = QActivation(_bits(8, 2), name="input_quant")(x)
    return _finish(inp, _dense(2, "out")(x), "decoy")


def test_the_input_quantizer_is_found_through_the_graph_not_by_name():
    from train.fit import quantize_inputs

    model = _decoy_model()
    assert model_graph(model).input_quantizer == "front"
    assert input_quantizer_layer(model).name == "front"
    assert replay.extract_graph(model).input.name == "front"
    assert derive_types(model)[1].layer == "front"
    events = np.linspace(-3.0, 20.0, 6 * 40).reshape(40, 6).astype(np.float32)
    # ufixed<6,4>: steps of 0.25 from 0 to 15.75, rounding half to even
    expected = np.clip(np.rint(events.astype(np.float64) * 4), 0, 63) / 4
    np.testing.assert_array_equal(quantize_inputs(model, events), expected)


def test_rounding_midpoints_are_sought_at_the_first_quantizer_after_the_input_quantizer():
    """All candidates, ordered by the number of exact ties at the input of the QActivation named
    'input_quant' (the first quantizer after the input quantizer 'front'): had 'front' been taken
    for a rounding quantizer, no event would tie there (its inputs are on its grid) and the order
    would be the candidates' own."""
    model = _decoy_model()
    precision = model_graph(model).input_precision
    events = stimuli.midpoint_events(model, precision, np.random.default_rng(0), n_events=400,
                                     n_candidates=400, n_quantizers=1)
    probe = tf.keras.Model(model.inputs, model.get_layer("input_quant").input)
    # quantized_bits(8, 2): the sign, 2 integer and 5 fraction bits
    scaled = probe.predict(events, verbose=0).astype(np.float64) * 2.0**5
    ties = np.sum(scaled - np.floor(scaled) == 0.5, axis=1)
    assert ties[0] > ties[-1]
    assert np.all(np.diff(ties) <= 0)


# --------------------------------------------------------------------------- one verdict for both flows


def _model_directory(model, out: Path, events: np.ndarray) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.h5")
    (out / "model.json").write_text(json.dumps({"name": out.name, "quantized": True}))
    np.savez(out / "reference.npz", inputs=events, outputs=reference_outputs(model, events))
    return out


def _dropout_model():
    inp = tf.keras.Input((8,), name="x")
    x = QActivation(_bits(6, 4, keep_negative=False), name="front")(inp)
    x = _dense(6, "hidden")(x)
    x = QActivation(quantized_tanh(6, symmetric=True), name="hidden_act")(x)
    x = tf.keras.layers.Dropout(0.5, name="drop")(x)
    model = _finish(inp, _dense(3, "out")(x), "with_dropout")
    rng = np.random.default_rng(1)
    for layer in (model.get_layer("hidden"), model.get_layer("out")):
        layer.set_weights([rng.integers(-31, 32, size=w.shape).astype(np.float32) / 32 for w in layer.get_weights()])
    return model


def _events(model, n: int, seed: int) -> np.ndarray:
    """Input codes over the whole ufixed<6,4> range, ties of every later quantizer included."""
    shape = model.input_shape[1:]
    return (np.random.default_rng(seed).integers(0, 64, size=(n, *shape)) * 0.25).astype(np.float32)


def test_dropout_is_accepted_by_both_flows_and_the_identity(tmp_path):
    model = _dropout_model()
    assert _messages(model) == (None, None)
    assert "drop" not in [t.layer for t in derive_types(model)]  # hls4ml removes it
    graph = replay.extract_graph(model)
    events = _events(model, 500, seed=2)
    out = replay.replay_numpy(graph, events)[graph.output]
    np.testing.assert_array_equal(out.values(), reference_outputs(model, events).astype(np.float64))
    directory = _model_directory(model, tmp_path / "with_dropout", events)
    config = config_from_dict({"name": "dropout", "model": str(directory), "backend": "Catapult",
                               "part": "nangate-45nm", "clock_period_ns": 25})
    project = convert(config, tmp_path / "hls")
    manifest = json.loads((project.directory / "smartpix.json").read_text())
    assert "drop" not in manifest["derived_types"]
    assert "drop" not in [layer["name"] for layer in manifest["hls_layers"]]


@pytest.mark.slow
def test_dropout_model_is_bit_exact_in_c_simulation(tmp_path):
    from firmware.hls.csim import verify_project

    model = _dropout_model()
    directory = _model_directory(model, tmp_path / "with_dropout", _events(model, 300, seed=3))
    config = config_from_dict({"name": "dropout", "model": str(directory), "backend": "Catapult",
                               "part": "nangate-45nm", "clock_period_ns": 25})
    report = verify_project(convert(config, tmp_path / "hls"), tmp_path / "cache")
    assert report.exact, report
    assert sum(v.events for v in report.verdicts) > 300


def test_depthwise_convolution_is_refused_by_both_flows_alike():
    inp = tf.keras.Input((6, 7, 2), name="x")
    x = QActivation(_bits(6, 4, keep_negative=False), name="front")(inp)
    x = QDepthwiseConv2D(3, depthwise_quantizer=_bits(4), bias_quantizer=_bits(4), name="depthwise")(x)
    x = QActivation(quantized_tanh(6, symmetric=True), name="act")(x)
    x = tf.keras.layers.Flatten(name="flat")(x)
    message = _refusal(_finish(inp, _dense(3, "out")(x)))
    assert message.startswith("layer depthwise: QDepthwiseConv2D is not supported")


def _chain(*layers, shape=(6, 6, 1)):
    """Input, input quantizer, then `layers` in a row."""
    inp = tf.keras.Input(shape, name="x")
    x = QActivation(_bits(6, 4, keep_negative=False), name="front")(inp)
    for layer in layers:
        x = layer(x)
    return _finish(inp, x)


def _conv(name: str, **kwargs):
    return QConv2D(2, 3, kernel_quantizer=_bits(4), bias_quantizer=_bits(4), name=name, **kwargs)


def _act(name: str, bits: int = 8, integer: int = 2):
    return QActivation(_bits(bits, integer), name=name)


def _two_inputs():
    a, b = tf.keras.Input((3,), name="a"), tf.keras.Input((3,), name="b")
    qa = QActivation(_bits(6, 4), name="qa")(a)
    qb = QActivation(_bits(6, 4), name="qb")(b)
    return _finish([a, b], tf.keras.layers.Concatenate(name="cat")([qa, qb]))


def _two_outputs():
    inp = tf.keras.Input((3,), name="x")
    x = QActivation(_bits(6, 4), name="front")(inp)
    return _finish(inp, [_dense(2, "left")(x), _dense(2, "right")(x)])


def _shared_layer():
    inp = tf.keras.Input((4,), name="x")
    x = QActivation(_bits(6, 4), name="front")(inp)
    shared = _dense(4, "shared")
    return _finish(inp, shared(_act("mid")(shared(x))))


def _input_feeds_two():
    inp = tf.keras.Input((4,), name="x")
    a = QActivation(_bits(6, 4), name="qa")(inp)
    b = QActivation(_bits(6, 4), name="qb")(inp)
    return _finish(inp, tf.keras.layers.Concatenate(name="cat")([a, b]))


def _no_input_quantizer():
    inp = tf.keras.Input((4,), name="x")
    return _finish(inp, _dense(2, "first")(inp))


def _pool_feeds_two():
    inp = tf.keras.Input((6, 6, 1), name="x")
    x = QActivation(_bits(6, 4, keep_negative=False), name="front")(inp)
    pool = tf.keras.layers.AveragePooling2D(3, name="split_pool")(x)
    a = tf.keras.layers.Flatten(name="fa")(_act("qa", 8, 4)(pool))
    b = tf.keras.layers.Flatten(name="fb")(_act("qb", 8, 4)(pool))
    return _finish(inp, tf.keras.layers.Concatenate(name="cat")([a, b]))


def _mixed_concatenation():
    inp = tf.keras.Input((4,), name="x")
    x = QActivation(_bits(6, 4), name="front")(inp)
    return _finish(inp, tf.keras.layers.Concatenate(name="mixed")([_act("a", 8, 2)(x), _act("b", 6, 2)(x)]))


def _input_through_flatten():
    inp = tf.keras.Input((2, 2), name="x")
    return _finish(inp, _act("late")(tf.keras.layers.Flatten(name="flat")(inp)))


def _off_grid():
    model = _chain(tf.keras.layers.Flatten(), _dense(2, "drifted"))
    kernel, bias = model.get_layer("drifted").get_weights()
    model.get_layer("drifted").set_weights([kernel + 1e-3, bias])
    return model


REFUSALS = [
    ("unsupported layer", lambda: _chain(tf.keras.layers.MaxPooling2D(2, name="maxpool")),
     "layer maxpool: MaxPooling2D is not supported"),
    ("Keras activation", lambda: _chain(tf.keras.layers.Activation("relu", name="plain")),
     "layer plain: Activation is not supported"),
    ("separable 1-D", lambda: _chain(QSeparableConv1D(2, 3, depthwise_quantizer=_bits(4), pointwise_quantizer=_bits(4),
                                                      bias_quantizer=_bits(4), name="sep1d"), shape=(9, 2)),
     "layer sep1d: QSeparableConv1D is not supported"),
    ("fused activation", lambda: _chain(tf.keras.layers.Flatten(), _dense(3, "fused", activation="relu")),
     "layer fused: a fused activation (relu)"),
    ("fused quantizer", lambda: _chain(tf.keras.layers.Flatten(),
                                       _dense(3, "fused_q", activation=quantized_tanh(4, symmetric=True))),
     "layer fused_q: a fused activation (quantized_tanh)"),
    ("no bias", lambda: _chain(tf.keras.layers.Flatten(), QDense(3, kernel_quantizer=_bits(6), use_bias=False,
                                                                 name="nobias")),
     "layer nobias: layers without bias are not supported"),
    ("same padding", lambda: _chain(_conv("same_conv", padding="same")), "layer same_conv: padding 'same'"),
    ("dilation", lambda: _chain(QConv1D(2, 2, dilation_rate=2, kernel_quantizer=_bits(4), bias_quantizer=_bits(4),
                                        name="dilated"), shape=(9, 2)),
     "layer dilated: dilation (2,)"),
    ("depth multiplier", lambda: _chain(QSeparableConv2D(2, 3, depth_multiplier=2, depthwise_quantizer=_bits(4),
                                                         pointwise_quantizer=_bits(4), bias_quantizer=_bits(4),
                                                         name="deep_sep")),
     "layer deep_sep: depth_multiplier 2"),
    ("dense on 2-D", lambda: _chain(_dense(2, "flat_needed"), shape=(3, 4)),
     "layer flat_needed: QDense on a 2-D input"),
    ("overlapping pool", lambda: _chain(tf.keras.layers.AveragePooling2D(2, strides=1, name="overlap"), _act("a")),
     "layer overlap: strides (1, 1) differ from the pool size (2, 2)"),
    ("same-padded pool", lambda: _chain(tf.keras.layers.AveragePooling2D(2, padding="same", name="padded"), _act("a")),
     "layer padded: padding 'same'"),
    ("pool without quantizer", lambda: _chain(tf.keras.layers.AveragePooling2D(3, name="lone_pool"),
                                              tf.keras.layers.Flatten()),
     "layer lone_pool: average pooling over 9 values (not a power of two) must be followed by a quantizer"),
    ("pool with two quantizers", _pool_feeds_two,
     "layer split_pool: average pooling over 9 values (not a power of two) must be followed by a quantizer"),
    ("pool of a sum", lambda: _chain(_conv("conv"), tf.keras.layers.AveragePooling2D(2, name="sum_pool"), _act("a")),
     "layer sum_pool: average pooling must read quantized values"),
    ("mixed concatenation", _mixed_concatenation, "layer mixed: concatenated inputs must share one fixed-point type"),
    ("two inputs", _two_inputs, "the model has 2 inputs"),
    ("two outputs", _two_outputs, "the model has 2 outputs"),
    ("shared layer", _shared_layer, "layer shared: a layer called more than once (a shared layer)"),
    ("input feeds two layers", _input_feeds_two, "layer x: the model input must feed exactly one input quantizer"),
    ("no input quantizer", _no_input_quantizer, "layer x: the model input must feed exactly one input quantizer"),
    ("input through Flatten", _input_through_flatten,
     "layer x: the model input must feed exactly one input quantizer"),
    ("weights off the grid", _off_grid, "layer drifted: kernel values are not on the grid of fixed<6,1>"),
    ("float weights", lambda: _chain(tf.keras.layers.Flatten(), QDense(2, name="float_dense")),
     "layer float_dense (kernel): has float weights without a quantizer"),
    ("scaled weights", lambda: _chain(tf.keras.layers.Flatten(),
                                      QDense(2, kernel_quantizer=quantized_bits(4, 0, alpha="auto_po2"),
                                             bias_quantizer=_bits(4), name="scaled")),
     "layer scaled (kernel): quantized_bits has alpha='auto_po2'"),
    ("sign quantizer", lambda: _chain(QActivation(quantized_bits(1, 0, alpha=1), name="sign")),
     "layer sign: quantized_bits(1) is a sign (binary) quantizer"),
]


@pytest.mark.parametrize("build, expected", [case[1:] for case in REFUSALS], ids=[case[0] for case in REFUSALS])
def test_what_either_flow_cannot_make_exact_is_refused_by_both_with_one_message(build, expected):
    message = _refusal(build())
    assert expected in message
    assert message.endswith("it cannot be made bit-exact")


def test_tanh_on_another_internal_sigmoid_is_refused_by_both():
    from qkeras.quantizers import set_internal_sigmoid

    model = _chain(QActivation(quantized_tanh(4, symmetric=True), name="tanh"))
    assert _messages(model) == (None, None)
    set_internal_sigmoid("smooth")
    try:
        message = _refusal(model)
    finally:
        set_internal_sigmoid("hard")
    assert "layer tanh: quantized_tanh with QKeras' internal sigmoid other than 'hard'" in message
    assert _messages(model) == (None, None)


# --------------------------------------------------------------------------- input_precision


def test_input_precision_of_the_quantizer_grid_is_accepted_and_changes_nothing():
    model = _decoy_model()
    for text in ("ap_ufixed<6,4>", "ap_ufixed<6,4,AP_RND_CONV,AP_SAT>"):
        assert _messages(model, parse_precision(text)) == (None, None)
        assert derive_types(model, parse_precision(text))[0].precision["result"] == Precision(6, 4, False, *RND_SAT)


@pytest.mark.parametrize("text, why", [
    ("ap_ufixed<5,4>", "it cannot hold every value of the model's input"),  # one fraction bit fewer
    ("ap_ufixed<6,3>", "it cannot hold every value of the model's input"),  # half the range
    ("ap_fixed<6,5>", "it cannot hold every value of the model's input"),  # signed: half the steps
    ("ap_ufixed<8,5>", "a wider type changes nothing the model sees"),
    ("ap_fixed<16,6>", "a wider type changes nothing the model sees"),
])
def test_an_input_precision_other_than_the_quantizer_is_refused_by_both(text, why):
    message = _refusal(_decoy_model(), parse_precision(text))
    assert message.startswith(f"key 'input_precision': {parse_precision(text).hls4ml()} is not the model's "
                              f"input type ufixed<6,4,RND_CONV,SAT> (its input quantizer, layer front)")
    assert why in message
    assert message.endswith("omit input_precision: it is derived from the model's input quantizer")


def test_input_precision_is_checked_by_the_project_and_the_verilog_alike(tmp_path):
    model = _decoy_model()
    narrow = parse_precision("ap_ufixed<5,4>")
    expected = _refusal(model, narrow)
    directory = _model_directory(model, tmp_path / "decoy", _events(model, 20, seed=4))
    config = config_from_dict({"name": "narrow", "model": str(directory), "backend": "Catapult",
                               "part": "nangate-45nm", "clock_period_ns": 25, "input_precision": "ap_ufixed<5,4>"})
    with pytest.raises(PipelineError) as hls:
        convert(config, tmp_path / "hls")
    with pytest.raises(PipelineError) as rtl:
        verilog.build_rtl(model, tmp_path / "rtl", input_precision=narrow)
    # the open flow of `make synth` refuses it as well, before its cache is consulted
    with pytest.raises(PipelineError) as flow:
        verilog_project(config, tmp_path / "flow", tmp_path / "cache")
    assert str(hls.value) == str(rtl.value) == str(flow.value) == expected
    assert not [p for p in tmp_path.iterdir() if p.name in ("hls", "rtl", "flow", "cache")]
