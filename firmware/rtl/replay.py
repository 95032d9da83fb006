"""Open RTL flow, step 1: the quantized QKeras model as Verilog, through da4ml, with no vendor tool.

da4ml cannot read QKeras models, so the model's layers are replayed here from their quantized
weights, twice, with the same QKeras semantics:
- on numpy integer codes (`replay_numpy`): the exact integer reference of the replay, used to name
  the first layer where hardware and QKeras part ways;
- on da4ml's symbolic fixed-point variables (`trace_graph`), which da4ml turns into shift-and-add
  Verilog (`build_rtl`), pipelined at a number of adder levels per clock cycle.

Exactness, layer by layer:
- every quantizer (quantized_bits, quantized_tanh, quantized_relu) is "round half to even to f
  fraction bits, then clip"; da4ml only truncates, so half-to-even is built from its operations:
  with w = x + 2^-(f+1) - 2^-F (F the fraction bits of x), RHE(x) = floor(w + b 2^-F) where b is
  the bit of weight 2^-f of w (see `trace_round_half_even`);
- dense and convolution layers are exact sums of products (da4ml sizes every adder from the
  value ranges, so nothing wraps);
- the real tanh (quantized_tanh(use_real_tanh=True)) is a count of threshold comparisons
  (`firmware.tanh`), each the sign of the difference to a point half an LSB below (or above) the
  threshold, with the thresholds of each input variable's own grid;
- average pooling over N values has no division in hardware: the window sum s (LSB 2^-g) is
  multiplied by an integer constant M, offset by b and truncated by K bits, with (M, K, b) found
  and verified exhaustively so that floor((s M + b) / 2^K) equals round_half_even(s 2^(f-g) / N)
  for every reachable s (`design_pool_divider`); where exact ties are reachable, the truncation
  keeps enough extra bits and the half-to-even step above follows.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np

from firmware.fixedpoint import Precision
from firmware.graph import LayerRecord, ModelGraph, check_input_precision, model_graph, quantizer_precision, refusal
from firmware.tanh import tanh_thresholds
from firmware.thirdparty import da4ml_variables, solve_constant_matrix, variable_costs, variables_behind
from smartpix.errors import PipelineError

log = logging.getLogger(__name__)

# da4ml's constant-matrix optimiser: extra adder depth allowed beyond the minimum (its CLI default).
HARD_DC = 2
MAX_SHIFT_SEARCH = 40


# ---------------------------------------------------------------------------------------------
# Quantizers: every supported one is "round half to even to `frac` bits, then clip the codes"


@dataclass(frozen=True)
class QuantSpec:
    """Round half to even to `frac` fraction bits, then clip the integer codes to [low, high]."""

    frac: int
    low: int
    high: int
    description: str

    @classmethod
    def of(cls, precision: Precision, description: str) -> "QuantSpec":
        """The rounding and clipping of a quantizer whose exact output type is `precision`."""
        low, high = precision.code_range()
        return cls(precision.fraction, low, high, description)

    def output_format(self) -> Precision:
        """The smallest word that holds every code of the spec."""
        signed = self.low < 0
        magnitude = max(-self.low, self.high + 1)
        bits = max(1, math.ceil(math.log2(magnitude))) + int(signed)
        return Precision(bits, bits - self.frac, signed)


def quantizer_spec(quantizer: Any, where: str) -> QuantSpec | None:
    """The exact rounding and clipping of a QKeras quantizer (None: no quantizer), on the grid and
    range of its exact type (`firmware.graph.quantizer_precision`, which refuses the inexact ones)."""
    if quantizer is None:
        return None
    return QuantSpec.of(quantizer_precision(quantizer, where), str(quantizer))


def round_half_even_shift(codes: np.ndarray, shift: int) -> np.ndarray:
    """Integer codes at F fraction bits -> codes at F - shift bits, rounding half to even
    (for shift <= 0 an exact left shift)."""
    codes = np.asarray(codes, dtype=np.int64)
    if shift <= 0:
        return codes << -shift
    low = codes >> shift  # floor division by 2**shift
    remainder = codes - (low << shift)
    half = np.int64(1) << (shift - 1)
    up = (remainder > half) | ((remainder == half) & ((low & 1) == 1))
    return low + up.astype(np.int64)


def quantize_float(values: np.ndarray, spec: QuantSpec) -> np.ndarray:
    """A QKeras quantizer applied to float values, as integer codes at spec.frac bits."""
    scaled = np.asarray(values, dtype=np.float64) * 2.0**spec.frac
    codes = np.rint(scaled).astype(np.int64)  # rint rounds half to even, like tf.round
    return _clip(codes, spec.low, spec.high)


def _clip(codes: np.ndarray, low: int, high: int) -> np.ndarray:
    return np.minimum(np.maximum(codes, low), high)


# ---------------------------------------------------------------------------------------------
# Average pooling without division


def pool_round_reference(sums: np.ndarray, count: int, in_frac: int, out_frac: int) -> np.ndarray:
    """round_half_even(s * 2**(out_frac - in_frac) / count) for integer window sums s, exactly."""
    s = np.asarray(sums, dtype=np.int64)
    num = s << max(out_frac - in_frac, 0)
    den = np.int64(count) << max(in_frac - out_frac, 0)
    q, r = np.divmod(2 * num + den, 2 * den)  # q = floor(num/den + 1/2)
    tie = r == 0
    return q - (tie & ((q & 1) == 1)).astype(np.int64)


@dataclass(frozen=True)
class PoolDivider:
    """Division-free average pooling: for every window sum s in [s_min, s_max] (LSB 2^-in_frac),
    floor((s * multiplier + offset) / 2**shift) is round_half_even(s 2^(out_frac-in_frac) / count)
    when `ties` is False; when ties are reachable it is floor(s 2^(target_frac-in_frac) / count),
    with target_frac - out_frac extra bits that make the following half-to-even step exact."""

    count: int
    in_frac: int
    out_frac: int
    s_min: int
    s_max: int
    ties: bool
    target_frac: int
    multiplier: int
    shift: int
    offset: int

    def apply(self, sums: np.ndarray) -> np.ndarray:
        """The hardware's integer result for window sums (codes at target_frac bits)."""
        s = np.asarray(sums, dtype=object)
        out = (s * self.multiplier + self.offset) // (1 << self.shift)
        return out.astype(np.int64)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def design_pool_divider(count: int, in_frac: int, out_frac: int, s_min: int, s_max: int,
                        where: str = "pooling") -> PoolDivider:
    """Find the smallest shift K (and multiplier M, offset b) whose truncated product reproduces
    QKeras' rounding of the window mean for every reachable sum; verified exhaustively."""
    if count < 1 or s_min > s_max:
        raise PipelineError(f"layer {where}: empty pooling window or sum range")
    if s_max - s_min > 50_000_000:
        raise refusal(where, f"pooling sum range [{s_min}, {s_max}] too wide to verify exhaustively")
    s = np.arange(s_min, s_max + 1, dtype=np.int64)
    num = s << max(out_frac - in_frac, 0)
    den = count << max(in_frac - out_frac, 0)
    ties = bool(np.any((2 * num + den) % (2 * den) == 0))
    if not ties:
        target_frac = out_frac
        target = pool_round_reference(s, count, in_frac, out_frac)
    else:
        # A non-tie mean is at least 1/(2 N 2^max(g-f,0)) output LSBs away from a tie; keeping
        # h extra bits with 2^-h below that distance keeps every decision, ties exact included.
        extra = math.ceil(math.log2(count)) + max(in_frac - out_frac, 0) + 1
        target_frac = out_frac + extra
        target = np.floor_divide(s << (target_frac - in_frac), count)
    slope = Fraction(2) ** (target_frac - in_frac) / count  # target units per unit of s
    s_obj = s.astype(object)
    target_obj = target.astype(object)
    for shift in range(MAX_SHIFT_SEARCH + 1):
        exact = slope * 2**shift
        for multiplier in sorted({math.floor(exact), math.ceil(exact)}):
            if multiplier == 0 and s_min != s_max:
                continue
            prod = s_obj * multiplier
            lo = max(target_obj * (1 << shift) - prod)
            hi = min((target_obj + 1) * (1 << shift) - prod) - 1
            if lo > hi:
                continue
            offset = _cheapest_in(int(lo), int(hi))
            divider = PoolDivider(count, in_frac, out_frac, s_min, s_max, ties, target_frac,
                                  int(multiplier), shift, offset)
            if not np.array_equal(divider.apply(s), target):  # the exhaustive proof
                continue
            return divider
    raise refusal(where, f"no multiply-and-truncate division by {count} found for sums in [{s_min}, {s_max}]")


