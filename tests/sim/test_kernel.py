"""The kernel's named random streams: one per name and seed, whatever else the run asks for."""

from __future__ import annotations

import numpy as np

from qnet.sim.kernel import Kernel


def test_a_stream_depends_on_its_name_and_the_seed_only() -> None:
    """Asking for other streams first, or in another order, does not change a stream's numbers;
    another seed or another name does."""
    a = Kernel(seed=7)
    first = a.rng("link/A-B").poisson(100.0, size=50)
    b = Kernel(seed=7)
    b.rng("demand/x").random(1000)
    b.rng("link/C-D").random(10)
    assert np.array_equal(b.rng("link/A-B").poisson(100.0, size=50), first)
    assert not np.array_equal(Kernel(seed=8).rng("link/A-B").poisson(100.0, size=50), first)
    assert not np.array_equal(Kernel(seed=7).rng("link/A-C").poisson(100.0, size=50), first)
    assert a.rng("link/A-B") is a.rng("link/A-B")  # one generator per name: draws continue
