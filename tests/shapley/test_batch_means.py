"""Batch-means standard errors of Shapley values over a nonlinear (mixture) utility."""

from __future__ import annotations

import numpy as np
import pytest

from royalflow.shapley import batch_means_std_errors, exact_shapley


def mixture(means: np.ndarray):  # type: ignore[no-untyped-def]
    """v(S) = log mean of exp(component) over the base and S's members (two players)."""
    def v(coalitions: np.ndarray) -> np.ndarray:
        member = np.concatenate([np.ones((len(coalitions), 1), bool), coalitions.astype(bool)], axis=1)
        return np.log(np.where(member, np.exp(means), 0.0).sum(axis=1) / member.sum(axis=1))
    return exact_shapley(2, v)


def test_identical_groups_have_no_error_and_noise_has_some() -> None:
    flat = np.tile(np.array([[0.0], [1.0], [2.0]]), (1, 8))
    assert np.allclose(batch_means_std_errors(mixture, flat), 0.0)
    noisy = flat + np.random.default_rng(0).normal(0, 0.5, flat.shape)
    se = batch_means_std_errors(mixture, noisy)
    assert se.shape == (2,) and np.all(se > 0) and np.all(np.isfinite(se))


def test_a_single_sample_has_no_batch_means() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        batch_means_std_errors(mixture, np.zeros((3, 1)))
