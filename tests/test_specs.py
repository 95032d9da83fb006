"""Model specs as files: the shipped ones load and build, every mistake is one line naming the
file and the key, a spec round-trips, and a model trained elsewhere is imported, converted and
verified exactly like one trained here."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from smartpix.errors import PipelineError
from train.specs import DEFAULT_SPEC_DIR, dump, load_spec, load_specs

SHIPPED = load_specs(DEFAULT_SPEC_DIR)


def _write(tmp_path: Path, text: str, name: str = "m") -> Path:
    path = tmp_path / f"{name}.yml"
    path.write_text(f"name: {name}\n{text}")
    return path


def test_the_shipped_specs_are_the_documented_models():
    by_name = {s.name: s for s in SHIPPED}
    assert set(by_name) >= {"baseline", "baseline_t20", "baseline_adc2", "xysum"}
    assert by_name["baseline_t20"].data_options().input_shape() == (13, 21, 20)
    assert by_name["baseline"].data_options().input_shape() == (13, 21, 2)
    adc = by_name["baseline_adc2"]
    assert adc.data_options().adc_thresholds == (400.0, 1000.0, 2000.0)
    assert (adc.model.input_bits, adc.model.input_integer, adc.model.input_signed) == (2, 2, False)
    assert by_name["xysum"].model.architecture == "xysum"
    assert by_name["baseline_tanh"].model.tanh == "real" and by_name["baseline"].model.tanh == "hard"


@pytest.mark.parametrize("spec", SHIPPED, ids=lambda s: s.name)
def test_a_spec_round_trips_to_the_same_model(spec, tmp_path):
    from train.models import build_model

    again = load_spec(_write(tmp_path, dump(spec).split("\n", 1)[1], spec.name))
    assert again.to_dict() == spec.to_dict()
    shape = spec.data_options().input_shape()
    first, second = build_model(spec.model, shape), build_model(again.model, shape)
    assert first.get_config() == second.get_config()


@pytest.mark.parametrize("body, message", [
    ("model: {architecture: baseline}\nlayers: 3\n", "unknown key 'layers'"),
    ("model: {architecture: baseline, conv_bits: 4}\n", "unknown key 'model.conv_bits'"),
    ("model: {architecture: baseline, conv_weight_bits: four}\n", "key 'model.conv_weight_bits' must be int"),
    ("model: {architecture: baseline, conv_weight_bits: 0}\n", "conv_weight_bits must be at least 1"),
    ("model: {architecture: baseline, output_bias_bits: -2}\n", "output_bias_bits must be 0 (dense_weight_bits)"),
    ("model: {architecture: baseline, output_bias_bits: 12, output_bias_integer: 12}\n",
     "output_bias_integer must be at least 0 and below the output bias' 12 bits, got 12"),
    ("model: {architecture: resnet}\n", "unknown architecture 'resnet'"),
    ("model: {architecture: baseline}\ndata: {time_slices: [0, 25]}\n", "key 'data'"),
    ("model: {architecture: baseline}\ntraining: {epochs: 2.5}\n", "key 'training.epochs' must be int"),
    ("model: {architecture: baseline}\ntraining: {optimizer: sgd}\n", "unknown key 'training.optimizer'"),
    ("model: {architecture: baseline}\nmodel_file: m.h5\n", "give exactly one of 'model'"),
    ("description: nothing to build\n", "give exactly one of 'model'"),
    ("model_file: m.h5\ninput_quantizer: {bits: 6, integer: 4, sign: 0}\n", "unknown key 'input_quantizer.sign'"),
    ("model_file: m.h5\ntraining: {epochs: 3}\n", "key 'training' does not apply"),
    # a 2-bit ADC gives levels 0..3: an input quantizer with one integer bit cannot hold them
    ("model: {architecture: baseline, input_bits: 2, input_integer: 1}\n"
     "data: {adc_thresholds: [400, 1000, 2000]}\n", "key 'model.input_bits'"),
    ("model: {architecture: baseline}\nmodel: {architecture: xysum}\n", "key 'model' appears twice"),
    ("model: {architecture: baseline, tanh: soft}\n", "model option tanh must be one of hard, real"),
    # 12-bit dense weights make dense_1's sum 7 + 11 fraction bits fine: float32 tanh misrounds there
    ("model: {architecture: baseline, tanh: real, dense_weight_bits: 12}\n",
     "key 'model.tanh': layer dense_1_act: quantized_tanh(8, use_real_tanh=True) on an input with 18 fraction bits"),
])
def test_a_bad_spec_is_one_line_naming_the_file_and_key(tmp_path, body, message):
    path = _write(tmp_path, body)
    with pytest.raises(PipelineError) as err:
        load_spec(path)
    text = str(err.value)
    assert text.startswith(str(path)) and message in text and "\n" not in text


def test_the_file_name_and_the_spec_name_must_agree(tmp_path):
    path = tmp_path / "other.yml"
    path.write_text("name: baseline\nmodel: {architecture: baseline}\n")
    with pytest.raises(PipelineError, match="key 'name' is 'baseline' but the file is named 'other.yml'"):
        load_spec(path)


def _foreign_model():
    """A smart-pixel MDN written with plain QKeras, as the upstream study writes it: no input
    quantizer (its inputs are quantized outside the model), default layer names."""
    import tensorflow as tf
    from qkeras import QActivation, QConv2D, QDense, QSeparableConv2D, quantized_bits
    from tensorflow.keras.layers import AveragePooling2D, Flatten, Input

    rng = np.random.default_rng(7)
    x_in = Input((13, 21, 2))
    v = QSeparableConv2D(3, 3, depthwise_quantizer=quantized_bits(4, 0, 1, alpha=1),
                         pointwise_quantizer=quantized_bits(4, 0, 1, alpha=1),
                         bias_quantizer=quantized_bits(4, 0, alpha=1))(x_in)
    v = QActivation("quantized_tanh(4, 0, 1)")(v)
    v = QConv2D(3, 1, kernel_quantizer=quantized_bits(4, 0, alpha=1), bias_quantizer=quantized_bits(4, 0, alpha=1))(v)
    v = QActivation("quantized_tanh(4, 0, 1)")(v)
    v = AveragePooling2D((3, 3))(v)
    v = QActivation("quantized_bits(8, 0, alpha=1)")(v)
    v = Flatten()(v)
    v = QDense(8, kernel_quantizer=quantized_bits(8, 0, alpha=1), bias_quantizer=quantized_bits(8, 0, alpha=1))(v)
    v = QActivation("quantized_tanh(8, 0, 1)")(v)
    v = QDense(14, kernel_quantizer=quantized_bits(8, 0, alpha=1), bias_quantizer=quantized_bits(8, 0, alpha=1))(v)
    model = tf.keras.Model(x_in, v)
    for layer in model.layers:
        if layer.get_weights():
            layer.set_weights([rng.normal(0, 0.4, w.shape).astype(np.float32) for w in layer.get_weights()])
    return model


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    from train.generator import generate_dataset
    from train.imported import import_model

    root = tmp_path_factory.mktemp("imported")
    generate_dataset(root / "data", n_files=4, events_per_file=200, seed=5)
    foreign = _foreign_model()
    foreign.save(root / "foreign.h5")
    spec = load_spec(_write(root, "model_file: " + str(root / "foreign.h5") + "\n"
                            "input_quantizer: {bits: 6, integer: 4, signed: false}\n", "upstream"))
    result = import_model(spec, root / "data", root / "models" / "upstream", reference_events=150)
    return root, foreign, result.directory


def test_an_imported_model_gets_the_declared_input_quantizer(imported):
    from train.models import disable_ste, load_model, snap_weights_to_quantized

    root, foreign, directory = imported
    description = json.loads((directory / "model.json").read_text())
    assert description["imported_from"] == str(root / "foreign.h5")
    reference = np.load(directory / "reference.npz")
    # the inputs are the declared grid: 0.25 ke steps, 0 to 15.75 ke
    codes = reference["inputs"] * 4
    assert np.array_equal(codes, np.round(codes)) and codes.min() >= 0 and codes.max() <= 63
    snap_weights_to_quantized(foreign)
    disable_ste(foreign)
    assert np.array_equal(reference["outputs"], foreign.predict(reference["inputs"], verbose=0))
    model = load_model(directory / "model.h5")
    assert model.layers[1].name == "input_quant" and len(model.layers) == len(foreign.layers) + 1


@pytest.mark.slow
def test_an_imported_model_converts_and_simulates_exactly(imported, tmp_path):
    from firmware.config import config_from_dict
    from firmware.hls.csim import verify_project
    from firmware.hls.project import convert

    _, _, directory = imported
    config = config_from_dict({"name": "upstream_vitis", "model": str(directory), "backend": "Vitis",
                               "part": "xcvu13p-flga2577-2-e", "clock_period_ns": 5})
    project = convert(config, tmp_path / "hls")
    report = verify_project(project, tmp_path / "cache", adversarial=True)
    assert report.exact, report
    assert sum(v.events for v in report.verdicts) > 150


def test_a_model_without_input_quantizer_needs_one_declared(imported, tmp_path):
    from train.imported import import_model

    root, _, _ = imported
    spec = load_spec(_write(tmp_path, f"model_file: {root / 'foreign.h5'}\n", "bare"))
    with pytest.raises(PipelineError, match="the model has no input quantizer; declare the one"):
        import_model(spec, root / "data", tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["baseline_t20", "baseline_adc2"])
def test_a_small_model_of_the_spec_converts_and_simulates_exactly(name, tmp_path):
    """The 20-slice input and the 2-bit ADC input through the whole C-simulation check and the
    RTL simulation, on a narrow version of the shipped spec (2 filters, hidden width 4) with
    random weights."""
    import dataclasses

    from firmware.rtl import verilator, verilog
    from tests.helpers import c_simulation, randomize_quantized_weights, reference_outputs
    from train.models import build_model, disable_ste

    spec = load_spec(DEFAULT_SPEC_DIR / f"{name}.yml")
    shape = spec.data_options().input_shape()
    model = build_model(dataclasses.replace(spec.model, n_filters=2, hidden=4), shape)
    randomize_quantized_weights(model, seed=4)
    disable_ste(model)
    rng = np.random.default_rng(4)
    top = 3.0 if spec.data_options().adc_thresholds else 15.75  # the ADC's levels, or 0.25 ke steps
    step = 1.0 if top == 3.0 else 0.25
    inputs = np.round(rng.uniform(0, top, (60, *shape)) / step) * step * (rng.random((60, *shape)) < 0.3)
    # the adversarial sets of 20 slices (10,920 hot pixels, midpoints searched among 20,000
    # clusters of 5,460 values) take minutes here; the 2-slice ADC model runs them all
    adversarial = shape[-1] == 2
    report = c_simulation(model, tmp_path, inputs, adversarial=adversarial)
    assert report.exact, report
    if adversarial:
        hot = next(v for v in report.verdicts if v.stimulus == "hot_pixels")
        assert hot.events == 2 * 13 * 21 * shape[-1]  # every pixel of every channel alone

    # the same model as Verilog, in Verilator, on the same events and every single hot pixel
    project = verilog.build_rtl(model, tmp_path / "rtl", clock_period_ns=5.0)
    simulator = verilator.build_simulator(project, tmp_path / "verilator")
    hot_pixels = np.zeros((13 * 21 * shape[-1], *shape))
    hot_pixels.reshape(len(hot_pixels), -1)[np.arange(len(hot_pixels)), np.arange(len(hot_pixels))] = top
    sets = [(set_name, events.astype(np.float32), reference_outputs(model, events.astype(np.float32)))
            for set_name, events in (("held_out", inputs), ("hot_pixels", hot_pixels))]
    for verdict in verilator.compare_sets(simulator, model, sets):
        assert verdict.exact and verdict.events > 0, verdict


def test_the_quick_profile_caps_only_the_epochs():
    from train.fit import QUICK_EPOCHS, QUICK_FLOAT_EPOCHS, TrainOptions, profiled

    for spec in load_specs(DEFAULT_SPEC_DIR):
        options = TrainOptions(**spec.training)
        assert profiled(options, "full") == options
        quick = profiled(options, "quick")
        assert (quick.float_epochs, quick.epochs) == (min(options.float_epochs, QUICK_FLOAT_EPOCHS),
                                                      min(options.epochs, QUICK_EPOCHS))
        assert quick.epochs < options.epochs, spec.name  # the shipped specs train longer than quick
        assert dataclasses.replace(quick, float_epochs=options.float_epochs, epochs=options.epochs) == options
    with pytest.raises(PipelineError, match="training profile 'fast' is not one of full, quick"):
        profiled(TrainOptions(), "fast")
