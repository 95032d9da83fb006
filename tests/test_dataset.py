"""The parquet format, reader, digitization and streaming loader of train.dataset.

Pixel data here are made with numpy (not the simulator) so that every expected value is
computed independently of the code under test."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from smartpix.errors import PipelineError
from train import dataset as D

ROWS, COLS, SLICES = 13, 21, 20
SCALES = np.array([75.0, 18.75, 8.0, 0.5], dtype=np.float32)


def make_charge(n: int, seed: int) -> np.ndarray:
    """Cumulative, sparse, integer electron counts (n, 20, 13, 21)."""
    rng = np.random.default_rng(seed)
    steps = rng.exponential(300.0, size=(n, SLICES, ROWS, COLS)) * (rng.random((n, SLICES, ROWS, COLS)) < 0.08)
    return np.rint(np.cumsum(steps, axis=1)).astype(np.float32)


def make_labels(n: int, first_id: int) -> dict[str, np.ndarray]:
    """Labels whose x-midplane is a unique event id (to follow events through the loader)."""
    rng = np.random.default_rng(first_id)
    labels = {name: rng.normal(size=n).astype(np.float32) for name in D.LABEL_COLUMNS}
    labels["x-midplane"] = np.arange(first_id, first_id + n, dtype=np.float32)
    labels["z-entry"] = np.full(n, 100.0, dtype=np.float32)
    return labels


def write_dataset(directory: Path, n_files: int, n_events: int) -> dict[str, tuple[np.ndarray, dict]]:
    written = {}
    for i in range(n_files):
        tag = f"t{i:02d}"
        charge, labels = make_charge(n_events, seed=i), make_labels(n_events, first_id=1000 * i)
        D.write_pair(directory, tag, charge, labels)
        written[tag] = (charge, labels)
    return written


def write_table(path: Path, columns: dict[str, np.ndarray]) -> None:
    pq.write_table(pa.table(columns), path)


def targets_of(labels: dict[str, np.ndarray]) -> np.ndarray:
    return np.stack([labels[t] for t in D.TARGETS], axis=1) / SCALES


# --------------------------------------------------------------------------------------------
# format and round trip


def test_files_follow_the_published_layout(tmp_path):
    charge, labels = make_charge(7, 0), make_labels(7, 0)
    D.write_pair(tmp_path, "abc", charge, labels)
    recon3d = pq.read_table(tmp_path / "recon3D_abc.parquet")
    assert recon3d.column_names == [str(i) for i in range(5460)]
    assert all(t == pa.float32() for t in recon3d.schema.types)
    values = np.stack([recon3d.column(str(i)).to_numpy() for i in range(5460)], axis=1)
    # the README's reshape: time-major, then row, then column
    np.testing.assert_array_equal(values.reshape(7, 20, 13, 21), charge)
    recon2d = pq.read_table(tmp_path / "recon2D_abc.parquet")
    assert recon2d.column_names == [str(i) for i in range(273)]
    values2d = np.stack([recon2d.column(str(i)).to_numpy() for i in range(273)], axis=1)
    np.testing.assert_array_equal(values2d.reshape(7, 13, 21), charge[:, 19])
    label_table = pq.read_table(tmp_path / "labels_abc.parquet")
    assert tuple(label_table.column_names) == D.LABEL_COLUMNS
    assert all(t == pa.float32() for t in label_table.schema.types)
    np.testing.assert_array_equal(label_table.column("cotBeta").to_numpy(), labels["cotBeta"])


def test_round_trip_two_slices(tmp_path):
    written = write_dataset(tmp_path, 2, 9)
    pairs = D.discover(tmp_path)
    assert [p.tag for p in pairs] == ["t00", "t01"]
    assert [p.n_events for p in pairs] == [9, 9]
    assert pairs[0].labels == tmp_path / "labels_t00.parquet"
    x, y = D.read_pair(pairs[1], D.DataOptions())
    charge, labels = written["t01"]
    assert x.shape == (9, 13, 21, 2) and x.dtype == np.float32
    assert y.shape == (9, 4) and y.dtype == np.float32
    np.testing.assert_allclose(x[..., 0], charge[:, 0] / 1000.0, rtol=1e-6)
    np.testing.assert_allclose(x[..., 1], charge[:, 19] / 1000.0, rtol=1e-6)
    np.testing.assert_allclose(y, targets_of(labels), rtol=1e-6)


def test_round_trip_all_slices_any_order_and_2d(tmp_path):
    written = write_dataset(tmp_path, 1, 5)
    charge, labels = written["t00"]
    pair = D.discover(tmp_path)[0]
    x, _ = D.read_pair(pair, D.DataOptions(time_slices=tuple(range(20)), charge_unit=1.0))
    assert x.shape == (5, 13, 21, 20)
    np.testing.assert_array_equal(np.moveaxis(x, -1, 1), charge)
    x, _ = D.read_pair(pair, D.DataOptions(time_slices=(7, 3), charge_unit=1.0))
    np.testing.assert_array_equal(x[..., 0], charge[:, 7])
    np.testing.assert_array_equal(x[..., 1], charge[:, 3])
    pair2d = D.discover(tmp_path, layout="2D")[0]
    assert pair2d.recon.name == "recon2D_t00.parquet"
    x2d, y2d = D.read_pair(pair2d, D.DataOptions(layout="2D"))
    assert x2d.shape == (5, 13, 21, 1)
    np.testing.assert_allclose(x2d[..., 0], charge[:, 19] / 1000.0, rtol=1e-6)
    np.testing.assert_allclose(y2d, targets_of(labels), rtol=1e-6)


def test_only_the_selected_columns_are_read(tmp_path):
    options = D.DataOptions()
    expected = [str(i) for i in range(273)] + [str(19 * 273 + i) for i in range(273)]
    assert options.pixel_columns() == expected
    # a NaN in slice 5 is invisible to a (0, 19) reader, but not to a reader of slice 5
    charge = make_charge(4, 1).reshape(4, -1)
    charge[2, 5 * 273 + 40] = np.nan
    write_table(tmp_path / "recon3D_a.parquet", {str(i): charge[:, i] for i in range(5460)})
    write_table(tmp_path / "labels_a.parquet", make_labels(4, 0))
    pair = D.discover(tmp_path)[0]
    x, _ = D.read_pair(pair, options)
    assert np.isfinite(x).all()
    with pytest.raises(PipelineError, match=r"recon3D_a\.parquet.*'1405'.*event 2"):
        D.read_pair(pair, D.DataOptions(time_slices=(5,)))


def test_input_shape_and_options_json_round_trip():
    assert D.DataOptions().input_shape() == (13, 21, 2)
    assert D.DataOptions(time_slices=tuple(range(20))).input_shape() == (13, 21, 20)
    assert D.DataOptions(layout="2D").input_shape() == (13, 21, 1)
    options = D.DataOptions(adc_thresholds=(400.0, 1000.0, 2000.0), noise_electrons=75.0, standardize=True,
                            pixel_mean=1.25, pixel_std=0.7, targets=("cotAlpha",), target_scales=(8.0,))
    again = D.DataOptions.from_dict(json.loads(json.dumps(options.to_dict())))
    assert again == options
    assert D.DataOptions.from_dict(D.DataOptions().to_dict()) == D.DataOptions()


def test_unscale_targets_recovers_labels(tmp_path):
    written = write_dataset(tmp_path, 1, 6)
    _, y = D.read_pair(D.discover(tmp_path)[0], D.DataOptions())
    labels = written["t00"][1]
    np.testing.assert_allclose(D.unscale_targets(y, D.DataOptions()),
                               np.stack([labels[t] for t in D.TARGETS], axis=1), rtol=1e-6)


def test_load_arrays_takes_the_first_events_in_file_order(tmp_path):
    write_dataset(tmp_path, 3, 10)
    pairs = D.discover(tmp_path)
    x, y = D.load_arrays(pairs, D.DataOptions(), max_events=25)
    assert x.shape == (25, 13, 21, 2)
    ids = np.rint(D.unscale_targets(y, D.DataOptions())[:, 0])
    np.testing.assert_array_equal(ids, list(range(10)) + list(range(1000, 1010)) + list(range(2000, 2005)))
    x_all, _ = D.load_arrays(pairs, D.DataOptions())
    assert len(x_all) == 30


# --------------------------------------------------------------------------------------------
# splits


def fake_pairs(n: int) -> list[D.FilePair]:
    return [D.FilePair(Path(f"recon3D_{i:03d}.parquet"), Path(f"labels_{i:03d}.parquet"), f"{i:03d}", 10)
            for i in range(n)]


def test_split_is_by_file_seeded_and_disjoint():
    pairs = fake_pairs(10)
    train, val, test = D.split_files(pairs, seed=3)
    assert (len(train), len(val), len(test)) == (6, 2, 2)
    tags = [p.tag for p in train + val + test]
    assert sorted(tags) == [p.tag for p in pairs]  # disjoint and complete
    assert D.split_files(list(reversed(pairs)), seed=3) == (train, val, test)  # input order is irrelevant
    others = {tuple(p.tag for p in D.split_files(pairs, seed=s)[1]) for s in range(10)}
    assert len(others) > 1  # the seed matters


def test_split_gives_every_non_empty_split_a_file():
    train, val, test = D.split_files(fake_pairs(3), seed=0)
    assert (len(train), len(val), len(test)) == (1, 1, 1)
    train, val, test = D.split_files(fake_pairs(2), val_fraction=0.15, test_fraction=0.0)
    assert (len(train), len(val), len(test)) == (1, 1, 0)
    with pytest.raises(PipelineError, match="2 data file"):
        D.split_files(fake_pairs(2))
    with pytest.raises(PipelineError, match="val_fraction"):
        D.split_files(fake_pairs(5), val_fraction=1.5)


# --------------------------------------------------------------------------------------------
# digitization, noise, standardization


def constant_pixels(tmp_path: Path, values: np.ndarray) -> D.FilePair:
    """A file whose slice-19 pixels of event i are all values[i] (slice 0 zero)."""
    n = len(values)
    charge = np.zeros((n, SLICES, ROWS, COLS), dtype=np.float32)
    charge[:, 19] = values[:, None, None]
    D.write_pair(tmp_path, "c", charge, make_labels(n, 0))
    return D.discover(tmp_path)[0]


EDGE_VALUES = np.array([0, 1, 124, 125, 126, 375, 399, 400, 401, 625, 999, 1000, 1999, 2000, 2001,
                        7000, 20000, 1e6], dtype=np.float32)


def test_threshold_digitization_counts_thresholds_reached(tmp_path):
    pair = constant_pixels(tmp_path, EDGE_VALUES)
    thresholds = (400.0, 1000.0, 2000.0)
    x, _ = D.read_pair(pair, D.DataOptions(adc_thresholds=thresholds))
    expected = np.searchsorted(np.asarray(thresholds), EDGE_VALUES, side="right")  # reached = value >= threshold
    np.testing.assert_array_equal(x[:, 5, 5, 1], expected)
    np.testing.assert_array_equal(x[..., 0], 0)


def test_adc_bits_round_half_to_even_and_saturate(tmp_path):
    pair = constant_pixels(tmp_path, EDGE_VALUES)
    x, _ = D.read_pair(pair, D.DataOptions(adc_bits=4, adc_lsb=250.0))
    codes = [min(round(float(v) / 250.0), 15) for v in EDGE_VALUES]  # Python rounds half to even
    assert codes[3] == 0 and codes[5] == 2 and codes[9] == 2  # 0.5, 1.5, 2.5 LSB
    np.testing.assert_allclose(x[:, 5, 5, 1], np.array(codes) * 0.25, rtol=1e-6)


def test_noise_is_seeded_and_applied_before_digitization(tmp_path):
    pair = constant_pixels(tmp_path, np.full(40, 1000.0, dtype=np.float32))
    noisy = D.DataOptions(noise_electrons=100.0, charge_unit=1.0)
    a, _ = D.read_pair(pair, noisy, seed=1)
    b, _ = D.read_pair(pair, noisy, seed=1)
    c, _ = D.read_pair(pair, noisy, seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert abs(a[..., 1].std() - 100.0) < 5.0 and abs(a[..., 1].mean() - 1000.0) < 3.0
    assert a.min() >= 0  # zero pixels got noise too, but no charge reads negative
    assert (a[..., 0] > 0).mean() > 0.4
    levels, _ = D.read_pair(pair, D.DataOptions(noise_electrons=100.0, adc_thresholds=(1000.0,)), seed=1)
    np.testing.assert_array_equal(levels[..., 1], (a[..., 1] >= 1000.0).astype(np.float32))


def test_standardization_uses_train_statistics_over_non_zero_pixels(tmp_path):
    write_dataset(tmp_path, 2, 12)
    pairs = D.discover(tmp_path)
    plain = D.DataOptions()
    x, _ = D.load_arrays(pairs, plain)
    nonzero = x[x != 0].astype(np.float64)
    mean, std = D.pixel_statistics(pairs, plain)
    assert mean == pytest.approx(nonzero.mean(), rel=1e-6)
    assert std == pytest.approx(nonzero.std(), rel=1e-6)
    standardized = D.DataOptions(standardize=True, pixel_mean=mean, pixel_std=std)
    z, _ = D.load_arrays(pairs, standardized)
    np.testing.assert_array_equal(z == 0, x == 0)
    np.testing.assert_allclose(z[x != 0], (x[x != 0] - mean) / std, rtol=1e-5, atol=1e-6)
    thresholds = D.DataOptions(adc_thresholds=(400.0, 1000.0))
    levels, _ = D.load_arrays(pairs, thresholds)
    assert D.pixel_statistics(pairs, thresholds)[0] == pytest.approx(levels[levels != 0].mean(), rel=1e-6)


# --------------------------------------------------------------------------------------------
# streaming loader


def event_ids(batches) -> list[int]:
    return [int(round(v)) for _, y in batches for v in y[:, 0] * 75.0]


@pytest.mark.slow
def test_batches_cover_every_event_once_and_reshuffle_per_epoch(tmp_path):
    written = write_dataset(tmp_path, 5, 23)
    pairs = D.discover(tmp_path)
    everything = sorted(1000 * f + i for f in range(5) for i in range(23))
    options = D.DataOptions()
    epoch0 = list(D.iterate_batches(pairs, options, 10, shuffle=True, seed=4, epoch=0))
    assert sorted(event_ids(epoch0)) == everything
    assert [len(x) for x, _ in epoch0] == [10] * 11 + [5]
    assert event_ids(epoch0) == event_ids(D.iterate_batches(pairs, options, 10, shuffle=True, seed=4, epoch=0))
    epoch1 = event_ids(D.iterate_batches(pairs, options, 10, shuffle=True, seed=4, epoch=1))
    assert sorted(epoch1) == everything and epoch1 != event_ids(epoch0)
    ordered = event_ids(D.iterate_batches(pairs, options, 10, shuffle=False, seed=4))
    assert ordered == everything
    for x, y in epoch0:  # pixels travel with their labels
        ids = np.rint(y[:, 0] * 75.0).astype(int)
        for row, event in zip(x, ids):
            charge = written[f"t{event // 1000:02d}"][0][event % 1000]
            np.testing.assert_allclose(row[..., 1], charge[19] / 1000.0, rtol=1e-6)


@pytest.mark.slow
def test_tf_dataset_streams_each_epoch_and_repeats_with_the_seed(tmp_path):
    write_dataset(tmp_path, 4, 17)
    pairs = D.discover(tmp_path)
    everything = sorted(1000 * f + i for f in range(4) for i in range(17))

    def epoch(dataset) -> list[int]:
        return event_ids((x.numpy(), y.numpy()) for x, y in dataset)

    first = D.make_dataset(pairs, D.DataOptions(), batch_size=8, shuffle=True, seed=11)
    a0, a1 = epoch(first), epoch(first)
    assert sorted(a0) == everything and sorted(a1) == everything and a0 != a1
    second = D.make_dataset(pairs, D.DataOptions(), batch_size=8, shuffle=True, seed=11)
    assert epoch(second) == a0 and epoch(second) == a1
    x, y = next(iter(first))
    assert x.dtype.name == "float32" and y.dtype.name == "float32"
    assert tuple(x.shape) == (8, 13, 21, 2) and tuple(y.shape) == (8, 4)


# --------------------------------------------------------------------------------------------
# bad input: one PipelineError naming the file and the problem


def test_missing_or_empty_directory(tmp_path):
    with pytest.raises(PipelineError, match="does not exist"):
        D.discover(tmp_path / "nowhere")
    with pytest.raises(PipelineError, match=r"no recon3D_\*\.parquet files"):
        D.discover(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(PipelineError, match="not a directory"):
        D.discover(tmp_path / "file")


def test_recon_without_labels_and_labels_without_recon(tmp_path):
    write_dataset(tmp_path, 2, 3)
    (tmp_path / "labels_t01.parquet").unlink()
    with pytest.raises(PipelineError, match=r"recon3D_t01\.parquet: its labels file labels_t01\.parquet is missing"):
        D.discover(tmp_path)
    write_dataset(tmp_path, 2, 3)
    (tmp_path / "recon3D_t00.parquet").unlink()
    with pytest.raises(PipelineError, match=r"labels_t00\.parquet: labels file without its recon3D file"):
        D.discover(tmp_path)


def test_row_count_mismatch(tmp_path):
    D.write_pair(tmp_path, "a", make_charge(5, 0), make_labels(5, 0))
    write_table(tmp_path / "labels_a.parquet", make_labels(4, 0))
    with pytest.raises(PipelineError, match=r"recon3D_a\.parquet: 5 events but its labels file labels_a\.parquet has 4"):
        D.discover(tmp_path)


def write_recon(path: Path, columns: dict[str, np.ndarray], n: int = 3) -> None:
    write_table(path, columns)
    write_table(path.with_name(path.name.replace("recon3D", "labels").replace("recon2D", "labels")), make_labels(n, 0))


def test_missing_extra_and_miscounted_pixel_columns(tmp_path):
    flat = make_charge(3, 0).reshape(3, -1)
    columns = {str(i): flat[:, i] for i in range(5460)}
    del columns["17"]
    write_recon(tmp_path / "recon3D_a.parquet", columns)
    with pytest.raises(PipelineError, match=r"recon3D_a\.parquet: 5459 columns, expected 5460.*missing '17'"):
        D.discover(tmp_path)
    columns["17"] = flat[:, 17]
    columns["extra"] = flat[:, 0]
    write_recon(tmp_path / "recon3D_a.parquet", columns)
    with pytest.raises(PipelineError, match=r"recon3D_a\.parquet: 5461 columns.*unexpected 'extra'"):
        D.discover(tmp_path)
    del columns["extra"], columns["0"]
    columns["x"] = flat[:, 0]
    write_recon(tmp_path / "recon3D_a.parquet", columns)
    with pytest.raises(PipelineError, match=r"recon3D_a\.parquet: wrong columns.*missing '0'; unexpected 'x'"):
        D.discover(tmp_path)
    # a 2D-sized file under a 3D name
    write_recon(tmp_path / "recon3D_a.parquet", {str(i): flat[:, i] for i in range(273)})
    with pytest.raises(PipelineError, match=r"recon3D_a\.parquet: 273 columns, expected 5460"):
        D.discover(tmp_path)


def test_bad_label_columns(tmp_path):
    D.write_pair(tmp_path, "a", make_charge(3, 0), make_labels(3, 0))
    labels = make_labels(3, 0)
    del labels["pt"]
    write_table(tmp_path / "labels_a.parquet", labels)
    with pytest.raises(PipelineError, match=r"labels_a\.parquet: 12 columns, expected 13.*missing 'pt'"):
        D.discover(tmp_path)
    labels = {**make_labels(3, 0), "weight": np.ones(3, dtype=np.float32)}
    write_table(tmp_path / "labels_a.parquet", labels)
    with pytest.raises(PipelineError, match=r"labels_a\.parquet: 14 columns.*unexpected 'weight'"):
        D.discover(tmp_path)
    labels = {**make_labels(3, 0), "pt": np.array(["a", "b", "c"])}
    write_table(tmp_path / "labels_a.parquet", labels)
    with pytest.raises(PipelineError, match=r"labels_a\.parquet: column 'pt' has type string"):
        D.discover(tmp_path)


def test_nan_and_inf_are_rejected_while_reading(tmp_path):
    flat = make_charge(4, 0).reshape(4, -1)
    flat[3, 19 * 273 + 5] = np.inf
    write_recon(tmp_path / "recon3D_a.parquet", {str(i): flat[:, i] for i in range(5460)}, n=4)
    pair = D.discover(tmp_path)[0]  # metadata only: the values are checked while reading
    with pytest.raises(PipelineError, match=r"recon3D_a\.parquet: inf in pixel column '5192' \(event 3\)"):
        D.read_pair(pair, D.DataOptions())
    D.write_pair(tmp_path, "a", make_charge(4, 0), make_labels(4, 0))
    labels = make_labels(4, 0)
    labels["cotBeta"][1] = np.nan
    write_table(tmp_path / "labels_a.parquet", labels)
    with pytest.raises(PipelineError, match=r"labels_a\.parquet: nan in label column 'cotBeta' \(event 1\)"):
        D.read_pair(D.discover(tmp_path)[0], D.DataOptions())
    labels["cotBeta"][1] = 0.0
    labels["x-midplane"][0] = -np.inf
    write_table(tmp_path / "labels_a.parquet", labels)
    with pytest.raises(PipelineError, match=r"labels_a\.parquet: -inf in label column 'x-midplane'"):
        D.load_arrays(D.discover(tmp_path), D.DataOptions())


def test_corrupt_and_empty_files(tmp_path):
    D.write_pair(tmp_path, "a", make_charge(3, 0), make_labels(3, 0))
    (tmp_path / "recon3D_a.parquet").write_bytes(b"this is not parquet at all" * 10)
    with pytest.raises(PipelineError, match=r"recon3D_a\.parquet: not a readable parquet file"):
        D.discover(tmp_path)
    (tmp_path / "recon3D_a.parquet").write_bytes(b"")
    with pytest.raises(PipelineError, match=r"recon3D_a\.parquet: not a readable parquet file"):
        D.discover(tmp_path)
    D.write_pair(tmp_path, "a", make_charge(0, 0), make_labels(0, 0))
    with pytest.raises(PipelineError, match=r"recon3D_a\.parquet: the file has no events"):
        D.discover(tmp_path)


def test_layout_mismatch_names_the_file(tmp_path):
    D.write_pair(tmp_path, "a", make_charge(3, 0), make_labels(3, 0))
    pair2d = D.discover(tmp_path, layout="2D")[0]
    with pytest.raises(PipelineError, match=r"recon2D_a\.parquet: a recon2D file, but the data options ask for layout 3D"):
        D.read_pair(pair2d, D.DataOptions())


@pytest.mark.parametrize("kwargs, message", [
    ({"time_slices": (0, 20)}, "time slice 20 out of range 0..19"),
    ({"time_slices": (-1,)}, "time slice -1 out of range"),
    ({"time_slices": ()}, "time_slices is empty"),
    ({"time_slices": (3, 3)}, "repeated"),
    ({"targets": ("x-midplane", "energy"), "target_scales": (1.0, 1.0)}, "unknown target 'energy'"),
    ({"target_scales": (75.0, 18.75, 8.0)}, "target_scales has 3 entries for 4 targets"),
    ({"target_scales": (75.0, 0.0, 8.0, 0.5)}, "non-zero"),
    ({"layout": "4D"}, "layout must be one of 2D, 3D"),
    ({"adc_thresholds": (1000.0, 400.0)}, "strictly increasing"),
    ({"adc_thresholds": (-5.0,)}, "positive electron counts"),
    ({"adc_bits": 0}, "adc_bits must be an integer in 1..24"),
    ({"charge_unit": 0.0}, "charge_unit must be a positive"),
    ({"noise_electrons": -1.0}, "noise_electrons must be >= 0"),
    ({"pixel_std": 0.0}, "pixel_std must be a positive"),
])
def test_invalid_options(kwargs, message):
    with pytest.raises(PipelineError, match=message):
        D.DataOptions(**kwargs)


def test_invalid_option_dicts():
    with pytest.raises(PipelineError, match="unknown key 'slices'"):
        D.DataOptions.from_dict({"slices": [0, 19]})
    with pytest.raises(PipelineError, match="time_slices must be a list"):
        D.DataOptions.from_dict({"time_slices": "0,19"})
    with pytest.raises(PipelineError, match="standardize must be true or false"):
        D.DataOptions.from_dict({"standardize": 1})
    with pytest.raises(PipelineError, match="time slice 25 out of range"):
        D.DataOptions.from_dict({"time_slices": [0, 25]})


def test_write_pair_rejects_bad_input(tmp_path):
    with pytest.raises(PipelineError, match=r"must be \(events, 20, rows, cols\)"):
        D.write_pair(tmp_path, "a", np.zeros((3, 13, 21), dtype=np.float32), make_labels(3, 0))
    labels = make_labels(3, 0)
    del labels["n_x"]
    with pytest.raises(PipelineError, match="missing 'n_x'"):
        D.write_pair(tmp_path, "a", make_charge(3, 0), labels)
    with pytest.raises(PipelineError, match="label 'pt' for 'a' has shape"):
        D.write_pair(tmp_path, "a", make_charge(3, 0), {**make_labels(3, 0), "pt": np.zeros(2)})
    bad = make_charge(3, 0)
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(PipelineError, match="NaN or inf"):
        D.write_pair(tmp_path, "a", bad, make_labels(3, 0))
    with pytest.raises(PipelineError, match="invalid file tag"):
        D.write_pair(tmp_path, "x/y", make_charge(3, 0), make_labels(3, 0))
    assert not list(tmp_path.iterdir())  # nothing half-written


# --------------------------------------------------------------------------------------------
# values: every read checks missing values, NaN, inf and unphysical charge


def corrupt_column_chunk(path: Path, column: str, length: int = 16) -> None:
    """Overwrite `length` bytes in the middle of `column`'s chunk, leaving the footer intact."""
    chunk = pq.ParquetFile(path).metadata.row_group(0).column(int(column))
    assert chunk.path_in_schema == column
    data = bytearray(path.read_bytes())
    middle = chunk.data_page_offset + chunk.total_compressed_size // 2
    data[middle:middle + length] = b"\xa5" * length
    path.write_bytes(bytes(data))


