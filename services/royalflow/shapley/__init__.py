"""The Shapley engine: exact enumeration and permutation sampling over any coalition utility.

    >>> import numpy as np
    >>> from royalflow.shapley import exact_shapley
    >>> glove = np.array([0, 0, 0, 1, 0, 1, 0, 1], dtype=float)  # player 0 left, 1-2 right gloves
    >>> exact_shapley(3, glove).values.round(4).tolist()
    [0.6667, 0.1667, 0.1667]
"""

from royalflow.shapley.exact import EXACT_MAX_PLAYERS, exact_shapley
from royalflow.shapley.result import ShapleyResult
from royalflow.shapley.sampling import sample_shapley

__all__ = ["EXACT_MAX_PLAYERS", "ShapleyResult", "exact_shapley", "sample_shapley"]
