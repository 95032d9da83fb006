"""Firmware projects and the C simulation's verdicts, on models with random weights."""

from __future__ import annotations

import filecmp
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from firmware.config import config_from_dict
from firmware.hls.csim import verify_project
from firmware.hls.project import convert, derive_types
from smartpix.errors import PipelineError
from tests.conftest import REPO, make_model_directory


def _config(model_dir: Path, name: str = "test", **overrides):
    data = {
        "name": name,
        "model": str(model_dir),
        "backend": "Catapult",  # the fastest C++ to build and run
        "part": "nangate-45nm",
        "clock_period_ns": 25,
        **overrides,
    }
    return config_from_dict(data)


def _all_files(root: Path) -> list[Path]:
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


@pytest.mark.slow
def test_same_model_and_config_give_a_byte_identical_project(random_models, tmp_path):
    config = _config(random_models["baseline"], backend="Vitis", part="xcvu13p-flga2577-2-e", clock_period_ns=5)
    target = tmp_path / "project"
    convert(config, target)
    first = tmp_path / "first"
    shutil.move(target, first)
    convert(config, target)
    files = _all_files(target)
    assert files == _all_files(first)
    _, mismatch, errors = filecmp.cmpfiles(first, target, [str(f) for f in files], shallow=False)
    assert mismatch == [] and errors == []
    assert (target / "build_prj.tcl").is_file() and (target / "tb_data" / "tb_input_features.dat").is_file()


@pytest.mark.slow
def test_project_records_what_it_was_derived_from(random_models, tmp_path):
    project = convert(_config(random_models["baseline"]), tmp_path / "p")
    manifest = json.loads((tmp_path / "p" / "smartpix.json").read_text())
    assert manifest["input_precision"] == "ufixed<6,4,RND_CONV,SAT>"
    assert manifest["derived_types"]["conv_pointwise_act"]["result"] == "fixed<4,1,RND_CONV,SAT_SYM>"
    assert project.output_precision.signed
    # the testbench data are the model's reference events, written so that they round-trip
    reference = np.load(random_models["baseline"] / "reference.npz")
    first_line = (tmp_path / "p" / "tb_data" / "tb_input_features.dat").read_text().splitlines()[0]
    assert np.array_equal(np.array(first_line.split(), dtype=np.float64), reference["inputs"][0].reshape(-1))


@pytest.mark.parametrize("overrides, message", [
    # dense_1's sums of products need more integer and fraction bits than these
    ({"dense_1": {"precision": {"accum": "fixed<12,3>", "result": "fixed<12,3>"}}},
     "key 'layer_overrides.dense_1.precision.accum': layer dense_1: fixed<12,3,TRN,WRAP> cannot hold every value of"),
    ({"dense_1_linear": {"precision": {"result": "fixed<12,3>"}}},
     "key 'layer_overrides.dense_1_linear.precision.result': layer dense_1: fixed<12,3,TRN,WRAP> cannot hold"),
    ({"dense_2": {"precision": {"weight": "fixed<6,1>"}}},
     "key 'layer_overrides.dense_2.precision.weight': layer dense_2: fixed<6,1,TRN,WRAP> cannot hold every value"),
    # a quantizer's output is its own grid, rounding and saturation: wider is not the model either
    ({"dense_1_act": {"precision": {"result": "fixed<12,3,RND_CONV,SAT_SYM>"}}},
     "layer dense_1_act: the result of a quantizer is its own type fixed<8,1,RND_CONV,SAT_SYM>"),
])
def test_an_override_that_is_not_the_model_is_refused_up_front(random_models, tmp_path, overrides, message):
    config = _config(random_models["baseline"], layer_overrides=overrides)
    with pytest.raises(PipelineError) as err:
        convert(config, tmp_path / "p")
    assert message in str(err.value) and str(err.value).endswith("it cannot be made bit-exact")
    assert not (tmp_path / "p").exists()


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["Catapult", "Vitis"])
def test_a_wide_result_override_is_carried_to_the_output(random_models, tmp_path, backend):
    """A result type given for a dense layer reaches its linear node too, so the output keeps it
    instead of falling back to hls4ml's default type (fixed<16,6>), and the project stays exact."""
    wide = "ap_fixed<40,16>"
    part = {"Catapult": "nangate-45nm", "Vitis": "xcvu13p-flga2577-2-e"}[backend]
    config = _config(random_models["baseline"], backend=backend, part=part, layer_overrides={
        "dense_1": {"precision": {"result": wide}}, "mdn_output": {"precision": {"result": wide}}})
    project = convert(config, tmp_path / "p")
    assert (project.output_precision.width, project.output_precision.integer) == (40, 16)
    layers = json.loads((tmp_path / "p" / "smartpix.json").read_text())["hls_layers"]
    assert not [layer["name"] for layer in layers if layer["result"].startswith("fixed<16,6,")]
    report = verify_project(project, tmp_path / "cache", adversarial=True)
    assert report.exact, report


