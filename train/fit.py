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
import dataclasses
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


RECIPES = ("quantized", "float_then_quantized")
# the folder, inside a model directory, of the full-precision twin a quantized model started from
FLOAT_TWIN = "float"
SCHEDULES = ("constant", "cosine")


@dataclass(frozen=True)
class TrainOptions:
    """How a model is trained.

    `seed` fixes the initial weights and the order of the training events; `split_seed` draws
    which files are for training, validation and test. They are apart so that models trained with
    different seeds are scored on the same test events, and their spread is the training's own.

    `recipe` "float_then_quantized" first trains the full-precision twin for `float_epochs`, then
    starts the quantized model from its weights and fine-tunes it for `epochs` at
    `finetune_learning_rate`: quantization-aware training from a good float solution reaches a
    better minimum than quantized training from scratch. `clipnorm` bounds each step (0: off).
    `bias_correction` then moves the output layer's biases of the four means by minus their mean
    residual on the validation events, on the bias quantizer's grid: quantization-aware training
    leaves the means offset by a few least significant bits, which no later step removes.
    `sigma_calibration` scales each target's predicted sigma so that its pulls have a 68% width
    of 1 on the validation events (see `calibrate_sigmas`).
    """

    epochs: int = 20
    batch_size: int = 256
    learning_rate: float = 3e-3
    patience: int = 4
    seed: int = 1
    split_seed: int = 1
    reference_events: int = 2000
    recipe: str = "quantized"
    schedule: str = "constant"
    clipnorm: float = 0.0
    float_epochs: int = 20
    finetune_learning_rate: float = 1e-3
    bias_correction: bool = False
    sigma_calibration: bool = False

    def check(self) -> None:
        for name in ("epochs", "batch_size", "reference_events", "patience", "float_epochs"):
            if getattr(self, name) < 1:
                raise PipelineError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("learning_rate", "finetune_learning_rate"):
            if not getattr(self, name) > 0:
                raise PipelineError(f"{name} must be positive, got {getattr(self, name)}")
        if self.clipnorm < 0:
            raise PipelineError(f"clipnorm must be 0 (off) or positive, got {self.clipnorm}")
        if self.recipe not in RECIPES:
            raise PipelineError(f"recipe {self.recipe!r} is not one of {', '.join(RECIPES)}")
        if self.schedule not in SCHEDULES:
            raise PipelineError(f"schedule {self.schedule!r} is not one of {', '.join(SCHEDULES)}")


# Training profiles: "full" trains as the spec says; "quick" caps the epochs, for the firmware's
# exactness proofs (which hold for any weights) and continuous integration, not for physics.
PROFILES = ("full", "quick")
QUICK_FLOAT_EPOCHS = 3
QUICK_EPOCHS = 4