def _cheapest_in(lo: int, hi: int) -> int:
    """The integer in [lo, hi] with the most trailing zero bits (0 if inside): the cheapest constant."""
    if lo <= 0 <= hi:
        return 0
    best = lo
    for bit in range(max(abs(lo), abs(hi)).bit_length() + 1, -1, -1):
        step = 1 << bit
        candidate = -(-lo // step) * step
        if candidate <= hi:
            best = candidate
            break
    return best


# ---------------------------------------------------------------------------------------------
# The replay graph: one node per hardware step, each with a numpy and a da4ml interpretation


@dataclass
class IntTensor:
    """A batch of fixed-point values as integer codes: value = codes * 2**-frac."""

    codes: np.ndarray
    frac: int

    def values(self) -> np.ndarray:
        return self.codes.astype(np.float64) * 2.0**-self.frac

    def aligned(self, frac: int) -> np.ndarray:
        return self.codes << (frac - self.frac) if frac >= self.frac else self.codes >> (self.frac - frac)


@dataclass
class TraceContext:
    """Settings and caches for one da4ml trace."""

    hwconf: Any
    hard_dc: int = HARD_DC
    dividers: dict[tuple[int, int, int, int, int], PoolDivider] = field(default_factory=dict)
    divider_override: Callable[[PoolDivider], PoolDivider] | None = None


@dataclass
class Node:
    """One step of the replay. `name` is the Keras layer whose output it produces (sub-steps of a
    layer are named 'layer:part'); `keras_layer` is that layer when its output is comparable."""

    name: str
    inputs: tuple[str, ...]
    out_shape: tuple[int, ...]

    @property
    def kind(self) -> str:
        return type(self).__name__.removesuffix("Node").lower()

    @property
    def keras_layer(self) -> str | None:
        return None if ":" in self.name else self.name

    def numpy(self, *xs: IntTensor) -> IntTensor:
        raise NotImplementedError

    def trace(self, ctx: TraceContext, *xs: Any) -> Any:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "inputs": list(self.inputs), "shape": list(self.out_shape)}


