"""Synthetic smart-pixel clusters from a small physical model (`smartpix generate`).

Frame and sensor. Local coordinates in um: x along the 21 columns (pitch 50), y along the 13
rows (pitch 12.5), z through the 100 um thick sensor. The array centre is (0, 0); column c is
centred at x = (c - 10) * 50, row r at y = (r - 6) * 12.5. Electrons are collected by the
pixel implants at z = 0; z is also the drift distance.

Tracks. Charged pions from the interaction point hit a barrel layer at radius R = 30 mm in a
3.8 T field parallel to x (the beam axis):
- pseudorapidity eta ~ U(-2.6, 2.6) (flat, like minimum-bias tracks), so cotAlpha, the slope
  dx/dz, is sinh(eta) / cos(psi): broad, up to about +-6.7, |cotAlpha| < 1 for a third of them;
- the array centre sits at y-local ~ U(-8, 8) mm on the flat module; |pt| from a power law
  dN/dpt ~ pt^-3 above 0.5 GeV, charge +-1; the transverse angle to the sensor normal is
  psi = atan(y-local / R) - q * asin(0.3 B R / (2 pt)) and cotBeta = dy/dz = tan(psi) (+-0.3);
- the hit position at the mid-plane z = 50 (x-midplane, y-midplane) is uniform over +-1.5
  pitches around the array centre. The track enters at z-entry = 100 and leaves at z = 0:
  x(z) = x-midplane + cotAlpha (z - 50), y(z) = y-midplane + cotBeta (z - 50); the unit
  direction of travel is (n_x, n_y, n_z) = -(cotAlpha, cotBeta, 1) / norm, so cotAlpha =
  n_x / n_z and cotBeta = n_y / n_z.

Energy deposition. The depth is cut into 24 segments: the depth ranges whose charge arrives
within one time slice, each split into equal parts at most 6 um deep. Each segment of path
length l gets
- a soft part, Moyal distributed (location 45 l, scale 6 l electrons), from many distant
  collisions, and
- hard collisions (delta rays): Poisson, 4 per 100 um of path, at uniform positions, with a
  1/E^2 spectrum between 100 and 20,000 electrons; they make the Landau tail.
The mean is about 75 e-h pairs per um; for 100 um at normal incidence the most probable total
is about 5.8k and the mean 7.4k; long inclined tracks reach 50-75k. number_eh_pairs is the
total deposited charge.

Drift. Over-depleted planar sensor (bias 40 V, depletion 30 V): the field falls linearly
from the implants to the back, E(z) = (V_b + V_d (1 - 2 z/d)) / d. Electron mobility
follows Caughey-Thomas (mu0 = 1417 cm^2/Vs, v_sat = 1.07e7 cm/s, beta = 1.109, 300 K). From
the field, once for all events:
- arrival time t(z) = integral dz / (mu(E) E): about 0.2 ns from 11 um, 3.0 ns from 100 um;
- diffusion sigma(z)^2 = 2 (kT/e) integral dz / E (the Einstein relation makes it independent
  of the mobility): about 2.2 um from the mid-plane, 4.1 um from the back;
- Lorentz drift: the 3.8 T field along x deflects drifting electrons along +y by
  tan(theta_L) z with tan(theta_L) = 0.3 (the field-averaged r_H mu B of electrons at 3.8 T).

Charge sharing and time. A segment's charge spreads uniformly along its x extent and with the
Gaussian diffusion; the fraction in a column is the Gaussian integrated over the column
boundaries (erf differences) averaged over the segment's extent, in closed form with the
antiderivative of the normal CDF. Along y each segment is a Gaussian whose variance adds the
segment's y extent (cotBeta + tan(theta_L)) dz (a uniform, /12). Tails beyond 4.5 sigma stay
in the outermost pixel of the segment's window, and pieces below 0.01 electron are dropped.
All of a segment's charge arrives in one slice k (readout at (k + 1) * 200 ps); a pixel's
value at slice k is all charge arrived by then. Charge falling outside the array is lost.

Readout. Each pixel gets one Gaussian noise sample (30 electrons) shared by its 20 cumulative
readings (the integrator's baseline), the value is rounded to whole electrons and a pixel
reads zero until it passes the 200 electron threshold; so readings never decrease in time.

Speed. Everything is vectorized over blocks of events (sorted by |cotAlpha| so that most
blocks need narrow pixel windows) and only pixels that receive charge are accumulated; see
bench/bench_generator.py for the rate against a per-event loop of the same model.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
from scipy.special import ndtr

from smartpix import paths
from smartpix.artifacts import atomic_dir, write_json
from smartpix.errors import PipelineError
from train.dataset import LABEL_COLUMNS, N_TIME_SLICES, write_pair

log = logging.getLogger(__name__)

DEFAULT_OUT = paths.DATA
_CHUNK = 512  # events per vectorized block: big enough for numpy, small enough for the cache
_SIGMA_WINDOW = 4.5  # Gaussian tails beyond 4.5 sigma (3e-6 per side) fold into the window edge pixels
_MIN_CONTRIBUTION = 0.01  # electrons; smaller pieces of a segment's charge are dropped
_KT_OVER_E_300K = 0.025852  # V


@dataclass(frozen=True)
class Geometry:
    """Sensor geometry and the constants of the physical model (see the module docstring)."""

    rows: int = 13
    cols: int = 21
    pitch_x: float = 50.0  # um, along the columns
    pitch_y: float = 12.5  # um, along the rows
    thickness: float = 100.0  # um
    n_time_slices: int = N_TIME_SLICES
    slice_ps: float = 200.0
    # field and transport
    bias_voltage: float = 40.0
    depletion_voltage: float = 30.0
    mobility0: float = 1417.0  # cm^2/Vs, electrons (Caughey-Thomas)
    saturation_velocity: float = 1.07e7  # cm/s
    mobility_beta: float = 1.109
    temperature: float = 300.0  # K
    tan_lorentz: float = 0.3
    magnetic_field: float = 3.8  # T
    # energy deposition (electrons)
    soft_mpv_per_um: float = 45.0
    soft_scale_per_um: float = 6.0
    delta_rays_per_100um: float = 4.0
    delta_min: float = 100.0
    delta_max: float = 20000.0
    segment_um: float = 6.0
    # readout
    noise_electrons: float = 30.0
    threshold_electrons: float = 200.0
    # kinematics
    max_abs_eta: float = 2.6
    layer_radius_mm: float = 30.0
    module_half_width_mm: float = 8.0
    pt_min_gev: float = 0.5
    hit_region_pitches: float = 1.5

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
                raise PipelineError(f"geometry: {f.name} must be a finite number, got {value!r}")
        for name in ("rows", "cols", "n_time_slices"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise PipelineError(f"geometry: {name} must be a positive integer, got {getattr(self, name)!r}")
        positive = ("pitch_x", "pitch_y", "thickness", "slice_ps", "bias_voltage", "mobility0",
                    "saturation_velocity", "mobility_beta", "temperature", "soft_mpv_per_um",
                    "delta_min", "delta_max", "segment_um", "layer_radius_mm", "pt_min_gev")
        for name in positive:
            if getattr(self, name) <= 0:
                raise PipelineError(f"geometry: {name} must be positive, got {getattr(self, name)!r}")
        non_negative = ("depletion_voltage", "soft_scale_per_um", "delta_rays_per_100um", "noise_electrons",
                        "threshold_electrons", "max_abs_eta", "module_half_width_mm", "hit_region_pitches")
        for name in non_negative:
            if getattr(self, name) < 0:
                raise PipelineError(f"geometry: {name} must not be negative, got {getattr(self, name)!r}")
        if self.bias_voltage <= self.depletion_voltage:
            raise PipelineError(f"geometry: bias_voltage ({self.bias_voltage} V) must exceed depletion_voltage "
                                f"({self.depletion_voltage} V): the model needs a fully depleted sensor")
        if self.delta_max <= self.delta_min:
            raise PipelineError("geometry: delta_max must exceed delta_min")


@dataclass(frozen=True)
class DriftTable:
    """Per depth segment quantities, the same for every event (they depend on depth only)."""

    z_lo: np.ndarray  # um, near edge (drift distance)
    z_hi: np.ndarray  # um, far edge
    sigma: np.ndarray  # um, diffusion (rms over the segment)
    slice_index: np.ndarray  # first time slice that contains the segment's charge (n_time_slices: never)

    @property
    def n_segments(self) -> int:
        return len(self.z_lo)


@dataclass(frozen=True)
class Tracks:
    """The random part of the model for n events (float64, noise float32)."""

    x_mid: np.ndarray
    y_mid: np.ndarray
    cot_alpha: np.ndarray
    cot_beta: np.ndarray
    y_local: np.ndarray  # mm
    pt: np.ndarray  # GeV, signed by charge
    deposits: np.ndarray  # (n, segments) electrons
    noise: np.ndarray  # (n, rows * cols) electrons, float32


def _mobility(field: np.ndarray, g: Geometry) -> np.ndarray:
    return g.mobility0 / (1.0 + (g.mobility0 * field / g.saturation_velocity) ** g.mobility_beta) ** (1.0 / g.mobility_beta)


def drift_profile(g: Geometry, points: int = 4001) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Depth grid (um), arrival time (ps) and diffusion variance (um^2) of charge from each depth."""
    d_cm = g.thickness * 1e-4
    z_cm = np.linspace(0.0, d_cm, points)
    field = (g.bias_voltage + g.depletion_voltage * (1.0 - 2.0 * z_cm / d_cm)) / d_cm  # V/cm
    inv_velocity = 1.0 / (_mobility(field, g) * field)
    inv_field = 1.0 / field
    step = np.diff(z_cm)
    time_s = np.concatenate([[0.0], np.cumsum(0.5 * (inv_velocity[1:] + inv_velocity[:-1]) * step)])
    kt = _KT_OVER_E_300K * g.temperature / 300.0
    var_cm2 = 2.0 * kt * np.concatenate([[0.0], np.cumsum(0.5 * (inv_field[1:] + inv_field[:-1]) * step)])
    return z_cm * 1e4, time_s * 1e12, var_cm2 * 1e8


