"""The exact reference every bit-exact verdict compares with.

QKeras computes in float32, which is exact only while every value fits its 24-bit significand: a
model with 16-bit weights and activations has products with 30 fraction bits, and QKeras' own
outputs are then off the true fixed-point result. The reference is therefore the integer replay
of the quantized model (`firmware.rtl.replay.replay_numpy`, integer codes, exact for any width),
returned in float64, which holds every code of up to 53 bits exactly.

QKeras is not trusted less for that: on every event its float32 outputs are compared with the
replay. Where they differ, every value of that event must have needed more than 24 significant
bits somewhere (else float32 was exact and the two disagree: an error, never a silent switch);
the reference then says how many events float32 got wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from firmware.graph import refusal
from smartpix.errors import PipelineError

FLOAT32_BITS = 24
FLOAT64_BITS = 53


@dataclass(frozen=True)
class Reference:
    """Exact outputs (n, outputs) float64 and which arithmetic gave them."""

    outputs: np.ndarray
    source: str


def exact_reference(model, inputs: np.ndarray) -> Reference:
    """The exact outputs of the quantized `model` (straight-through estimators disabled) on
    `inputs`, checked against QKeras' float32 outputs."""
    from firmware.rtl.replay import extract_graph, replay_numpy

    inputs = np.asarray(inputs, dtype=np.float32)
    graph = extract_graph(model)
    values = replay_numpy(graph, inputs)
    out = values[graph.output]
    widest = max(_significant_bits(tensor.codes) for tensor in values.values())
    if _significant_bits(out.codes) > FLOAT64_BITS:
        raise refusal(graph.output, f"its outputs need more than {FLOAT64_BITS} significant bits, more than the "
                                    "float64 reference holds")
    exact = out.values().reshape(len(inputs), -1)
    keras = np.asarray(model.predict(inputs, batch_size=2048, verbose=0), dtype=np.float64).reshape(exact.shape)
    differ = np.flatnonzero(np.any(keras != exact, axis=1))
    if len(differ) == 0:
        return Reference(exact, "QKeras (float32, equal to the exact integer replay on every event)")
    if widest <= FLOAT32_BITS:
        event = int(differ[0])
        raise PipelineError(f"QKeras and the integer replay of model {model.name} disagree on event {event} although "
                            f"every value fits float32 exactly ({widest} significant bits)")
    return Reference(exact, f"exact integer replay (QKeras' float32 differs on {len(differ)} of {len(exact)} events: "
                            f"values need up to {widest} significant bits, float32 holds {FLOAT32_BITS})")


def _significant_bits(codes: np.ndarray) -> int:
    """Bits of the widest integer code (magnitude), i.e. the significand a float needs for it."""
    codes = np.asarray(codes, dtype=np.int64)
    return int(np.abs(codes).max(initial=0)).bit_length()
