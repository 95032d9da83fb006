"""Helpers shared by tests and benchmarks: models with seeded random weights on their quantizers'
grids, and their exact QKeras outputs."""

from __future__ import annotations

import math

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