def drift_table(g: Geometry) -> DriftTable:
    """Depth segments: the depth ranges collected within each time slice, each cut into equal
    parts at most segment_um deep; with their diffusion width and arrival slice."""
    z, t_ps, var = drift_profile(g)
    slice_times = g.slice_ps * np.arange(1, g.n_time_slices + 1)
    bounds = [0.0] + [float(np.interp(tk, t_ps, z)) for tk in slice_times if tk < t_ps[-1]] + [g.thickness]
    cuts = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        parts = max(int(np.ceil((hi - lo) / g.segment_um - 1e-9)), 1)
        cuts.extend(np.linspace(lo, hi, parts + 1)[:-1])
    cuts = np.unique(np.append(np.asarray(cuts), g.thickness))
    z_lo, z_hi = cuts[:-1], cuts[1:]
    # rms width over each segment: the mean of the variance over its depth
    fine = np.linspace(0.0, 1.0, 33)
    depths = z_lo[:, None] + (z_hi - z_lo)[:, None] * fine[None, :]
    sigma = np.sqrt(np.interp(depths, z, var).mean(axis=1))
    t_mid = np.interp(0.5 * (z_lo + z_hi), z, t_ps)
    slice_index = np.minimum(np.floor(t_mid / g.slice_ps).astype(np.int64), g.n_time_slices)
    return DriftTable(z_lo=z_lo, z_hi=z_hi, sigma=sigma, slice_index=slice_index)


