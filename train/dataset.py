"""The smart-pixel parquet dataset: file format, validation, reader and streaming loader.

Layout (one chunk per tag, the published smart-pixel layout):
- `recon3D_<tag>.parquet`: 20 * 13 * 21 = 5460 float32 columns "0".."5459", time-major, column
  index t*273 + row*21 + col; a value is the cumulative number of electrons collected in that
  pixel up to time slice t (slices 200 ps apart).
- `recon2D_<tag>.parquet`: 13 * 21 = 273 columns "0".."272" (row*21 + col), the last slice.
- `labels_<tag>.parquet`: the 13 LABEL_COLUMNS, one row per event.
Pairs are found by replacing "recon3D"/"recon2D" with "labels" in the file name. The 21
columns run along x (pitch 50 um, the long-cluster direction of cotAlpha), the 13 rows along
y (pitch 12.5 um).

Input transformation, in this order and all in electrons until the last step:
noise (Gaussian, seeded per file) -> digitization (thresholds or an n-bit ADC) -> unit
conversion (charge_unit electrons per input unit) -> optional z-score over non-zero pixels.
Thresholds are therefore always in electrons, whatever the other options are.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import re
import zlib
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np

from smartpix.artifacts import atomic_path
from smartpix.errors import PipelineError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    import pyarrow.parquet as pq
    import tensorflow as tf

log = logging.getLogger(__name__)

PIXEL_ROWS, PIXEL_COLS, N_TIME_SLICES = 13, 21, 20
LABEL_COLUMNS: tuple[str, ...] = (
    "x-entry", "y-entry", "z-entry", "n_x", "n_y", "n_z", "number_eh_pairs",
    "y-local", "pt", "cotAlpha", "cotBeta", "y-midplane", "x-midplane",
)
TARGETS: tuple[str, ...] = ("x-midplane", "y-midplane", "cotAlpha", "cotBeta")
LAYOUTS: tuple[str, ...] = ("2D", "3D")
# zstd without dictionaries: the smallest files of the codecs tried, at close to snappy's speed.
# Page checksums (1% of the size, no measurable read time) because zstd frames carry none: a
# corrupt page otherwise often decompresses into plausible-looking wrong charges.
PARQUET_WRITE_OPTIONS: dict[str, Any] = {"compression": "zstd", "use_dictionary": False, "write_statistics": False,
                                         "write_page_checksum": True}
# Largest charge a pixel can hold, in electrons. A minimum-ionising particle frees about 80
# electrons per um of silicon: some 8k along 100 um, 75k along the longest inclined tracks of
# this geometry; even a slow, heavily ionising fragment (100 x minimum) crossing 300 um frees
# 2.4e6. A value above 1e7 is not a deposit but wrong units or a corrupt value; 1e7 is also below
# 2**24, so every electron count up to the ceiling is exact in float32.
MAX_PIXEL_ELECTRONS = 1.0e7
_TAG_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class FilePair:
    """One chunk of events: its pixel file, its labels file, the tag and the event count."""

    recon: Path
    labels: Path
    tag: str
    n_events: int


@dataclass(frozen=True)
class DataOptions:
    """Everything that turns stored electrons into model inputs and labels into targets.

    Stored with a trained model (to_dict/from_dict), so evaluation and firmware see exactly
    the inputs the model was trained on."""

    layout: str = "3D"
    time_slices: tuple[int, ...] = (0, 19)
    charge_unit: float = 1000.0
    adc_thresholds: tuple[float, ...] | None = None
    adc_bits: int | None = None
    adc_lsb: float = 250.0
    noise_electrons: float = 0.0
    standardize: bool = False
    pixel_mean: float = 0.0
    pixel_std: float = 1.0
    targets: tuple[str, ...] = TARGETS
    target_scales: tuple[float, ...] = (75.0, 18.75, 8.0, 0.5)
    rows: int = PIXEL_ROWS
    cols: int = PIXEL_COLS

    def __post_init__(self) -> None:
        # JSON gives lists; the dataclass is frozen and hashable only with tuples
        for name in ("time_slices", "adc_thresholds", "targets", "target_scales"):
            value = getattr(self, name)
            if isinstance(value, list):
                object.__setattr__(self, name, tuple(value))
        _validate_options(self)

    @property
    def channels(self) -> int:
        return 1 if self.layout == "2D" else len(self.time_slices)

    def input_shape(self) -> tuple[int, int, int]:
        """(rows, cols, channels), channels-last as the models take it."""
        return (self.rows, self.cols, self.channels)

    def pixel_columns(self) -> list[str]:
        """Names of the recon columns this reads, channel by channel (only these are loaded)."""
        pixels = self.rows * self.cols
        slices = (0,) if self.layout == "2D" else self.time_slices
        return [str(t * pixels + i) for t in slices for i in range(pixels)]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (tuples as lists)."""
        out = asdict(self)
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DataOptions:
        """The inverse of to_dict; unknown keys and wrongly typed values are PipelineErrors."""
        if not isinstance(d, Mapping):
            raise PipelineError(f"data options must be a mapping, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise PipelineError(f"data options: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(known))})")
        kwargs: dict[str, Any] = {}
        for key, value in d.items():
            kwargs[key] = _coerce_option(key, value)
        return cls(**kwargs)