def write_pixels(directory: Path, flat: np.ndarray, tag: str = "a") -> D.FilePair:
    """A recon3D file of the (n, 5460) `flat` charges (written as given) and its labels."""
    n = len(flat)
    write_recon(directory / f"recon3D_{tag}.parquet", {str(i): flat[:, i] for i in range(flat.shape[1])}, n=n)
    return next(p for p in D.discover(directory) if p.tag == tag)


@pytest.mark.parametrize("value, message", [
    (-5.0, r"recon3D_a\.parquet: negative charge -5 electrons in pixel column '17' \(event 2\); "
           r"collected charge cannot be negative$"),
    (1e12, r"recon3D_a\.parquet: charge 1e\+12 electrons in pixel column '17' \(event 2\) is above the "
           r"physical ceiling of 1e\+07 electrons per pixel \(wrong units or a corrupt value\)$"),
    (D.MAX_PIXEL_ELECTRONS * 1.01, r"recon3D_a\.parquet: charge 1\.01e\+07 electrons in pixel column '17'"),
    (np.nan, r"recon3D_a\.parquet: nan in pixel column '17' \(event 2\)$"),
    (-np.inf, r"recon3D_a\.parquet: -inf in pixel column '17' \(event 2\)$"),
])
def test_unphysical_charge_is_rejected_with_file_column_and_event(tmp_path, value, message):
    flat = make_charge(4, 0).reshape(4, -1)
    flat[2, 17] = value
    flat[3, 300] = value  # a later one: the first (column, then event) is named
    pair = write_pixels(tmp_path, flat)
    with pytest.raises(PipelineError, match=message):
        D.read_pair(pair, D.DataOptions())


