"""What the training's seeds fix: `seed` the weights, `split_seed` the files each model is scored on."""

from __future__ import annotations

import json
import logging

import numpy as np

from smartpix.cli import main
from train import dataset as D
from train.generator import generate_dataset


def test_the_training_seed_keeps_the_test_files_and_the_split_seed_draws_them(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    data = tmp_path / "data"
    generate_dataset(data, n_files=6, events_per_file=40, seed=1)
    trained = {}
    for name, seeds in (("default", []), ("seed2", ["--seed", "2"]), ("split2", ["--split-seed", "2"])):
        out = tmp_path / name
        argv = ["train", "--data", str(data), "--out", str(out), "--epochs", "1", "--batch-size", "16",
                "--reference-events", "20", *seeds]
        caplog.clear()
        assert main(argv) == 0
        # the progress lines name the model being trained, not only its architecture
        assert any(r.getMessage().startswith(f"training {name} (baseline architecture,") for r in caplog.records)
        trained[name] = (json.loads((out / "model.json").read_text())["files"],
                         np.load(out / "reference.npz")["outputs"])

    pairs = D.discover(data)
    drawn = {seed: {part: [p.tag for p in files] for part, files in zip(("train", "val", "test"),
                                                                       D.split_files(pairs, seed=seed))}
             for seed in (1, 2)}
    assert drawn[1] != drawn[2]  # the two split seeds must draw different splits for the test to mean anything
    assert trained["default"][0] == drawn[1]
    assert trained["seed2"][0] == drawn[1]  # another training seed: the same files
    assert trained["split2"][0] == drawn[2]
    # ... and other weights: the training seed still fixes the initialization and the event order
    assert not np.array_equal(trained["seed2"][1], trained["default"][1])
