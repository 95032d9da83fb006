"""Catapult with io_stream: concatenations of 1D streams (the xysum model's `profiles`, two
dense branches) and the baseline model, in C simulation against QKeras."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from firmware.config import config_from_dict
from firmware.hls.csim import verify_project
from firmware.hls.project import convert
from tests.conftest import REPO, make_model_directory
from tests.helpers import assert_exact, hls_layers


def _stream_config(model_dir: Path, name: str = "x"):
    return config_from_dict({
        "name": name,
        "model": str(model_dir),
        "backend": "Catapult",
        "part": "nangate-45nm",
        "clock_period_ns": 25,
        "io_type": "io_stream",
    })


def _assert_exact(report, adversarial: bool) -> None:
    stimuli = [v.stimulus for v in report.verdicts]
    assert stimuli[0] == "held_out" and (len(stimuli) > 1) == adversarial
    assert_exact(report)


@pytest.mark.slow
def test_xysum_is_exact_on_held_out_and_adversarial_events(tmp_path):
    model_dir = make_model_directory(tmp_path / "xysum", "xysum", events=60)
    project = convert(_stream_config(model_dir), tmp_path / "p")
    layers = hls_layers(tmp_path / "p")
    # the concatenation is done on rows of 5 (the Conv1D filters), then viewed as 150 values
    assert layers["profiles"]["size"] == 150 and layers["profiles_flat"]["size"] == 150
    assert "nnet::concatenate1d" not in (tmp_path / "p" / "firmware" / "myproject.cpp").read_text()
    _assert_exact(verify_project(project, tmp_path / "cache", adversarial=True), adversarial=True)


@pytest.mark.slow
def test_xysum_profiles_differ_without_the_concatenation_pass(tmp_path):
    """hls4ml's own Catapult concatenate1d: every event is wrong from `profiles` on."""
    model_dir = make_model_directory(tmp_path / "xysum", "xysum", events=20)
    script = f"""
import sys, json
from pathlib import Path
sys.path.insert(0, {str(REPO)!r})
import firmware.hls.passes as passes
passes.StreamConcatenate1D.match = lambda self, node: False
from firmware.config import config_from_dict
from firmware.hls.project import convert
from firmware.hls.csim import verify_project
config = config_from_dict({{"name": "nopass", "model": {str(model_dir)!r}, "backend": "Catapult",
                           "part": "nangate-45nm", "clock_period_ns": 25, "io_type": "io_stream"}})
report = verify_project(convert(config, Path({str(tmp_path / 'p')!r})), Path({str(tmp_path / 'cache')!r}),
                        adversarial=False)
v = report.verdicts[0]
print(json.dumps({{"events": v.events, "bad": v.mismatching_events, "error": v.error,
                  "layer": (v.first_differing_layer or {{}}).get("layer")}}))
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["error"] is None
    assert result["events"] == 20 and result["bad"] == 20
    assert result["layer"] == "profiles"


def _two_branch_model_directory(out: Path, head: bool, events: int = 80) -> Path:
    """Two dense branches of different widths (6 and 4 values, one packet each) concatenated,
    followed by a dense layer or ending the model; seeded random weights on their grids."""
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits, quantized_tanh

    from tests.helpers import randomize_quantized_weights
    from train.models import disable_ste

    def dense(x, units, name):
        q = quantized_bits(6, 0, alpha=1)
        return QDense(units, kernel_quantizer=q, bias_quantizer=q, name=name)(x)

    inp = tf.keras.Input(shape=(6,), name="x")
    x = QActivation(quantized_bits(5, 3, keep_negative=True, alpha=1), name="input_quant")(inp)
    a = QActivation(quantized_tanh(6, symmetric=True), name="a_act")(dense(x, 6, "a"))
    b = QActivation(quantized_tanh(6, symmetric=True), name="b_act")(dense(x, 4, "b"))
    y = tf.keras.layers.Concatenate(name="joined")([a, b])
    if head:
        y = dense(y, 3, "out")
    model = tf.keras.Model(inp, y, name="two_branch")
    randomize_quantized_weights(model, seed=5)
    disable_ste(model)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.h5")
    (out / "model.json").write_text(json.dumps({"name": out.name, "quantized": True,
                                                "params": int(model.count_params())}))
    inputs = (np.random.default_rng(1).integers(-16, 16, size=(events, 6)) * 0.5).astype(np.float32)
    np.savez(out / "reference.npz", inputs=inputs, outputs=model.predict(inputs, verbose=0))
    return out


@pytest.mark.slow
@pytest.mark.parametrize("head", [True, False], ids=["inside", "model_output"])
def test_concatenation_of_different_packet_sizes_is_exact(tmp_path, head):
    model_dir = _two_branch_model_directory(tmp_path / "two", head)
    project = convert(_stream_config(model_dir), tmp_path / "p")
    layers = hls_layers(tmp_path / "p")
    # packets of 6 and 4 values are cut into rows of 2 before the concatenation
    assert layers["joined_rows0"]["size"] == 6 and layers["joined_rows1"]["size"] == 4
    assert layers["joined_flat"]["size"] == 10
    assert project.output_precision.width > 0
    _assert_exact(verify_project(project, tmp_path / "cache", adversarial=True), adversarial=True)


@pytest.mark.slow
def test_baseline_stays_exact(tmp_path):
    model_dir = make_model_directory(tmp_path / "baseline", "baseline", events=60)
    project = convert(_stream_config(model_dir), tmp_path / "p")
    assert not any(name.endswith(("_rows0", "_flat")) for name in hls_layers(tmp_path / "p"))
    _assert_exact(verify_project(project, tmp_path / "cache", adversarial=True), adversarial=True)
