"""The synthetic generator: determinism, label consistency and physical sanity.

Expected values come from the physics the module docstring states (track geometry, Lorentz
shift tan(theta_L) * drift distance, charge conservation) or from a slow, direct per-event
numerical integration of the charge sharing, never from the vectorized code itself."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import erf

from smartpix import cli
from smartpix.errors import PipelineError
from train import dataset as D
from train import generator as S

N = 3000
CLEAN = S.Geometry(noise_electrons=0.0, threshold_electrons=0.0)
ROW_Y = (np.arange(13) - 6) * 12.5
COL_X = (np.arange(21) - 10) * 50.0


@pytest.fixture(scope="module")
def clean():
    return S.simulate(N, seed=11, geometry=CLEAN)


@pytest.fixture(scope="module")
def default():
    return S.simulate(N, seed=11)


def contained_in_y(labels, margin: float = 20.0) -> np.ndarray:
    """Events whose charge (track + Lorentz shift 0.3 z, with a diffusion margin) stays inside the rows."""
    z = np.array([0.0, 100.0])[:, None]
    y = labels["y-midplane"] + labels["cotBeta"] * (z - 50.0) + 0.3 * z
    return (y.min(axis=0) - margin > -81.25) & (y.max(axis=0) + margin < 81.25)


def centroid(charge: np.ndarray, axis: str) -> np.ndarray:
    """Charge-weighted centroid (um) of (n, 13, 21) maps along y (rows) or x (columns)."""
    if axis == "y":
        return (charge.sum(axis=2) * ROW_Y).sum(axis=1) / charge.sum(axis=(1, 2))
    return (charge.sum(axis=1) * COL_X).sum(axis=1) / charge.sum(axis=(1, 2))


def fit(target: np.ndarray, *regressors: np.ndarray) -> np.ndarray:
    """Least-squares coefficients of target on (1, regressors...)."""
    design = np.column_stack([np.ones_like(target), *regressors])
    return np.linalg.lstsq(design, target, rcond=None)[0]


# --------------------------------------------------------------------------------------------
# determinism and files


def test_same_seed_same_events_other_seed_other_events():
    a_charge, a_labels = S.simulate(300, seed=5)
    b_charge, b_labels = S.simulate(300, seed=5)
    c_charge, _ = S.simulate(300, seed=6)
    np.testing.assert_array_equal(a_charge, b_charge)
    for name in D.LABEL_COLUMNS:
        np.testing.assert_array_equal(a_labels[name], b_labels[name])
    assert not np.array_equal(a_charge, c_charge)
    assert a_charge.shape == (300, 20, 13, 21) and a_charge.dtype == np.float32
    assert set(a_labels) == set(D.LABEL_COLUMNS) and all(v.dtype == np.float32 for v in a_labels.values())


def test_generated_files_are_byte_identical_for_a_seed(tmp_path):
    first = S.generate_dataset(tmp_path / "a", n_files=2, events_per_file=150, seed=3)
    second = S.generate_dataset(tmp_path / "b", n_files=2, events_per_file=150, seed=3)
    assert [p.name for p in second] == [p.name for p in first]
    assert [p.name for p in first] == ["recon3D_s3_0000.parquet", "recon3D_s3_0001.parquet"]
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "b").iterdir())
    assert len(names) == 7  # 2 x (recon3D, recon2D, labels) + dataset.json
    for name in names:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    pairs = D.discover(tmp_path / "a")
    assert [p.n_events for p in pairs] == [150, 150]
    x0, y0 = D.read_pair(pairs[0], D.DataOptions())
    x1, y1 = D.read_pair(pairs[1], D.DataOptions())
    assert not np.array_equal(y0, y1)  # each file has its own seed
    # the file holds what simulate makes for the file's seed
    charge, labels = S.simulate(150, S.file_seed(3, 1))
    np.testing.assert_allclose(x1[..., 1], charge[:, 19] / 1000.0, rtol=1e-6)
    np.testing.assert_allclose(y1[:, 2], labels["cotAlpha"] / 8.0, rtol=1e-6)


def test_regenerating_replaces_the_dataset_but_never_foreign_files(tmp_path):
    out = tmp_path / "data"
    S.generate_dataset(out, n_files=3, events_per_file=20, seed=1)
    (out / ".complete").touch()
    S.generate_dataset(out, n_files=2, events_per_file=20, seed=2)
    assert [p.tag for p in D.discover(out)] == ["s2_0000", "s2_0001"]  # no stale seed-1 files
    (out / "notes.txt").write_text("mine")
    with pytest.raises(PipelineError, match="contains 'notes.txt'"):
        S.generate_dataset(out, n_files=1, events_per_file=20, seed=3)
    assert (out / "notes.txt").read_text() == "mine"


def test_cli_generate(tmp_path, capsys):
    out = tmp_path / "cli"
    assert cli.main(["generate", "--out", str(out), "--files", "2", "--events-per-file", "30", "--seed", "4"]) == 0
    assert "2 files x 30 events" in capsys.readouterr().out
    assert [p.n_events for p in D.discover(out)] == [30, 30]
    assert cli.main(["generate", "--out", str(tmp_path / "bad"), "--files", "0"]) == 2
    assert "number of files must be a positive integer" in capsys.readouterr().err


def test_invalid_arguments():
    with pytest.raises(PipelineError, match="positive integer"):
        S.simulate(0, seed=1)
    with pytest.raises(PipelineError, match="seed must be a non-negative integer"):
        S.simulate(10, seed=-1)
    with pytest.raises(PipelineError, match="bias_voltage"):
        S.Geometry(bias_voltage=20.0, depletion_voltage=30.0)
    with pytest.raises(PipelineError, match="noise_electrons must not be negative"):
        S.Geometry(noise_electrons=-1.0)


# --------------------------------------------------------------------------------------------
# labels


def test_labels_are_consistent_track_parameters(default):
    _, lab = default
    cot_a, cot_b = lab["cotAlpha"].astype(float), lab["cotBeta"].astype(float)
    n = np.stack([lab["n_x"], lab["n_y"], lab["n_z"]]).astype(float)
    np.testing.assert_allclose(np.linalg.norm(n, axis=0), 1.0, rtol=1e-6)
    assert (n[2] < 0).all()  # enters at z = 100, travels towards the pixels at z = 0
    np.testing.assert_allclose(n[0] / n[2], cot_a, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(n[1] / n[2], cot_b, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(lab["z-entry"], 100.0)
    np.testing.assert_allclose(lab["x-entry"], lab["x-midplane"] + 50.0 * cot_a, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(lab["y-entry"], lab["y-midplane"] + 50.0 * cot_b, rtol=1e-5, atol=1e-3)
    # a track from the beam line bent in 3.8 T, seen on a flat module at R = 30 mm
    pt = lab["pt"].astype(float)
    psi = np.arctan(lab["y-local"] / 30.0) - np.sign(pt) * np.arcsin(0.3 * 3.8 * 0.030 / (2 * np.abs(pt)))
    np.testing.assert_allclose(cot_b, np.tan(psi), atol=1e-5)


def test_label_ranges_match_the_real_dataset(default):
    _, lab = default
    assert np.abs(lab["x-midplane"]).max() <= 75.0 and np.abs(lab["y-midplane"]).max() <= 18.75
    cot_a = np.abs(lab["cotAlpha"])
    assert 5.0 < cot_a.max() < 7.5
    assert 0.25 < (cot_a < 1.0).mean() < 0.45  # broad, but mostly small
    assert 0.25 < np.abs(lab["cotBeta"]).max() < 0.36
    assert np.abs(lab["y-local"]).max() <= 8.02
    assert np.abs(lab["pt"]).min() >= 0.5 and 0.4 < (lab["pt"] > 0).mean() < 0.6
    path = 100.0 * np.sqrt(1 + lab["cotAlpha"].astype(float) ** 2 + lab["cotBeta"].astype(float) ** 2)
    per_um = lab["number_eh_pairs"] / path
    assert 70.0 < per_um.mean() < 80.0  # about 75 e-h pairs per um
    short = np.abs(lab["cotAlpha"]) < 1.0  # long paths average the fluctuations out
    assert per_um[short].mean() > 1.08 * np.median(per_um[short])  # a Landau-like tail
    assert 4000 < lab["number_eh_pairs"].min() and lab["number_eh_pairs"].max() > 40000


# --------------------------------------------------------------------------------------------
# physics of the charge maps


def test_cumulative_charge_never_decreases(default, clean):
    for charge, _ in (default, clean):
        assert (np.diff(charge, axis=1) >= 0).all()
        assert (charge >= 0).all()
        assert charge[:, 0].sum() < 0.5 * charge[:, -1].sum()


def test_collected_charge_is_the_deposited_charge(clean, default):
    charge, lab = clean
    inside = contained_in_y(lab)
    assert inside.mean() > 0.8
    total = charge[inside, -1].sum(axis=(1, 2)).astype(float)
    eh = lab["number_eh_pairs"][inside].astype(float)
    pixels = (charge[inside, -1] > 0).sum(axis=(1, 2))
    assert (np.abs(total - eh) <= 0.5 * pixels + 1.0 + 2e-5 * eh).all()  # whole-electron rounding only
    # with the 200 e threshold and 30 e noise a few percent is lost in the cluster's edge pixels
    charge, lab = default
    lost = 1.0 - charge[inside, -1].sum(axis=(1, 2)) / lab["number_eh_pairs"][inside]
    assert 0.001 < lost.mean() < 0.08 and lost.min() > -0.05


def test_threshold_and_noise_act_on_each_pixel_reading(clean):
    charge, _ = clean
    thresholded, _ = S.simulate(N, seed=11, geometry=S.Geometry(noise_electrons=0.0))
    np.testing.assert_array_equal(thresholded, np.where(charge >= 200.0, charge, 0.0))
    noisy, _ = S.simulate(N, seed=11, geometry=S.Geometry(threshold_electrons=0.0))
    both = (charge[:, 10] > 300) & (charge[:, 19] > 300)
    shift10 = (noisy[:, 10] - charge[:, 10])[both]
    shift19 = (noisy[:, 19] - charge[:, 19])[both]
    assert np.abs(shift10 - shift19).max() <= 1.0  # one noise sample per pixel, shared by the slices
    assert 27.0 < shift19.std() < 33.0


def test_cluster_length_in_x_grows_with_cot_alpha(default):
    charge, lab = default
    columns = (charge[:, -1].sum(axis=1) > 0).sum(axis=1)
    cot_a = np.abs(lab["cotAlpha"])
    means = [columns[(cot_a >= lo) & (cot_a < lo + 1)].mean() for lo in range(6)]
    assert all(b > a + 1.0 for a, b in zip(means, means[1:])), means
    slope = fit(columns.astype(float), cot_a)[1]
    assert 1.7 < slope < 2.3  # the track crosses 100 um * |cotAlpha| = 2 |cotAlpha| columns


def test_centroids_follow_position_lorentz_drift_and_angles(clean):
    charge, lab = clean
    keep = contained_in_y(lab) & (np.abs(lab["cotAlpha"]) < 3.0)
    y_mid, x_mid = lab["y-midplane"][keep].astype(float), lab["x-midplane"][keep].astype(float)
    cot_a, cot_b = lab["cotAlpha"][keep].astype(float), lab["cotBeta"][keep].astype(float)
    final, first = charge[keep, -1].astype(float), charge[keep, 0].astype(float)
    # all the charge: centred on the mid-plane hit, shifted by tan(theta_L) * 50 um of mean drift
    intercept, slope_pos, slope_cot = fit(centroid(final, "y"), y_mid, cot_b)
    assert 0.95 < slope_pos < 1.05 and 13.5 < intercept < 16.5 and abs(slope_cot) < 4.0
    intercept, slope_pos, slope_cot = fit(centroid(final, "x"), x_mid, cot_a)
    assert 0.9 < slope_pos < 1.1 and abs(intercept) < 3.0 and abs(slope_cot) < 4.0
    # the first 200 ps hold the charge from the first ~11 um above the pixels: the early
    # centroid sits at z ~ 5 um, i.e. (5 - 50) * cot away from the mid-plane hit
    early = first.sum(axis=(1, 2)) > 0
    _, slope_pos, slope_cot = fit(centroid(first[early], "y"), y_mid[early], cot_b[early])
    assert 0.9 < slope_pos < 1.1 and -50.0 < slope_cot < -38.0
    _, slope_pos, slope_cot = fit(centroid(first[early], "x"), x_mid[early], cot_a[early])
    assert 0.85 < slope_pos < 1.15 and -50.0 < slope_cot < -38.0


def reference_collect(tracks: S.Tracks, g: S.Geometry, table: S.DriftTable, samples: int = 400) -> np.ndarray:
    """Per event and segment: the x sharing by numerical integration (midpoint rule) of erf
    differences along the segment, y by erf differences of the widened Gaussian, all pixels."""

    def cdf(t: np.ndarray) -> np.ndarray:
        return 0.5 * (1.0 + erf(t / np.sqrt(2.0)))

    x_edges = (np.arange(g.cols + 1) - g.cols / 2) * g.pitch_x
    y_edges = (np.arange(g.rows + 1) - g.rows / 2) * g.pitch_y
    n = len(tracks.x_mid)
    out = np.zeros((n, g.n_time_slices, g.rows, g.cols))
    u = (np.arange(samples) + 0.5) / samples
    for e in range(n):
        increments = np.zeros((g.n_time_slices, g.rows, g.cols))
        for s in range(table.n_segments):
            z_lo, z_hi, sigma = table.z_lo[s], table.z_hi[s], table.sigma[s]
            z = z_lo + u * (z_hi - z_lo)
            x = tracks.x_mid[e] + tracks.cot_alpha[e] * (z - 50.0)
            fx = np.diff(cdf((x_edges[None, :] - x[:, None]) / sigma), axis=1).mean(axis=0)
            zm = 0.5 * (z_lo + z_hi)
            yc = tracks.y_mid[e] + tracks.cot_beta[e] * (zm - 50.0) + g.tan_lorentz * zm
            sy = np.sqrt(sigma**2 + ((tracks.cot_beta[e] + g.tan_lorentz) * (z_hi - z_lo)) ** 2 / 12.0)
            fy = np.diff(cdf((y_edges - yc) / sy))
            increments[table.slice_index[s]] += tracks.deposits[e, s] * np.outer(fy, fx)
        total = np.cumsum(increments, axis=0) + tracks.noise[e].reshape(g.rows, g.cols)
        reading = np.rint(total)
        out[e] = np.where(reading >= g.threshold_electrons, np.maximum(reading, 0.0), 0.0)
    return out


@pytest.mark.parametrize("geometry", [CLEAN, S.Geometry(), S.Geometry(threshold_electrons=0.0)],
                         ids=["clean", "default", "noise-without-threshold"])
def test_vectorized_sharing_matches_direct_integration(geometry):
    table = S.drift_table(geometry)
    tracks = S.draw_tracks(120, np.random.default_rng(21), geometry, table)
    # include the steepest tracks, whose segments cross several columns
    steep = np.argsort(np.abs(tracks.cot_alpha))[-5:]
    assert np.abs(tracks.cot_alpha[steep]).min() > 5.0
    fast = S.collect(tracks, geometry, table)
    slow = reference_collect(tracks, geometry, table)
    difference = np.abs(fast - slow)
    # rounding to whole electrons may differ by one where the two sums straddle a half
    assert difference.max() <= 1.0
    assert (difference > 0).mean() < 1e-3
    assert fast.sum() > 0
