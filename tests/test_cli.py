"""The command line on bad input: one line on stderr naming the file and the column or key,
exit code 2, no traceback, and nothing half-written."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from smartpix import artifacts
from smartpix.cli import STAGES, main, os_error_message
from tests.test_dataset import corrupt_column_chunk
from train import dataset as D
from train.generator import generate_dataset


@pytest.fixture(scope="module")
def generated(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("generated") / "synthetic"
    generate_dataset(out, n_files=4, events_per_file=40, seed=1)
    return out


@pytest.fixture
def data(generated: Path, tmp_path: Path) -> Path:
    """A private copy of the generated dataset, free to damage."""
    return Path(shutil.copytree(generated, tmp_path / "data"))


def split(data: Path, which: str) -> D.FilePair:
    """The first file of a split, as `smartpix train` (seed 1) splits `data`."""
    train, val, test = D.split_files(D.discover(data), seed=1)
    return {"train": train, "val": val, "test": test}[which][0]


def run(capsys, *argv: str) -> tuple[int, list[str]]:
    """Exit code and stderr lines of `smartpix argv`; a traceback on stderr fails the test."""
    code = main(list(argv))
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return code, err.splitlines()


def train_argv(data: Path, out: Path) -> list[str]:
    return ["train", "--data", str(data), "--out", str(out), "--epochs", "1", "--batch-size", "16"]


def set_value(path: Path, column: str, event: int, value: float | None) -> None:
    """Rewrite one value of a parquet file (None: a missing value), in the project's format."""
    table = pq.read_table(path)
    values = table.column(column).to_pylist()
    values[event] = value
    table = table.set_column(table.schema.get_field_index(column), column, pa.array(values, type=pa.float32()))
    pq.write_table(table, path, **D.PARQUET_WRITE_OPTIONS)


def assert_nothing_written(out: Path) -> None:
    assert not out.exists()
    if out.parent.exists():
        assert not [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]


# --------------------------------------------------------------------------------------------
# training data


@pytest.mark.parametrize("which, file, column, event, value, problem", [
    ("train", "recon", "5323", 3, np.nan, "nan in pixel column '5323' (event 3)"),
    ("train", "recon", "100", 0, np.inf, "inf in pixel column '100' (event 0)"),
    ("train", "recon", "200", 5, None, "missing value in pixel column '200' (event 5)"),
    ("train", "labels", "cotBeta", 7, np.nan, "nan in label column 'cotBeta' (event 7)"),
    ("train", "labels", "x-midplane", 2, None, "missing value in label column 'x-midplane' (event 2)"),
    ("val", "labels", "y-midplane", 11, -np.inf, "-inf in label column 'y-midplane' (event 11)"),
    ("test", "recon", "5400", 39, np.nan, "nan in pixel column '5400' (event 39)"),
    ("train", "recon", "5323", 4, -25.0,
     "negative charge -25 electrons in pixel column '5323' (event 4); collected charge cannot be negative"),
    ("val", "recon", "150", 9, 1e12,
     "charge 1e+12 electrons in pixel column '150' (event 9) is above the physical ceiling of 1e+07 electrons "
     "per pixel (wrong units or a corrupt value)"),
])
def test_bad_values_stop_training_before_the_first_epoch(capsys, data, tmp_path, which, file, column, event,
                                                         value, problem):
    pair = split(data, which)
    path = pair.recon if file == "recon" else pair.labels
    set_value(path, column, event, value)
    out = tmp_path / "models" / "baseline"
    code, lines = run(capsys, *train_argv(data, out))
    assert code == 2
    assert lines == [f"error: {path}: {problem}"]
    assert_nothing_written(out)


def busiest_read_column(path: Path) -> str:
    """The column read by default whose chunk is the largest (its middle is page data)."""
    row_group = pq.ParquetFile(path).metadata.row_group(0)
    return max(D.DataOptions().pixel_columns(), key=lambda c: row_group.column(int(c)).total_compressed_size)


def test_a_corrupt_page_stops_training_with_the_file_named(capsys, data, tmp_path):
    path = split(data, "train").recon
    column = busiest_read_column(path)
    corrupt_column_chunk(path, column)
    out = tmp_path / "models" / "baseline"
    code, lines = run(capsys, *train_argv(data, out))
    assert code == 2
    assert lines == [f"error: {path}: cannot read pixel column '{column}' (could not verify page integrity, "
                     "CRC checksum verification failed for page_ordinal 0)"]
    assert_nothing_written(out)


@pytest.mark.slow
def test_a_file_that_fails_while_training_is_one_line_too(capsys, data, tmp_path, monkeypatch):
    # as if the file had been damaged after the check before training: the error now comes
    # from inside the tf.data generator, in the middle of the epoch
    monkeypatch.setattr(D, "check_values", lambda pairs, options: None)
    path = split(data, "train").recon
    column = busiest_read_column(path)
    corrupt_column_chunk(path, column)
    out = tmp_path / "models" / "baseline"
    code, lines = run(capsys, *train_argv(data, out))
    assert code == 2
    assert [line for line in lines if line.startswith("error:")] == [
        f"error: {path}: cannot read pixel column '{column}' (could not verify page integrity, "
        "CRC checksum verification failed for page_ordinal 0)"]
    assert lines[-1].startswith("error:")
    assert_nothing_written(out)


