"""Type derivation: each QKeras quantizer against its derived C++ type on every input.

For a table of quantizers, the derived ap_fixed type is instantiated in a small C++ program
built with hls4ml's own headers, which runs the hls4ml activation (linear cast, relu,
hard_tanh) on a dense grid of inputs: every value of the output grid, every rounding
midpoint, and values far outside the range. Its outputs must equal QKeras' to the bit.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from firmware.fixedpoint import Precision
from firmware.graph import average_pool_precision, quantizer_precision, weight_precision
from smartpix.errors import PipelineError

HLS4ML_TEMPLATES = Path(__import__("hls4ml").__file__).parent / "templates" / "vivado"

# (quantizer expression, hls4ml function applied before the cast)
TABLE = [
    ("quantized_bits(8, 0, alpha=1)", "linear"),
    ("quantized_bits(8, 0, symmetric=1, alpha=1)", "linear"),
    ("quantized_bits(6, 4, keep_negative=False, alpha=1)", "linear"),
    ("quantized_bits(4, 2, alpha=1)", "linear"),
    ("quantized_bits(5, 5, keep_negative=False, alpha=1)", "linear"),
    ("quantized_bits(4, 3, alpha=1)", "linear"),
    ("quantized_bits(10, 1, symmetric=1, alpha=1)", "linear"),
    ("quantized_relu(4, 0)", "relu"),
    ("quantized_relu(6, 2)", "relu"),
    ("quantized_tanh(4, symmetric=True)", "hard_tanh"),
    ("quantized_tanh(8, symmetric=True)", "hard_tanh"),
    ("quantized_tanh(6)", "hard_tanh"),
]

def _quantizer(expr: str):
    """A QKeras quantizer from its expression in the table."""
    import qkeras

    return eval(expr, {name: getattr(qkeras, name) for name in
                       ("quantized_bits", "quantized_relu", "quantized_tanh", "quantized_po2")})


_PROGRAM = """
#include <cstdio>
#include <vector>
#include "ap_fixed.h"
#include "nnet_utils/nnet_activation.h"

typedef ap_fixed<64, 32> wide_t;  // every test input is exact in it
typedef ap_ufixed<2, 0> slope_t;
struct hard_config {
    static const unsigned n_in = 1;
    static const slope_t slope;
    static const slope_t shift;
    static const unsigned io_type = nnet::io_parallel;
    static const unsigned reuse_factor = 1;
};
const slope_t hard_config::slope = 0.5;
const slope_t hard_config::shift = 0.5;
struct relu_config : nnet::activ_config { static const unsigned n_in = 1; };

template <class T> double apply(const char *function, double x) {
    wide_t in[1] = {wide_t(x)};
    T out[1];
    if (function[0] == 'l') out[0] = in[0];
    else if (function[0] == 'r') nnet::relu<wide_t, T, relu_config>(in, out);
    else nnet::hard_tanh<wide_t, T, hard_config>(in, out);
    return out[0].to_double();
}

int main() {
    int which; double x;
    while (std::scanf("%d %lf", &which, &x) == 2) {
        double y = 0;
        switch (which) {
@CASES@
        }
        std::printf("%.17g\\n", y);
    }
    return 0;
}
"""


def _inputs(precision: Precision) -> np.ndarray:
    """Every multiple of a quarter LSB over twice the type's range, plus far-out values."""
    low, high = precision.code_range()
    lsb = precision.lsb
    grid = np.arange(4 * (2 * low - 4), 4 * (2 * high + 4) + 1) * (lsb / 4)
    return np.concatenate([grid, [-1e3, -3.7, 3.7, 1e3]])


@pytest.fixture(scope="module")
def cpp_results(tmp_path_factory):
    work = tmp_path_factory.mktemp("types")
    derived = [quantizer_precision(_quantizer(expr), expr) for expr, _ in TABLE]
    cases = "\n".join(
        f'        case {i}: y = apply<{p.ap()}>("{function}", x); break;'
        for i, (p, (_, function)) in enumerate(zip(derived, TABLE))
    )
    source = work / "types.cpp"
    source.write_text(_PROGRAM.replace("@CASES@", cases))
    binary = work / "types"
    subprocess.run(
        ["g++", "-O1", "-std=c++14", "-w", f"-I{HLS4ML_TEMPLATES / 'ap_types'}", f"-I{HLS4ML_TEMPLATES}",
         str(source), "-o", str(binary)],
        check=True,
    )
    lines, index = [], []
    for i, p in enumerate(derived):
        values = _inputs(p)
        lines += [f"{i} {v!r}" for v in values]
        index.append((i, values))
    out = subprocess.run([str(binary)], input="\n".join(lines), capture_output=True, text=True, check=True)
    results = np.array([float(v) for v in out.stdout.split()])
    by_case, offset = {}, 0
    for i, values in index:
        by_case[i] = (values, results[offset:offset + len(values)])
        offset += len(values)
    return derived, by_case