def profiled(options: TrainOptions, profile: str) -> TrainOptions:
    """The options of a spec under a training profile."""
    if profile not in PROFILES:
        raise PipelineError(f"training profile {profile!r} is not one of {', '.join(PROFILES)}")
    if profile == "full":
        return options
    return dataclasses.replace(options, float_epochs=min(options.float_epochs, QUICK_FLOAT_EPOCHS),
                               epochs=min(options.epochs, QUICK_EPOCHS))


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
    from train import dataset

    options.check()
    pairs = dataset.discover(Path(data_dir), layout=data_options.layout)
    train_pairs, val_pairs, test_pairs = dataset.split_files(pairs, seed=options.split_seed)
    # Every value training reads, and the test files, are checked before the first epoch: a bad
    # file stops here with its name, column and event, not as a TensorFlow traceback mid-epoch.
    # Reads that are needed anyway do the checking where they can.
    if data_options.standardize:
        mean, std = dataset.pixel_statistics(train_pairs, data_options)
        data_options = dataset.DataOptions.from_dict({**data_options.to_dict(), "pixel_mean": mean, "pixel_std": std})
    else:
        dataset.check_values(train_pairs, data_options)
    dataset.check_values(val_pairs, data_options)
    ref_inputs, ref_labels = dataset.load_arrays(
        test_pairs, data_options, max_events=options.reference_events, seed=options.seed, check_rest=True
    )

    import tensorflow as tf

    from train.models import build_model

    tf.keras.utils.set_random_seed(options.seed)
    tf.config.experimental.enable_op_determinism()
    input_shape = data_options.input_shape()
    model = build_model(spec, input_shape, quantized=quantized)
    name = Path(out_dir).name  # the model's name, as saved; the architecture's name may serve several specs
    log.info(
        "training %s (%s architecture, %d parameters) on %d/%d/%d train/val/test files",
        name, spec.architecture, model.count_params(), len(train_pairs), len(val_pairs), len(test_pairs),
    )
    train_data = dataset.make_dataset(train_pairs, data_options, options.batch_size, shuffle=True, seed=options.seed)
    val_data = dataset.make_dataset(val_pairs, data_options, options.batch_size, shuffle=False, seed=options.seed)
    steps = sum(p.n_events for p in train_pairs) // options.batch_size + 1

    with atomic_dir(out_dir) as tmp:
        started = time.perf_counter()
        learning_rate, epochs = options.learning_rate, options.epochs
        if quantized and options.recipe == "float_then_quantized":
            twin = build_model(spec, input_shape, quantized=False)
            log.info("training the full-precision twin first (%d epochs)", options.float_epochs)
            _fit(twin, train_data, val_data, options, options.learning_rate, options.float_epochs, steps,
                 tmp / FLOAT_TWIN)
            copied = copy_matching_weights(twin, model)
            log.info("fine-tuning %s from the twin's weights (%d layers copied)", name, copied)
            learning_rate = options.finetune_learning_rate
        history = _fit(model, train_data, val_data, options, learning_rate, epochs, steps, tmp)
        if options.bias_correction:
            shift = correct_mean_bias(model, val_data)
            log.info("bias correction of the means (scaled units): %s", ", ".join(f"{v:+.4f}" for v in shift))
        if options.sigma_calibration:
            widths = calibrate_sigmas(model, val_data)
            log.info("sigma calibration: validation pull widths %s before, %s after",
                     ", ".join(f"{w:.3f}" for w in widths[0]), ", ".join(f"{w:.3f}" for w in widths[-1]))
            for target, width, bias, quantizer in sigma_biases_at_their_limit(model, widths[-1]):
                log.warning("sigma calibration: %s's validation pull width stays %.3f, its sigma output's "
                            "bias is at the end of %s (%+g); the spec's model key output_bias_integer "
                            "widens that range", target, width, quantizer, bias)
        seconds = time.perf_counter() - started
        val_losses = [float(v) for v in history.history.get("val_loss", [])]
        if not val_losses or not np.isfinite(min(val_losses)):
            raise PipelineError(f"training of {name} diverged (validation loss {val_losses[-1:]})")

        provenance = {
            "seed": options.seed,
            "data_dir": str(data_dir),
            "files": {
                "train": [p.tag for p in train_pairs],
                "val": [p.tag for p in val_pairs],
                "test": [p.tag for p in test_pairs],
            },
            "training": dict(vars(options)),
        }
        if quantized and options.recipe == "float_then_quantized":
            # the twin is a model directory of its own: the evaluation compares each model with it
            save_model_directory(tmp / FLOAT_TWIN, twin, spec, data_options, ref_inputs, ref_labels, provenance,
                                 name=f"{name}_float", quantized=False)
        save_model_directory(tmp, model, spec, data_options, ref_inputs, ref_labels, provenance,
                             name=name, quantized=quantized)
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