def test_charge_at_the_ceiling_and_zero_are_accepted(tmp_path):
    flat = make_charge(3, 0).reshape(3, -1)
    flat[0, 17], flat[1, 17], flat[2, 17] = D.MAX_PIXEL_ELECTRONS, 0.0, -0.0
    x, _ = D.read_pair(write_pixels(tmp_path, flat), D.DataOptions(charge_unit=1.0))
    assert x[0, 0, 17, 0] == D.MAX_PIXEL_ELECTRONS and x[1, 0, 17, 0] == 0.0


def test_unread_columns_are_not_checked(tmp_path):
    flat = make_charge(3, 0).reshape(3, -1)
    flat[1, 5 * 273 + 4] = -1.0  # slice 5: not one of the default slices 0 and 19
    D.read_pair(write_pixels(tmp_path, flat), D.DataOptions())
    with pytest.raises(PipelineError, match=r"negative charge -1 electrons in pixel column '1369' \(event 1\)"):
        D.read_pair(D.discover(tmp_path)[0], D.DataOptions(time_slices=(5,)))


def test_missing_values_in_pixels_and_targets(tmp_path):
    flat = make_charge(4, 0).reshape(4, -1)
    columns = {str(i): flat[:, i] for i in range(5460)}
    columns["5300"] = pa.array([1.0, None, 2.0, 3.0], type=pa.float32())
    write_recon(tmp_path / "recon3D_a.parquet", columns, n=4)
    with pytest.raises(PipelineError, match=r"recon3D_a\.parquet: missing value in pixel column '5300' \(event 1\)$"):
        D.read_pair(D.discover(tmp_path)[0], D.DataOptions())
    D.write_pair(tmp_path, "a", make_charge(4, 0), make_labels(4, 0))
    labels = {k: pa.array(v) for k, v in make_labels(4, 0).items()}
    labels["y-midplane"] = pa.array([0.5, 1.5, None, 2.5], type=pa.float32())
    pq.write_table(pa.table(labels), tmp_path / "labels_a.parquet")
    with pytest.raises(PipelineError, match=r"labels_a\.parquet: missing value in label column 'y-midplane' \(event 2\)$"):
        D.read_pair(D.discover(tmp_path)[0], D.DataOptions())


