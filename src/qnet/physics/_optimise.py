"""Maximising a key rate over source intensities.

A coarse logarithmic grid finds the basin of the global maximum, then scipy refines it (bounded
Brent in 1-D, Nelder-Mead in 2-D). Rate functions here are smooth and unimodal in practice, but
at long distance most of the range gives a negative rate, so a local search alone can stall on a
flat region; the grid guards against that.

scipy.optimize is imported where it is used (0.6 s): a link feeder imports the models, not this.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["maximise_1d", "maximise_2d"]

_GRID = 48


def maximise_1d(fn: Callable[[float], float], lo: float, hi: float) -> float:
    """The argument in [lo, hi] (lo > 0) that maximises ``fn``."""
    from scipy.optimize import minimize_scalar  # noqa: PLC0415 - deferred: see the module docstring

    grid = np.geomspace(lo, hi, _GRID)
    values = [fn(float(x)) for x in grid]
    i = int(np.argmax(values))
    a, b = grid[max(i - 1, 0)], grid[min(i + 1, _GRID - 1)]
    res = minimize_scalar(lambda x: -fn(x), bounds=(a, b), method="bounded",
                          options={"xatol": 1e-7 * b})
    return float(res.x) if -res.fun >= values[i] else float(grid[i])


def maximise_2d(
    fn: Callable[[float, float], float],
    x_bounds: tuple[float, float],
    y_bounds: tuple[float, float],
) -> tuple[float, float]:
    """The point of the box ``x_bounds`` x ``y_bounds`` (both > 0) that maximises ``fn``."""
    from scipy.optimize import minimize  # noqa: PLC0415 - deferred: see the module docstring

    xs, ys = np.geomspace(*x_bounds, 24), np.geomspace(*y_bounds, 24)
    values = np.array([[fn(float(x), float(y)) for y in ys] for x in xs])
    i, j = np.unravel_index(int(np.argmax(values)), values.shape)
    lows, highs = np.log([x_bounds[0], y_bounds[0]]), np.log([x_bounds[1], y_bounds[1]])

    def cost(v: np.ndarray) -> float:
        x, y = np.exp(np.clip(v, lows, highs))
        return -fn(float(x), float(y))

    res = minimize(cost, np.log([xs[i], ys[j]]), method="Nelder-Mead",
                   options={"xatol": 1e-8, "fatol": 1e-15, "maxiter": 2000})
    if -res.fun >= values[i, j]:
        x, y = np.exp(np.clip(res.x, lows, highs))
        return float(x), float(y)
    return float(xs[i]), float(ys[j])
