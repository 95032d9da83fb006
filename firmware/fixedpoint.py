"""The one fixed-point type of the pipeline: width, integer bits (sign included, as in
ap_fixed), sign, rounding and saturation; both flows and the verdicts speak it."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from smartpix.errors import PipelineError

ROUNDING_MODES = ("TRN", "TRN_ZERO", "RND", "RND_ZERO", "RND_INF", "RND_MIN_INF", "RND_CONV")
SATURATION_MODES = ("WRAP", "SAT", "SAT_ZERO", "SAT_SYM")
_FIXED = re.compile(
    r"^(?:ap_|ac_)?(?P<unsigned>u)?fixed<\s*(?P<width>\d+)\s*,\s*(?P<integer>-?\d+)"
    r"(?:\s*,\s*(?:AP_|AC_)?(?P<rounding>[A-Z_]+))?"
    r"(?:\s*,\s*(?:AP_|AC_)?(?P<saturation>[A-Z_]+))?"
    r"(?:\s*,\s*(?P<sat_bits>\d+))?\s*>$"
)
_INTEGER = re.compile(r"^(?:ap_|ac_)?(?P<unsigned>u)?int<\s*(?P<width>\d+)\s*>$")


@dataclass(frozen=True)
class Precision:
    """A fixed-point type: width, integer bits (sign included), sign, rounding, saturation."""

    width: int
    integer: int
    signed: bool = True
    rounding: str = "TRN"
    saturation: str = "WRAP"

    @property
    def fraction(self) -> int:
        return self.width - self.integer

    @property
    def lsb(self) -> float:
        """Value of one code: 2**-fraction."""
        return 2.0 ** -self.fraction

    @classmethod
    def from_kif(cls, k: int | bool, i: int, f: int) -> "Precision":
        """The word of sign bit k, i integer bits (sign excluded) and f fraction bits, as da4ml
        counts them (truncating, wrapping)."""
        return cls(int(k) + int(i) + int(f), int(k) + int(i), bool(k))

    def __str__(self) -> str:
        """`fixed<W,I>` / `ufixed<W,I>`, with the rounding and saturation modes when they are
        not the default TRN and WRAP."""
        if (self.rounding, self.saturation) == ("TRN", "WRAP"):
            return f"{'fixed' if self.signed else 'ufixed'}<{self.width},{self.integer}>"
        return self.hls4ml()

    def hls4ml(self) -> str:
        """The string hls4ml's configuration accepts (backend-neutral)."""
        prefix = "fixed" if self.signed else "ufixed"
        return f"{prefix}<{self.width},{self.integer},{self.rounding},{self.saturation}>"

    def ap(self) -> str:
        prefix = "ap_fixed" if self.signed else "ap_ufixed"
        return f"{prefix}<{self.width},{self.integer},AP_{self.rounding},AP_{self.saturation}>"

    def ac(self) -> str:
        """The Algorithmic C type (Catapult), whose modes have the same names."""
        return (f"ac_fixed<{self.width},{self.integer},{str(self.signed).lower()},"
                f"AC_{self.rounding},AC_{self.saturation}>")

    def holds(self, other: "Precision") -> bool:
        """True when every value of `other` is a value of this type (same or finer grid, same or
        wider range): a cast from `other` then neither rounds nor saturates."""
        low, high = self.code_range()
        other_low, other_high = other.code_range()
        return (self.fraction >= other.fraction
                and low * self.lsb <= other_low * other.lsb and high * self.lsb >= other_high * other.lsb)

    def code_range(self) -> tuple[int, int]:
        """Smallest and largest raw integer code (SAT_SYM excludes the most negative one)."""
        if self.signed:
            low = -(2 ** (self.width - 1)) + (1 if self.saturation == "SAT_SYM" else 0)
            return low, 2 ** (self.width - 1) - 1
        return 0, 2**self.width - 1


def parse_precision(text: str, where: str = "precision") -> Precision:
    """Parse an hls4ml/ap/ac precision string; the error names `where` and the accepted forms."""
    if not isinstance(text, str):
        raise PipelineError(f"{where}: expected a precision string such as 'ap_fixed<16,6>', got {text!r}")
    compact = text.strip()
    match = _FIXED.match(compact)
    if match:
        width, integer = int(match["width"]), int(match["integer"])
        rounding = match["rounding"] or "TRN"
        saturation = match["saturation"] or "WRAP"
        if width < 1 or width > 1024:
            raise PipelineError(f"{where}: width {width} in {text!r} must be between 1 and 1024")
        if rounding not in ROUNDING_MODES:
            raise PipelineError(
                f"{where}: unknown rounding mode {rounding!r} in {text!r}; allowed: {', '.join(ROUNDING_MODES)}"
            )
        if saturation not in SATURATION_MODES:
            raise PipelineError(
                f"{where}: unknown saturation mode {saturation!r} in {text!r}; allowed: {', '.join(SATURATION_MODES)}"
            )
        return Precision(width, integer, not match["unsigned"], rounding, saturation)
    match = _INTEGER.match(compact)
    if match:
        width = int(match["width"])
        if width < 1 or width > 1024:
            raise PipelineError(f"{where}: width {width} in {text!r} must be between 1 and 1024")
        return Precision(width, width, not match["unsigned"])
    raise PipelineError(
        f"{where}: invalid precision {text!r}; expected ap_fixed<W,I[,ROUNDING[,SATURATION]]>, "
        f"ap_ufixed<...>, fixed<...>, ap_int<W> or ap_uint<W>"
    )


def on_grid(values, precision: Precision):
    """Integer codes of `values` on the type's grid, or None when some value is off the grid."""
    scaled = np.asarray(values, dtype=np.float64) * 2.0**precision.fraction
    codes = np.rint(scaled)
    if not np.array_equal(codes, scaled):
        return None
    return codes.astype(np.int64)