def _fit(model, train_data, val_data, options: TrainOptions, learning_rate: float, epochs: int, steps: int,
         folder: Path):
    """Compile and fit `model`, keeping the best validation weights; the history is in
    `folder`/history.csv."""
    import tensorflow as tf

    from train import dataset
    from train.loss import mdn_nll

    folder.mkdir(parents=True, exist_ok=True)
    rate = learning_rate
    if options.schedule == "cosine":
        rate = tf.keras.optimizers.schedules.CosineDecay(learning_rate, steps * epochs, alpha=0.02)
    optimizer = tf.keras.optimizers.Adam(rate, clipnorm=options.clipnorm or None)
    model.compile(optimizer=optimizer, loss=mdn_nll)
    checkpoint = folder / "checkpoint.weights.h5"
    callbacks = [
        tf.keras.callbacks.EarlyStopping(monitor="val_loss", patience=options.patience, restore_best_weights=True),
        tf.keras.callbacks.ModelCheckpoint(str(checkpoint), monitor="val_loss", save_best_only=True,
                                           save_weights_only=True),
        tf.keras.callbacks.CSVLogger(str(folder / "history.csv")),
        tf.keras.callbacks.TerminateOnNaN(),
    ]
    # the files were checked before training, but one can still change or fail to read meanwhile
    with dataset.loader_errors():
        history = model.fit(train_data, validation_data=val_data, epochs=epochs, callbacks=callbacks,
                            verbose=1 if sys.stderr.isatty() else 2)
    checkpoint.unlink(missing_ok=True)
    return history


def correct_mean_bias(model, val_data, output_layer: str = "mdn_output") -> np.ndarray:
    """Subtract the mean residual of each predicted mean on `val_data` from its bias in
    `output_layer` (a dense layer whose outputs are the network's, no activation after it), then
    put the biases back on their quantizer's grid. Returns the applied shift per mean."""
    from train.loss import MEAN_INDEX
    from train.models import disable_ste, snap_weights_to_quantized

    snap_weights_to_quantized(model)
    disable_ste(model)  # exactly the arithmetic the firmware does
    outputs, labels = _validation_outputs(model, val_data)
    layer = model.get_layer(output_layer)
    kernel, bias = layer.get_weights()
    wanted = bias.astype(np.float64).copy()
    wanted[list(MEAN_INDEX)] -= (outputs[:, MEAN_INDEX] - labels).mean(axis=0)
    layer.set_weights([kernel, wanted.astype(np.float32)])
    snap_weights_to_quantized(model)
    return layer.get_weights()[1][list(MEAN_INDEX)].astype(np.float64) - bias[list(MEAN_INDEX)]


def _validation_outputs(model, val_data) -> tuple[np.ndarray, np.ndarray]:
    """The model's raw outputs and the labels of every validation event (float64)."""
    from train import dataset

    outputs, labels = [], []
    with dataset.loader_errors():
        for x, y in val_data:
            outputs.append(np.asarray(model.predict_on_batch(x), dtype=np.float64))
            labels.append(np.asarray(y, dtype=np.float64))
    return np.concatenate(outputs), np.concatenate(labels)


