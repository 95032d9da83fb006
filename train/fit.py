"""Training: data directory + model spec -> a model directory that every later stage reads.

`build/models/<name>/` holds
- model.h5         the QKeras model, weights snapped onto their quantized grid
- model.json       architecture spec, data options, input shape, seed, parameter count, files
- history.csv      per-epoch loss and val_loss
- metrics.json     final losses and training time
- reference.npz    the reference set the firmware is verified against: held-out inputs as the
                   model's input quantizer makes them ("inputs"), the QKeras outputs on them
                   ("outputs"), and the scaled labels ("labels")
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from smartpix import paths
from smartpix.artifacts import atomic_dir, write_json
from smartpix.errors import PipelineError
from train.models import ARCHITECTURES, ModelSpec

if TYPE_CHECKING:
    from train import dataset

log = logging.getLogger(__name__)

DEFAULT_DATA = paths.DATA
DEFAULT_MODELS = paths.MODELS


@dataclass(frozen=True)
class TrainOptions:
    epochs: int = 20
    batch_size: int = 256
    learning_rate: float = 3e-3
    patience: int = 4
    seed: int = 1
    reference_events: int = 2000


@dataclass(frozen=True)
class TrainedModel:
    directory: Path
    params: int
    val_loss: float


def train(
    data_dir: Path,
    out_dir: Path,
    spec: ModelSpec,
    data_options: dataset.DataOptions,
    options: TrainOptions,
    quantized: bool = True,
) -> TrainedModel:
    """Train one model on `data_dir` and write its model directory to `out_dir` (atomically)."""
    import tensorflow as tf

    from train import dataset
    from train.loss import mdn_nll
    from train.models import build_model

    for name in ("epochs", "batch_size", "reference_events"):
        if getattr(options, name) < 1:
            raise PipelineError(f"{name} must be at least 1, got {getattr(options, name)}")
    pairs = dataset.discover(Path(data_dir), layout=data_options.layout)
    train_pairs, val_pairs, test_pairs = dataset.split_files(pairs, seed=options.seed)
    if data_options.standardize:
        mean, std = dataset.pixel_statistics(train_pairs, data_options)
        data_options = dataset.DataOptions.from_dict({**data_options.to_dict(), "pixel_mean": mean, "pixel_std": std})

    tf.keras.utils.set_random_seed(options.seed)
    tf.config.experimental.enable_op_determinism()
    input_shape = data_options.input_shape()
    model = build_model(spec, input_shape, quantized=quantized)
    model.compile(optimizer=tf.keras.optimizers.Adam(options.learning_rate), loss=mdn_nll)
    log.info(
        "training %s (%d parameters) on %d/%d/%d train/val/test files",
        model.name, model.count_params(), len(train_pairs), len(val_pairs), len(test_pairs),
    )
    train_data = dataset.make_dataset(train_pairs, data_options, options.batch_size, shuffle=True, seed=options.seed)
    val_data = dataset.make_dataset(val_pairs, data_options, options.batch_size, shuffle=False, seed=options.seed)

    with atomic_dir(out_dir) as tmp:
        checkpoint = tmp / "checkpoint.weights.h5"
        callbacks = [
            tf.keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=options.patience, restore_best_weights=True
            ),
            tf.keras.callbacks.ModelCheckpoint(
                str(checkpoint), monitor="val_loss", save_best_only=True, save_weights_only=True
            ),
            tf.keras.callbacks.CSVLogger(str(tmp / "history.csv")),
            tf.keras.callbacks.TerminateOnNaN(),
        ]
        started = time.perf_counter()
        history = model.fit(
            train_data,
            validation_data=val_data,
            epochs=options.epochs,
            callbacks=callbacks,
            verbose=1 if sys.stderr.isatty() else 2,
        )
        seconds = time.perf_counter() - started
        val_losses = [float(v) for v in history.history.get("val_loss", [])]
        if not val_losses or not np.isfinite(min(val_losses)):
            raise PipelineError(f"training of {model.name} diverged (validation loss {val_losses[-1:]})")
        checkpoint.unlink(missing_ok=True)

        ref_inputs, ref_labels = dataset.load_arrays(
            test_pairs, data_options, max_events=options.reference_events, seed=options.seed
        )
        save_model_directory(tmp, model, spec, data_options, ref_inputs, ref_labels, {
            "seed": options.seed,
            "data_dir": str(data_dir),
            "files": {
                "train": [p.tag for p in train_pairs],
                "val": [p.tag for p in val_pairs],
                "test": [p.tag for p in test_pairs],
            },
            "training": dict(vars(options)),
        }, name=Path(out_dir).name, quantized=quantized)
        best = int(np.argmin(val_losses))
        write_json(tmp / "metrics.json", {
            "best_epoch": best + 1,
            "epochs_run": len(val_losses),
            "loss": float(history.history["loss"][best]),
            "val_loss": val_losses[best],
            "train_seconds": round(seconds, 1),
        })
    log.info("wrote %s (best val_loss %.4f)", out_dir, val_losses[best])
    return TrainedModel(Path(out_dir), int(model.count_params()), val_losses[best])


def save_model_directory(
    directory: Path,
    model,
    spec: ModelSpec,
    data_options: dataset.DataOptions | None,
    ref_inputs: np.ndarray,
    ref_labels: np.ndarray,
    extra: dict,
    name: str,
    quantized: bool = True,
) -> None:
    """Write model.h5, reference.npz and model.json of a model into `directory`.

    Weights are snapped onto their quantized grid first, and the reference outputs are computed
    without the straight-through estimator, so that they are exactly what fixed-point
    arithmetic gives."""
    from train.models import disable_ste, snap_weights_to_quantized

    if quantized:
        snap_weights_to_quantized(model)
        disable_ste(model)
        ref_inputs = quantize_inputs(model, ref_inputs)
    model.save(Path(directory) / "model.h5", include_optimizer=False)
    ref_outputs = model.predict(ref_inputs, batch_size=1024, verbose=0).astype(np.float32)
    np.savez_compressed(Path(directory) / "reference.npz", inputs=ref_inputs.astype(np.float32),
                        outputs=ref_outputs, labels=np.asarray(ref_labels, dtype=np.float32))
    write_json(Path(directory) / "model.json", {
        "name": name,
        "spec": spec.to_dict(),
        "quantized": quantized,
        "data": data_options.to_dict() if data_options is not None else None,
        "input_shape": list(model.input_shape[1:]),
        "params": int(model.count_params()),
        **extra,
    })


def quantize_inputs(model, inputs: np.ndarray) -> np.ndarray:
    """The inputs as the model's own input quantizer makes them (the numbers hardware sees)."""
    import tensorflow as tf

    from firmware.graph import input_quantizer_layer

    layer = input_quantizer_layer(model)
    quantized = tf.keras.Model(model.inputs, layer.output).predict(inputs, batch_size=4096, verbose=0)
    return quantized.astype(np.float32)