_OPTION_KINDS: dict[str, str] = {
    "layout": "str", "time_slices": "ints", "charge_unit": "float", "adc_thresholds": "floats?",
    "adc_bits": "int?", "adc_lsb": "float", "noise_electrons": "float", "standardize": "bool",
    "pixel_mean": "float", "pixel_std": "float", "targets": "strs", "target_scales": "floats",
    "rows": "int", "cols": "int",
}


def _coerce_option(key: str, value: Any) -> Any:
    kind = _OPTION_KINDS[key]
    if kind.endswith("?"):
        if value is None:
            return None
        kind = kind[:-1]

    def bad(expected: str) -> PipelineError:
        return PipelineError(f"data options: {key} must be {expected}, got {value!r}")

    def is_int(v: Any) -> bool:
        return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

    def is_number(v: Any) -> bool:
        return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)

    if kind == "str":
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if kind == "int":
        if not is_int(value):
            raise bad("an integer")
        return int(value)
    if kind == "float":
        if not is_number(value):
            raise bad("a number")
        return float(value)
    if not isinstance(value, (list, tuple)):
        raise bad("a list")
    if kind == "ints":
        if not all(is_int(v) for v in value):
            raise bad("a list of integers")
        return tuple(int(v) for v in value)
    if kind == "floats":
        if not all(is_number(v) for v in value):
            raise bad("a list of numbers")
        return tuple(float(v) for v in value)
    if not all(isinstance(v, str) for v in value):
        raise bad("a list of strings")
    return tuple(value)


def _validate_options(o: DataOptions) -> None:
    def fail(message: str) -> PipelineError:
        return PipelineError(f"data options: {message}")

    if o.layout not in LAYOUTS:
        raise fail(f"layout must be one of {', '.join(LAYOUTS)}, got {o.layout!r}")
    for name in ("rows", "cols"):
        if not isinstance(getattr(o, name), int) or getattr(o, name) < 1:
            raise fail(f"{name} must be a positive integer, got {getattr(o, name)!r}")
    if o.layout == "3D":
        if not o.time_slices:
            raise fail("time_slices is empty (give at least one slice of 0..19)")
        for t in o.time_slices:
            if not isinstance(t, (int, np.integer)) or isinstance(t, bool) or not 0 <= t < N_TIME_SLICES:
                raise fail(f"time slice {t!r} out of range 0..{N_TIME_SLICES - 1}")
        if len(set(o.time_slices)) != len(o.time_slices):
            raise fail(f"time_slices has repeated entries: {list(o.time_slices)}")
    if not (np.isfinite(o.charge_unit) and o.charge_unit > 0):
        raise fail(f"charge_unit must be a positive number of electrons, got {o.charge_unit!r}")
    if o.adc_thresholds is not None:
        thresholds = np.asarray(o.adc_thresholds, dtype=float)
        if thresholds.size == 0 or not np.all(np.isfinite(thresholds)) or np.any(thresholds <= 0):
            raise fail(f"adc_thresholds must be positive electron counts, got {list(o.adc_thresholds)}")
        if np.any(np.diff(thresholds) <= 0):
            raise fail(f"adc_thresholds must be strictly increasing, got {list(o.adc_thresholds)}")
    if o.adc_bits is not None and not (isinstance(o.adc_bits, int) and not isinstance(o.adc_bits, bool)
                                       and 1 <= o.adc_bits <= 24):
        raise fail(f"adc_bits must be an integer in 1..24, got {o.adc_bits!r}")
    if not (np.isfinite(o.adc_lsb) and o.adc_lsb > 0):
        raise fail(f"adc_lsb must be a positive number of electrons, got {o.adc_lsb!r}")
    if not (np.isfinite(o.noise_electrons) and o.noise_electrons >= 0):
        raise fail(f"noise_electrons must be >= 0, got {o.noise_electrons!r}")
    if not isinstance(o.standardize, bool):
        raise fail(f"standardize must be true or false, got {o.standardize!r}")
    if not np.isfinite(o.pixel_mean):
        raise fail(f"pixel_mean must be finite, got {o.pixel_mean!r}")
    if not (np.isfinite(o.pixel_std) and o.pixel_std > 0):
        raise fail(f"pixel_std must be a positive number, got {o.pixel_std!r}")
    if not o.targets:
        raise fail("targets is empty")
    for target in o.targets:
        if target not in LABEL_COLUMNS:
            raise fail(f"unknown target {target!r} (label columns: {', '.join(LABEL_COLUMNS)})")
    if len(set(o.targets)) != len(o.targets):
        raise fail(f"targets has repeated entries: {list(o.targets)}")
    if len(o.target_scales) != len(o.targets):
        raise fail(f"target_scales has {len(o.target_scales)} entries for {len(o.targets)} targets")
    for scale in o.target_scales:
        if not (np.isfinite(scale) and scale != 0):
            raise fail(f"target_scales must be finite and non-zero, got {list(o.target_scales)}")


