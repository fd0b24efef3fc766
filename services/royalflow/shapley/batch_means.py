"""Monte-Carlo standard errors of Shapley values over a NONLINEAR utility, by batch means.

When v(S) is linear in the per-sample likelihoods (exact mode), phi is too, and its standard
error follows from phi per sample. A mixture utility (compositional mode: log of a weighted sum
of likelihoods) is not linear, so the K Monte-Carlo samples are split into G groups, phi is
computed from each group's mean, and

    SE(phi) = std_g(phi_g) / sqrt(G)                                   (batch means)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from royalflow.shapley.result import ShapleyResult

BATCH_MEANS_GROUPS = 4  # G; fewer when there are fewer samples


def batch_means_std_errors(shapley_of: Callable[[np.ndarray], ShapleyResult], samples: np.ndarray,
                           groups: int = BATCH_MEANS_GROUPS) -> np.ndarray:
    """``samples``: (components, K) per-sample likelihoods; ``shapley_of(component means)``."""
    k = samples.shape[1]
    if k < 2:
        raise ValueError("batch means need at least 2 Monte-Carlo samples")
    parts = np.array_split(np.arange(k), min(groups, k))
    phi = np.stack([shapley_of(samples[:, part].mean(axis=1)).values for part in parts])
    return phi.std(axis=0, ddof=1) / np.sqrt(len(parts))