@pytest.mark.parametrize("case", range(len(TABLE)), ids=[expr for expr, _ in TABLE])
def test_derived_type_reproduces_qkeras(cpp_results, case):
    derived, by_case = cpp_results
    quantizer = _quantizer(TABLE[case][0])
    quantizer.use_ste = False  # inference semantics: exactly q(x)
    inputs, cpp = by_case[case]
    expected = np.asarray(quantizer(inputs.astype(np.float32)), dtype=np.float64)
    mismatches = np.flatnonzero(expected != cpp)
    assert len(mismatches) == 0, (
        f"{TABLE[case][0]} as {derived[case].ap()}: {len(mismatches)} of {len(inputs)} inputs differ, "
        f"first x={inputs[mismatches[0]]!r}: QKeras {expected[mismatches[0]]!r}, C++ {cpp[mismatches[0]]!r}"
    )
    # the grid covers ties: at least one input sits exactly halfway between two outputs
    lsb = derived[case].lsb
    assert np.any(np.mod(inputs / lsb, 1.0) == 0.5)


def test_unsigned_quantized_bits_is_not_what_hls4ml_derives():
    """hls4ml's own mapping gives quantized_bits(6,4,keep_negative=False) one integer bit
    too many (signed fixed<6,5>): a grid of 0.5 where QKeras has 0.25."""
    from qkeras import quantized_bits

    from firmware.thirdparty import hls4ml_quantizer_precision

    ours = quantizer_precision(quantized_bits(6, 4, keep_negative=False, alpha=1), "x")
    theirs = hls4ml_quantizer_precision(quantized_bits(6, 4, keep_negative=False, alpha=1))
    assert (ours.width, ours.integer, ours.signed) == (6, 4, False)
    assert (theirs.width - theirs.integer) != ours.fraction


@pytest.mark.parametrize(
    "expr, reason",
    [
        ("quantized_bits(8, 0, alpha='auto_po2')", "alpha="),
        ("quantized_bits(8, 0, alpha=0.5)", "alpha="),
        ("quantized_bits(8, 0, alpha=1, use_stochastic_rounding=True)", "stochastic rounding"),
        ("quantized_tanh(8, use_real_tanh=True)", "use_real_tanh"),
        ("quantized_relu(4, 0, negative_slope=0.25)", "negative slope"),
        ("quantized_po2(4)", "not supported"),
    ],
)
def test_inexact_quantizers_are_refused_by_layer(expr, reason):
    with pytest.raises(PipelineError) as err:
        quantizer_precision(_quantizer(expr), "dense_7")
    assert "layer dense_7" in str(err.value) and reason in str(err.value)


def test_weights_without_quantizer_are_refused():
    with pytest.raises(PipelineError, match="float weights"):
        weight_precision(None, "dense_1 (kernel)")


def _round_half_even(x: np.ndarray) -> np.ndarray:
    return np.round(x)  # numpy rounds half to even, as tf.round does


@pytest.mark.parametrize("pool, data, following",
                         [(9, Precision(4, 1, True), Precision(8, 1, True)),
                          (21, Precision(6, 4, False), Precision(8, 4, False)),
                          (13, Precision(6, 4, False), Precision(8, 4, False)),
                          (4, Precision(4, 1, True), None)])
def test_average_pool_type_keeps_every_rounding_decision(pool, data, following):
    """Every reachable sum of `pool` inputs, divided with truncation to the derived type,
    then rounded to the following quantizer's grid, equals rounding the exact mean."""
    wide = average_pool_precision(data, pool, following, "pool")
    low, high = data.code_range()
    sums = np.arange(pool * low, pool * high + 1, dtype=np.int64)  # in input LSBs
    exact_mean = sums / pool * data.lsb
    # the division of the wide type: truncation toward zero to `wide.fraction` bits
    scale = 2.0 ** wide.fraction
    truncated = np.trunc(sums * (scale * data.lsb) / pool) / scale
    floored = np.floor(sums * (scale * data.lsb) / pool) / scale
    if following is None:
        assert np.array_equal(truncated, exact_mean)
        return
    f = 2.0 ** following.fraction
    want = _round_half_even(exact_mean * f)
    assert np.array_equal(_round_half_even(truncated * f), want)
    assert np.array_equal(_round_half_even(floored * f), want)
    # and one fraction bit fewer than derived is not enough for at least one of the pools
    if pool == 9:
        coarse = 2.0 ** (wide.fraction - 3)
        cut = np.trunc(sums * (coarse * data.lsb) / pool) / coarse
        assert not np.array_equal(_round_half_even(cut * f), want)


def test_average_pool_without_following_quantizer_is_refused():
    with pytest.raises(PipelineError, match="must be followed by a quantizer"):
        average_pool_precision(Precision(4, 1, True), 9, None, "pool")