def draw_tracks(n: int, rng: np.random.Generator, g: Geometry, table: DriftTable) -> Tracks:
    """Kinematics, deposits and noise of n events (the only random step of the model)."""
    eta = rng.uniform(-g.max_abs_eta, g.max_abs_eta, n)
    y_centre_mm = rng.uniform(-g.module_half_width_mm, g.module_half_width_mm, n)
    charge = np.where(rng.random(n) < 0.5, -1.0, 1.0)
    pt_abs = g.pt_min_gev / np.sqrt(1.0 - rng.random(n))  # dN/dpt ~ pt^-3 above pt_min
    x_mid = rng.uniform(-1.0, 1.0, n) * g.hit_region_pitches * g.pitch_x
    y_mid = rng.uniform(-1.0, 1.0, n) * g.hit_region_pitches * g.pitch_y
    y_local = y_centre_mm + y_mid * 1e-3
    # bending in the transverse plane: sin = R / (2 rho), rho = pt / (0.3 B) in metres
    bend = np.arcsin(np.minimum(0.3 * g.magnetic_field * g.layer_radius_mm * 1e-3 / (2.0 * pt_abs), 1.0))
    psi = np.arctan(y_local / g.layer_radius_mm) - charge * bend
    cot_beta = np.tan(psi)
    cot_alpha = np.sinh(eta) / np.cos(psi)

    path_factor = np.sqrt(1.0 + cot_alpha**2 + cot_beta**2)
    length = (table.z_hi - table.z_lo)[None, :] * path_factor[:, None]  # um of path per segment
    z2 = np.square(rng.standard_normal(length.shape))
    # Moyal(mu, s) = mu - s ln(Z^2); the floor on Z^2 only bounds a 1e-12-probability tail
    soft = g.soft_mpv_per_um * length - g.soft_scale_per_um * length * np.log(np.maximum(z2, 1e-12))
    deposits = np.maximum(soft, 0.0)
    n_hard = rng.poisson(g.delta_rays_per_100um * g.thickness * path_factor / 100.0)
    event = np.repeat(np.arange(n), n_hard)
    depth = rng.uniform(0.0, g.thickness, event.size)
    u = rng.random(event.size)
    energy = 1.0 / (1.0 / g.delta_min - u * (1.0 / g.delta_min - 1.0 / g.delta_max))
    segment = np.minimum(np.searchsorted(table.z_hi, depth, side="left"), table.n_segments - 1)
    deposits += np.bincount(event * table.n_segments + segment, weights=energy,
                            minlength=n * table.n_segments).reshape(n, table.n_segments)
    # the last draw: geometries differing only in the readout see the same tracks
    if g.noise_electrons > 0:
        noise = np.float32(g.noise_electrons) * rng.standard_normal((n, g.rows * g.cols), dtype=np.float32)
    else:
        noise = np.zeros((n, g.rows * g.cols), dtype=np.float32)
    return Tracks(x_mid=x_mid, y_mid=y_mid, cot_alpha=cot_alpha, cot_beta=cot_beta,
                  y_local=y_local, pt=charge * pt_abs, deposits=deposits, noise=noise)


