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
