"""The MDN loss against an independent computation of the Gaussian log-density."""

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from train import loss


def _random_outputs(rng, n):
    out = rng.normal(0.0, 1.0, (n, 14))
    out[:, loss.DIAG_INDEX] = rng.normal(-0.5, 1.0, (n, 4))
    return out


def _scipy_nll(y, outputs):
    """Build each covariance from the documented output layout by hand, then ask scipy."""
    result = []
    for target, row in zip(y, outputs):
        chol = np.zeros((4, 4))
        for i, k in enumerate((1, 3, 5, 7)):
            chol[i, i] = np.log1p(np.exp(row[k])) + loss.DIAG_FLOOR
        chol[1, 0], chol[2, 0], chol[2, 1] = row[8], row[9], row[10]
        chol[3, 0], chol[3, 1], chol[3, 2] = row[11], row[12], row[13]
        mean = row[[0, 2, 4, 6]]
        result.append(-multivariate_normal(mean=mean, cov=chol @ chol.T).logpdf(target))
    return np.array(result)


def test_numpy_nll_matches_scipy():
    rng = np.random.default_rng(7)
    outputs = _random_outputs(rng, 200)
    y = rng.normal(0.0, 1.5, (200, 4))
    # scipy goes through an eigendecomposition: equal to rounding only
    np.testing.assert_allclose(loss.nll_numpy(y, outputs), _scipy_nll(y, outputs), rtol=1e-7, atol=1e-9)


def test_keras_loss_matches_scipy_mean():
    rng = np.random.default_rng(8)
    outputs = _random_outputs(rng, 64).astype(np.float32)
    y = rng.normal(0.0, 1.0, (64, 4)).astype(np.float32)
    value = float(loss.mdn_nll(y, outputs).numpy())
    assert value == pytest.approx(float(_scipy_nll(y, outputs.astype(np.float64)).mean()), rel=1e-4)


def test_loss_stays_finite_far_from_the_prediction():
    outputs = np.zeros((2, 14), dtype=np.float32)
    outputs[:, loss.DIAG_INDEX] = -30.0  # very sharp Gaussian
    y = np.full((2, 4), 1e3, dtype=np.float32)
    value = float(loss.mdn_nll(y, outputs).numpy())
    assert np.isfinite(value) and value > 1e6


def test_covariance_is_symmetric_positive_definite():
    rng = np.random.default_rng(9)
    cov = loss.covariance(_random_outputs(rng, 50))
    np.testing.assert_allclose(cov, np.swapaxes(cov, 1, 2))
    assert np.all(np.linalg.eigvalsh(cov) > 0)


def test_gradient_flows_to_every_output():
    import tensorflow as tf

    rng = np.random.default_rng(10)
    outputs = tf.Variable(_random_outputs(rng, 8).astype(np.float32))
    y = rng.normal(0.0, 1.0, (8, 4)).astype(np.float32)
    with tf.GradientTape() as tape:
        value = loss.mdn_nll(y, outputs)
    grad = tape.gradient(value, outputs).numpy()
    assert np.all(np.isfinite(grad))
    assert np.all(np.abs(grad).sum(axis=0) > 0)