def _normal_antiderivative(t: np.ndarray) -> np.ndarray:
    """G(t) = t Phi(t) + phi(t), so that G' = Phi (the normal CDF)."""
    return t * ndtr(t) + np.exp(-0.5 * t * t) * (1.0 / np.sqrt(2.0 * np.pi))


def _pixel_edges(lo_edge: np.ndarray, first_edge: float, pitch: float, n_edges: int) -> tuple[np.ndarray, np.ndarray]:
    """For (segments, events) lower reaches: index of the pixel containing them and the n_edges
    pixel boundaries from its lower one, shaped (segments, n_edges, events)."""
    first = np.floor((lo_edge - first_edge) / pitch).astype(np.int64)
    return first, first_edge + (first[:, None, :] + np.arange(n_edges)[None, :, None]) * pitch


def _line_fractions(edges: np.ndarray, a: np.ndarray, b: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Fractions between consecutive edges of a charge uniform on [a, b] smeared by N(0, sigma):
    the erf difference averaged over [a, b], in closed form. edges (seg, n_edges, events); the
    first and last edges lie beyond the window's reach, where the CDF is taken as 0 and 1."""
    inner = edges[:, 1:-1, :]
    s = sigma[:, None, :]
    width = (b - a)[:, None, :]
    point = np.abs(width) < 1e-6 * s  # a point-like segment: the plain erf difference
    cdf = s * (_normal_antiderivative((inner - a[:, None, :]) / s)
               - _normal_antiderivative((inner - b[:, None, :]) / s)) / np.where(point, 1.0, width)
    if point.any():
        cdf = np.where(point, ndtr((inner - 0.5 * (a + b)[:, None, :]) / s), cdf)
    return _fractions_from_cdf(cdf)


def _point_fractions(edges: np.ndarray, centre: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Fractions between consecutive edges of N(centre, sigma): erf differences (first and last
    edge beyond the window's reach, as above)."""
    return _fractions_from_cdf(ndtr((edges[:, 1:-1, :] - centre[:, None, :]) / sigma[:, None, :]))


def _fractions_from_cdf(inner: np.ndarray) -> np.ndarray:
    """Differences of the CDF at the window edges, with 0 below the first and 1 above the last;
    so a window keeps all of a segment's charge (its tails beyond 4.5 sigma fold into its edge
    pixels)."""
    shape = (inner.shape[0], 1, inner.shape[2])
    return np.diff(np.concatenate([np.zeros(shape), inner, np.ones(shape)], axis=1), axis=1)


def collect(tracks: Tracks, g: Geometry, table: DriftTable) -> np.ndarray:
    """Cumulative collected charge (n, n_time_slices, rows, cols) float32 electrons."""
    n = len(tracks.x_mid)
    out = np.zeros(n * g.n_time_slices * g.rows * g.cols, dtype=np.float32)
    # blocks of similar |cotAlpha| need similar x windows: most blocks get narrow ones
    order = np.argsort(np.abs(tracks.cot_alpha), kind="stable")
    # noise alone passing the threshold (6.7 sigma by default) is searched for only if possible
    noise_can_fire = bool(tracks.noise.size) and float(tracks.noise.max()) >= g.threshold_electrons - 1.0
    for start in range(0, n, _CHUNK):
        _collect_chunk(tracks, order[start:start + _CHUNK], g, table, out, noise_can_fire)
    return out.reshape(n, g.n_time_slices, g.rows, g.cols)


def _collect_chunk(tracks: Tracks, part: np.ndarray, g: Geometry, table: DriftTable, out: np.ndarray,
                   noise_can_fire: bool = True) -> None:
    """Fill the events `part` (indices) of the flat output (events, slices, pixels).

    Arrays are (segment, window, event) with events innermost, so numpy's inner loops are
    long. Only pixels that receive charge are accumulated (a cluster covers a few dozen of
    the 273); contributions below _MIN_CONTRIBUTION electrons are dropped."""
    n = len(part)
    slices, pixels = g.n_time_slices, g.rows * g.cols
    half = 0.5 * g.thickness
    cot_a = tracks.cot_alpha[part][None, :]
    cot_b = tracks.cot_beta[part][None, :]
    z_lo, z_hi = table.z_lo[:, None], table.z_hi[:, None]
    z_mid, dz = 0.5 * (z_lo + z_hi), z_hi - z_lo
    sigma = table.sigma[:, None]
    # x: the segment's extent at the collecting plane (drift is along z, Lorentz along y)
    xa = tracks.x_mid[part][None, :] + cot_a * (z_lo - half)
    xb = tracks.x_mid[part][None, :] + cot_a * (z_hi - half)
    reach_x = _SIGMA_WINDOW * sigma
    nx_edges = int(np.ceil((np.abs(xb - xa) + 2 * reach_x).max(initial=0.0) / g.pitch_x)) + 2
    col0, x_edges = _pixel_edges(np.minimum(xa, xb) - reach_x, -0.5 * g.cols * g.pitch_x, g.pitch_x, nx_edges)
    fx = _line_fractions(x_edges, xa, xb, np.broadcast_to(sigma, xa.shape))
    # y: centre with the Lorentz shift; the segment's extent enters the variance as a uniform
    yc = tracks.y_mid[part][None, :] + cot_b * (z_mid - half) + g.tan_lorentz * z_mid
    sy = np.sqrt(sigma**2 + np.square((cot_b + g.tan_lorentz) * dz) / 12.0)
    reach_y = _SIGMA_WINDOW * sy
    ny_edges = int(np.ceil(2 * reach_y.max(initial=0.0) / g.pitch_y)) + 2
    row0, y_edges = _pixel_edges(yc - reach_y, -0.5 * g.rows * g.pitch_y, g.pitch_y, ny_edges)
    fy = _point_fractions(y_edges, yc, sy)

    cols = col0[:, None, :] + np.arange(nx_edges - 1)[None, :, None]  # (seg, wx, event)
    rows = row0[:, None, :] + np.arange(ny_edges - 1)[None, :, None]  # (seg, wy, event)
    fx *= (cols >= 0) & (cols < g.cols)  # charge beyond the array is lost
    fy *= (rows >= 0) & (rows < g.rows)
    q = tracks.deposits[part].T * (table.slice_index < slices)[:, None]  # after the last slice: lost
    weight = (q[:, None, :] * fy)[:, :, None, :] * fx[:, None, :, :]  # (seg, wy, wx, event)
    hit = weight > _MIN_CONTRIBUTION
    # one code per contribution: (arrival slice, event, pixel), selected in one pass
    event_row = (np.arange(n) * pixels)[None, None, :] + rows * g.cols  # (seg, wy, event)
    arrival_base = np.minimum(table.slice_index, slices - 1) * (n * pixels)
    code = (arrival_base[:, None, None, None] + event_row[:, :, None, :] + cols[:, None, :, :])[hit]
    weight = weight[hit]
    arrival, key = np.divmod(code, n * pixels)
    # compact numbering of the touched (event, pixel) pairs
    touched = np.bincount(key, minlength=n * pixels).astype(bool)
    touched_keys = np.flatnonzero(touched)
    n_touched = touched_keys.size
    compact = np.cumsum(touched) - 1
    increments = np.bincount(arrival * n_touched + compact[key], weights=weight,
                             minlength=slices * n_touched).reshape(slices, n_touched)
    for k in range(1, slices):
        increments[k] += increments[k - 1]
    t_event, t_pixel = np.divmod(touched_keys, pixels)
    reading = increments
    reading += tracks.noise[part[t_event], t_pixel]
    np.rint(reading, out=reading)
    reading[reading < g.threshold_electrons] = 0.0
    np.maximum(reading, 0.0, out=reading)  # a zero threshold must not let noise read negative
    base = part[t_event] * (slices * pixels) + t_pixel
    # scatter only the non-zero readings (the output starts zeroed), already as float32:
    # scattered writes are the expensive part here
    nonzero = reading != 0
    out[(base[None, :] + (np.arange(slices) * pixels)[:, None])[nonzero]] = reading[nonzero].astype(np.float32)
    if not noise_can_fire:
        return
    # pixels without charge read their noise alone when it passes the threshold
    alone = np.rint(tracks.noise[part].ravel())
    alone[(alone < g.threshold_electrons) | touched] = 0.0
    np.maximum(alone, 0.0, out=alone)
    quiet = np.flatnonzero(alone)
    if quiet.size:
        q_event, q_pixel = np.divmod(quiet, pixels)
        base = part[q_event] * (slices * pixels) + q_pixel
        out[base[None, :] + (np.arange(slices) * pixels)[:, None]] = alone[quiet][None, :]


def labels_of(tracks: Tracks, g: Geometry) -> dict[str, np.ndarray]:
    """The 13 label columns (float32) of the drawn tracks."""
    half = 0.5 * g.thickness
    norm = np.sqrt(1.0 + tracks.cot_alpha**2 + tracks.cot_beta**2)
    values = {
        "x-entry": tracks.x_mid + tracks.cot_alpha * half,
        "y-entry": tracks.y_mid + tracks.cot_beta * half,
        "z-entry": np.full_like(tracks.x_mid, g.thickness),
        "n_x": -tracks.cot_alpha / norm,
        "n_y": -tracks.cot_beta / norm,
        "n_z": -1.0 / norm,
        "number_eh_pairs": np.rint(tracks.deposits.sum(axis=1)),
        "y-local": tracks.y_local,
        "pt": tracks.pt,
        "cotAlpha": tracks.cot_alpha,
        "cotBeta": tracks.cot_beta,
        "y-midplane": tracks.y_mid,
        "x-midplane": tracks.x_mid,
    }
    return {name: values[name].astype(np.float32) for name in LABEL_COLUMNS}


def simulate(n_events: int, seed: int, geometry: Geometry = Geometry()) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """n_events clusters: charge (n, 20, rows, cols) float32 electrons and the 13 labels."""
    if isinstance(n_events, bool) or not isinstance(n_events, (int, np.integer)) or n_events < 1:
        raise PipelineError(f"number of events must be a positive integer, got {n_events!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise PipelineError(f"seed must be a non-negative integer, got {seed!r}")
    rng = np.random.default_rng(int(seed))
    table = drift_table(geometry)
    tracks = draw_tracks(int(n_events), rng, geometry, table)
    return collect(tracks, geometry, table), labels_of(tracks, geometry)


def file_seed(seed: int, index: int) -> int:
    """Seed of file `index` of a dataset: derived from (seed, index), never colliding in practice."""
    return int(np.random.SeedSequence([int(seed), int(index)]).generate_state(1, dtype=np.uint64)[0])


_DATASET_FILES = ("recon2D_", "recon3D_", "labels_")


def _check_out_dir(out_dir: Path) -> None:
    """Refuse to replace a directory holding anything but a previously generated dataset."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise PipelineError(f"{out_dir}: exists and is not a directory")
    for entry in out_dir.iterdir():
        generated = entry.name in ("dataset.json", ".complete") or (
            entry.name.startswith(_DATASET_FILES) and entry.name.endswith(".parquet"))
        if not generated:
            raise PipelineError(f"{out_dir}: contains {entry.name!r}, which generating would delete; "
                                "choose an empty or new directory")


def generate_dataset(out_dir: Path, n_files: int, events_per_file: int, seed: int,
                     geometry: Geometry = Geometry()) -> list[Path]:
    """Write n_files chunks (recon3D, recon2D, labels) into out_dir, replacing it as a whole
    (atomically); file i is seeded from (seed, i). Returns the recon3D paths."""
    from tqdm import tqdm

    for name, value in (("files", n_files), ("events per file", events_per_file)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise PipelineError(f"number of {name} must be a positive integer, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise PipelineError(f"seed must be a non-negative integer, got {seed!r}")
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    tags = [f"s{seed}_{i:04d}" for i in range(n_files)]
    with atomic_dir(out_dir) as tmp:
        for i, tag in enumerate(tqdm(tags, desc="generate", unit="file", disable=None)):
            charge, labels = simulate(events_per_file, file_seed(seed, i), geometry)
            write_pair(tmp, tag, charge, labels)
        write_json(tmp / "dataset.json", {
            "generator": "train.generator",
            "seed": int(seed),
            "files": int(n_files),
            "events_per_file": int(events_per_file),
            "tags": tags,
            "geometry": asdict(geometry),
        })
    log.info("wrote %d files of %d events to %s", n_files, events_per_file, out_dir)
    return [out_dir / f"recon3D_{tag}.parquet" for tag in tags]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output directory (default {DEFAULT_OUT})")
    parser.add_argument("--files", type=int, default=12, help="number of file chunks (default 12)")
    parser.add_argument("--events-per-file", type=int, default=5000, help="events per chunk (default 5000)")
    parser.add_argument("--seed", type=int, default=1, help="random seed (default 1)")


def run(args: argparse.Namespace) -> int:
    paths = generate_dataset(args.out, args.files, args.events_per_file, args.seed)
    summary = json.loads((Path(args.out) / "dataset.json").read_text())
    print(f"{args.out}: {len(paths)} files x {summary['events_per_file']} events (seed {summary['seed']})")
    return 0
