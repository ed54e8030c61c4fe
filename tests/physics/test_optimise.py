"""The vectorised maximiser behind the finite-key search (:func:`qnet.physics._optimise.maximise_rows`)."""

from __future__ import annotations

import itertools

import numpy as np

from qnet.physics._optimise import maximise_rows

CENTRES = np.array([[0.3, -1.2], [2.0, 0.5], [-0.7, 1.1]])


def _bowl(u: np.ndarray, row: np.ndarray) -> np.ndarray:
    """A paraboloid per row, with its top at that row of CENTRES (one narrow direction)."""
    d = u - CENTRES[row]
    return -(d[:, 0] ** 2 + 30.0 * (d[:, 0] - d[:, 1]) ** 2)


def test_each_row_finds_its_own_maximum() -> None:
    """Rows share the grid and the passes, not their answers."""
    grid = np.array(list(itertools.product(np.linspace(-3.0, 3.0, 4), repeat=2)))
    assert np.allclose(maximise_rows(_bowl, 3, grid, tol=1e-7), CENTRES, atol=1e-5)


def test_axes_not_free_keep_their_start() -> None:
    """``free`` fixes a variable (the finite-key search's given ``mu`` or ``nu``)."""
    best = maximise_rows(_bowl, 1, np.array([[0.0, 0.0]]), free=(True, False), tol=1e-7)
    assert best[0, 1] == 0.0
    assert abs(best[0, 0] - (0.3 + 36.0 / 31.0)) < 1e-5  # the top of the bowl along u_0 at u_1 = 0


def test_a_flat_score_leaves_the_start_alone() -> None:
    """Only strict improvements move a row."""
    best = maximise_rows(lambda u, row: np.zeros(len(u)), 2, np.array([[1.0, 2.0]]))
    assert (best == np.array([[1.0, 2.0], [1.0, 2.0]])).all()