@pytest.mark.slow
def test_catapult_average_pooling_needs_the_widening_pass(random_models, tmp_path):
    """Without the pass, Catapult's pooling saturates its sum in the input type: the first
    quantizer after the pooling differs, and the full pipeline reports it."""
    script = f"""
import sys, json
sys.path.insert(0, {str(REPO)!r})
import firmware.hls.passes as passes
passes.register_catapult_passes = lambda: None
from firmware.config import config_from_dict
from firmware.hls.project import convert
from firmware.hls.csim import verify_project
config = config_from_dict({{"name": "nopass", "model": {str(random_models['baseline'])!r}, "backend": "Catapult",
                           "part": "nangate-45nm", "clock_period_ns": 25}})
report = verify_project(convert(config, __import__("pathlib").Path({str(tmp_path / 'p')!r})),
                        __import__("pathlib").Path({str(tmp_path / 'cache')!r}), adversarial=False)
v = report.verdicts[0]
print(json.dumps({{"bad": v.mismatching_events, "layer": (v.first_differing_layer or {{}}).get("layer")}}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["bad"] > 0
    assert result["layer"] == "pool_act"


@pytest.mark.slow
def test_an_aborting_testbench_is_a_per_configuration_error(random_models, tmp_path):
    # reuse factor 3 is not valid for the 5x5 pointwise product: hls4ml's C++ asserts
    config = _config(random_models["baseline"], backend="Vivado", part="xc7z020clg400-1", clock_period_ns=10,
                     io_type="io_stream", strategy="Resource",
                     layer_overrides={"conv_pointwise": {"reuse_factor": 3}})
    report = verify_project(convert(config, tmp_path / "p"), tmp_path / "cache", adversarial=False)
    assert not report.exact
    assert "SIGABRT" in report.verdicts[0].error and "Reuse Factor" in report.verdicts[0].error


def test_alpha_other_than_one_is_refused_with_the_layer(tmp_path):
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits

    inputs = tf.keras.Input((4,))
    x = QActivation(quantized_bits(6, 4, keep_negative=False, alpha=1), name="input_quant")(inputs)
    x = QDense(3, kernel_quantizer=quantized_bits(8, 0, alpha="auto_po2"),
               bias_quantizer=quantized_bits(8, 0, alpha=1), name="scaled_dense")(x)
    with pytest.raises(PipelineError) as err:
        derive_types(tf.keras.Model(inputs, x))
    assert "layer scaled_dense (kernel)" in str(err.value) and "alpha" in str(err.value)


def test_unsupported_layer_is_refused_with_the_layer():
    import tensorflow as tf
    from qkeras import QActivation, quantized_bits

    inputs = tf.keras.Input((8, 8, 1))
    x = QActivation(quantized_bits(6, 4, keep_negative=False, alpha=1), name="input_quant")(inputs)
    x = tf.keras.layers.MaxPooling2D(name="max_pool")(x)
    with pytest.raises(PipelineError, match="layer max_pool: MaxPooling2D is not supported"):
        derive_types(tf.keras.Model(inputs, x))


def test_model_without_input_quantizer_is_refused():
    import tensorflow as tf
    from qkeras import QDense, quantized_bits

    inputs = tf.keras.Input((4,), name="raw")
    x = QDense(2, kernel_quantizer=quantized_bits(8, 0, alpha=1), bias_quantizer=quantized_bits(8, 0, alpha=1))(inputs)
    with pytest.raises(PipelineError, match="layer raw: the model input must feed exactly one input quantizer"):
        derive_types(tf.keras.Model(inputs, x))


def test_float_weights_off_the_grid_are_refused(tmp_path):
    from train.models import load_model

    model_dir = make_model_directory(tmp_path / "m", events=10)
    model = load_model(model_dir / "model.h5")
    layer = model.get_layer("dense_2")
    kernel, bias = layer.get_weights()
    layer.set_weights([kernel + 1e-3, bias])
    with pytest.raises(PipelineError, match="layer dense_2: kernel values are not on the grid"):
        derive_types(model)


def test_missing_model_directory_is_one_line(tmp_path):
    with pytest.raises(PipelineError, match="does not exist"):
        convert(_config(tmp_path / "nowhere"), tmp_path / "p")
    assert not (tmp_path / "p").exists()


def test_override_of_an_unknown_layer_is_refused(random_models, tmp_path):
    config = _config(random_models["baseline"], layer_overrides={"dense_9": {"reuse_factor": 2}})
    with pytest.raises(PipelineError, match="layer_overrides names layer 'dense_9'"):
        convert(config, tmp_path / "p")
    assert not (tmp_path / "p").exists()


def test_cli_reports_bad_configuration_in_one_line(tmp_path):
    (tmp_path / "bad.yml").write_text("name: bad\nmodel: x\nbackend: Vitis\npart: p\nclock_period_ns: 5\nspeed: 3\n")
    out = subprocess.run([sys.executable, "-m", "smartpix", "csim", "--config-dir", str(tmp_path)],
                         capture_output=True, text=True, cwd=REPO)
    assert out.returncode != 0
    assert out.stderr.strip().count("\n") == 0 and "unknown key 'speed'" in out.stderr
    assert "Traceback" not in out.stderr


def test_cli_names_a_missing_compiler(random_models, tmp_path):

    (tmp_path / "ok.yml").write_text(
        f"name: ok\nmodel: {random_models['baseline']}\nbackend: Vitis\npart: p\nclock_period_ns: 5\n")
    env = {**os.environ, "CXX": "no-such-compiler"}
    out = subprocess.run([sys.executable, "-m", "smartpix", "csim", "--config-dir", str(tmp_path),
                          "--firmware-dir", str(tmp_path / "fw")], capture_output=True, text=True, cwd=REPO, env=env)
    assert out.returncode != 0
    assert "C++ compiler 'no-such-compiler' not found" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "fw").exists()