# --------------------------------------------------------------------------------------------
# hardware configurations


CONFIG = "name: example\nmodel: build/models/baseline\nbackend: Vitis\npart: xcvu13p-flga2577-2-e\nclock_period_ns: 5\n"


@pytest.mark.parametrize("text, problem", [
    (CONFIG.encode() + b"description: caf\xe9\n", "not UTF-8 text (byte 0xe9 at line 6)"),
    (CONFIG.encode() + b"clock_period_ns: 4\n", "key 'clock_period_ns' appears twice (lines 5 and 6)"),
    (CONFIG.replace("5\n", ".nan\n").encode(), "key 'clock_period_ns' must be positive and finite, got nan"),
    (CONFIG.replace("xcvu13p-flga2577-2-e", '" "').encode(), "key 'part' is empty"),
    (CONFIG.encode() + b"layer_overrides: {dense_1: {precision: 'ap_fixed<8,3>'}}\n",
     "key 'layer_overrides.dense_1.precision' must map keys such as result or accum to precision strings "
     "(e.g. {accum: 'ap_fixed<18,5>'}), got 'ap_fixed<8,3>'"),
])
def test_bad_configurations_are_one_line(capsys, tmp_path, text, problem):
    path = tmp_path / "configs" / "example.yml"
    path.parent.mkdir()
    path.write_bytes(text)
    out = tmp_path / "firmware"
    code, lines = run(capsys, "firmware", "--config-dir", str(path.parent), "--firmware-dir", str(out))
    assert code == 2
    assert lines == [f"error: {path}: {problem}"]
    assert not out.exists()


