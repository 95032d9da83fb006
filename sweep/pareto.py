"""Pareto fronts of design points (every objective minimized) and how well a resource estimate
ranks designs against a synthesis tool's figures."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# (name, x objective, y objective): the trade-offs a sweep's report draws
FRONTS: tuple[tuple[str, str, str], ...] = (
    ("x-LUT", "x_um", "est_luts"),
    ("y-LUT", "y_um", "est_luts"),
    ("x-latency", "x_um", "latency_ns"),
)


def non_dominated(points: Sequence[Sequence[float]]) -> list[int]:
    """Indices of the points that no other point dominates (<= in every objective, < in one),
    in input order. Points with a missing (None or NaN) objective are never on the front; of
    equal points, all are kept."""
    valid = [i for i, p in enumerate(points) if all(v is not None and not math.isnan(v) for v in p)]
    front = []
    for i in valid:
        p = points[i]
        dominated = any(all(q[k] <= p[k] for k in range(len(p))) and any(q[k] < p[k] for k in range(len(p)))
                        for q in (points[j] for j in valid if j != i))
        if not dominated:
            front.append(i)
    return front


@dataclass(frozen=True)
class Agreement:
    """Estimate against synthesis over the points that have both."""

    points: int
    spearman: float | None
    median_ratio: float | None
    worst_ratio: float | None  # the ratio farthest from 1 (as a factor, either way)

    def to_dict(self) -> dict[str, float | int | None]:
        return {"points": self.points, "spearman": self.spearman, "median_ratio": self.median_ratio,
                "worst_ratio": self.worst_ratio}


def agreement(estimates: Sequence[float], measured: Sequence[float]) -> Agreement:
    """Spearman rank correlation, median and worst ratio of estimate / measured."""
    import numpy as np

    pairs = [(float(e), float(m)) for e, m in zip(estimates, measured)
             if e is not None and m is not None and m > 0 and math.isfinite(e) and math.isfinite(m)]
    if not pairs:
        return Agreement(0, None, None, None)
    est, mea = np.array(pairs).T
    ratios = est / mea
    worst = float(max(ratios, key=lambda r: max(r, 1 / r) if r > 0 else math.inf))
    rho = None
    if len(pairs) >= 2 and np.ptp(est) > 0 and np.ptp(mea) > 0:
        from scipy.stats import spearmanr

        rho = float(spearmanr(est, mea).statistic)
    return Agreement(len(pairs), rho, float(np.median(ratios)), worst)