@dataclass
class InputNode(Node):
    quant: QuantSpec = None  # type: ignore[assignment]

    def input_format(self) -> Precision:
        """The word of the input codes (the input quantizer's grid)."""
        return self.quant.output_format()

    def numpy(self, *xs: IntTensor) -> IntTensor:
        raise PipelineError("the input node takes float events, use replay_numpy")

    def trace(self, ctx: TraceContext, *xs: Any) -> Any:
        from da4ml.trace import FixedVariableArray

        lsb = 2.0 ** -self.quant.frac
        shape = self.out_shape
        return FixedVariableArray.from_lhs(
            np.full(shape, self.quant.low * lsb), np.full(shape, self.quant.high * lsb),
            np.full(shape, lsb), ctx.hwconf)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "quantizer": self.quant.description, "format": str(self.input_format())}


@dataclass
class MatmulNode(Node):
    """Dense, convolution (1-D/2-D, depthwise, pointwise): gather each output position's inputs
    (`index` into the flattened input, None for dense), multiply by a constant integer matrix,
    add the bias. All exact."""

    index: np.ndarray | None = None  # (positions, K) or None
    matrix: np.ndarray = None  # type: ignore[assignment]  # (K, out_channels) integer codes
    matrix_frac: int = 0
    bias: np.ndarray | None = None  # (out_channels,) integer codes
    bias_frac: int = 0

    def numpy(self, *xs: IntTensor) -> IntTensor:
        (x,) = xs
        n = x.codes.shape[0]
        flat = x.codes.reshape(n, -1)
        rows = flat if self.index is None else flat[:, self.index]
        acc = rows @ self.matrix  # (n, [positions,] out)
        frac = x.frac + self.matrix_frac
        if self.bias is not None:
            if self.bias_frac <= frac:
                acc = acc + (self.bias << (frac - self.bias_frac))
            else:
                acc = (acc << (self.bias_frac - frac)) + self.bias
                frac = self.bias_frac
        return IntTensor(acc.reshape(n, *self.out_shape), frac)

    def trace(self, ctx: TraceContext, *xs: Any) -> Any:
        from da4ml.trace import FixedVariableArray

        (x,) = xs
        flat = da4ml_variables(x).ravel()
        rows = flat[None, :] if self.index is None else flat[self.index]
        weights = self.matrix.astype(np.float64) * 2.0**-self.matrix_frac
        out = _constant_matmul(rows, weights, ctx)
        if self.bias is not None:
            bias = self.bias.astype(np.float64) * 2.0**-self.bias_frac
            out = np.array([[v + float(b) for v, b in zip(row, bias)] for row in out], dtype=object)
        return FixedVariableArray(out.reshape(self.out_shape))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "matrix": list(self.matrix.shape), "weight_frac": self.matrix_frac,
                "positions": 1 if self.index is None else int(self.index.shape[0]),
                "bias_frac": self.bias_frac if self.bias is not None else None}


def _constant_matmul(rows: np.ndarray, weights: np.ndarray, ctx: TraceContext) -> np.ndarray:
    """rows (P, K) of variables times a constant (K, O) matrix: da4ml's constant-matrix optimiser
    runs once per distinct row signature (value ranges and arrival times) and is reused."""
    kernel = np.ascontiguousarray(weights.astype(np.float32))
    if not np.array_equal(kernel.astype(np.float64), weights):
        raise PipelineError("a weight is not exactly representable for the constant-matrix optimiser")
    solutions: dict[tuple, Any] = {}
    out = np.empty((rows.shape[0], weights.shape[1]), dtype=object)
    for p, row in enumerate(rows):
        key = tuple((v.low, v.high, v.step, v.latency) for v in row)
        sol = solutions.get(key)
        if sol is None:
            sol = solve_constant_matrix(kernel, row, ctx.hard_dc, ctx.hwconf.adder_size, ctx.hwconf.carry_size)
            solutions[key] = sol
        out[p] = sol(row)
    return out


