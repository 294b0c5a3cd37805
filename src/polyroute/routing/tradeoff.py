"""The one cost/quality knob: pick the model maximising predicted quality − λ·cost.

Shared by the learned routers (at serving time), the bandits, knob calibration and the
offline evaluation (which sweeps λ to draw a router's cost–quality curve).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]


def select(quality: FloatArray, cost: FloatArray, lam: float) -> NDArray[np.intp]:
    """Per row, the index of the column maximising ``quality - lam * cost``.

    ``quality`` and ``cost`` are (n_prompts, n_models). Ties go to the cheaper model, then to
    the lower index, so that λ = 0 with equal predictions does not pay for nothing.
    """
    utility = quality - lam * cost
    best = utility.max(axis=1, keepdims=True)
    # Among near-ties, take the cheapest: mask the others with +inf cost.
    tied = utility >= best - 1e-12
    masked_cost = np.where(tied, cost, np.inf)
    return np.asarray(masked_cost.argmin(axis=1), dtype=np.intp)


def lambda_grid(cost: FloatArray, quality_range: float = 1.0, points: int = 200) -> FloatArray:
    """λ values spanning 'quality only' (0) to 'cheapest always wins', for curve sweeps.

    The scale comes from the data: a λ whose λ·(cost spread) exceeds the quality range
    always picks the cheapest model, so the grid ends there (geometric spacing in between).
    """
    spread = float(np.max(cost) - np.min(cost))
    if spread <= 0:
        return np.array([0.0])
    hi = 10.0 * quality_range / spread
    lo = hi * 1e-6
    return np.concatenate([[0.0], np.geomspace(lo, hi, points - 1)])
