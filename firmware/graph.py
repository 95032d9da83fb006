"""Exact fixed-point types from QKeras quantizers.

Each supported quantizer maps to the one hls4ml type whose values, rounding and saturation
are those of the quantizer, so the hardware takes the same decision as Python for every input:
- quantized_bits(b, i, keep_negative=1): fixed<b, i+1>, unsigned (keep_negative=0): ufixed<b, i>;
- quantized_tanh(b): fixed<b, 1> (hls4ml's hard_tanh: QKeras' tanh uses the hard sigmoid);
- quantized_relu(b, i): ufixed<b, i>.
QKeras rounds half to even (tf.round) -> RND_CONV; it clips -> SAT, or SAT_SYM when the
quantizer is symmetric. A quantizer whose result is not a fixed-point grid (alpha other than 1,
stochastic rounding, the real tanh or sigmoid) cannot be exact and is refused by name.
"""

from __future__ import annotations

import math
from typing import Any

from firmware.fixedpoint import Precision
from smartpix.errors import PipelineError


def _config_of(quantizer: Any) -> tuple[str, dict[str, Any]]:
    if quantizer is None:
        return "linear", {}
    if isinstance(quantizer, str):
        from qkeras import get_quantizer

        quantizer = get_quantizer(quantizer)
    name = type(quantizer).__name__
    config = quantizer.get_config() if hasattr(quantizer, "get_config") else {}
    return name, dict(config)


def refusal(where: str, reason: str) -> PipelineError:
    """The error for a layer that cannot be implemented bit-exactly, naming it and the reason."""
    return PipelineError(f"layer {where}: {reason}; it cannot be made bit-exact")


def _check_common(name: str, config: dict[str, Any], where: str) -> None:
    if config.get("use_stochastic_rounding"):
        raise refusal(where, f"{name} uses stochastic rounding")
    if float(config.get("qnoise_factor", 1.0) or 1.0) != 1.0:
        raise refusal(where, f"{name} has qnoise_factor {config['qnoise_factor']} (only 1 gives a fixed-point grid)")


def quantizer_precision(quantizer: Any, where: str) -> Precision:
    """The exact hls4ml type of a QKeras quantizer's output (an activation or input quantizer)."""
    name, config = _config_of(quantizer)
    _check_common(name, config, where)
    if name == "quantized_bits":
        alpha = config.get("alpha")
        if alpha not in (None, 1, 1.0):
            raise refusal(where, f"quantized_bits has alpha={alpha!r} (a scale that is not 1)")
        bits, integer = int(config["bits"]), int(config.get("integer", 0))
        symmetric = bool(config.get("symmetric", 0))
        if config.get("keep_negative", True):
            return Precision(bits, integer + 1, True, "RND_CONV", "SAT_SYM" if symmetric else "SAT")
        return Precision(bits, integer, False, "RND_CONV", "SAT")
    if name == "quantized_tanh":
        if config.get("use_real_tanh"):
            raise refusal(where, "quantized_tanh(use_real_tanh=True) needs a tanh lookup table")
        bits = int(config["bits"])
        return Precision(bits, 1, True, "RND_CONV", "SAT_SYM" if config.get("symmetric") else "SAT")
    if name == "quantized_relu":
        if config.get("negative_slope", 0.0):
            raise refusal(where, "quantized_relu with a negative slope is not supported")
        if config.get("use_sigmoid"):
            raise refusal(where, "quantized_relu(use_sigmoid=True) is not supported")
        if config.get("relu_upper_bound") is not None and not config.get("is_quantized_clip", True):
            raise refusal(where, "quantized_relu with relu_upper_bound clips off the fixed-point grid")
        return Precision(int(config["bits"]), int(config.get("integer", 0)), False, "RND_CONV", "SAT")
    raise refusal(where, f"quantizer {name} is not supported (supported: quantized_bits, quantized_tanh, quantized_relu)")


def weight_precision(quantizer: Any, where: str) -> Precision:
    """The exact type of quantized weights: the same grid, no rounding needed (values lie on it)."""
    if quantizer is None:
        raise refusal(where, "has float weights without a quantizer")
    exact = quantizer_precision(quantizer, where)
    return Precision(exact.width, exact.integer, exact.signed)


def average_pool_precision(
    data: Precision, pool_elements: int, following: Precision | None, where: str
) -> Precision:
    """Accumulator/result type of an average pooling that takes the same rounding decision
    as Python.

    The mean S/N of N inputs with LSB 2^-g is divided with truncation to F fraction bits and then
    rounded by the following quantizer to f bits. A decision boundary b lies on the 2^-(f+1)
    grid; a mean that is not on it is at least 1/(N 2^(f+1)) away from it. With
    2^-F <= 1/(N 2^(f+1)), truncation (toward zero or toward minus infinity) can neither cross
    nor land on b, so F = f + 1 + ceil(log2 N) suffices; a tie (exactly on b) is kept exactly
    since F >= f + 1. For N a power of two the mean is exact with g + log2 N fraction bits.
    """
    extra = math.ceil(math.log2(pool_elements)) if pool_elements > 1 else 0
    integer = data.integer + extra + (0 if data.signed else 1)  # signed, so one more bit for unsigned data
    if pool_elements & (pool_elements - 1) == 0:
        fraction = data.fraction + extra
    else:
        if following is None:
            raise refusal(
                where,
                f"average pooling over {pool_elements} values (not a power of two) must be followed by "
                f"a quantizer (QActivation) that decides the rounding",
            )
        fraction = max(following.fraction + 1 + extra, data.fraction + extra)
    return Precision(integer + fraction, integer, True)