@dataclass
class QuantNode(Node):
    quant: QuantSpec = None  # type: ignore[assignment]

    def numpy(self, *xs: IntTensor) -> IntTensor:
        (x,) = xs
        codes = round_half_even_shift(x.codes, x.frac - self.quant.frac)
        return IntTensor(_clip(codes, self.quant.low, self.quant.high), self.quant.frac)

    def trace(self, ctx: TraceContext, *xs: Any) -> Any:
        from da4ml.trace import FixedVariableArray

        (x,) = xs
        out = np.array([trace_quantize(v, self.quant) for v in da4ml_variables(x).ravel()], dtype=object)
        return FixedVariableArray(out.reshape(self.out_shape))

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "quantizer": self.quant.description,
                "format": str(self.quant.output_format()), "rounding": "half to even"}


@dataclass
class TanhNode(Node):
    """QKeras' quantized real tanh: output code = #(c >= up) - #(c <= down) on the input codes c
    (`firmware.tanh`), the thresholds exact for the input's grid."""

    bits: int = 0
    symmetric: bool = True
    description: str = ""

    def numpy(self, *xs: IntTensor) -> IntTensor:
        (x,) = xs
        return IntTensor(tanh_thresholds(self.bits, self.symmetric, x.frac).codes(x.codes), self.bits - 1)

    def trace(self, ctx: TraceContext, *xs: Any) -> Any:
        from da4ml.trace import FixedVariableArray

        (x,) = xs
        out = np.array([self._trace_one(v) for v in da4ml_variables(x).ravel()], dtype=object)
        return FixedVariableArray(out.reshape(self.out_shape))

    def _trace_one(self, v: Any) -> Any:
        """The count of rising thresholds that |v| reaches, with v's sign: tanh is odd, so the
        falling thresholds are the rising ones negated (a tanh that is not symmetric has one more
        level below, compared on v itself). That halves the comparisons and the adder tree at
        the price of one absolute value and one sign selection. Each comparison is made half an
        input LSB off the threshold, where the difference is never zero: da4ml's sign selection
        of a variable it keeps negated takes the other branch at zero. The selected constants
        (scale 1) keep the output's scale plain; a sign bit extracted by shifts carries a scale
        that shrinks with every layer, past what da4ml's interpreter evaluates exactly.
        Thresholds outside the range are constants."""
        lsb = 2.0 ** -(self.bits - 1)
        if v.low == v.high:  # a constant (an all-zero weight column): no hardware
            return float(self.numpy(IntTensor(*_dyadic_code(float(v.low)))).codes[0]) * lsb
        frac = v.kif[2]
        thresholds = tanh_thresholds(self.bits, self.symmetric, frac)
        half = 2.0 ** -(frac + 1)
        magnitude = -v if v.high <= 0 else v.abs()
        levels = _count_reached(magnitude, [code * 2.0**-frac for code in thresholds.up], half, lsb)
        if v.low < 0 < v.high and not isinstance(levels, float):
            signed = v.msb_mux(-levels, levels)
        else:
            signed = -levels if v.high <= 0 else levels
        lowest = thresholds.down[len(thresholds.up):]  # the one more level of a tanh that is not symmetric
        return signed - _count_reached(-v, [-code * 2.0**-frac for code in lowest], half, lsb)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "quantizer": self.description,
                "format": f"fixed<{self.bits},1>", "thresholds": "exact tanh, per input grid"}


def _dyadic_code(value: float) -> tuple[np.ndarray, int]:
    """(code, fraction bits) of a dyadic value: value = code * 2**-fraction."""
    exact = Fraction(value)
    frac = max(0, exact.denominator.bit_length() - 1)
    return np.array([int(exact * 2**frac)], dtype=np.int64), frac


