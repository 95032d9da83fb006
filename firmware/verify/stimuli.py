"""Inputs that try hardest to break exactness, all on the model's input grid.

- zeros, and every pixel at the input maximum (saturating charge);
- single hot pixels: each pixel of each channel alone, at the maximum and at a mid code;
- uniform random codes over the whole input range;
- rounding midpoints: from many random candidates, the events whose values at the first
  quantizers' inputs fall most often exactly halfway between two grid points, where
  round-half-to-even and any other rounding disagree.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from firmware.fixedpoint import Precision
from smartpix.errors import PipelineError


@dataclass(frozen=True)
class StimulusSet:
    name: str
    inputs: np.ndarray  # (n, *input_shape) float32, on the input grid


def input_grid(precision: Precision) -> tuple[float, int, int]:
    """(lsb, lowest code, highest code) of the input type."""
    low, high = precision.code_range()
    return precision.lsb, low, high


def adversarial_sets(
    model, input_precision: Precision, seed: int, n_random: int = 2000, n_midpoint: int = 500
) -> list[StimulusSet]:
    """Every adversarial set for `model`, deterministic for `seed`."""
    shape = tuple(int(d) for d in model.input_shape[1:])
    lsb, low, high = input_grid(input_precision)
    rng = np.random.default_rng(seed)
    size = int(np.prod(shape))

    zeros = np.zeros((1, *shape), dtype=np.float32)
    full = np.full((1, *shape), high * lsb, dtype=np.float32)
    lowest = np.full((1, *shape), low * lsb, dtype=np.float32)

    hot = np.zeros((2 * size, size), dtype=np.float32)
    hot[np.arange(size), np.arange(size)] = high * lsb
    hot[size + np.arange(size), np.arange(size)] = ((high + low) // 2 or 1) * lsb
    hot = hot.reshape(-1, *shape)

    random_codes = rng.integers(low, high + 1, size=(n_random, *shape)).astype(np.float32) * lsb

    return [
        StimulusSet("extremes", np.concatenate([zeros, full, lowest]).astype(np.float32)),
        StimulusSet("hot_pixels", hot),
        StimulusSet("random_codes", random_codes.astype(np.float32)),
        StimulusSet("rounding_midpoints", midpoint_events(model, input_precision, rng, n_midpoint)),
    ]


def midpoint_events(model, input_precision: Precision, rng: np.random.Generator, n_events: int,
                    n_candidates: int = 20000, n_quantizers: int = 2) -> np.ndarray:
    """Events whose values at the inputs of the first `n_quantizers` rounding quantizers hit
    exact rounding midpoints most often (for a real tanh: the codes next to its thresholds)."""
    import tensorflow as tf

    from firmware.graph import model_graph

    shape = tuple(int(d) for d in model.input_shape[1:])
    lsb, low, high = input_grid(input_precision)
    # Sparse clusters with small codes: pre-activations near the quantizers' ranges.
    codes = rng.integers(low, high + 1, size=(n_candidates, *shape))
    mask = rng.random((n_candidates, *shape)) < rng.uniform(0.05, 0.5, size=(n_candidates,) + (1,) * len(shape))
    small = rng.integers(max(low, -8), min(high, 8) + 1, size=(n_candidates, *shape))
    candidates = np.where(mask, np.where(rng.random(mask.shape) < 0.5, small, codes), 0).astype(np.float32) * lsb

    graph = model_graph(model)
    quantizers = [record for record in graph
                  if record.kind == "QActivation" and record.name != graph.input_quantizer][:n_quantizers]
    if not quantizers:
        return candidates[:n_events]
    probes = tf.keras.Model(model.inputs, [record.keras.input for record in quantizers])
    values = probes.predict(candidates, batch_size=4096, verbose=0)
    values = values if isinstance(values, list) else [values]
    ties = np.zeros(n_candidates, dtype=np.int64)
    for record, pre in zip(quantizers, values):
        if record.tanh is not None:  # no ties: the codes on either side of a threshold instead
            codes = pre.astype(np.float64).reshape(n_candidates, -1) * 2.0**record.tanh.input_fraction
            edges = [*record.tanh.up, *record.tanh.down]
            edges += [c - 1 for c in record.tanh.up] + [c + 1 for c in record.tanh.down]
            ties += np.sum(np.isin(codes, edges), axis=1)
            continue
        scaled = pre.astype(np.float64).reshape(n_candidates, -1) * 2.0**record.output.fraction
        ties += np.sum(scaled - np.floor(scaled) == 0.5, axis=1)
    order = np.argsort(-ties, kind="stable")
    return candidates[order[:n_events]]


class EventSet(NamedTuple):
    """Events of one kind and their exact expected outputs, with the arithmetic that gave them."""

    name: str
    inputs: np.ndarray
    expected: np.ndarray
    reference: str = ""


def verification_sets(model_dir: Path, model, input_precision: Precision, seed: int = 0,
                      adversarial: bool = True) -> list[EventSet]:
    """The event sets of a bit-exact check: the model directory's held-out reference events,
    then (with `adversarial`) every adversarial set, each with its exact expected outputs
    (`firmware.verify.reference`). `model` must have its straight-through estimators disabled,
    so that QKeras' outputs are the quantized values it is checked against."""
    from firmware.verify.reference import exact_reference

    path = Path(model_dir) / "reference.npz"
    if not path.is_file():
        raise PipelineError(f"{path} is missing (the training stage writes it)")
    with np.load(path) as reference:
        if "inputs" not in reference:
            raise PipelineError(f"{path}: expected an array 'inputs'")
        named = [("held_out", reference["inputs"])]
    if adversarial:
        named += [(stimulus.name, stimulus.inputs) for stimulus in adversarial_sets(model, input_precision, seed)]
    sets = []
    for name, inputs in named:
        exact = exact_reference(model, inputs)
        sets.append(EventSet(name, inputs, exact.outputs, exact.source))
    return sets
