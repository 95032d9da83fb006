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


def c_simulation(model, work: Path, inputs: np.ndarray, backend: str = "Catapult", adversarial: bool = True):
    """The C-simulation report (held-out `inputs`, with `adversarial` the adversarial sets too) of
    `model` converted for `backend` in `work`."""
    from firmware.config import config_from_dict
    from firmware.hls.csim import verify_project
    from firmware.hls.project import convert

    directory = model_directory(model, Path(work) / "model", inputs)
    part, clock = PARTS[backend]
    config = config_from_dict({"name": model.name, "model": str(directory), "backend": backend, "part": part,
                               "clock_period_ns": clock})
    return verify_project(convert(config, Path(work) / "hls"), Path(work) / "cache", adversarial=adversarial)