def _pull_widths(outputs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    from train.loss import MEAN_INDEX, core_width_68, sigmas

    pulls = (outputs[:, MEAN_INDEX] - labels) / sigmas(outputs)
    return np.array([core_width_68(pulls[:, t]) for t in range(pulls.shape[1])])


def _diag_shift_for_unit_pulls(outputs: np.ndarray, labels: np.ndarray, target: int) -> float:
    """The shift of target `target`'s raw diagonal output that makes its pulls' 68% width 1.

    The outputs are linear in the output layer's bias, so the shift is found on the outputs
    themselves: the width falls as the shift grows (a larger sigma), and bisection finds it."""
    from train.loss import DIAG_INDEX

    def width(shift: float) -> float:
        moved = outputs.copy()
        moved[:, DIAG_INDEX[target]] += shift
        return float(_pull_widths(moved, labels)[target])

    low, high = -8.0, 8.0
    if not width(low) > 1.0 > width(high):
        return 0.0  # no shift within reach makes the width 1: leave it
    for _ in range(40):
        middle = (low + high) / 2
        low, high = (middle, high) if width(middle) > 1.0 else (low, middle)
    return (low + high) / 2


def calibrate_sigmas(model, val_data, output_layer: str = "mdn_output", rounds: int = 3) -> list[np.ndarray]:
    """Move the bias of each target's diagonal Cholesky output so that the target's pulls on
    `val_data` have a 68% width of 1: the shift is found on the outputs, which are linear in the
    bias (scaling the off-diagonal weights too would keep the correlations, but their 8-bit grid
    is too coarse for a few percent). The biases go back on their grid and the widths are measured
    again, `rounds` times. A target's sigma depends on its own row of the Cholesky factor only, so
    each target keeps the bias of the round whose width came closest to 1 for it: a target whose
    bias cannot move further (`sigma_biases_at_their_limit`) holds back no other. Returns the
    pull widths before each round and of the biases kept."""
    from train.loss import DIAG_INDEX
    from train.models import disable_ste, snap_weights_to_quantized

    snap_weights_to_quantized(model)
    disable_ste(model)
    layer = model.get_layer(output_layer)
    kept_bias = layer.get_weights()[1].copy()
    kept_widths = np.full(len(DIAG_INDEX), np.nan)
    history: list[np.ndarray] = []
    for _ in range(rounds + 1):
        outputs, labels = _validation_outputs(model, val_data)
        widths = _pull_widths(outputs, labels)
        history.append(widths)
        kernel, bias = layer.get_weights()
        for t, width in enumerate(widths):
            usable = width > 0 and np.isfinite(width)
            if usable and (np.isnan(kept_widths[t]) or abs(np.log(width)) < abs(np.log(kept_widths[t]))):
                kept_bias[DIAG_INDEX[t]], kept_widths[t] = bias[DIAG_INDEX[t]], width
        if len(history) > rounds or not np.all(np.isfinite(widths)):
            break
        bias = bias.astype(np.float64)
        for t in range(len(widths)):
            bias[DIAG_INDEX[t]] += _diag_shift_for_unit_pulls(outputs, labels, t)
        layer.set_weights([kernel, bias.astype(np.float32)])
        snap_weights_to_quantized(model)
    layer.set_weights([layer.get_weights()[0], kept_bias])
    history.append(np.where(np.isnan(kept_widths), history[-1], kept_widths))
    return history


def sigma_biases_at_their_limit(model, widths: np.ndarray, output_layer: str = "mdn_output",
                                tolerance: float = 0.02) -> list[tuple[str, float, float, str]]:
    """The targets whose pull width the calibration left more than `tolerance` from 1 because
    their diagonal output's bias sits at the end of its quantizer's range, on the side the width
    needs (a width below 1 needs a smaller sigma, a lower bias): (target, width, bias, quantizer)."""
    from firmware.graph import weight_precision
    from train.dataset import TARGETS
    from train.loss import DIAG_INDEX

    layer = model.get_layer(output_layer)
    quantizer = layer.get_quantizers()[1]
    if quantizer is None:  # a float bias has no end within reach
        return []
    grid = weight_precision(quantizer, f"{output_layer} bias")
    low, high = (code * grid.lsb for code in grid.code_range())
    bias = layer.get_weights()[1].astype(np.float64)
    stuck = []
    for target, (name, width) in enumerate(zip(TARGETS, widths)):
        b = bias[DIAG_INDEX[target]]
        if (width < 1 - tolerance and b <= low + grid.lsb / 2) or (width > 1 + tolerance and b >= high - grid.lsb / 2):
            stuck.append((name, float(width), float(b), f"quantized_bits({quantizer.bits}, {quantizer.integer})"))
    return stuck


def copy_matching_weights(source, target) -> int:
    """Copy the weights of every `source` layer into the `target` layer of the same name and
    shapes (the float twin and the quantized model share names); returns how many were copied."""
    copied = 0
    names = {layer.name for layer in source.layers}
    for layer in target.layers:
        weights = layer.get_weights()
        if not weights or layer.name not in names:
            continue
        values = source.get_layer(layer.name).get_weights()
        if [w.shape for w in values] == [w.shape for w in weights]:
            layer.set_weights(values)
            copied += 1
    return copied


def save_model_directory(
    directory: Path,
    model,
    spec: ModelSpec | None,
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
        "spec": spec.to_dict() if spec is not None else None,
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
    parser.add_argument("--spec", type=Path, default=None,
                        help="model spec file (model_specs/<name>.yml): architecture, bit widths, data, training")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="directory of recon/labels parquet files")
    parser.add_argument("--out", type=Path, default=None, help="model directory (default build/models/<name>)")
    parser.add_argument("--name", default=None, help="model name (default: the spec's name or the architecture)")
    parser.add_argument("--architecture", choices=ARCHITECTURES, default=None,
                        help="without --spec: train this architecture with default bit widths")
    parser.add_argument("--profile", choices=PROFILES, default="full",
                        help="full: train as the spec says; quick: at most "
                             f"{QUICK_FLOAT_EPOCHS}+{QUICK_EPOCHS} epochs (firmware proofs, CI)")
    parser.add_argument("--float", dest="float_model", action="store_true",
                        help="train the unquantized Keras twin of the architecture instead")
    parser.add_argument("--layout", choices=("2D", "3D"), default=None)
    parser.add_argument("--time-slices", default=None, help="comma-separated slice indices (3D layout)")
    parser.add_argument("--standardize", action="store_true", default=None,
                        help="z-score the pixels with train-set statistics")
    for field in dataclasses.fields(TrainOptions):
        flag = "--" + field.name.replace("_", "-")
        if isinstance(field.default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=None,
                                help=f"training option (default {field.default})")
            continue
        kind = type(field.default)
        parser.add_argument(flag, type=kind, default=None, help=f"training option (default {field.default})")


def parse_slices(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise PipelineError(f"--time-slices must be comma-separated integers, got {text!r}") from None


def run(args: argparse.Namespace) -> int:
    from train import dataset
    from train.specs import load_spec

    if args.spec is not None and args.architecture is not None:
        raise PipelineError("give --spec or --architecture, not both")
    spec_file = load_spec(args.spec) if args.spec is not None else None
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainOptions)
                 if getattr(args, f.name) is not None}
    if spec_file is not None and spec_file.imported:
        if args.float_model:
            raise PipelineError(f"{args.spec}: a model trained elsewhere has no float twin to train here")
        from train.imported import import_model

        out = args.out or DEFAULT_MODELS / (args.name or spec_file.name)
        given = dataclasses.replace(TrainOptions(), **overrides)
        result = import_model(spec_file, args.data, out, seed=given.seed, split_seed=given.split_seed,
                              reference_events=given.reference_events or TrainOptions.reference_events)
        print(f"{result.directory}: {result.params} parameters, imported from {spec_file.model_file}")
        return 0
    spec = spec_file.model if spec_file else ModelSpec(architecture=args.architecture or "baseline")
    data = dict(spec_file.data) if spec_file else {}
    for key, value in (("layout", args.layout), ("standardize", args.standardize)):
        if value is not None:
            data[key] = value
    if args.time_slices is not None:
        data["time_slices"] = list(parse_slices(args.time_slices))
    data_options = dataset.DataOptions.from_dict(data)
    options = profiled(TrainOptions(**(spec_file.training if spec_file else {})), args.profile)
    options = dataclasses.replace(options, **overrides)
    base = spec_file.name if spec_file else spec.architecture
    name = args.name or (f"{base}_float" if args.float_model else base)
    out = args.out or DEFAULT_MODELS / name
    result = train(args.data, out, spec, data_options, options, quantized=not args.float_model)
    print(f"{result.directory}: {result.params} parameters, best val_loss {result.val_loss:.4f}")
    return 0