def test_a_corrupt_page_is_named_with_its_column(tmp_path):
    charge = make_charge(500, 0)
    charge[:, :, 6, 10] += 3000.0  # a busy pixel: a chunk large enough to corrupt in its middle
    D.write_pair(tmp_path, "a", charge, make_labels(500, 0))
    column = str(19 * 273 + 6 * 21 + 10)
    corrupt_column_chunk(tmp_path / "recon3D_a.parquet", column)
    pair = D.discover(tmp_path)[0]  # the footer is intact
    # zstd frames have no checksum: it is the page checksum the writer adds that catches this
    with pytest.raises(PipelineError, match=rf"recon3D_a\.parquet: cannot read pixel column '{column}' "
                                            r"\(could not verify page integrity, CRC checksum verification failed"):
        D.read_pair(pair, D.DataOptions())


def test_a_corrupt_page_without_checksums_is_named_with_its_column(tmp_path):
    flat = make_charge(4, 0).reshape(4, -1)
    flat[:, 5] = 0.0  # one zero column: a chunk so short that the damage hits its page header
    pq.write_table(pa.table({str(i): flat[:, i] for i in range(5460)}), tmp_path / "recon3D_a.parquet",
                   compression="zstd", use_dictionary=False)
    write_table(tmp_path / "labels_a.parquet", make_labels(4, 0))
    corrupt_column_chunk(tmp_path / "recon3D_a.parquet", "5")
    with pytest.raises(PipelineError, match=r"recon3D_a\.parquet: cannot read pixel column '5' \(Couldn't deserialize"):
        D.read_pair(D.discover(tmp_path)[0], D.DataOptions())