# ---------------------------------------------------------------------------------------------
# discovery and validation


def _pq():
    """pyarrow.parquet, imported on first use (its import is the slow part of small commands)."""
    import pyarrow.parquet as pq

    return pq


def _n_pixel_columns(layout: str, rows: int, cols: int) -> int:
    return rows * cols * (N_TIME_SLICES if layout == "3D" else 1)


def _open(path: Path) -> pq.ParquetFile:
    """An open parquet file; only its footer (schema, row count) has been read."""
    import pyarrow as pa

    try:
        # verification costs nothing on files written without checksums
        return _pq().ParquetFile(path, page_checksum_verification=True)
    except FileNotFoundError:
        raise PipelineError(f"{path}: file not found") from None
    except (pa.ArrowException, OSError) as err:
        raise PipelineError(f"{path}: not a readable parquet file ({_first_line(err)})") from None


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def _check_numeric(path: Path, schema: pa.Schema) -> None:
    import pyarrow as pa

    for kind in set(schema.types):
        if not (pa.types.is_floating(kind) or pa.types.is_integer(kind)):
            name = schema.names[schema.types.index(kind)]
            raise PipelineError(f"{path}: column {name!r} has type {kind}, expected a number")


def _describe_names(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(repr(n) for n in list(names)[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _check_columns(path: Path, names: Sequence[str], expected: Sequence[str], what: str) -> None:
    """Missing, extra, duplicated columns or a wrong count: one message naming the file."""
    names_set = set(names)
    if len(names_set) != len(names):
        duplicate = next(n for n, count in Counter(names).items() if count > 1)
        raise PipelineError(f"{path}: column {duplicate!r} appears more than once")
    expected_set = set(expected)
    missing = [n for n in expected if n not in names_set]
    extra = [n for n in names if n not in expected_set]
    if not missing and not extra:
        return
    parts = []
    if len(names) != len(expected):
        parts.append(f"{len(names)} columns, expected {len(expected)} ({what})")
    else:
        parts.append(f"wrong columns for {what}")
    if missing:
        parts.append(f"missing {_describe_names(missing)}")
    if extra:
        parts.append(f"unexpected {_describe_names(extra)}")
    raise PipelineError(f"{path}: " + "; ".join(parts))


def _layout_of(recon: Path) -> str:
    for layout in LAYOUTS:
        if f"recon{layout}" in recon.name:
            return layout
    raise PipelineError(f"{recon}: not a recon2D/recon3D file name")


def labels_path_for(recon: Path) -> Path:
    """The labels file paired with a recon file: "recon3D"/"recon2D" replaced by "labels"."""
    layout = _layout_of(recon)
    return recon.with_name(recon.name.replace(f"recon{layout}", "labels"))


def check_pair(recon: Path, labels: Path, rows: int = PIXEL_ROWS, cols: int = PIXEL_COLS) -> int:
    """Validate one pair from the parquet footers only; return its event count."""
    return _open_pair(recon, labels, rows, cols)[0]


def _open_pair(recon: Path, labels: Path, rows: int, cols: int) -> tuple[int, pq.ParquetFile, pq.ParquetFile]:
    layout = _layout_of(recon)
    if not recon.is_file():
        raise PipelineError(f"{recon}: file not found")
    if not labels.is_file():
        raise PipelineError(f"{recon}: its labels file {labels.name} is missing")
    recon_file, labels_file = _open(recon), _open(labels)
    recon_schema, n_recon = recon_file.schema_arrow, recon_file.metadata.num_rows
    labels_schema, n_labels = labels_file.schema_arrow, labels_file.metadata.num_rows
    n_pixels = _n_pixel_columns(layout, rows, cols)
    shape = f"{rows}x{cols}" + (f"x{N_TIME_SLICES} slices" if layout == "3D" else "")
    _check_columns(recon, recon_schema.names, [str(i) for i in range(n_pixels)],
                   f"pixel columns '0'..'{n_pixels - 1}' of a {layout} {shape} array")
    _check_columns(labels, labels_schema.names, LABEL_COLUMNS, "the 13 label columns")
    _check_numeric(recon, recon_schema)
    _check_numeric(labels, labels_schema)
    if n_recon != n_labels:
        raise PipelineError(f"{recon}: {n_recon} events but its labels file {labels.name} has {n_labels}")
    if n_recon == 0:
        raise PipelineError(f"{recon}: the file has no events")
    return n_recon, recon_file, labels_file


def discover(data_dir: Path, layout: str = "3D", rows: int = PIXEL_ROWS, cols: int = PIXEL_COLS) -> list[FilePair]:
    """Every recon<layout>/labels pair in `data_dir`, sorted by tag, each validated cheaply
    from its parquet metadata (schema and row counts)."""
    if layout not in LAYOUTS:
        raise PipelineError(f"layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    data_dir = Path(data_dir)
    if not data_dir.exists():
        raise PipelineError(f"data directory {data_dir} does not exist (run `smartpix generate` or `make data` first)")
    if not data_dir.is_dir():
        raise PipelineError(f"{data_dir}: not a directory")
    prefix = f"recon{layout}_"
    recon_files = sorted(data_dir.glob(f"{prefix}*.parquet"))
    if not recon_files:
        raise PipelineError(f"data directory {data_dir} has no {prefix}*.parquet files")
    recon_names = {p.name for p in recon_files}
    for labels in sorted(data_dir.glob("labels_*.parquet")):
        partner = labels.name.replace("labels", f"recon{layout}")
        if partner not in recon_names:
            raise PipelineError(f"{labels}: labels file without its recon{layout} file {partner}")
    pairs = []
    for recon in recon_files:
        labels = labels_path_for(recon)
        n_events = check_pair(recon, labels, rows, cols)
        pairs.append(FilePair(recon=recon, labels=labels, tag=recon.name[len(prefix):-len(".parquet")], n_events=n_events))
    pairs.sort(key=lambda p: p.tag)
    log.debug("found %d %s file pairs in %s (%d events)", len(pairs), layout, data_dir, sum(p.n_events for p in pairs))
    return pairs


def split_files(
    pairs: Sequence[FilePair], val_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 0
) -> tuple[list[FilePair], list[FilePair], list[FilePair]]:
    """Train/validation/test split by file (never events of one file in two splits), seeded.

    A split with a non-zero fraction gets at least one file; each split is sorted by tag."""
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not (0.0 <= value < 1.0):
            raise PipelineError(f"{name} must be in [0, 1), got {value}")
    if val_fraction + test_fraction >= 1.0:
        raise PipelineError(f"val_fraction + test_fraction must be below 1, got {val_fraction + test_fraction}")
    ordered = sorted(pairs, key=lambda p: p.tag)
    n = len(ordered)
    n_val = max(int(round(val_fraction * n)), 1 if val_fraction > 0 else 0)
    n_test = max(int(round(test_fraction * n)), 1 if test_fraction > 0 else 0)
    needed = 1 + (val_fraction > 0) + (test_fraction > 0)
    if n < needed:
        raise PipelineError(f"{n} data file(s) cannot make {needed} non-empty train/val/test splits; "
                            f"generate or add at least {needed} files")
    while n - n_val - n_test < 1:
        # rounding up both held-out splits can leave no training file: give one back
        if n_val >= n_test and n_val > 1:
            n_val -= 1
        else:
            n_test -= 1
    order = np.random.default_rng(seed).permutation(n)
    shuffled = [ordered[i] for i in order]
    val = sorted(shuffled[:n_val], key=lambda p: p.tag)
    test = sorted(shuffled[n_val:n_val + n_test], key=lambda p: p.tag)
    train = sorted(shuffled[n_val + n_test:], key=lambda p: p.tag)
    return train, val, test


# ---------------------------------------------------------------------------------------------
# reading


def _read_matrix(file: pq.ParquetFile, path: Path, columns: Sequence[str], what: str) -> np.ndarray:
    """The named columns of `file` as a float32 array (len(columns), n_events), checked: no
    missing value, NaN or inf, and for pixels a charge within 0..MAX_PIXEL_ELECTRONS.

    Every read of the dataset comes through here, so the check costs one pass over data that
    is in memory anyway."""
    import pyarrow as pa

    try:
        table = file.read(columns=list(columns))
    except (pa.ArrowException, OSError) as err:
        raise _read_error(file, path, columns, what, err) from None
    out = np.empty((len(columns), table.num_rows), dtype=np.float32)
    for i, name in enumerate(columns):
        column = table.column(name)
        if column.null_count:
            row = int(np.flatnonzero(column.is_null().to_numpy(zero_copy_only=False))[0])
            raise PipelineError(f"{path}: missing value in {what} column {name!r} (event {row})")
        out[i] = column.to_numpy()
    if what == "pixel":
        # two reductions and no temporary array; NaN makes both comparisons false
        if out.size and not (out.min() >= 0 and out.max() <= MAX_PIXEL_ELECTRONS):
            _raise_bad_charge(out, path, columns)
    elif not np.isfinite(out).all():
        i, row = np.argwhere(~np.isfinite(out))[0]
        raise PipelineError(f"{path}: {out[i, row]} in {what} column {columns[i]!r} (event {row})")
    return out


def _raise_bad_charge(out: np.ndarray, path: Path, columns: Sequence[str]) -> NoReturn:
    """The first unphysical charge of `out`, column by column, as a PipelineError."""
    i, row = np.argwhere(~((out >= 0) & (out <= MAX_PIXEL_ELECTRONS)))[0]
    value, where = out[i, row], f"pixel column {columns[i]!r} (event {row})"
    if not np.isfinite(value):
        raise PipelineError(f"{path}: {value} in {where}")
    if value < 0:
        raise PipelineError(f"{path}: negative charge {value:g} electrons in {where}; collected charge cannot be negative")
    raise PipelineError(f"{path}: charge {value:g} electrons in {where} is above the physical ceiling of "
                        f"{MAX_PIXEL_ELECTRONS:g} electrons per pixel (wrong units or a corrupt value)")


def _read_error(file: pq.ParquetFile, path: Path, columns: Sequence[str], what: str,
                err: BaseException) -> PipelineError:
    """A read failure with the column named: pyarrow reports a corrupt page without its column,
    so the columns are read again one by one (only on this failure path) to find it."""
    import pyarrow as pa

    for name in columns:
        try:
            file.read(columns=[name])
        except (pa.ArrowException, OSError) as column_err:
            return PipelineError(f"{path}: cannot read {what} column {name!r} ({_first_line(column_err)})")
    return PipelineError(f"{path}: cannot read {what} columns ({_first_line(err)})")


def _file_rng(tag: str, seed: int) -> np.random.Generator:
    """Noise generator of one file: fixed by (seed, tag), independent of file order."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(tag.encode())])


def transform_charge(x: np.ndarray, options: DataOptions, rng: np.random.Generator | None = None,
                     standardize: bool | None = None) -> np.ndarray:
    """Electrons -> model inputs (in place on a float32 array): noise, digitization, unit, z-score."""
    if options.noise_electrons > 0:
        if rng is None:
            raise PipelineError("noise_electrons is set but no random generator was given")
        x += np.float32(options.noise_electrons) * rng.standard_normal(x.shape, dtype=np.float32)
        # a readout reports no negative charge
        np.maximum(x, 0.0, out=x)
    if options.adc_thresholds is not None:
        levels = np.zeros(x.shape, dtype=np.float32)
        for threshold in options.adc_thresholds:
            levels += x >= np.float32(threshold)
        x[...] = levels
    elif options.adc_bits is not None:
        codes = np.rint(x / np.float32(options.adc_lsb))  # rint rounds half to even
        np.minimum(codes, np.float32(2 ** options.adc_bits - 1), out=codes)
        x[...] = codes * np.float32(options.adc_lsb) / np.float32(options.charge_unit)
    else:
        # a division, not a multiplication by the inverse: 250 e must be exactly 0.25 ke
        x /= np.float32(options.charge_unit)
    if options.standardize if standardize is None else standardize:
        nonzero = x != 0
        x[nonzero] = (x[nonzero] - np.float32(options.pixel_mean)) / np.float32(options.pixel_std)
    return x


def read_pair(pair: FilePair, options: DataOptions, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One file pair as model inputs x (n, rows, cols, channels) float32 and scaled targets
    y (n, len(targets)) float32. Only the needed pixel and target columns are read, and those
    are checked for NaN, inf and missing values; `seed` fixes the noise (if any)."""
    return _read_pair(pair, options, seed, standardize=None)


def _read_pair(pair: FilePair, options: DataOptions, seed: int, standardize: bool | None) -> tuple[np.ndarray, np.ndarray]:
    pixels, labels = _read_columns(pair, options)
    n_events = pixels.shape[1]
    channels = options.channels
    # (channel, pixel, event) -> (event, row, col, channel); a plain 2-D transpose per channel
    # is several times faster than one 3-D transposing copy
    by_channel = pixels.reshape(channels, options.rows * options.cols, n_events)
    x = np.empty((n_events, options.rows * options.cols, channels), dtype=np.float32)
    for c in range(channels):
        x[:, :, c] = by_channel[c].T
    x = x.reshape(n_events, options.rows, options.cols, channels)
    rng = _file_rng(pair.tag, seed) if options.noise_electrons > 0 else None
    transform_charge(x, options, rng, standardize=standardize)
    y = np.ascontiguousarray(labels.T) / np.asarray(options.target_scales, dtype=np.float32)
    return x, y.astype(np.float32, copy=False)


def _read_columns(pair: FilePair, options: DataOptions) -> tuple[np.ndarray, np.ndarray]:
    """The checked pixel (columns, events) and target (targets, events) arrays of one pair."""
    layout = _layout_of(pair.recon)
    if layout != options.layout:
        raise PipelineError(f"{pair.recon}: a recon{layout} file, but the data options ask for layout {options.layout}")
    n_events, recon_file, labels_file = _open_pair(pair.recon, pair.labels, options.rows, options.cols)
    pixels = _read_matrix(recon_file, pair.recon, options.pixel_columns(), "pixel")
    labels = _read_matrix(labels_file, pair.labels, options.targets, "label")
    if pixels.shape[1] != n_events or labels.shape[1] != n_events:
        raise PipelineError(f"{pair.recon}: the file changed while it was read")
    return pixels, labels


def check_values(pairs: Sequence[FilePair], options: DataOptions) -> None:
    """Read the columns `options` selects from every pair and check them as every read does
    (missing values, NaN, inf, unphysical charge), keeping nothing: bad data stops here, with
    the file, column and event named, instead of in the middle of a training epoch."""
    for pair in pairs:
        _read_columns(pair, options)


def load_arrays(
    pairs: Sequence[FilePair], options: DataOptions, max_events: int | None = None, seed: int = 0,
    check_rest: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The events of `pairs` in file order (the first `max_events` of them) in memory; with
    `check_rest`, the files past `max_events` are read and checked too (see check_values)."""
    if not pairs:
        raise PipelineError("no data files to load")
    if max_events is not None and max_events < 1:
        raise PipelineError(f"max_events must be at least 1, got {max_events}")
    xs, ys, total = [], [], 0
    for i, pair in enumerate(pairs):
        x, y = read_pair(pair, options, seed=seed)
        if max_events is not None:
            x, y = x[: max_events - total], y[: max_events - total]
        xs.append(x)
        ys.append(y)
        total += len(x)
        if max_events is not None and total >= max_events:
            if check_rest:
                check_values(pairs[i + 1:], options)
            break
    return np.concatenate(xs), np.concatenate(ys)


def pixel_statistics(pairs: Sequence[FilePair], options: DataOptions, seed: int = 0) -> tuple[float, float]:
    """Mean and standard deviation over non-zero pixels after noise, digitization and unit
    conversion (the numbers `standardize` uses), streamed file by file."""
    if not pairs:
        raise PipelineError("no data files for pixel statistics")
    count, total, total_sq = 0, 0.0, 0.0
    for pair in pairs:
        x, _ = _read_pair(pair, options, seed, standardize=False)
        values = x[x != 0].astype(np.float64)
        count += values.size
        total += float(values.sum())
        total_sq += float(np.square(values).sum())
    if count == 0:
        raise PipelineError(f"no non-zero pixels in {len(pairs)} file(s) (first: {pairs[0].recon})")
    mean = total / count
    std = float(np.sqrt(max(total_sq / count - mean * mean, 0.0)))
    if not std > 0:
        raise PipelineError(f"all non-zero pixels have the same value {mean} in {pairs[0].recon} and others: "
                            "standardization is impossible")
    return mean, std


def iterate_batches(
    pairs: Sequence[FilePair], options: DataOptions, batch_size: int, shuffle: bool, seed: int,
    epoch: int = 0, buffer_files: int = 2,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """One epoch of (x, y) batches, streamed: at most `buffer_files` files (plus a partial
    batch) in memory. With shuffle, file order and events within the buffer are permuted from
    (seed, epoch). Every event appears exactly once; only the last batch may be short."""
    if not pairs:
        raise PipelineError("no data files for the loader")
    if batch_size < 1:
        raise PipelineError(f"batch_size must be at least 1, got {batch_size}")
    if buffer_files < 1:
        raise PipelineError(f"buffer_files must be at least 1, got {buffer_files}")
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, epoch]) if shuffle else None
    order = rng.permutation(len(pairs)) if rng is not None else np.arange(len(pairs))
    carry_x: np.ndarray | None = None
    carry_y: np.ndarray | None = None
    for start in range(0, len(order), buffer_files):
        xs, ys = [], []
        if carry_x is not None:
            xs.append(carry_x)
            ys.append(carry_y)
        for i in order[start:start + buffer_files]:
            x, y = read_pair(pairs[int(i)], options, seed=seed)
            xs.append(x)
            ys.append(y)
        x = np.concatenate(xs) if len(xs) > 1 else xs[0]
        y = np.concatenate(ys) if len(ys) > 1 else ys[0]
        if rng is not None:
            perm = rng.permutation(len(x))
            x, y = x[perm], y[perm]
        n_full = len(x) // batch_size * batch_size
        for b in range(0, n_full, batch_size):
            yield x[b:b + batch_size], y[b:b + batch_size]
        carry_x, carry_y = (x[n_full:], y[n_full:]) if n_full < len(x) else (None, None)
    if carry_x is not None:
        yield carry_x, carry_y


def make_dataset(
    pairs: Sequence[FilePair], options: DataOptions, batch_size: int, shuffle: bool, seed: int,
    buffer_files: int = 2,
) -> tf.data.Dataset:
    """A streaming tf.data.Dataset of (x, y) float32 batches over `pairs`.

    Files are read one buffer at a time (pyarrow, only the needed columns); each pass over
    the dataset is one epoch, reshuffled from (seed, epoch number) when `shuffle` is set, so
    two datasets built with the same seed yield the same sequence. Iterate it inside
    `loader_errors()` to get the reader's errors as PipelineErrors."""
    import tensorflow as tf

    if not pairs:
        raise PipelineError("no data files for the loader")
    if batch_size < 1:
        raise PipelineError(f"batch_size must be at least 1, got {batch_size}")
    pairs = list(pairs)
    epochs = itertools.count()  # each pass over the dataset is the next epoch

    def generator() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        try:
            yield from iterate_batches(pairs, options, batch_size, shuffle, seed, next(epochs), buffer_files)
        except PipelineError as err:
            _LOADER_FAILURES.append(err)
            raise

    signature = (
        tf.TensorSpec(shape=(None, *options.input_shape()), dtype=tf.float32),
        tf.TensorSpec(shape=(None, len(options.targets)), dtype=tf.float32),
    )
    dataset = tf.data.Dataset.from_generator(generator, output_signature=signature)
    return dataset.prefetch(2)


# TensorFlow runs a dataset's generator inside an op and re-raises what it raises as an
# UnknownError whose message is the whole Python traceback; the original error is kept here so
# that `loader_errors` can raise it instead.
_LOADER_FAILURES: list[PipelineError] = []


@contextlib.contextmanager
def loader_errors() -> Iterator[None]:
    """Iterate `make_dataset` datasets inside this: a PipelineError of their reader (a corrupt
    page, a bad value) comes out as itself, one line naming the file, not as a TensorFlow error."""
    import tensorflow as tf

    _LOADER_FAILURES.clear()
    try:
        yield
    except tf.errors.OpError:
        if not _LOADER_FAILURES:
            raise
        raise _LOADER_FAILURES[0] from None
    finally:
        _LOADER_FAILURES.clear()


def unscale_targets(y: np.ndarray, options: DataOptions) -> np.ndarray:
    """Model targets back to label units (um for positions, plain cot for angles)."""
    y = np.asarray(y)
    if y.shape[-1] != len(options.target_scales):
        raise PipelineError(f"targets have {y.shape[-1]} columns, the data options {len(options.target_scales)}")
    return y * np.asarray(options.target_scales, dtype=y.dtype if y.dtype.kind == "f" else np.float64)


# ---------------------------------------------------------------------------------------------
# writing


def _table(matrix: np.ndarray, names: Sequence[str]) -> pa.Table:
    """A float32 table from an (n_events, n_columns) array, one contiguous buffer per column."""
    import pyarrow as pa

    columns = np.ascontiguousarray(matrix.T, dtype=np.float32)
    return pa.Table.from_arrays([pa.array(c) for c in columns], names=list(names))


def _write_table(table: pa.Table, target: Path) -> None:
    with atomic_path(target) as tmp:
        _pq().write_table(table, tmp, **PARQUET_WRITE_OPTIONS)


def write_pair(
    out_dir: Path, tag: str, charge: np.ndarray, labels: pd.DataFrame | Mapping[str, np.ndarray]
) -> None:
    """Write recon3D_<tag>, recon2D_<tag> (the last slice) and labels_<tag> parquet files.

    `charge` is (n, 20, rows, cols) cumulative electrons; `labels` holds the 13 LABEL_COLUMNS.
    Each file is written atomically; the labels file goes last, so that an interrupted write
    leaves a recon file without labels, which `discover` rejects."""
    if not isinstance(tag, str) or not _TAG_PATTERN.match(tag) or "recon" in tag or "labels" in tag:
        raise PipelineError(f"invalid file tag {tag!r} (letters, digits, '.', '_', '-'; no 'recon'/'labels')")
    charge = np.asarray(charge)
    if charge.ndim != 4 or charge.shape[1] != N_TIME_SLICES:
        raise PipelineError(f"charge for {tag!r} must be (events, {N_TIME_SLICES}, rows, cols), got {charge.shape}")
    if not np.all(np.isfinite(charge)):
        raise PipelineError(f"charge for {tag!r} has NaN or inf values")
    n, _, rows, cols = charge.shape
    names = list(labels.columns) if hasattr(labels, "columns") else list(labels)
    _check_columns(Path(f"labels_{tag}"), names, LABEL_COLUMNS, "the 13 label columns")
    label_matrix = np.empty((n, len(LABEL_COLUMNS)), dtype=np.float32)
    for j, name in enumerate(LABEL_COLUMNS):
        column = np.asarray(labels[name], dtype=np.float32)
        if column.shape != (n,):
            raise PipelineError(f"label {name!r} for {tag!r} has shape {column.shape}, expected ({n},)")
        label_matrix[:, j] = column
    if not np.all(np.isfinite(label_matrix)):
        raise PipelineError(f"labels for {tag!r} have NaN or inf values")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    flat3d = charge.reshape(n, N_TIME_SLICES * rows * cols)
    _write_table(_table(flat3d, [str(i) for i in range(flat3d.shape[1])]), out_dir / f"recon3D_{tag}.parquet")
    flat2d = charge[:, -1].reshape(n, rows * cols)
    _write_table(_table(flat2d, [str(i) for i in range(flat2d.shape[1])]), out_dir / f"recon2D_{tag}.parquet")
    _write_table(_table(label_matrix, LABEL_COLUMNS), out_dir / f"labels_{tag}.parquet")
