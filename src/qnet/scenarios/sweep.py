"""Parameter sweeps of ``qnet simulate`` on Dask: one simulation per value, run in parallel on a
local cluster (one worker process per core) or on a Dask cluster named by its scheduler address.

A sweep varies one knob (``--sweep NAME=V1,V2,...``):

- ``demand_scale``: every demand's key rate times the value (how much load the network carries);
- ``rate_scale``: every link's key rate times the value (better or worse devices);
- ``control_period_s``: the controller's period.

Each point returns the run's summary (no time series), so little travels back from the workers.
:func:`map_on_dask` is the Dask part alone (any module-level function over a list of arguments); the
repeater sweeps of ``qnet repeater chain --sweep`` (:mod:`qnet.scenarios.repeater_sweep`) use it too.

Examples:
    >>> parse_sweep("demand_scale=0.5,1,2")
    ('demand_scale', [0.5, 1.0, 2.0])
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from qnet.errors import QNetError

if TYPE_CHECKING:
    from qnet.scenarios.spec import NetworkSpec

__all__ = ["INLINE", "KNOBS", "map_on_dask", "parse_sweep", "run_sweep", "sweep_point"]

T = TypeVar("T")

KNOBS = ("demand_scale", "rate_scale", "control_period_s")


def parse_sweep(text: str) -> tuple[str, list[float]]:
    """``NAME=V1,V2,...`` -> (name, values).

    Raises:
        QNetError: naming what is wrong.
    """
    name, sep, values = text.partition("=")
    name = name.strip()
    if not sep or name not in KNOBS:
        raise QNetError(f"--sweep takes NAME=V1,V2,... with NAME one of {', '.join(KNOBS)}; got {text!r}")
    try:
        points = [float(v) for v in values.split(",") if v.strip()]
    except ValueError:
        raise QNetError(f"--sweep {name}: the values must be numbers, got {values!r}") from None
    if not points or any(not v > 0 for v in points):
        raise QNetError(f"--sweep {name}: give one or more values > 0, got {values!r}")
    return name, points


def sweep_point(spec: NetworkSpec, rates: dict[str, float], qbers: dict[str, float], knob: str, value: float,
                duration_s: float, control_period_s: float, seed: int) -> dict[str, Any]:
    """One simulation of the sweep (runs on a Dask worker): the summary with the knob's value."""
    from qnet.scenarios.simulate import simulate  # here, not at the top: map_on_dask's users need not load it

    period = value if knob == "control_period_s" else control_period_s
    if knob == "demand_scale":
        spec = spec.model_copy(update={"demands": [d.model_copy(update={"key_rate_bps": d.key_rate_bps * value})
                                                   for d in spec.demands]})
    if knob == "rate_scale":
        rates = {name: rate * value for name, rate in rates.items()}
    result = simulate(spec, duration_s, control_period_s=period, rates=rates, qbers=qbers, seed=seed, samples=2)
    return {knob: value, **result.as_dict()}


def run_sweep(spec: NetworkSpec, knob: str, values: list[float], duration_s: float, *, control_period_s: float = 1.0,
              seed: int = 0, scheduler: str | None = None, workers: int | None = None,
              progress: Callable[[int], None] | None = None) -> list[dict[str, Any]]:
    """Run the sweep's simulations on Dask; returns their summaries in the order of ``values``.

    Args:
        scheduler: a Dask scheduler address (``tcp://host:8786``); a local cluster if None
            (see :func:`map_on_dask`).
        workers: local worker processes (the machine's cores if None).
        progress: called with the number of points finished so far.

    Raises:
        QNetError: if the scheduler cannot be reached.
    """
    from qnet.scenarios.simulate import link_qbers, link_rates

    rates, qbers = link_rates(spec), link_qbers(spec)  # once, here: the physics is the same at every point
    calls = [(spec, rates, qbers, knob, v, duration_s, control_period_s, seed) for v in values]
    return map_on_dask(sweep_point, calls, scheduler=scheduler, workers=workers, progress=progress)


INLINE = "inline"
"""The ``scheduler`` that runs the points in this process, on one Dask worker thread: no start-up cost
and no parallelism (tests, tiny sweeps, debugging)."""


def map_on_dask(function: Callable[..., T], calls: Sequence[tuple[Any, ...]], *, scheduler: str | None = None,
                workers: int | None = None, progress: Callable[[int], None] | None = None) -> list[T]:
    """``[function(*args) for args in calls]``, each call a Dask task; results in the order of ``calls``.

    ``function`` must be a module-level function (Dask pickles it by name for the workers).

    Args:
        scheduler: a Dask scheduler address (``tcp://host:8786``); :data:`INLINE` for this process;
            ``None`` for a local cluster of worker processes, one thread each.
        workers: local worker processes (the machine's cores if None; never more than there are calls).
        progress: called with the number of calls finished so far.

    Raises:
        QNetError: if the scheduler cannot be reached.
    """
    from dask.distributed import Client, LocalCluster, as_completed

    cluster = None
    try:
        if scheduler is None or scheduler == INLINE:
            local = scheduler is None
            count = max(1, min(workers or os.cpu_count() or 1, len(calls))) if local else 1
            cluster = LocalCluster(n_workers=count, threads_per_worker=1, processes=local, dashboard_address=None)
            client = Client(cluster)
        else:
            client = Client(scheduler, timeout="10s")
    except OSError as exc:
        raise QNetError(f"cannot reach the Dask scheduler {scheduler}: {exc}") from None
    try:
        futures = [client.submit(function, *args, pure=False) for args in calls]
        for done, _ in enumerate(as_completed(futures), start=1):
            if progress:
                progress(done)
        return [f.result() for f in futures]
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
