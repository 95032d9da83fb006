"""The exact quantized real tanh: QKeras' quantized_tanh(bits, use_real_tanh=True) as threshold
comparisons on the input's integer codes, which both flows and the replay implement.

QKeras computes clip(round_half_even(tanh(x) * m) / m, -1 + symmetric / m, 1 - 1/m) with
m = 2^(bits-1). Its output code rises from k to k+1 where tanh(x) * m crosses k + 1/2, i.e. at
x = atanh((2k + 1) / 2m). For x != 0, tanh(x) is transcendental, so it never equals such a
half-way point: there are no ties, and rounding half to even decides nothing. For an input with
F fraction bits (code c, x = c 2^-F) the output code is therefore

    #{k : c >= up_k} - #{k : c <= -up_k'}

where up_k is the smallest code above atanh((2k + 1) / 2m) 2^F, for the levels the clip lets
through (m - 1 upwards; m - 1, or m when not symmetric, downwards; tanh is odd, so the downward
thresholds are the upward ones negated).

The thresholds are found with exact arithmetic: c 2^-F > atanh(y) exactly when
exp(2 c 2^-F) > (1 + y) / (1 - y), and 2 c 2^-F is a finite decimal, so Python's `decimal`
decides each comparison with far more digits than any input has.

QKeras itself evaluates tanh in float32, a few ulps off the true value. Next to a threshold that can
round to the other level: on the codes on either side of every threshold, float32 agrees with
the exact tanh for inputs with up to 15 fraction bits at 2-8 output bits, and disagrees on some
from 16-22 on (measured for every width). `float32_agrees` checks a layer's thresholds, so that a
model whose Python outputs would differ from every exact implementation is refused up front.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal, localcontext
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class TanhThresholds:
    """The codes at which the quantized tanh steps, for one output width and input grid:
    output code = #(c >= up) - #(c <= down), as a value code * 2^-(bits-1)."""

    bits: int
    symmetric: bool
    input_fraction: int
    up: tuple[int, ...]  # ascending, all positive
    down: tuple[int, ...]  # descending, all negative

    def codes(self, inputs: np.ndarray) -> np.ndarray:
        """Output codes (int64) of integer input codes."""
        c = np.asarray(inputs, dtype=np.int64)
        rises = np.searchsorted(np.asarray(self.up, dtype=np.int64), c, side="right")
        falls = np.searchsorted(-np.asarray(self.down, dtype=np.int64), -c, side="right")
        return rises.astype(np.int64) - falls.astype(np.int64)

    @property
    def output_fraction(self) -> int:
        return self.bits - 1


def _exceeds_atanh(code: int, fraction: int, level: int, m: int) -> bool:
    """code * 2^-fraction > atanh((2 level + 1) / 2m), decided exactly."""
    with localcontext() as ctx:
        ctx.prec = 60 + fraction + len(str(abs(code)))
        x = Decimal(2 * code) / Decimal(2**fraction)  # exact: a finite decimal
        bound = Decimal(2 * m + 2 * level + 1) / Decimal(2 * m - 2 * level - 1)  # (1 + y) / (1 - y)
        return x.exp() > bound


def _first_code_above(fraction: int, level: int, m: int) -> int:
    y = (2 * level + 1) / (2 * m)
    code = math.floor(math.atanh(y) * 2.0**fraction) + 1  # a guess within a code or two
    while code > 1 and _exceeds_atanh(code - 1, fraction, level, m):
        code -= 1
    while not _exceeds_atanh(code, fraction, level, m):
        code += 1
    return code


@lru_cache(maxsize=None)
def tanh_thresholds(bits: int, symmetric: bool, input_fraction: int) -> TanhThresholds:
    """The exact thresholds of quantized_tanh(bits, symmetric, use_real_tanh=True) on inputs with
    `input_fraction` fraction bits (negative: an integer grid coarser than 1)."""
    if bits < 2:
        raise ValueError("quantized_tanh needs at least 2 bits")
    m = 2 ** (bits - 1)
    if input_fraction >= 0:
        up = [_first_code_above(input_fraction, level, m) for level in range(m)]
    else:  # a coarse grid: codes count units of 2^-input_fraction
        unit = 2 ** -input_fraction
        up = [-(-_first_code_above(0, level, m) // unit) for level in range(m)]
    rises = tuple(up[: m - 1])  # the top level m is clipped away
    falls = tuple(-u for u in up[: m - 1 if symmetric else m])
    return TanhThresholds(bits, symmetric, input_fraction, rises, falls)


def float32_codes(thresholds: TanhThresholds, inputs: np.ndarray) -> np.ndarray:
    """The output codes QKeras computes (float32 tanh, round half to even, clip) for integer
    input codes: what Python's model says."""
    import tensorflow as tf

    m = np.float32(2 ** (thresholds.bits - 1))
    x = (np.asarray(inputs, dtype=np.float64) * 2.0**-thresholds.input_fraction).astype(np.float32)
    rounded = np.round(tf.tanh(x).numpy().astype(np.float32) * m)  # numpy rounds half to even, as tf.round
    low = -(m - 1) if thresholds.symmetric else -m
    return np.clip(rounded, low, m - 1).astype(np.int64)


def float32_agrees(thresholds: TanhThresholds) -> bool:
    """True when QKeras' float32 tanh takes the exact decision on both codes next to every
    threshold (far from the thresholds the two cannot differ: float32 tanh is off by a few
    ulps only). Evaluated once as a long vector and once element by element, since the
    vectorised and the scalar float32 tanh are different code."""
    near = sorted({c + d for c in thresholds.up + thresholds.down for d in (-1, 0, 1)})
    if any(abs(c) >= 2**24 for c in near):  # not even the input is exact in float32
        return False
    codes = np.asarray(near, dtype=np.int64)
    exact = thresholds.codes(codes)
    padded = np.resize(codes, max(64, len(codes)))
    vector = float32_codes(thresholds, padded)[: len(codes)]
    scalar = np.concatenate([float32_codes(thresholds, codes[i : i + 1]) for i in range(len(codes))])
    return bool(np.array_equal(vector, exact) and np.array_equal(scalar, exact))