@dataclass
class PoolNode(Node):
    """Average pooling (valid padding) fused with the quantizer that follows it, whose rounding
    decides the division; without a quantizer only power-of-two windows (exact) are allowed."""

    index: np.ndarray = None  # type: ignore[assignment]  # (out positions * channels, count)
    count: int = 1
    quant: QuantSpec | None = None
    pool_layer: str = ""

    @property
    def keras_layer(self) -> str | None:
        return self.name

    def numpy(self, *xs: IntTensor) -> IntTensor:
        (x,) = xs
        n = x.codes.shape[0]
        sums = x.codes.reshape(n, -1)[:, self.index].sum(axis=-1)
        if self.quant is None:
            shift = self.count.bit_length() - 1
            return IntTensor(sums.reshape(n, *self.out_shape), x.frac + shift)
        codes = pool_round_reference(sums, self.count, x.frac, self.quant.frac)
        codes = _clip(codes, self.quant.low, self.quant.high)
        return IntTensor(codes.reshape(n, *self.out_shape), self.quant.frac)

    def trace(self, ctx: TraceContext, *xs: Any) -> Any:
        from da4ml.trace import FixedVariableArray

        (x,) = xs
        flat = da4ml_variables(x).ravel()
        out = []
        for window in self.index:
            total = _adder_tree([flat[i] for i in window])
            if self.quant is None:
                out.append(total * 2.0 ** -(self.count.bit_length() - 1))
                continue
            out.append(self._divide(ctx, total))
        return FixedVariableArray(np.array(out, dtype=object).reshape(self.out_shape))

    def _divide(self, ctx: TraceContext, total: Any) -> Any:
        quant = self.quant
        assert quant is not None
        step = Fraction(str(total.step))
        g = -int(math.log2(step))
        if Fraction(2) ** -g != step:
            raise refusal(self.name, f"pooling sum step {step} is not a power of two")
        s_min, s_max = int(Fraction(str(total.low)) / step), int(Fraction(str(total.high)) / step)
        key = (self.count, g, quant.frac, s_min, s_max)
        divider = ctx.dividers.get(key)
        if divider is None:
            divider = design_pool_divider(self.count, g, quant.frac, s_min, s_max, self.name)
            if ctx.divider_override is not None:
                divider = ctx.divider_override(divider)
            ctx.dividers[key] = divider
        t = divider.target_frac
        scaled = (total * divider.multiplier) * 2.0 ** (g - divider.shift - t)
        if divider.offset:
            scaled = scaled + divider.offset * 2.0 ** (-divider.shift - t)
        k, i, _ = scaled.kif
        value = scaled.quantize(k, i, t)  # floor: drop the K extra bits
        if divider.ties:
            value = trace_round_half_even(value, quant.frac)
        return _trace_clip(value, quant)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "pool_layer": self.pool_layer, "count": self.count,
                "quantizer": self.quant.description if self.quant else None}


@dataclass
class ReshapeNode(Node):
    def numpy(self, *xs: IntTensor) -> IntTensor:
        (x,) = xs
        return IntTensor(x.codes.reshape(x.codes.shape[0], *self.out_shape), x.frac)

    def trace(self, ctx: TraceContext, *xs: Any) -> Any:
        (x,) = xs
        return x.reshape(self.out_shape)


@dataclass
class ConcatNode(Node):
    axis: int = -1  # per event (no batch axis)

    def numpy(self, *xs: IntTensor) -> IntTensor:
        frac = max(x.frac for x in xs)
        axis = self.axis if self.axis < 0 else self.axis + 1
        return IntTensor(np.concatenate([x.aligned(frac) for x in xs], axis=axis), frac)

    def trace(self, ctx: TraceContext, *xs: Any) -> Any:
        from da4ml.trace import FixedVariableArray

        return FixedVariableArray(np.concatenate([da4ml_variables(x) for x in xs], axis=self.axis))


def _count_reached(v: Any, thresholds: list[float], half: float, lsb: float) -> Any:
    """lsb times the number of (ascending) thresholds that v reaches: a constant where v's range
    decides, else a sum of sign-selected constants."""
    from decimal import Decimal

    count, steps = 0, []
    for t in thresholds:
        if v.low >= t:
            count += 1
        elif v.high >= t:
            step = Decimal(lsb)
            steps.append((v - (t - half)).msb_mux(0.0, lsb, (Decimal(0), step, step)))
    if not steps:
        return float(count) * lsb
    return _adder_tree(steps) + float(count) * lsb


def _adder_tree(values: list[Any]) -> Any:
    while len(values) > 1:
        values = [values[i] + values[i + 1] if i + 1 < len(values) else values[i]
                  for i in range(0, len(values), 2)]
    return values[0]


def trace_round_half_even(v: Any, frac: int) -> Any:
    """da4ml variable rounded half to even to `frac` fraction bits, from truncations and adds.

    With x = v 2^F, s = F - frac and w = x + 2^(s-1) - 1: RHE(x / 2^s) = floor((w + b) / 2^s) where
    b is bit s of w. Adding b carries into bit s only when the low s bits of w are all ones, i.e.
    exactly on a tie, and then it moves an odd quotient up to the even neighbour; elsewhere floor(w
    / 2^s) is already the nearest value. The constant is added first so that da4ml folds it into a
    preceding constant addition (a bias)."""
    _, _, f_in = v.kif
    if f_in <= frac:
        return v
    shift = f_in - frac
    w = v + (2.0 ** -(frac + 1) - 2.0**-f_in)
    parity = w.quantize(0, 1 - frac, frac)  # bit s of w: 0 or 2^-frac
    biased = w + parity * 2.0**-shift
    k, i, _ = biased.kif
    return biased.quantize(k, i, frac)


def _trace_clip(v: Any, quant: QuantSpec) -> Any:
    scale = 2.0 ** -quant.frac
    return v.max_of(quant.low * scale).min_of(quant.high * scale)


def trace_quantize(v: Any, quant: QuantSpec) -> Any:
    """A QKeras quantizer on one da4ml variable: QKeras rounds half to even, then clips; the trace
    clips first, then rounds. The two are equal because rounding is monotone and keeps the clip
    bounds, which lie on the output grid. The order matters to da4ml: on a bias-added constant
    matrix product (dense_2 of baseline_conv8), the traced logic of clip-after-round computed
    wrong values for most events while each step alone was right; clip-before-round is exact
    there and everywhere the bit-exact tests look."""
    return trace_round_half_even(_trace_clip(v, quant), quant.frac)