def test_check_values_and_load_arrays_check_every_file(tmp_path):
    write_dataset(tmp_path, 3, 5)
    labels = make_labels(5, 2000)
    labels["cotAlpha"][4] = np.inf
    write_table(tmp_path / "labels_t02.parquet", labels)
    pairs = D.discover(tmp_path)
    D.check_values(pairs[:2], D.DataOptions())
    with pytest.raises(PipelineError, match=r"labels_t02\.parquet: inf in label column 'cotAlpha' \(event 4\)$"):
        D.check_values(pairs, D.DataOptions())
    # the first file holds the 5 events asked for: the bad third file is read only on request
    x, _ = D.load_arrays(pairs, D.DataOptions(), max_events=5)
    assert len(x) == 5
    with pytest.raises(PipelineError, match=r"labels_t02\.parquet: inf in label column 'cotAlpha'"):
        D.load_arrays(pairs, D.DataOptions(), max_events=5, check_rest=True)


@pytest.mark.slow
def test_reader_errors_in_the_tf_dataset_come_out_as_pipeline_errors(tmp_path):
    import tensorflow as tf

    write_dataset(tmp_path, 2, 20)
    flat = make_charge(20, 1).reshape(20, -1)
    flat[7, 4] = -2.0
    write_recon(tmp_path / "recon3D_t01.parquet", {str(i): flat[:, i] for i in range(5460)}, n=20)
    dataset = D.make_dataset(D.discover(tmp_path), D.DataOptions(), batch_size=8, shuffle=False, seed=0)
    with pytest.raises(tf.errors.OpError):  # what TensorFlow makes of it by itself
        list(dataset)
    message = r"recon3D_t01\.parquet: negative charge -2 electrons in pixel column '4' \(event 7\)"
    with pytest.raises(PipelineError, match=message):
        with D.loader_errors():
            list(dataset)
    assert not D._LOADER_FAILURES
