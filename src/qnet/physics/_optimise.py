"""Maximising a key rate over source intensities.

A coarse logarithmic grid finds the basin of the global maximum, then scipy refines it (bounded
Brent in 1-D). Rate functions here are smooth and unimodal in practice, but
at long distance most of the range gives a negative rate, so a local search alone can stall on a
flat region; the grid guards against that. :func:`maximise_rows` does the same for many problems of
a few variables at once (the finite-key settings of every link of a network), all in numpy: a grid,
then a pattern search that shrinks a cube around each row's best point.

scipy.optimize is imported where it is used (0.6 s): a link feeder imports the models, not this.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

__all__ = ["maximise_1d", "maximise_rows"]

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


def maximise_rows(
    score: Callable[[npt.NDArray[np.float64], npt.NDArray[np.intp]], npt.NDArray[np.float64]],
    rows: int,
    grid: npt.NDArray[np.float64],
    *,
    free: Sequence[bool] | None = None,
    step: float = 0.5,
    tol: float = 1e-3,
    max_iter: int = 200,
) -> npt.NDArray[np.float64]:
    """Maximise ``rows`` functions of the same D variables at once, vectorised.

    Each row starts from its best point of ``grid`` (G, D); then a pattern search: the points of a
    cube around the best point so far that differ from it in one or two of the ``free``
    coordinates (:func:`_stencil`), a move to the best of them, or a cube half as wide when none is
    better, until it is ``tol`` wide. Only strict improvements move a row, so a flat score leaves
    it at its grid point.

    Args:
        score: ``score(u, row)`` gives the values (n,) of points u (n, D) for the rows ``row`` (n,).
        rows: how many functions.
        grid: the starting points.
        free: which variables vary (all by default).
        step: the cube's first half-width.
        tol: the half-width at which a row stops.
        max_iter: the most cubes evaluated per row.

    Returns:
        The best point of each row, (rows, D).
    """
    best, value = _best_of_grid(score, rows, grid)
    offsets = _stencil(grid.shape[1], free)
    steps = np.full(rows, step)
    active = np.arange(rows)
    for _ in range(max_iter):
        if not active.size:
            break
        trial = best[active, None, :] + steps[active, None, None] * offsets
        values = _evaluate(score, trial.reshape(-1, grid.shape[1]), np.repeat(active, len(offsets)))
        values = values.reshape(len(active), len(offsets))
        pick = values.argmax(axis=1)
        top = values[np.arange(len(active)), pick]
        moved = top > value[active]
        best[active[moved]] = trial[moved, pick[moved]]
        value[active[moved]] = top[moved]
        steps[active[~moved]] /= 2.0
        active = active[steps[active] >= tol]
    return best


_CHUNK = 1 << 15
"""Points scored per call (bounds the score's temporaries: a few MiB each)."""


def _evaluate(score: Callable[[npt.NDArray[np.float64], npt.NDArray[np.intp]], npt.NDArray[np.float64]],
              points: npt.NDArray[np.float64], row: npt.NDArray[np.intp]) -> npt.NDArray[np.float64]:
    """``score`` over many points, :data:`_CHUNK` at a time."""
    return np.concatenate([score(points[i:i + _CHUNK], row[i:i + _CHUNK]) for i in range(0, len(points), _CHUNK)])


def _best_of_grid(score: Callable[[npt.NDArray[np.float64], npt.NDArray[np.intp]], npt.NDArray[np.float64]],
                  rows: int, grid: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """(each row's best grid point (rows, D), its value (rows,))."""
    values = _evaluate(score, np.tile(grid, (rows, 1)), np.repeat(np.arange(rows), len(grid))).reshape(rows, -1)
    pick = values.argmax(axis=1)
    return grid[pick].copy(), values[np.arange(rows), pick]


def _stencil(dims: int, free: Sequence[bool] | None) -> npt.NDArray[np.float64]:
    """The offsets of a unit cube's centre and of its points with one or two coordinates at +-1 (along
    the free axes): 1 + 2k + 2k(k - 1) points for k free axes (51 for 5), where the whole cube has
    3^k (243); they follow a valley diagonal to two axes, and gave the same optima to 2e-4 on the
    finite-key settings at a fifth of the cost."""
    axes = [i for i in range(dims) if free is None or free[i]]
    offsets = [np.zeros(dims)]
    for count in (1, 2):
        for chosen in itertools.combinations(axes, count):
            for signs in itertools.product((-1.0, 1.0), repeat=count):
                offset = np.zeros(dims)
                offset[list(chosen)] = signs
                offsets.append(offset)
    return np.array(offsets)
