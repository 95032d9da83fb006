"""Negative log-likelihood of a 4D Gaussian parameterized by its Cholesky factor.

The 14 network outputs, in the original smart-pixel order:
    x, M11, y, M22, cotA, M33, cotB, M44, M21, M31, M32, M41, M42, M43
i.e. the means interleaved with the raw diagonal of the lower-triangular factor L, then the six
off-diagonal entries row by row. The diagonal is made positive with softplus (+ a small floor),
and the covariance is L L^T. The log-density comes from log det L and a triangular solve, never
from log(prob), so it stays finite for sharp or badly wrong predictions.
"""

from __future__ import annotations

import numpy as np

N_TARGETS = 4
MEAN_INDEX = (0, 2, 4, 6)
DIAG_INDEX = (1, 3, 5, 7)
# (row, col) of L for outputs 8..13
OFFDIAG_POSITIONS = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
DIAG_FLOOR = 1e-6
# Central interval of a Gaussian between -1 and +1 sigma: the 68% half-width of N(0, s) is s.
CORE_FRACTION = 0.6826894921370859
_LOG_2PI = float(np.log(2.0 * np.pi))


def _softplus_np(x: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, x)


def core_width_68(values: np.ndarray) -> float:
    """Half the width of the central 68.27% interval of `values` (NaN when empty): the resolution
    of residuals, and the width of pulls (1 for a calibrated Gaussian)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        return float("nan")
    low, high = np.quantile(values, [(1 - CORE_FRACTION) / 2, (1 + CORE_FRACTION) / 2])
    return float(high - low) / 2


def unpack(outputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split raw outputs (n, 14) into means (n, 4) and lower-triangular factors L (n, 4, 4)."""
    outputs = np.asarray(outputs, dtype=np.float64)
    if outputs.ndim != 2 or outputs.shape[1] != 14:
        raise ValueError(f"expected MDN outputs of shape (n, 14), got {outputs.shape}")
    mu = outputs[:, MEAN_INDEX]
    chol = np.zeros((outputs.shape[0], N_TARGETS, N_TARGETS))
    chol[:, range(4), range(4)] = _softplus_np(outputs[:, DIAG_INDEX]) + DIAG_FLOOR
    for k, (r, c) in enumerate(OFFDIAG_POSITIONS):
        chol[:, r, c] = outputs[:, 8 + k]
    return mu, chol


def covariance(outputs: np.ndarray) -> np.ndarray:
    """The predicted covariance L L^T, shape (n, 4, 4)."""
    _, chol = unpack(outputs)
    return chol @ np.swapaxes(chol, 1, 2)


def sigmas(outputs: np.ndarray) -> np.ndarray:
    """Each target's predicted standard deviation, sqrt(diag(L L^T)), shape (n, 4)."""
    return np.sqrt(np.diagonal(covariance(outputs), axis1=1, axis2=2))


def nll_numpy(y: np.ndarray, outputs: np.ndarray) -> np.ndarray:
    """Per-event negative log-likelihood (float64), for evaluation."""
    mu, chol = unpack(outputs)
    diff = np.asarray(y, dtype=np.float64) - mu
    # L z = diff, solved by forward substitution (L is lower triangular)
    z = np.zeros_like(diff)
    for i in range(N_TARGETS):
        z[:, i] = (diff[:, i] - np.einsum("nj,nj->n", chol[:, i, :i], z[:, :i])) / chol[:, i, i]
    log_det = np.log(chol[:, range(4), range(4)]).sum(axis=1)
    return 0.5 * np.sum(z * z, axis=1) + log_det + 0.5 * N_TARGETS * _LOG_2PI


def mdn_nll(y_true, y_pred):
    """Keras loss: the mean per-event NLL of the targets under the predicted Gaussian."""
    import tensorflow as tf

    y_pred = tf.cast(y_pred, tf.float32)
    y_true = tf.cast(y_true, tf.float32)
    mu = tf.gather(y_pred, MEAN_INDEX, axis=1)
    diag = tf.math.softplus(tf.gather(y_pred, DIAG_INDEX, axis=1)) + DIAG_FLOOR
    n = tf.shape(y_pred)[0]
    indices = [(i, i) for i in range(N_TARGETS)] + list(OFFDIAG_POSITIONS)
    values = tf.concat([diag, y_pred[:, 8:14]], axis=1)  # (n, 10), matching `indices`
    # Scatter the 10 entries of each event into a 4x4 lower-triangular matrix.
    flat_positions = tf.constant([r * N_TARGETS + c for r, c in indices], dtype=tf.int32)
    one_hot = tf.one_hot(flat_positions, N_TARGETS * N_TARGETS, dtype=values.dtype)  # (10, 16)
    chol = tf.reshape(values @ one_hot, (n, N_TARGETS, N_TARGETS))
    diff = (y_true - mu)[:, :, None]
    z = tf.linalg.triangular_solve(chol, diff, lower=True)[:, :, 0]
    log_det = tf.reduce_sum(tf.math.log(diag), axis=1)
    nll = 0.5 * tf.reduce_sum(z * z, axis=1) + log_det + 0.5 * N_TARGETS * _LOG_2PI
    return tf.reduce_mean(nll)