# --------------------------------------------------------------------------------------------
# output folders that cannot be written


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_generate_into_a_path_below_a_file(capsys, tmp_path):
    (tmp_path / "file").write_text("not a folder\n")
    out = tmp_path / "file" / "sub"
    code, lines = run(capsys, "generate", "--out", str(out), "--files", "3", "--events-per-file", "5")
    assert code == 2
    assert lines == [f"error: cannot write {out}: Not a directory"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_train_into_a_path_below_a_file(capsys, data, tmp_path):
    (tmp_path / "file").write_text("not a folder\n")
    out = tmp_path / "file" / "models" / "baseline"
    code, lines = run(capsys, *train_argv(data, out))
    assert code == 2
    assert lines == [f"error: cannot write {out}: Not a directory"]


@pytest.mark.parametrize("code_", [errno.EROFS, errno.EACCES])
def test_train_into_a_read_only_folder(capsys, data, tmp_path, monkeypatch, code_):
    out = tmp_path / "models" / "baseline"
    out.parent.mkdir()
    real_mkdir = os.mkdir

    def mkdir(path, mode=0o777, **kwargs):
        # what the system says when the model's temporary folder is created beside it
        if Path(path).parent == out.parent and Path(path).name.startswith(".baseline."):
            raise OSError(code_, os.strerror(code_), str(path))
        real_mkdir(path, mode, **kwargs)

    monkeypatch.setattr(os, "mkdir", mkdir)
    code, lines = run(capsys, *train_argv(data, out))
    assert code == 2
    assert lines == [f"error: cannot write {out}: {os.strerror(code_)}"]
    assert list(out.parent.iterdir()) == []


@pytest.mark.parametrize("code_", [errno.ENOSPC, errno.EROFS, errno.EACCES])
def test_generate_onto_a_full_or_read_only_disk(capsys, tmp_path, monkeypatch, code_):
    out = tmp_path / "synthetic"
    real_replace = os.replace

    def failing_replace(src, dst):
        # what the system says when the finished dataset is moved into place
        if Path(dst) == out:
            raise OSError(code_, os.strerror(code_), str(src), None, str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)
    code, lines = run(capsys, "generate", "--out", str(out), "--files", "3", "--events-per-file", "5")
    assert code == 2
    assert lines == [f"error: cannot write {out}: {os.strerror(code_)}"]
    assert not out.exists() and leftovers(tmp_path) == []


def test_a_full_disk_while_writing_names_the_final_file(capsys, tmp_path, monkeypatch):
    out = tmp_path / "synthetic"
    real_write_table = pq.write_table

    def write_table(table, where, **kwargs):
        if Path(where).name.startswith(".labels_s1_0001.parquet."):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # a failed write() names no file
        real_write_table(table, where, **kwargs)

    monkeypatch.setattr(pq, "write_table", write_table)
    code, lines = run(capsys, "generate", "--out", str(out), "--files", "3", "--events-per-file", "5")
    assert code == 2
    assert lines == [f"error: cannot write {out / 'labels_s1_0001.parquet'}: No space left on device"]
    assert not out.exists() and leftovers(tmp_path) == []


def test_verbose_keeps_the_traceback(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError):
        main(["--verbose", "generate", "--out", str(tmp_path / "file" / "sub"), "--files", "3"])


# --------------------------------------------------------------------------------------------
# temporaries: never left behind by a failure, swept when a killed run left them


def dead_pid() -> int:
    """The process id of a process that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_sweep_removes_only_temporaries_of_dead_writers_on_this_host(tmp_path):
    dead, live = dead_pid(), os.getpid()
    stale_file = tmp_path / f".model.h5.{dead}@{artifacts._HOST}.k2j4_x9q.tmp"
    stale_dir = tmp_path / f".baseline.{dead}@{artifacts._HOST}.a8b7c6d5_old.tmp"
    kept = [
        tmp_path / f".model.h5.{live}@{artifacts._HOST}.q1w2e3r4.tmp",  # a writer still running
        tmp_path / f".model.h5.{dead}@other-host.q1w2e3r4.tmp",  # another host's process
        tmp_path / ".model.h5.q1w2e3r4.tmp",  # no writer recorded
        tmp_path / "model.h5",
    ]
    stale_file.write_text("half")
    stale_dir.mkdir()
    (stale_dir / "inside").write_text("half")
    for path in kept:
        path.write_text("keep")
    removed = artifacts.sweep_stale_temporaries(tmp_path)
    assert sorted(removed) == sorted([stale_file, stale_dir])
    assert sorted(tmp_path.iterdir()) == sorted(kept)
    assert artifacts.sweep_stale_temporaries(tmp_path / "missing") == []


def test_a_rerun_sweeps_what_a_killed_run_left(tmp_path):
    stale = tmp_path / f".metrics.json.{dead_pid()}@{artifacts._HOST}.abcd1234.tmp"
    stale.write_text("{")
    artifacts.write_json(tmp_path / "other.json", {"a": 1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.json"]
    stale_dir = tmp_path / f".model.{dead_pid()}@{artifacts._HOST}.abcd1234.tmp"
    stale_dir.mkdir()
    with artifacts.atomic_dir(tmp_path / "model") as tmp:
        assert tmp.name.startswith(f".model.{os.getpid()}@{artifacts._HOST}.") and tmp.name.endswith(".tmp")
        (tmp / "weights").write_text("w")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model", "other.json"]


def test_atomic_path_leaves_nothing_on_failure(tmp_path, monkeypatch):
    target = tmp_path / "report.json"
    target.write_text("old")
    with pytest.raises(ValueError), artifacts.atomic_path(target) as tmp:
        tmp.write_text("new")
        raise ValueError("the body failed")
    assert sorted(tmp_path.iterdir()) == [target] and target.read_text() == "old"

    def replace(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(src), None, str(dst))

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError) as err:
        artifacts.write_text(target, "new")
    assert err.value.artifact == str(target)
    assert sorted(tmp_path.iterdir()) == [target] and target.read_text() == "old"


def test_atomic_dir_keeps_the_old_folder_when_the_new_one_cannot_take_its_place(tmp_path, monkeypatch):
    target = tmp_path / "model"
    target.mkdir()
    (target / "weights").write_text("old")
    real_replace = os.replace

    def replace(src, dst):
        if Path(dst) == target and Path(src).name.endswith(".tmp") and not Path(src).name.endswith("_old.tmp"):
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(src), None, str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError) as err, artifacts.atomic_dir(target) as tmp:
        (tmp / "weights").write_text("new")
    assert err.value.artifact == str(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]
    assert (target / "weights").read_text() == "old"


def test_errors_inside_a_temporary_folder_name_the_final_path(tmp_path):
    target = tmp_path / "project"
    with pytest.raises(NotADirectoryError) as err, artifacts.atomic_dir(target) as tmp:
        (tmp / "file").write_text("")
        (tmp / "file" / "sub.txt").write_text("")  # a real ENOTDIR, named inside the temporary
    assert err.value.artifact == str(target / "file" / "sub.txt")
    assert list(tmp_path.iterdir()) == []


def test_os_errors_outside_artifacts_are_one_line_too():
    assert os_error_message(FileNotFoundError(errno.ENOENT, "No such file or directory", "g++")) == \
        "g++: No such file or directory"
    assert os_error_message(OSError(errno.ENOSPC, "No space left on device", "/a/.x.tmp", None, "/a/x")) == \
        "cannot write /a/x: No space left on device"
    assert os_error_message(OSError(errno.EIO, "Input/output error")) == "Input/output error"


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_stage_answers_help(stage, capsys):
    with pytest.raises(SystemExit) as done:
        main([stage, "--help"])
    assert done.value.code == 0
    assert "usage: smartpix" in capsys.readouterr().out


def test_third_party_user_warnings_are_quiet_and_ours_are_not():
    import warnings

    from smartpix.cli import quiet_libraries

    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()
        quiet_libraries()
        for module in ("hls4ml.backends.vivado.passes.pointwise", "keras.src.constraints", "firmware.hls.project"):
            warnings.warn_explicit("Overriding attribute 'strategy'", UserWarning, "f.py", 1, module=module)
    assert [w.message.args[0] for w in caught] == ["Overriding attribute 'strategy'"]
    assert caught[0].filename == "f.py"