def read_model_description(model_dir: Path) -> dict:
    """model.json of a trained model directory, with a clear error when it is not one."""
    path = Path(model_dir) / "model.json"
    if not Path(model_dir).is_dir():
        raise PipelineError(f"model directory {model_dir} does not exist (run `make train` first)")
    for needed in ("model.json", "model.h5", "reference.npz"):
        if not (Path(model_dir) / needed).is_file():
            raise PipelineError(f"{model_dir} is not a trained model directory: {needed} is missing")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise PipelineError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="directory of recon/labels parquet files")
    parser.add_argument("--out", type=Path, default=None, help="model directory (default build/models/<name>)")
    parser.add_argument("--name", default=None, help="model name (default: the architecture)")
    parser.add_argument("--architecture", choices=ARCHITECTURES, default="baseline")
    parser.add_argument("--float", dest="float_model", action="store_true",
                        help="train the unquantized Keras twin of the architecture instead")
    parser.add_argument("--layout", choices=("2D", "3D"), default="3D")
    parser.add_argument("--time-slices", default="0,19", help="comma-separated slice indices (3D layout)")
    parser.add_argument("--standardize", action="store_true", help="z-score the pixels with train-set statistics")
    defaults = TrainOptions()
    parser.add_argument("--epochs", type=int, default=defaults.epochs)
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size)
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--patience", type=int, default=defaults.patience)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--reference-events", type=int, default=defaults.reference_events)


def parse_slices(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise PipelineError(f"--time-slices must be comma-separated integers, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    from train import dataset

    spec = ModelSpec(architecture=args.architecture)
    data_options = dataset.DataOptions(
        layout=args.layout, time_slices=parse_slices(args.time_slices), standardize=args.standardize
    )
    options = TrainOptions(
        epochs=args.epochs, batch_size=args.batch_size, learning_rate=args.learning_rate,
        patience=args.patience, seed=args.seed, reference_events=args.reference_events,
    )
    name = args.name or (f"{args.architecture}_float" if args.float_model else args.architecture)
    out = args.out or DEFAULT_MODELS / name
    result = train(args.data, out, spec, data_options, options, quantized=not args.float_model)
    print(f"{result.directory}: {result.params} parameters, best val_loss {result.val_loss:.4f}")
    return 0
