"""Helpers shared by tests and benchmarks: models with seeded random weights on their quantizers'
grids, their exact QKeras outputs, and a model's C-simulation verdict in one call."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from firmware.rtl.replay import quantizer_spec


def randomize_quantized_weights(model, seed: int) -> None:
    """Give every quantized layer seeded random weights on its quantizers' grids, scaled by fan-in
    so that activations are not all saturated."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        get = getattr(layer, "get_quantizers", None)
        if get is None:
            continue
        weights = layer.get_weights()
        new = []
        for w, q in zip(weights, get()):
            spec = quantizer_spec(q, layer.name) if q is not None else None
            if spec is None or spec.frac is None:
                new.append(w)
                continue
            fan_in = int(np.prod(w.shape[:-1])) if w.ndim > 1 else 4
            spread = max(1, round(spec.high * min(1.0, 2.0 / math.sqrt(fan_in))))
            codes = rng.integers(max(spec.low, -spread), min(spec.high, spread) + 1, size=w.shape)
            new.append((codes * 2.0**-spec.frac).astype(np.float32))
        new.extend(weights[len(new):])
        layer.set_weights(new)


def reference_outputs(model, events: np.ndarray, batch_size: int = 4096) -> np.ndarray:
    """QKeras' outputs for `events`, evaluated exactly (no straight-through estimator)."""
    from train.models import disable_ste

    disable_ste(model)
    return np.asarray(model.predict(np.asarray(events, dtype=np.float32), batch_size=batch_size, verbose=0))


def model_directory(model, directory: Path, inputs: np.ndarray) -> Path:
    """A model directory (model.h5, model.json, reference.npz) of `model` on `inputs`."""
    directory = Path(directory)
    directory.mkdir(parents=True)
    model.save(directory / "model.h5")
    (directory / "model.json").write_text(json.dumps({"name": model.name, "quantized": True}))
    inputs = np.asarray(inputs, dtype=np.float32)
    np.savez(directory / "reference.npz", inputs=inputs, outputs=model.predict(inputs, verbose=0))
    return directory


PARTS = {"Catapult": ("nangate-45nm", 25), "Vitis": ("xcvu13p-flga2577-2-e", 5)}


def hls_project(model, work: Path, inputs: np.ndarray, backend: str = "Catapult", **settings):
    """`model` converted for `backend` in `work` (held-out `inputs`); `settings` are further keys
    of the hardware configuration (io_type, accumulators, ...)."""
    from firmware.config import config_from_dict
    from firmware.hls.project import convert

    directory = model_directory(model, Path(work) / "model", inputs)
    part, clock = PARTS[backend]
    config = config_from_dict({"name": model.name, "model": str(directory), "backend": backend, "part": part,
                               "clock_period_ns": clock, **settings})
    return convert(config, Path(work) / "hls")


def c_simulation(model, work: Path, inputs: np.ndarray, backend: str = "Catapult", adversarial: bool = True):
    """The C-simulation report (held-out `inputs`, with `adversarial` the adversarial sets too) of
    `model` converted for `backend` in `work`."""
    from firmware.hls.csim import verify_project

    return verify_project(hls_project(model, work, inputs, backend), Path(work) / "cache", adversarial=adversarial)


def assert_exact(report) -> None:
    """Every verdict of a C-simulation report ran and found no mismatching event."""
    assert report.error is None, report.error
    for verdict in report.verdicts:
        assert verdict.error is None, verdict.error
        assert verdict.events > 0
        assert verdict.mismatching_events == 0, (verdict.stimulus, verdict.first_differing_layer)
    assert report.exact


def hls_layers(project_dir: Path) -> dict[str, dict]:
    """The hls4ml layers of a converted project by name, from its manifest."""
    manifest = json.loads((Path(project_dir) / "smartpix.json").read_text())
    return {layer["name"]: layer for layer in manifest["hls_layers"]}


def real_tanh_model(seed: int = 4, dense_input_bits: int = 8, dense_weight_bits: int = 8):
    """Input quantizer, a 3x3 convolution and a dense layer, each followed by a real tanh (4 bits
    symmetric, 8 bits asymmetric), a linear output; seeded random weights."""
    import tensorflow as tf
    from qkeras import QActivation, QConv2D, QDense, quantized_bits, quantized_tanh

    from train.models import disable_ste

    inp = tf.keras.Input(shape=(4, 5, 2), name="x")
    x = QActivation(quantized_bits(6, 2, alpha=1), name="input_quant")(inp)
    x = QConv2D(3, (3, 3), kernel_quantizer=quantized_bits(4, 0, alpha=1), bias_quantizer=quantized_bits(4, 0, alpha=1),
                name="conv")(x)
    x = QActivation(quantized_tanh(4, symmetric=True, use_real_tanh=True), name="conv_act")(x)
    x = tf.keras.layers.Flatten(name="flatten")(x)
    x = QActivation(quantized_bits(dense_input_bits, 0, alpha=1), name="requant")(x)
    x = QDense(6, kernel_quantizer=quantized_bits(dense_weight_bits, 0, alpha=1),
               bias_quantizer=quantized_bits(8, 0, alpha=1), name="hidden")(x)
    x = QActivation(quantized_tanh(8, use_real_tanh=True), name="hidden_act")(x)
    x = QDense(4, kernel_quantizer=quantized_bits(8, 0, alpha=1), bias_quantizer=quantized_bits(8, 0, alpha=1),
               name="out")(x)
    model = tf.keras.Model(inp, x, name="tiny_tanh")
    randomize_quantized_weights(model, seed=seed)
    disable_ste(model)
    return model


def real_tanh_events(n: int, seed: int = 2) -> np.ndarray:
    """Events over every code of quantized_bits(6, 2), the input quantizer of `real_tanh_model` and of
    the other (4, 5, 2) test models."""
    rng = np.random.default_rng(seed)
    return (rng.integers(-32, 32, size=(n, 4, 5, 2)) / 8).astype(np.float32)
