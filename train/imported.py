"""Bring your own model: a QKeras model trained elsewhere becomes a model directory like the
ones this pipeline trains, so that it is evaluated, converted and verified the same way.

Models trained elsewhere often quantize their inputs outside the model (the upstream
smart-pixel `CreateModel` has no input quantizer). The spec then declares that quantizer, and it
is put in front of the model as its first layer: the model itself then defines the fixed-point
input the hardware sees, and Python and hardware read the same numbers.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

from smartpix.artifacts import atomic_dir
from smartpix.errors import PipelineError
from train.specs import InputQuantizer, ModelSpecFile

log = logging.getLogger(__name__)

INPUT_QUANTIZER_LAYER = "input_quant"


def load_foreign_model(path: Path) -> Any:
    """The saved QKeras model at `path`, or one line saying why it cannot be read."""
    from train.models import load_model

    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"{path}: model file not found")
    try:
        return load_model(path)
    except Exception as err:  # Keras raises many types for a file it cannot read
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise PipelineError(f"{path}: not a loadable Keras/QKeras model ({first})") from None


def input_quantizer_layer(model) -> Any | None:
    """The QActivation that alone reads the model input, if there is one."""
    config = model.get_config()
    inputs = {name for name, *_ in config.get("input_layers", [])}
    readers = [entry for entry in config["layers"]
               if any(node[0] in inputs for nodes in entry.get("inbound_nodes", []) for node in nodes)]
    if len(readers) == 1 and readers[0]["class_name"] == "QActivation":
        return model.get_layer(readers[0]["name"])
    return None


def with_input_quantizer(model, quantizer: InputQuantizer) -> Any:
    """A copy of `model` whose input first passes `quantizer` (a QActivation named input_quant);
    every other layer and weight is unchanged."""
    import tensorflow as tf

    from train.models import custom_objects

    config = copy.deepcopy(model.get_config())
    if len(config.get("input_layers", [])) != 1:
        raise PipelineError(f"model {model.name}: expected one input, got {len(config.get('input_layers', []))}")
    names = {entry["name"] for entry in config["layers"]}
    if INPUT_QUANTIZER_LAYER in names:
        raise PipelineError(f"model {model.name}: already has a layer named {INPUT_QUANTIZER_LAYER!r}")
    input_name = config["input_layers"][0][0]
    for entry in config["layers"]:
        for nodes in entry.get("inbound_nodes", []):
            for node in nodes:
                if node[0] == input_name:
                    node[0] = INPUT_QUANTIZER_LAYER
    position = next(i for i, entry in enumerate(config["layers"]) if entry["name"] == input_name) + 1
    config["layers"].insert(position, {
        "class_name": "QActivation",
        "name": INPUT_QUANTIZER_LAYER,
        "config": {"name": INPUT_QUANTIZER_LAYER, "trainable": False, "dtype": "float32",
                   "activation": _quantizer_text(quantizer)},
        "inbound_nodes": [[[input_name, 0, 0, {}]]],
    })
    wrapped = tf.keras.Model.from_config(config, custom_objects=custom_objects())
    for layer in model.layers:
        weights = layer.get_weights()
        if weights:
            wrapped.get_layer(layer.name).set_weights(weights)
    return wrapped


def _quantizer_text(quantizer: InputQuantizer) -> str:
    return f"quantized_bits({quantizer.bits},{quantizer.integer},keep_negative={int(quantizer.signed)},alpha=1)"


def import_model(spec: ModelSpecFile, data_dir: Path, out_dir: Path, seed: int = 1,
                 reference_events: int = 2000, split_seed: int = 1):
    """Write the model directory of an imported spec: the model (with its input quantizer),
    the reference events of the test files and model.json, as training would (`split_seed`
    draws the test files, `seed` the inputs' noise, if the data options add any)."""
    from train import dataset
    from train.fit import TrainedModel, save_model_directory
    from train.models import snap_weights_to_quantized

    if not spec.imported:
        raise PipelineError(f"{spec.source or spec.name}: not an imported model (no 'model_file')")
    where = spec.source or spec.name
    model = load_foreign_model(spec.model_file)
    existing = input_quantizer_layer(model)
    if existing is None:
        if spec.input_quantizer is None:
            raise PipelineError(f"{where}: the model has no input quantizer; declare the one its inputs were "
                                f"quantized with under 'input_quantizer' (bits, integer, signed)")
        model = with_input_quantizer(model, spec.input_quantizer)
    elif spec.input_quantizer is not None:
        raise PipelineError(f"{where}: key 'input_quantizer': the model already quantizes its input in layer "
                            f"{existing.name!r}; remove the key")
    options = spec.data_options()
    if tuple(int(d) for d in model.input_shape[1:]) != options.input_shape():
        raise PipelineError(f"{where}: the model takes inputs of shape {tuple(model.input_shape[1:])}, the data "
                            f"options give {options.input_shape()}")
    changed = snap_weights_to_quantized(model)
    if changed:
        log.info("%s: %d weight tensors snapped onto their quantizers' grids", spec.name, changed)
    pairs = dataset.discover(Path(data_dir), layout=options.layout)
    _, _, test_pairs = dataset.split_files(pairs, seed=split_seed)
    inputs, labels = dataset.load_arrays(test_pairs, options, max_events=reference_events, seed=seed)
    with atomic_dir(out_dir) as tmp:
        save_model_directory(tmp, model, None, options, inputs, labels, {
            "seed": seed, "data_dir": str(data_dir),
            "files": {"test": [p.tag for p in test_pairs]},
            "imported_from": str(spec.model_file),
            "model_spec": spec.to_dict(),
        }, name=spec.name)
    return TrainedModel(Path(out_dir), int(model.count_params()), float("nan"))
