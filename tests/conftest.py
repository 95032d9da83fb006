"""Shared fixtures: small model directories with seeded random weights, made without
training, for the firmware tests that do not need a trained network."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from train.models import ModelSpec, build_model

REPO = Path(__file__).resolve().parents[1]


def make_model_directory(out: Path, architecture: str = "baseline", seed: int = 0, events: int = 300,
                         spec: ModelSpec | None = None, weight_scale: float = 0.5) -> Path:
    """A model directory as the training stage writes it, with random weights snapped to
    their quantized grid and a reference set of random sparse clusters."""
    from train.fit import save_model_directory

    spec = spec or ModelSpec(architecture=architecture)
    model = build_model(spec, (13, 21, 2))
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            layer.set_weights([rng.normal(0.0, weight_scale, w.shape).astype(np.float32) for w in weights])
    clusters = rng.exponential(2.0, (events, 13, 21, 2)) * (rng.random((events, 13, 21, 2)) < 0.3)
    out.mkdir(parents=True, exist_ok=True)
    save_model_directory(out, model, spec, None, clusters.astype(np.float32), np.zeros((events, 4)),
                         {"seed": seed}, name=out.name)
    return out


@pytest.fixture(scope="session")
def random_models(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("models")
    return {arch: make_model_directory(root / arch, arch) for arch in ("baseline", "xysum")}


def tiny_model(seed: int = 3):
    """Input quantizer, a small dense layer with a tanh, and a linear output: a QKeras model that
    every backend builds in seconds; seeded random weights on the quantizers' grids."""
    import tensorflow as tf
    from qkeras import QActivation, QDense, quantized_bits, quantized_tanh

    from tests.helpers import randomize_quantized_weights
    from train.models import disable_ste

    inp = tf.keras.Input(shape=(6,), name="x")
    x = QActivation(quantized_bits(5, 3, keep_negative=True, alpha=1), name="input_quant")(inp)
    x = QDense(4, kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=quantized_bits(6, 0, alpha=1),
               name="hidden")(x)
    x = QActivation(quantized_tanh(6, symmetric=True), name="hidden_act")(x)
    x = QDense(3, kernel_quantizer=quantized_bits(6, 0, alpha=1), bias_quantizer=quantized_bits(6, 0, alpha=1),
               name="out")(x)
    model = tf.keras.Model(inp, x, name="tiny")
    randomize_quantized_weights(model, seed=seed)
    disable_ste(model)
    return model


def tiny_model_directory(out: Path, seed: int = 3, events: int = 300) -> Path:
    """A model directory (model.h5, model.json, reference.npz) of `tiny_model`, its reference
    computed by QKeras."""
    import json

    model = tiny_model(seed)
    out.mkdir(parents=True, exist_ok=True)
    model.save(out / "model.h5")
    (out / "model.json").write_text(json.dumps({"name": out.name, "quantized": True,
                                                "params": int(model.count_params())}))
    inputs = (np.random.default_rng(seed).integers(-16, 16, size=(events, 6)) * 0.5).astype(np.float32)
    np.savez(out / "reference.npz", inputs=inputs, outputs=model.predict(inputs, verbose=0))
    return out
