"""The QKeras Mixture Density Networks: every weight and activation is a fixed-point number.

Two architectures share one dense head (16-16-14):
- `baseline`: separable 3x3 convolution, 1x1 convolution, average pooling (the original
  smart-pixel model, 2,029 parameters for a (13, 21, 2) input);
- `xysum`: the cluster projected on x and on y by average pooling, a Conv1D on each projection,
  the two concatenated.

The first layer of both is an explicit input quantizer (a QActivation with quantized_bits), so
that the model itself defines the fixed-point input that the hardware sees.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from smartpix.errors import PipelineError

ARCHITECTURES = ("baseline", "xysum")
TANH_KINDS = ("hard", "real")
N_OUTPUTS = 14  # 4 means, 4 Cholesky diagonal entries, 6 off-diagonal entries


@dataclass(frozen=True)
class ModelSpec:
    """Architecture and quantizer bit widths of one MDN (all fixed-point choices in one place)."""

    architecture: str = "baseline"
    n_filters: int = 5
    kernel_size: int = 3
    pool_size: int = 3
    hidden: int = 16
    # input quantizer: quantized_bits(input_bits, input_integer, keep_negative=input_signed)
    input_bits: int = 6
    input_integer: int = 4
    input_signed: bool = False
    conv_weight_bits: int = 4
    conv_activation_bits: int = 4  # quantized_tanh, symmetric
    pool_bits: int = 8  # quantized_bits after the average pooling
    pool_integer: int = 0
    dense_weight_bits: int = 8
    dense_activation_bits: int = 8  # quantized_tanh, symmetric
    # the convolutions' and dense layers' quantized_tanh: 'hard' is QKeras' default, clip(x, -1, 1);
    # 'real' rounds the real tanh (use_real_tanh=True), which the firmware computes exactly by
    # comparing with thresholds (firmware/tanh.py)
    tanh: str = "hard"
    # the output layer's bias, quantized_bits(output_bias_bits, 0); 0: dense_weight_bits. A mean's
    # bias sets its offset to within half a step, 1/256 of the scaled target at 8 bits: 11% of a
    # trained cotAlpha resolution, hence the finer grid of the shipped specs
    output_bias_bits: int = 0
    # its integer bits: quantized_bits(output_bias_bits, output_bias_integer), range +-2^integer.
    # A long training drives the diagonal Cholesky outputs' biases to -1, the edge of the default
    # range, and the sigma calibration can then not move them further
    output_bias_integer: int = 0
    regularization: float = 0.01  # L1 on kernels, as in the original model
    # L2 on layer outputs; the original used 0.01, which halves the training speed here
    activity_regularization: float = 0.0

    def __post_init__(self) -> None:
        if self.architecture not in ARCHITECTURES:
            raise PipelineError(
                f"unknown architecture {self.architecture!r}: choose one of {', '.join(ARCHITECTURES)}"
            )
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if field.type == "int" and (not isinstance(value, int) or isinstance(value, bool)):
                raise PipelineError(f"model option {field.name} must be an integer, got {value!r}")
        for name in ("input_bits", "conv_weight_bits", "conv_activation_bits", "pool_bits",
                     "dense_weight_bits", "dense_activation_bits", "n_filters", "hidden",
                     "kernel_size", "pool_size"):
            if getattr(self, name) < 1:
                raise PipelineError(f"model option {name} must be at least 1, got {getattr(self, name)}")
        if self.tanh not in TANH_KINDS:
            raise PipelineError(f"model option tanh must be one of {', '.join(TANH_KINDS)}, got {self.tanh!r}")
        if self.output_bias_bits < 0:
            raise PipelineError(f"model option output_bias_bits must be 0 (dense_weight_bits) or at least 1, "
                                f"got {self.output_bias_bits}")
        if not 0 <= self.output_bias_integer < self.output_bias_width:
            raise PipelineError(f"model option output_bias_integer must be at least 0 and below the output bias' "
                                f"{self.output_bias_width} bits, got {self.output_bias_integer}")

    @property
    def output_bias_width(self) -> int:
        """Bits of the output layer's bias: its own, or the dense weights'."""
        return self.output_bias_bits or self.dense_weight_bits

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "ModelSpec":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PipelineError(
                f"unknown model option(s) {', '.join(unknown)}: allowed are {', '.join(sorted(known))}"
            )
        return cls(**data)


def input_quantizer(spec: ModelSpec):
    from qkeras import quantized_bits

    return quantized_bits(
        spec.input_bits, spec.input_integer, keep_negative=spec.input_signed, alpha=1
    )


def build_model(spec: ModelSpec, input_shape: tuple[int, int, int], quantized: bool = True):
    """Build the MDN; with `quantized=False` the same architecture in full precision Keras
    (the unquantized baseline the evaluation compares against)."""
    import tensorflow as tf
    from tensorflow.keras import layers

    if len(input_shape) != 3:
        raise PipelineError(f"input shape must be (rows, cols, channels), got {input_shape}")
    blocks = _QuantizedBlocks(spec) if quantized else _FloatBlocks(spec)
    inputs = tf.keras.Input(shape=input_shape, name="cluster")
    x = blocks.input(inputs)
    if spec.architecture == "baseline":
        rows, cols = input_shape[0] - spec.kernel_size + 1, input_shape[1] - spec.kernel_size + 1
        if rows < spec.pool_size or cols < spec.pool_size:
            raise PipelineError(f"input {input_shape} too small for kernel {spec.kernel_size} and pool {spec.pool_size}")
        x = blocks.separable_conv(x, "conv_separable")
        x = blocks.conv_activation(x, "conv_separable_act")
        x = blocks.pointwise_conv(x, "conv_pointwise")
        x = blocks.conv_activation(x, "conv_pointwise_act")
        x = layers.AveragePooling2D(pool_size=spec.pool_size, name="pool")(x)
        x = blocks.pool_quantizer(x, "pool_act")
        x = layers.Flatten(name="flatten")(x)
    else:
        rows, cols, channels = input_shape
        # Projections: the mean over x (columns) gives a profile along y, and vice versa.
        along_y = layers.AveragePooling2D(pool_size=(1, cols), name="pool_x")(x)
        along_y = blocks.pool_quantizer(along_y, "pool_x_act", integer=spec.input_integer, signed=spec.input_signed)
        along_y = layers.Reshape((rows, channels), name="profile_y")(along_y)
        along_x = layers.AveragePooling2D(pool_size=(rows, 1), name="pool_y")(x)
        along_x = blocks.pool_quantizer(along_x, "pool_y_act", integer=spec.input_integer, signed=spec.input_signed)
        along_x = layers.Reshape((cols, channels), name="profile_x")(along_x)
        along_y = blocks.conv1d(along_y, "conv_y")
        along_y = blocks.conv_activation(along_y, "conv_y_act")
        along_x = blocks.conv1d(along_x, "conv_x")
        along_x = blocks.conv_activation(along_x, "conv_x_act")
        along_y = layers.Flatten(name="flatten_y")(along_y)
        along_x = layers.Flatten(name="flatten_x")(along_x)
        x = layers.Concatenate(name="profiles")([along_y, along_x])
    x = blocks.dense(x, spec.hidden, "dense_1")
    x = blocks.dense_activation(x, "dense_1_act")
    x = blocks.dense(x, spec.hidden, "dense_2")
    x = blocks.dense_activation(x, "dense_2_act")
    outputs = blocks.dense(x, N_OUTPUTS, "mdn_output")
    name = spec.architecture if quantized else f"{spec.architecture}_float"
    return tf.keras.Model(inputs=inputs, outputs=outputs, name=name)


class _QuantizedBlocks:
    """Layer factories of the QKeras model; quantizer choices follow the original model."""

    def __init__(self, spec: ModelSpec):
        import tensorflow as tf

        self.spec = spec
        self.l1l2 = lambda: tf.keras.regularizers.L1L2(spec.regularization)
        self.l2 = lambda: (
            tf.keras.regularizers.L2(spec.activity_regularization) if spec.activity_regularization else None
        )

    def _bits(self, bits: int, symmetric: bool = False, integer: int = 0):
        from qkeras import quantized_bits

        return quantized_bits(bits, integer, symmetric=int(symmetric), alpha=1)

    def input(self, x):
        from qkeras import QActivation

        return QActivation(input_quantizer(self.spec), name="input_quant")(x)

    def separable_conv(self, x, name):
        from qkeras import QSeparableConv2D

        s = self.spec
        return QSeparableConv2D(
            s.n_filters, s.kernel_size, name=name,
            depthwise_quantizer=self._bits(s.conv_weight_bits, symmetric=True),
            pointwise_quantizer=self._bits(s.conv_weight_bits, symmetric=True),
            bias_quantizer=self._bits(s.conv_weight_bits),
            depthwise_regularizer=self.l1l2(), pointwise_regularizer=self.l1l2(),
            activity_regularizer=self.l2(),
        )(x)

    def pointwise_conv(self, x, name):
        from qkeras import QConv2D

        s = self.spec
        return QConv2D(
            s.n_filters, 1, name=name,
            kernel_quantizer=self._bits(s.conv_weight_bits),
            bias_quantizer=self._bits(s.conv_weight_bits),
            kernel_regularizer=self.l1l2(), activity_regularizer=self.l2(),
        )(x)

    def conv1d(self, x, name):
        from qkeras import QConv1D

        s = self.spec
        return QConv1D(
            s.n_filters, s.kernel_size, name=name,
            kernel_quantizer=self._bits(s.conv_weight_bits),
            bias_quantizer=self._bits(s.conv_weight_bits),
            kernel_regularizer=self.l1l2(), activity_regularizer=self.l2(),
        )(x)

    def conv_activation(self, x, name):
        from qkeras import QActivation

        return QActivation(self._tanh(self.spec.conv_activation_bits), name=name)(x)

    def _tanh(self, bits: int):
        from qkeras import quantized_tanh

        return quantized_tanh(bits, symmetric=True, use_real_tanh=self.spec.tanh == "real")

    def pool_quantizer(self, x, name, integer: int | None = None, signed: bool = True):
        from qkeras import QActivation, quantized_bits

        s = self.spec
        integer = s.pool_integer if integer is None else integer
        return QActivation(quantized_bits(s.pool_bits, integer, keep_negative=signed, alpha=1), name=name)(x)

    def dense(self, x, units, name):
        from qkeras import QDense

        s = self.spec
        is_output = name == "mdn_output"
        bias_quantizer = (self._bits(s.output_bias_width, integer=s.output_bias_integer) if is_output
                          else self._bits(s.dense_weight_bits))
        return QDense(
            units, name=name,
            kernel_quantizer=self._bits(s.dense_weight_bits),
            bias_quantizer=bias_quantizer,
            kernel_regularizer=self.l1l2(),
            activity_regularizer=None if is_output else self.l2(),
        )(x)

    def dense_activation(self, x, name):
        from qkeras import QActivation

        return QActivation(self._tanh(self.spec.dense_activation_bits), name=name)(x)


class _FloatBlocks(_QuantizedBlocks):
    """The same architecture in plain Keras: float weights, tanh activations, no quantizers."""

    def input(self, x):
        return x

    def separable_conv(self, x, name):
        from tensorflow.keras import layers

        return layers.SeparableConv2D(self.spec.n_filters, self.spec.kernel_size, name=name)(x)

    def pointwise_conv(self, x, name):
        from tensorflow.keras import layers

        return layers.Conv2D(self.spec.n_filters, 1, name=name)(x)

    def conv1d(self, x, name):
        from tensorflow.keras import layers

        return layers.Conv1D(self.spec.n_filters, self.spec.kernel_size, name=name)(x)

    def conv_activation(self, x, name):
        from tensorflow.keras import layers

        return layers.Activation("tanh", name=name)(x)

    dense_activation = conv_activation

    def pool_quantizer(self, x, name, integer=None, signed=True):
        return x

    def dense(self, x, units, name):
        from tensorflow.keras import layers

        return layers.Dense(units, name=name)(x)


def custom_objects() -> dict[str, Any]:
    """The QKeras classes a saved model needs to load."""
    from firmware.thirdparty import add_supported_quantized_objects

    objects: dict[str, Any] = {}
    add_supported_quantized_objects(objects)
    return objects


def load_model(path):
    """Load a saved QKeras model (compile=False: the loss is not needed for inference)."""
    import tensorflow as tf

    return tf.keras.models.load_model(path, custom_objects=custom_objects(), compile=False)


def snap_weights_to_quantized(model) -> int:
    """Replace every quantized layer's float weights by their quantized values.

    QKeras keeps float 'shadow' weights and quantizes them on every call with a straight-through
    estimator (x + (q(x) - x)), which is not always exactly q(x) in float32. With the stored
    weights already on the grid, the quantizers are the identity and the Python reference is
    exact. Returns the number of weight tensors changed.
    """
    import numpy as np

    changed = 0
    for layer in model.layers:
        quantizers = getattr(layer, "get_quantizers", None)
        if quantizers is None:
            continue
        weights = layer.get_weights()
        snapped = []
        for w, q in zip(weights, layer.get_quantizers()):
            if q is None:
                snapped.append(w)
                continue
            qw = np.asarray(_exact_quantize(q, w), dtype=np.float32)
            changed += int(not np.array_equal(qw, w))
            snapped.append(qw)
        snapped.extend(weights[len(snapped):])
        layer.set_weights(snapped)
    return changed


def _exact_quantize(quantizer, values):
    """The quantizer applied without the straight-through estimator's float round trip."""
    import numpy as np

    saved = getattr(quantizer, "use_ste", None)
    if saved is not None:
        quantizer.use_ste = False
    try:
        return np.asarray(quantizer(values.astype(np.float32)))
    finally:
        if saved is not None:
            quantizer.use_ste = saved


def disable_ste(model) -> None:
    """Evaluate quantizers without the straight-through estimator: (1-1)*x + q(x) is exactly
    q(x), whereas x + (q(x) - x) can be off by a float32 ulp when q saturates. Inference only."""
    for layer in model.layers:
        candidates = list(getattr(layer, "get_quantizers", lambda: [])() or [])
        activation = getattr(layer, "quantizer", None) or getattr(layer, "activation", None)
        candidates.append(activation)
        for q in candidates:
            if q is not None and hasattr(q, "use_ste"):
                q.use_ste = False