# ---------------------------------------------------------------------------------------------
# From the Keras model to the replay graph: one small handler per layer type


@dataclass
class ReplayGraph:
    """The model as replay nodes in evaluation order, from the input node to `output`."""

    model_name: str
    nodes: list[Node]
    output: str

    @property
    def input(self) -> InputNode:
        node = self.nodes[0]
        assert isinstance(node, InputNode)
        return node

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def describe(self) -> list[dict[str, Any]]:
        return [node.describe() for node in self.nodes]


_HANDLERS: dict[str, Callable[..., list[Node]]] = {}


def _handles(*class_names: str) -> Callable:
    def register(fn: Callable[..., list[Node]]) -> Callable[..., list[Node]]:
        for name in class_names:
            _HANDLERS[name] = fn
        return fn

    return register


def _patch_index(in_shape: tuple[int, ...], window: tuple[int, ...], strides: tuple[int, ...],
                 per_channel: bool) -> tuple[np.ndarray, tuple[int, ...]]:
    """Flat input indices of each valid-padding window: (positions, prod(window) * channels) in
    (window..., channel) order, or with `per_channel` (positions * channels, prod(window))."""
    *spatial, channels = in_shape
    out_spatial = tuple((n - w) // s + 1 for n, w, s in zip(spatial, window, strides))
    if any(o < 1 for o in out_spatial):
        raise PipelineError(f"window {window} larger than the input {tuple(spatial)}")
    flat = np.arange(int(np.prod(in_shape))).reshape(in_shape)
    rows = []
    for pos in np.ndindex(*out_spatial):
        sl = tuple(slice(p * s, p * s + w) for p, s, w in zip(pos, strides, window))
        block = flat[sl]  # (*window, channels)
        if per_channel:
            rows.extend(block.reshape(-1, channels).T)
        else:
            rows.append(block.ravel())
    return np.asarray(rows, dtype=np.int64), out_spatial


def _ints(values: Any) -> tuple[int, ...]:
    return tuple(int(v) for v in np.ravel(values))


def _activation_spec(record: LayerRecord) -> QuantSpec:
    """The rounding and clipping of a QActivation, on its exact output type."""
    assert record.output is not None
    layer = record.keras
    quantizer = layer.quantizer if getattr(layer, "quantizer", None) is not None else layer.activation
    return QuantSpec.of(record.output, str(quantizer))


@_handles("QDense")
def _dense(record: LayerRecord, graph: ModelGraph, inputs: tuple[str, ...], in_shape: tuple[int, ...]) -> list[Node]:
    kernel, kf = record.weight_codes("kernel")
    bias, bf = record.weight_codes("bias")
    return [MatmulNode(record.name, inputs, record.shape, index=None, matrix=kernel, matrix_frac=kf,
                       bias=bias, bias_frac=bf)]


@_handles("QConv1D", "QConv2D")
def _conv(record: LayerRecord, graph: ModelGraph, inputs: tuple[str, ...], in_shape: tuple[int, ...]) -> list[Node]:
    layer = record.keras
    kernel, kf = record.weight_codes("kernel")
    bias, bf = record.weight_codes("bias")
    index, _ = _patch_index(in_shape, _ints(layer.kernel_size), _ints(layer.strides), per_channel=False)
    return [MatmulNode(record.name, inputs, record.shape, index=index, matrix=kernel.reshape(-1, kernel.shape[-1]),
                       matrix_frac=kf, bias=bias, bias_frac=bf)]


@_handles("QSeparableConv2D")
def _separable(record: LayerRecord, graph: ModelGraph, inputs: tuple[str, ...],
               in_shape: tuple[int, ...]) -> list[Node]:
    layer = record.keras
    window = _ints(layer.kernel_size)
    channels = in_shape[-1]
    dw, dwf = record.weight_codes("depthwise")
    pw, pwf = record.weight_codes("pointwise")
    bias, bf = record.weight_codes("bias")
    mult = dw.shape[-1]
    # (window..., channels, mult) -> block-diagonal (window*channels, channels*mult): TF orders the
    # depthwise output channels as c * mult + m.
    k = int(np.prod(window))
    dw_flat = dw.reshape(k, channels, mult)
    block = np.zeros((k * channels, channels * mult), dtype=np.int64)
    for c in range(channels):
        block[c::channels, c * mult:(c + 1) * mult] = dw_flat[:, c, :]
    index, out_spatial = _patch_index(in_shape, window, _ints(layer.strides), per_channel=False)
    depthwise = f"{record.name}:depthwise"
    positions = int(np.prod(out_spatial))
    pw_index = np.arange(positions * channels * mult).reshape(positions, channels * mult)
    return [
        MatmulNode(depthwise, inputs, (*out_spatial, channels * mult), index=index, matrix=block, matrix_frac=dwf),
        MatmulNode(record.name, (depthwise,), record.shape, index=pw_index, matrix=pw.reshape(-1, pw.shape[-1]),
                   matrix_frac=pwf, bias=bias, bias_frac=bf),
    ]


@_handles("QActivation")
def _activation(record: LayerRecord, graph: ModelGraph, inputs: tuple[str, ...],
                in_shape: tuple[int, ...]) -> list[Node]:
    if record.tanh is not None:
        assert record.output is not None
        return [TanhNode(record.name, inputs, in_shape, bits=record.output.width, symmetric=record.tanh.symmetric,
                         description=str(record.keras.quantizer))]
    return [QuantNode(record.name, inputs, in_shape, quant=_activation_spec(record))]


@_handles("AveragePooling1D", "AveragePooling2D")
def _average_pool(record: LayerRecord, graph: ModelGraph, inputs: tuple[str, ...],
                  in_shape: tuple[int, ...]) -> list[Node]:
    """The mean, fused with the QActivation that alone follows it (its rounding decides the
    division; the node takes that layer's name); alone, only over a power of two (exact)."""
    window = _ints(record.keras.pool_size)
    index, _ = _patch_index(in_shape, window, _ints(record.keras.strides), per_channel=True)
    node = PoolNode(record.name, inputs, record.shape, index=index, count=int(np.prod(window)),
                    pool_layer=record.name)
    if record.rounded_by is not None:
        node.quant = _activation_spec(graph[record.rounded_by])
        node.name = record.rounded_by
    return [node]


@_handles("Flatten", "Reshape", "Dropout")
def _reshape(record: LayerRecord, graph: ModelGraph, inputs: tuple[str, ...], in_shape: tuple[int, ...]) -> list[Node]:
    return [ReshapeNode(record.name, inputs, record.shape)]


@_handles("Concatenate")
def _concatenate(record: LayerRecord, graph: ModelGraph, inputs: tuple[str, ...],
                 in_shape: tuple[int, ...]) -> list[Node]:
    axis = int(record.keras.axis)
    return [ConcatNode(record.name, inputs, record.shape, axis=axis - 1 if axis > 0 else axis)]  # per-event axis


def extract_graph(model, input_precision: Precision | None = None) -> ReplayGraph:
    """The replay graph of a QKeras model, from its checked graph (firmware.graph), which refuses
    what cannot be exact; a configured `input_precision` must be the input quantizer's type."""
    graph = model_graph(model)
    check_input_precision(graph, input_precision)
    quantizer = graph[graph.input_quantizer]
    nodes: list[Node] = [InputNode(quantizer.name, (), graph.input.shape, quant=_activation_spec(quantizer))]
    # Keras layer name -> the replay node that produces its output
    produced: dict[str, str] = {graph.input.name: quantizer.name, quantizer.name: quantizer.name}
    shapes: dict[str, tuple[int, ...]] = {quantizer.name: graph.input.shape}
    for record in graph:
        if record.name in produced:
            continue
        inputs = tuple(produced[name] for name in record.inbound)
        new = _HANDLERS[record.kind](record, graph, inputs, shapes[inputs[0]])
        nodes.extend(new)
        shapes.update((node.name, node.out_shape) for node in new)
        produced[record.name] = new[-1].name
        if record.rounded_by is not None:
            produced[record.rounded_by] = new[-1].name
    return ReplayGraph(graph.name, nodes, produced[graph.output])


# ---------------------------------------------------------------------------------------------
# Running the replay


def input_codes(graph: ReplayGraph, events: np.ndarray) -> np.ndarray:
    """Float events (n, *input_shape) -> the input quantizer's integer codes, shape (n, size)."""
    events = np.asarray(events)
    if events.shape[1:] != graph.input.out_shape:
        raise PipelineError(f"events have shape {events.shape[1:]}, the model takes {graph.input.out_shape}")
    return quantize_float(events, graph.input.quant).reshape(events.shape[0], -1)


def replay_numpy(graph: ReplayGraph, events: np.ndarray, batch: int = 2048,
                 keep: Sequence[str] | None = None) -> dict[str, IntTensor]:
    """The integer replay of `graph` on float events; returns the output node's tensor (key
    graph.output) and those named in `keep` (all nodes when keep is None)."""
    events = np.asarray(events)
    codes = input_codes(graph, events).reshape(events.shape[0], *graph.input.out_shape)
    parts: list[dict[str, IntTensor]] = []
    for start in range(0, max(len(codes), 1), batch):
        values: dict[str, IntTensor] = {graph.input.name: IntTensor(codes[start:start + batch], graph.input.quant.frac)}
        for node in graph.nodes[1:]:
            values[node.name] = node.numpy(*(values[i] for i in node.inputs))
        wanted = values.keys() if keep is None else set(keep) | {graph.output}
        parts.append({k: v for k, v in values.items() if k in wanted})
    out: dict[str, IntTensor] = {}
    for key in parts[0]:
        fracs = {p[key].frac for p in parts}
        frac = max(fracs)
        out[key] = IntTensor(np.concatenate([p[key].aligned(frac) for p in parts]), frac)
    return out


def trace_graph(graph: ReplayGraph, latency_cutoff: float = -1, hard_dc: int = HARD_DC,
                divider_override: Callable[[PoolDivider], PoolDivider] | None = None) -> tuple[Any, dict[str, Any]]:
    """The graph on da4ml variables: (input array, {node name: output array})."""
    from da4ml.trace import HWConfig

    ctx = TraceContext(HWConfig(1, -1, latency_cutoff), hard_dc=hard_dc, divider_override=divider_override)
    values: dict[str, Any] = {}
    for node in graph.nodes:
        start = time.perf_counter()
        values[node.name] = node.trace(ctx, *(values[i] for i in node.inputs))
        log.debug("traced %s (%s) in %.2f s", node.name, node.kind, time.perf_counter() - start)
    return values[graph.input.name], values


def comb_logic(inp: Any, out: Any) -> Any:
    """da4ml's combinational logic from traced input and output arrays."""
    from da4ml.trace import comb_trace

    return comb_trace(inp, out, keep_dead_inputs=True)


def layer_costs(graph: ReplayGraph, inp: Any, traced: dict[str, Any]) -> dict[str, float]:
    """{node name: its share of the traced logic's cost}; the shares sum to the whole design's.

    An operation belongs to the first node, in graph order, whose output is computed from it. The
    attribution follows what the solved design keeps, not what a node's trace created: da4ml may
    fold a node's work into the next one (a quantizer applied to a bias addition, say), and a
    cut of the graph at a node's output would then count that work twice."""
    cost = variable_costs(np.ravel(da4ml_variables(inp)), np.ravel(da4ml_variables(traced[graph.output])))
    seen = {v.id: v for v in np.ravel(da4ml_variables(inp))}
    shares = {}
    for node in graph.nodes:
        before = set(seen)
        variables_behind(np.ravel(da4ml_variables(traced[node.name])), seen)
        shares[node.name] = sum(cost.get(i, 0.0) for i in seen.keys() - before)
    return shares


def _codes_of(values: np.ndarray, frac: int) -> np.ndarray:
    scaled = np.asarray(values, dtype=np.float64) * 2.0**frac
    codes = np.rint(scaled)
    if not np.array_equal(codes, scaled):
        raise PipelineError("a traced value is off its fixed-point grid")
    return codes.astype(np.int64)


def run_trace(comb: Any, graph: ReplayGraph, events: np.ndarray, frac: int) -> np.ndarray:
    """Evaluate traced logic on float events with da4ml's C++ interpreter; integer codes at `frac`."""
    x = input_codes(graph, events).astype(np.float64) * 2.0 ** -graph.input.quant.frac
    return _codes_of(comb.predict(x, n_threads=1), frac)


# ---------------------------------------------------------------------------------------------
# Locating the first difference


def locate_first_difference(graph: ReplayGraph, model, events: np.ndarray,
                            traced: dict[str, Any] | None = None, inp: Any = None) -> dict[str, Any]:
    """Walk the layers on `events` and name the first one where QKeras, the integer replay, and
    (when `traced` is given) da4ml's traced logic disagree."""
    import tensorflow as tf

    events = np.asarray(events, dtype=np.float32)
    replay = replay_numpy(graph, events)
    names = [n.name for n in graph.nodes if n.keras_layer is not None]
    probes = tf.keras.Model(model.inputs, [model.get_layer(n).output for n in names])
    keras_out = probes.predict(events, verbose=0, batch_size=1024)
    keras_out = keras_out if isinstance(keras_out, list) else [keras_out]
    by_name = dict(zip(names, keras_out))
    for node in graph.nodes:
        mine = replay[node.name]
        if node.name in by_name:
            ref = np.asarray(by_name[node.name], dtype=np.float64).reshape(mine.codes.shape)
            diff = np.argwhere(mine.values() != ref)
            if len(diff):
                event, *where = diff[0]
                return {"layer": node.name, "stage": "integer replay vs QKeras", "event": int(event),
                        "index": [int(i) for i in where], "qkeras": float(ref[tuple(diff[0])]),
                        "replay": float(mine.values()[tuple(diff[0])])}
        if traced is not None and inp is not None and node.name in traced:
            logic = comb_logic(inp, traced[node.name])
            got = run_trace(logic, graph, events, mine.frac).reshape(mine.codes.shape)
            diff = np.argwhere(got != mine.codes)
            if len(diff):
                event, *where = diff[0]
                return {"layer": node.name, "stage": "da4ml trace vs integer replay", "event": int(event),
                        "index": [int(i) for i in where], "replay": float(mine.values()[tuple(diff[0])]),
                        "trace": float(got[tuple(diff[0])] * 2.0**-mine.frac)}
    return {"layer": None, "stage": "every layer agrees" + (" (QKeras, replay and trace)" if traced else
                                                             " (QKeras and replay)")}
