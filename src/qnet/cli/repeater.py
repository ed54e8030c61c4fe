"""``qnet repeater``: entanglement over a chain of quantum repeaters, or a network of routers, simulated in
discrete-event time (:mod:`qnet.quantum.entanglement`), with a report, JSON, Dask sweeps and plots."""

from __future__ import annotations

import math
import re
import time
from collections import Counter
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import typer
from rich import box
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from qnet.cli._console import console, err_console
from qnet.cli._output import check_plot_path, to_json

if TYPE_CHECKING:
    from qnet.quantum.entanglement.report import FlowReport
    from qnet.scenarios.repeater_sweep import ChainRun, NetworkRun, RepeaterSettings

__all__ = ["app"]

HELP = """\
Quantum repeaters: entangled pairs between distant routers, made link by
link and joined by entanglement swapping.

Each elementary link heralds pairs between neighbouring routers: attempts at
the memories' rate, each succeeding with the probability the fibre and the
detectors allow. Routers store the pairs in memories that decay, join them
by swapping (nested or sequential), may purify them, and discard qubits older
than a cut-off. A pair that reaches both ends is delivered, with the fidelity
of its tracked state. The repeaterless (PLOB) bound is the most any direct
link could deliver with the same hardware.

[bold]One request over a chain[/]
  qnet repeater chain --nodes 9 --link-km 20 --duration 1s
[bold]Rate and fidelity against a setting, on Dask[/]
  qnet repeater chain --sweep nodes=3,5,9,17 --plot sweep.png
[bold]Random requests in a network of routers[/]
  qnet repeater network --topology grid:8x8 --requests 20

Each command's --help says what every number of its report means."""

app = typer.Typer(help=HELP, no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  rich_markup_mode="rich")


class Scheme(StrEnum):
    """Heralding schemes of :class:`~qnet.quantum.entanglement.components.LinkModel`."""

    barrett_kok = "barrett_kok"
    single_click = "single_click"
    ideal = "ideal"


class Order(StrEnum):
    nested = "nested"
    sequential = "sequential"


class PurifyProtocol(StrEnum):
    dejmps = "dejmps"
    bbpssw = "bbpssw"


class PurifyAt(StrEnum):
    links = "links"
    end = "end"
    all = "all"


class PurifyScheme(StrEnum):
    recurrence = "recurrence"
    pumping = "pumping"


class Formalism(StrEnum):
    bell_diagonal = "bell_diagonal"
    density_matrix = "density_matrix"
    stabilizer = "stabilizer"


_LINK, _MEMORY, _POLICY, _RUN = "Links", "Memories", "Swapping and purification", "Run and output"

# options both commands take (a typer.Option is only a description, so one can serve two commands)
LINK_KM = typer.Option(20.0, "--link-km", min=0.0, rich_help_panel=_LINK,
                       help="Fibre length of every elementary link, router to router (km).")
DURATION = typer.Option("1s", "--duration", "-t", metavar="DURATION", rich_help_panel=_RUN,
                        help="Simulated time: 1s, 250ms, 50us, or plain seconds.")
MEMORIES = typer.Option(10, "--memories", min=1, rich_help_panel=_MEMORY,
                        help="Qubit memories per router, shared by its links (an interior router uses "
                             "--per-link on each side).")
FIDELITY = typer.Option(None, "--fidelity", min=0.25, max=1.0, show_default="from the scheme",
                        rich_help_panel=_LINK, help="Fidelity of a freshly heralded pair (a Werner state).")
COHERENCE = typer.Option("none", "--coherence", metavar="DURATION", rich_help_panel=_MEMORY,
                         help="Depolarising coherence time of a stored qubit (1s, 100ms, none).")
T1 = typer.Option("none", "--t1", metavar="DURATION", rich_help_panel=_MEMORY,
                  help="Amplitude-damping time T1 of a stored qubit.")
T2 = typer.Option("none", "--t2", metavar="DURATION", rich_help_panel=_MEMORY,
                  help="Dephasing time T2 of a stored qubit.")
CUTOFF = typer.Option("none", "--cutoff", metavar="DURATION", rich_help_panel=_MEMORY,
                      help="Discard a qubit stored longer than this and free its memory (1s, 10ms, none).")
FREQUENCY = typer.Option(2e6, "--frequency", rich_help_panel=_MEMORY,
                         help="Memory re-excitation rate (Hz): the fastest attempt rate, and the mode rate of "
                              "the repeaterless bound.")
DETECTOR = typer.Option(0.9, "--detector-efficiency", rich_help_panel=_LINK,
                        help="Efficiency of the heralding station's detectors, in (0, 1].")
ATTENUATION = typer.Option(0.2, "--attenuation", min=0.0, rich_help_panel=_LINK, help="Fibre loss (dB/km).")
DARK = typer.Option(0.0, "--dark-count", min=0.0, max=1.0, rich_help_panel=_LINK,
                    help="Dark-count probability per detector and attempt.")
SCHEME = typer.Option(Scheme.barrett_kok, "--scheme", rich_help_panel=_LINK,
                      help="Heralding: barrett_kok (two rounds, two clicks), single_click (one round, "
                           "--bright-state), ideal (give --success-probability and --attempt-time).")
BRIGHT = typer.Option(0.1, "--bright-state", rich_help_panel=_LINK,
                      help="Bright-state parameter of single_click: more rate, lower fidelity.")
SUCCESS = typer.Option(None, "--success-probability", show_default="from the scheme", rich_help_panel=_LINK,
                       help="Per-attempt heralding probability, in (0, 1], instead of the scheme's.")
ATTEMPT = typer.Option(None, "--attempt-time", metavar="DURATION", show_default="from the scheme",
                       rich_help_panel=_LINK,
                       help="Duration of one attempt (20us, 1e-4) instead of the scheme's.")
ORDER = typer.Option(Order.nested, "--order", rich_help_panel=_POLICY,
                     help="Swapping order: nested (doubling) or sequential (from the source outward).")
SWAP_SUCCESS = typer.Option(1.0, "--swap-success", rich_help_panel=_POLICY,
                            help="Probability that a Bell-state measurement succeeds, in (0, 1].")
SWAP_NOISE = typer.Option(0.0, "--swap-noise", min=0.0, max=1.0, rich_help_panel=_POLICY,
                          help="Depolarising noise a Bell-state measurement adds, in [0, 1].")
PURIFY = typer.Option(0, "--purify", min=0, max=10, metavar="ROUNDS", rich_help_panel=_POLICY,
                      help="Purification rounds before a pair is used (0: none).")
PURIFY_PROTOCOL = typer.Option(PurifyProtocol.dejmps, "--purify-protocol", rich_help_panel=_POLICY,
                               help="Purification protocol.")
PURIFY_AT = typer.Option(PurifyAt.links, "--purify-at", rich_help_panel=_POLICY,
                         help="Purify elementary-link pairs, end-to-end pairs, or every pair.")
PURIFY_SCHEME = typer.Option(PurifyScheme.recurrence, "--purify-scheme", rich_help_panel=_POLICY,
                             help="recurrence (two pairs of the same round) or pumping (with a fresh pair).")
FORMALISM = typer.Option(Formalism.bell_diagonal, "--formalism", rich_help_panel=_POLICY,
                         help="How pair states are tracked: bell_diagonal (exact under Pauli noise, fast), "
                              "density_matrix (any noise, T1 exact), stabilizer (stim, sampled).")
SEED = typer.Option(0, "--seed", min=0, rich_help_panel=_RUN,
                    help="Seed of every random stream: the same seed gives the same run.")
JSON = typer.Option(False, "--json", rich_help_panel=_RUN, help="Print JSON instead of tables.")


def _plot_option(what: str) -> Any:
    return typer.Option(None, "--plot", show_default=False, rich_help_panel=_RUN, help=f"Write a PNG: {what}.")


@app.command(short_help="Entangled pairs end to end over a chain of repeaters.")
def chain(
    nodes: int = typer.Option(9, "--nodes", "-n", min=2, rich_help_panel="Chain",
                              help="Routers in the chain, both ends included (nodes - 1 links)."),
    link_km: float = LINK_KM,
    duration: str = DURATION,
    memories: int = MEMORIES,
    per_link: int = typer.Option(5, "--per-link", min=1, rich_help_panel=_MEMORY,
                                 help="Memories the request uses at each link end (pairs in flight per link)."),
    fidelity: float | None = FIDELITY,
    coherence: str = COHERENCE,
    t1: str = T1,
    t2: str = T2,
    cutoff: str = CUTOFF,
    frequency: float = FREQUENCY,
    detector_efficiency: float = DETECTOR,
    attenuation: float = ATTENUATION,
    dark_count: float = DARK,
    scheme: Scheme = SCHEME,
    bright_state: float = BRIGHT,
    success_probability: float | None = SUCCESS,
    attempt_time: str | None = ATTEMPT,
    order: Order = ORDER,
    swap_success: float = SWAP_SUCCESS,
    swap_noise: float = SWAP_NOISE,
    purify: int = PURIFY,
    purify_protocol: PurifyProtocol = PURIFY_PROTOCOL,
    purify_at: PurifyAt = PURIFY_AT,
    purify_scheme: PurifyScheme = PURIFY_SCHEME,
    formalism: Formalism = FORMALISM,
    seed: int = SEED,
    sweep: str | None = typer.Option(None, "--sweep", metavar="NAME=V1,V2,...|NAME=START:STOP:STEP",
                                     rich_help_panel="Sweep", show_default=False,
                                     help="Run one chain per value on Dask: nodes, link-km, memories, per-link, "
                                          "fidelity, coherence, cutoff, t1, t2, purify, swap-success, ... "
                                          "(any option above by name)."),
    scheduler: str | None = typer.Option(None, "--scheduler", metavar="ADDRESS", rich_help_panel="Sweep",
                                         show_default="a local cluster",
                                         help="With --sweep: a Dask scheduler (tcp://host:8786), or inline "
                                              "(this process, one point after another)."),
    workers: int | None = typer.Option(None, "--workers", min=1, rich_help_panel="Sweep",
                                       show_default="one per core",
                                       help="With --sweep: worker processes of the local cluster."),
    as_json: bool = JSON,
    plot: Path | None = _plot_option("pairs delivered over time and each pair's fidelity (with --sweep: "
                                     "rate and fidelity against the swept value, with the repeaterless bound)"),
) -> None:
    """One request for entangled pairs between the two ends of a chain of repeaters.

    The chain r0 - r1 - ... - r(n-1) has n - 1 elementary links of --link-km
    each; the request uses --per-link memories at each link end, for --duration
    of simulated time. The report:

    [bold]pairs[/], [bold]rate[/]: end-to-end pairs delivered, and per simulated second.
    [bold]fidelity[/]: mean fidelity with Phi+ of the delivered pairs, from their
    tracked states (--formalism), ± its 95 % confidence interval.
    [bold]first pair[/]: when the first pair was delivered (latency to start).
    [bold]mean age[/]: how long a delivered pair's older qubit had been stored.
    [bold]memory occupancy[/]: share of the reserved memories' time holding a qubit.
    [bold]swaps[/], [bold]cut-offs[/]: Bell measurements (failed ones), qubits discarded
    for age.
    [bold]repeaterless bound[/]: -log2(1 - eta) over the chain's whole fibre
    (Pirandola et al. 2017) times the memories' mode rate (--frequency): the
    most a direct link could deliver. rate / bound above 1: repeaters win.
    [bold]link[/]: per-attempt success, attempt time, heralded pair fidelity.

    Examples:

      qnet repeater chain --nodes 9 --link-km 20 --duration 1s --coherence 1s

      qnet repeater chain -n 5 --link-km 50 --cutoff 10ms --purify 1 --plot c.png

      qnet repeater chain --scheme ideal --success-probability 0.1 \\
          --attempt-time 200us --fidelity 0.99

      qnet repeater chain --sweep nodes=3,5,9,17 --coherence 1s --plot sweep.png

      qnet repeater chain --sweep link-km=10:50:10 --scheduler tcp://host:8786
    """
    settings = _settings(
        nodes=nodes, link_km=link_km, duration=duration, memories=memories, per_link=per_link, fidelity=fidelity,
        coherence=coherence, t1=t1, t2=t2, cutoff=cutoff, frequency=frequency,
        detector_efficiency=detector_efficiency, attenuation=attenuation, dark_count=dark_count, scheme=scheme,
        bright_state=bright_state, success_probability=success_probability, attempt_time=attempt_time, order=order,
        swap_success=swap_success, swap_noise=swap_noise, purify=purify, purify_protocol=purify_protocol,
        purify_at=purify_at, purify_scheme=purify_scheme, formalism=formalism, seed=seed)
    if plot is not None:
        check_plot_path(plot)
    if sweep is not None:
        _chain_sweep(settings, sweep, scheduler, workers, as_json=as_json, plot=plot)
        return
    if scheduler is not None or workers is not None:
        raise typer.BadParameter("only with --sweep", param_hint="--scheduler/--workers")
    _chain_once(settings, as_json=as_json, plot=plot)


@app.command(short_help="Random requests in a network of routers that share memories.")
def network(
    topology: str = typer.Option("grid:8x8", "--topology", metavar="KIND:SIZE", rich_help_panel="Network",
                                 help="grid:ROWSxCOLS, random:N (a random connected network of mean degree "
                                      "--degree) or chain:N."),
    requests: int = typer.Option(20, "--requests", "-r", min=1, max=100_000, rich_help_panel="Network",
                                 help="Requests between random pairs of routers (drawn with --seed)."),
    degree: float = typer.Option(3.0, "--degree", min=1.0, rich_help_panel="Network",
                                 help="Mean number of links per router of a random network."),
    top: int = typer.Option(5, "--top", min=0, rich_help_panel="Network",
                            help="Requests shown at each end of the per-request table (most and fewest pairs)."),
    link_km: float = LINK_KM,
    duration: str = DURATION,
    memories: int = MEMORIES,
    per_link: int = typer.Option(2, "--per-link", min=1, rich_help_panel=_MEMORY,
                                 help="Memories each request asks for at each link end."),
    fidelity: float | None = FIDELITY,
    coherence: str = COHERENCE,
    t1: str = T1,
    t2: str = T2,
    cutoff: str = CUTOFF,
    frequency: float = FREQUENCY,
    detector_efficiency: float = DETECTOR,
    attenuation: float = ATTENUATION,
    dark_count: float = DARK,
    scheme: Scheme = SCHEME,
    bright_state: float = BRIGHT,
    success_probability: float | None = SUCCESS,
    attempt_time: str | None = ATTEMPT,
    order: Order = ORDER,
    swap_success: float = SWAP_SUCCESS,
    swap_noise: float = SWAP_NOISE,
    purify: int = PURIFY,
    purify_protocol: PurifyProtocol = PURIFY_PROTOCOL,
    purify_at: PurifyAt = PURIFY_AT,
    purify_scheme: PurifyScheme = PURIFY_SCHEME,
    formalism: Formalism = FORMALISM,
    seed: int = SEED,
    as_json: bool = JSON,
    plot: Path | None = _plot_option("histograms of pairs per request and of each pair's fidelity"),
) -> None:
    """Many requests at once in a network of quantum routers that share their memories.

    --requests pairs of routers are drawn at random (--seed). Each request is
    routed on the shortest path and reserves --per-link memories at every link
    end along it, first come first served; a request that meets a router with
    no free memory is refused (the router is named). The admitted requests then
    run together for --duration. The report:

    [bold]totals[/]: requests admitted, refused and served (at least one pair);
    end-to-end pairs and their rate over all requests; the mean fidelity over
    all pairs; memory occupancy; swaps and cut-offs.
    [bold]per request[/]: the --top requests with most and fewest pairs: hops, km,
    memories per link, pairs, rate, fidelity ± 95 % CI, first pair, and the
    repeaterless bound of the path.
    [bold]refused[/]: each refused request with its reason.
    [bold]wall time[/], [bold]peak memory[/]: building and simulating the network, and
    the process's peak resident memory (getrusage).

    Examples:

      qnet repeater network --topology grid:32x32 --requests 100 --duration 0.1s

      qnet repeater network --topology random:1000 --requests 100 --json

      qnet repeater network --topology grid:8x8 --requests 30 --plot net.png
    """
    settings = _settings(
        nodes=0, link_km=link_km, duration=duration, memories=memories, per_link=per_link, fidelity=fidelity,
        coherence=coherence, t1=t1, t2=t2, cutoff=cutoff, frequency=frequency,
        detector_efficiency=detector_efficiency, attenuation=attenuation, dark_count=dark_count, scheme=scheme,
        bright_state=bright_state, success_probability=success_probability, attempt_time=attempt_time, order=order,
        swap_success=swap_success, swap_noise=swap_noise, purify=purify, purify_protocol=purify_protocol,
        purify_at=purify_at, purify_scheme=purify_scheme, formalism=formalism, seed=seed)
    from qnet.errors import InvalidRequestError
    from qnet.scenarios.repeater_sweep import parse_topology, simulate_network

    try:
        parse_topology(topology)
    except InvalidRequestError as exc:
        raise typer.BadParameter(str(exc), param_hint="--topology") from None
    if plot is not None:
        check_plot_path(plot)
    with _LazyBar(settings.duration_s, f"simulating {topology}", enabled=_live(as_json)) as bar:
        run = simulate_network(settings, topology, requests, degree=degree, progress=bar)
    if as_json:
        typer.echo(to_json(_network_json(run, settings)))
    else:
        _print_network(run, settings, top)
    if plot is not None:
        from qnet.scenarios.repeater_plots import plot_network

        title = f"{topology}: {run.routers} routers, {run.links} links, {requests} requests; {settings.describe()}"
        err_console.print(f"wrote {escape(str(plot_network(run.report, plot, title=title)))}")


# -- options to settings ---------------------------------------------------------------------------------
def _settings(*, nodes: int, link_km: float, duration: str, memories: int, per_link: int, fidelity: float | None,
              coherence: str, t1: str, t2: str, cutoff: str, frequency: float, detector_efficiency: float,
              attenuation: float, dark_count: float, scheme: Scheme, bright_state: float,
              success_probability: float | None, attempt_time: str | None, order: Order, swap_success: float,
              swap_noise: float, purify: int, purify_protocol: PurifyProtocol, purify_at: PurifyAt,
              purify_scheme: PurifyScheme, formalism: Formalism, seed: int) -> RepeaterSettings:
    """The options as one checked :class:`RepeaterSettings`; a bad value is a usage error naming its option."""
    from qnet.scenarios.repeater_sweep import RepeaterSettings

    _open_interval(frequency, "--frequency", high=math.inf)
    _open_interval(detector_efficiency, "--detector-efficiency")
    _open_interval(swap_success, "--swap-success")
    _open_interval(bright_state, "--bright-state", high=1.0, closed=False)
    if success_probability is not None:
        _open_interval(success_probability, "--success-probability")
    if scheme is Scheme.ideal and (success_probability is None or attempt_time is None):
        raise typer.BadParameter("--scheme ideal needs --success-probability and --attempt-time",
                                 param_hint="--scheme")
    return RepeaterSettings(
        nodes=nodes, link_km=_finite(link_km, "--link-km"), duration_s=_duration(duration, "--duration"),
        memories=memories, per_link=per_link, fidelity=fidelity,
        coherence_s=_duration(coherence, "--coherence", never=True), t1_s=_duration(t1, "--t1", never=True),
        t2_s=_duration(t2, "--t2", never=True), cutoff_s=_duration(cutoff, "--cutoff", never=True),
        frequency_hz=frequency, detector_efficiency=detector_efficiency,
        attenuation_db_per_km=_finite(attenuation, "--attenuation"), dark_count_probability=dark_count,
        scheme=scheme.value, bright_state=bright_state, success_probability=success_probability,
        attempt_s=None if attempt_time is None else _duration(attempt_time, "--attempt-time"), order=order.value,
        swap_success=swap_success, swap_depolarising=swap_noise, purify_rounds=purify,
        purify_protocol=purify_protocol.value, purify_at=purify_at.value, purify_scheme=purify_scheme.value,
        formalism=formalism.value, seed=seed)


def _duration(text: str, option: str, *, never: bool = False) -> float:
    from qnet.scenarios.repeater_sweep import duration_s

    try:
        return duration_s(text, never=never)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint=option) from None


def _finite(value: float, option: str) -> float:
    if not math.isfinite(value):
        raise typer.BadParameter(f"must be a finite number, got {value!r}", param_hint=option)
    return value


def _open_interval(value: float, option: str, *, high: float = 1.0, closed: bool = True) -> None:
    """``0 < value <= high`` (``< high`` unless ``closed``)."""
    if not (value > 0 and (value <= high if closed else value < high)):
        shown = "inf)" if math.isinf(high) else f"{high:g}{']' if closed else ')'}"
        raise typer.BadParameter(f"must be in (0, {shown}, got {value!r}", param_hint=option)


def _live(as_json: bool) -> bool:
    """Progress bars only for a person watching: not with --json, nor when stdout is a pipe or a file."""
    return not as_json and console.is_terminal


class _LazyBar:
    """A progress bar over simulated time that appears only once the run has taken ``after_s`` of wall
    time (a quick run prints nothing but its report); it is the simulation's ``progress`` callback."""

    def __init__(self, total_s: float, label: str, *, enabled: bool, after_s: float = 1.0) -> None:
        self.total_s, self.label, self.enabled, self.after_s = total_s, label, enabled, after_s
        self._started = time.perf_counter()
        self._bar: Progress | None = None

    def __enter__(self) -> _LazyBar:
        self._started = time.perf_counter()
        return self

    def __call__(self, sim_s: float) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            if time.perf_counter() - self._started < self.after_s:
                return
            self._bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
                                 TimeRemainingColumn(), TextColumn("left"), console=err_console, transient=True)
            self._bar.start()
            self._bar.add_task(self.label, total=self.total_s)
        self._bar.update(self._bar.task_ids[0], completed=sim_s)

    def __exit__(self, kind: type[BaseException] | None, value: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.stop()


# -- one chain -------------------------------------------------------------------------------------------
def _chain_once(settings: RepeaterSettings, *, as_json: bool, plot: Path | None) -> None:
    from qnet.scenarios.repeater_sweep import chain_summary, settings_dict, simulate_chain

    settings.check()
    label = f"simulating {settings.nodes} routers"
    with _LazyBar(settings.duration_s, label, enabled=_live(as_json)) as bar:
        run = simulate_chain(settings, progress=bar)
    if as_json:
        typer.echo(to_json({"parameters": settings_dict(settings), **chain_summary(run)}))
    else:
        _print_chain(run)
    if plot is not None:
        from qnet.scenarios.repeater_plots import plot_chain

        written = plot_chain(run.report.flows[0], settings.duration_s, plot, title=settings.describe(),
                             raw_fidelity=run.figures["raw_fidelity"])
        err_console.print(f"wrote {escape(str(written))}")


def _print_chain(run: ChainRun) -> None:
    s, report, flow, fig = run.settings, run.report, run.report.flows[0], run.figures
    table = Table(title=f"repeater chain: {s.nodes} routers, {flow.hops} links of {s.link_km:g} km "
                        f"({flow.distance_km:g} km), {_seconds(s.duration_s)} simulated, seed {s.seed}",
                  title_justify="left")
    table.add_column("", style="bold", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("what it is", style="dim")
    bound = flow.repeaterless_bound_hz
    rows = [
        ("pairs", f"{flow.pairs:,}", "end-to-end pairs delivered to the application"),
        ("rate", _rate(flow.rate_hz), "pairs per simulated second"),
        ("fidelity", _fidelity(flow), f"mean at delivery ± 95 % CI, tracked state ({report.formalism})"),
        ("first pair", _seconds(flow.first_pair_s), "latency: when the first pair was delivered"),
        ("mean age", _seconds(flow.age_mean_s), "storage time of a delivered pair's older qubit"),
        ("memory occupancy", f"{report.memory_occupancy:.1%}", f"of the reserved memories' time "
                                                               f"({flow.memories_per_link} per link end)"),
        ("swaps", f"{report.swaps:,} ({report.swap_failures:,} failed)", f"Bell measurements, {report.order} order"),
        ("cut-offs", f"{report.cutoffs:,}", "qubits discarded for age" + _cutoff_note(s.cutoff_s)),
    ]
    if report.purifications:
        rows.append(("purifications", f"{report.purifications:,} ({report.purification_failures:,} failed)",
                     f"{s.purify_rounds} round(s) of {s.purify_protocol} on {s.purify_at} pairs"))
    rows += [
        ("repeaterless bound", _rate(bound), f"PLOB -log2(1-η) over {flow.distance_km:g} km × "
                                             f"{s.frequency_hz:.3g} Hz mode rate"),
        ("rate / bound", _ratio(flow.rate_hz, bound), "above 1: the repeaters beat any direct link"),
        ("link", f"p={fig['success_probability']:.3g}, {_seconds(fig['attempt_s'])}",
         f"{s.scheme}: success per attempt, attempt time; heralded F={fig['raw_fidelity']:.4g}"),
        ("wall time", f"{run.wall_s:.2f} s", f"{report.events:,} events simulated"),
    ]
    for row in rows:
        table.add_row(*row)
    console.print(table)


def _cutoff_note(cutoff_s: float) -> str:
    return f" (older than {_seconds(cutoff_s)})" if math.isfinite(cutoff_s) else " (no cut-off set)"


# -- a sweep ---------------------------------------------------------------------------------------------
def _chain_sweep(settings: RepeaterSettings, text: str, scheduler: str | None, workers: int | None, *,
                 as_json: bool, plot: Path | None) -> None:
    from qnet.errors import InvalidRequestError
    from qnet.scenarios.repeater_sweep import parse_chain_sweep, run_chain_sweep, settings_dict

    try:
        knob, values = parse_chain_sweep(text)
    except InvalidRequestError as exc:
        raise typer.BadParameter(str(exc).removeprefix("--sweep "), param_hint="--sweep") from None
    where = scheduler or "local cluster"
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), console=err_console, transient=True, disable=not _live(as_json)) as bar:
        task = bar.add_task(f"sweep {knob} on Dask ({where})", total=len(values))
        points = run_chain_sweep(settings, knob, values, scheduler=scheduler, workers=workers,
                                 progress=lambda n: bar.update(task, completed=n))
    if as_json:
        typer.echo(to_json({"sweep": knob, "parameters": settings_dict(settings), "points": points}))
    else:
        _print_sweep(settings, knob, points)
    if plot is not None:
        from qnet.scenarios.repeater_plots import plot_chain_sweep
        from qnet.scenarios.repeater_sweep import SWEEP_KNOBS

        title = f"sweep of {knob}; otherwise {settings.describe(omit=SWEEP_KNOBS[knob][0])}"
        err_console.print(f"wrote {escape(str(plot_chain_sweep(points, knob, plot, title=title)))}")


def _print_sweep(settings: RepeaterSettings, knob: str, points: list[dict[str, Any]]) -> None:
    table = Table(title=f"repeater chain: sweep of {knob}, {_seconds(settings.duration_s)} simulated each "
                        "(bound/s: the repeaterless bound in pairs/s)", title_justify="left", padding=(0, 1),
                  box=box.SIMPLE_HEAD)
    for col in (knob, "links", "km", "pairs", "pairs/s", "fidelity ± 95 %", "first pair", "mean age",
                "bound/s", "rate/bound", "wall"):
        table.add_column(col, justify="right", no_wrap=True)
    for p in points:
        value = p[knob]
        table.add_row(f"{value:g}" if isinstance(value, float) else str(value), str(p["hops"]),
                      f"{p['distance_km']:g}", f"{p['pairs']:,}", _rate(p["rate_hz"], ""),
                      _fidelity_numbers(p["pairs"], p["fidelity_mean"], p["fidelity_ci95"]),
                      _seconds(p["first_pair_s"]), _seconds(p["age_mean_s"]), _rate(p["repeaterless_bound_hz"], ""),
                      _ratio(p["rate_hz"], p["repeaterless_bound_hz"]), f"{p['wall_s']:.2f} s")
    console.print(table)


# -- a network -------------------------------------------------------------------------------------------
def _network_json(run: NetworkRun, settings: RepeaterSettings) -> dict[str, Any]:
    from qnet.scenarios.repeater_sweep import settings_dict

    params = settings_dict(settings)
    params.pop("nodes")
    return {"parameters": params, **run.totals(),
            "flows": [f.to_dict() for f in run.report.flows],
            "refused": [{"source": a, "destination": b, "reason": why} for a, b, why in run.report.refused]}


def _print_network(run: NetworkRun, settings: RepeaterSettings, top: int) -> None:
    t = run.totals()
    table = Table(title=f"quantum network {run.topology}: {run.routers:,} routers, {run.links:,} links of "
                        f"{settings.link_km:g} km, {run.requests} requests, {_seconds(settings.duration_s)} "
                        f"simulated, seed {settings.seed}", title_justify="left")
    table.add_column("", style="bold", no_wrap=True)
    table.add_column("value", justify="right", no_wrap=True)
    table.add_column("what it is", style="dim")
    peak = t["peak_rss_bytes"]
    for row in (
        ("requests", f"{t['admitted']} admitted, {t['refused_count']} refused",
         f"routed and given {settings.per_link} memories per link end, first come first served"),
        ("served", f"{t['served']} of {t['admitted']}", "admitted requests that got at least one pair"),
        ("pairs", f"{t['pairs']:,}", "end-to-end pairs delivered, all requests"),
        ("rate", _rate(t["rate_hz"]), "pairs per simulated second, all requests"),
        ("fidelity", "-" if not t["pairs"] else f"{t['fidelity_mean']:.4f}", "mean over every delivered pair"),
        ("memory occupancy", f"{t['memory_occupancy']:.1%}", "of the reserved memories' time"),
        ("swaps", f"{t['swaps']:,} ({t['swap_failures']:,} failed)", f"Bell measurements, {settings.order} order"),
        ("cut-offs", f"{t['cutoffs']:,}", "qubits discarded for age" + _cutoff_note(settings.cutoff_s)),
        ("wall time", f"{run.wall_s:.2f} s (+{run.build_s:.2f} s building)", f"{t['events']:,} events simulated"),
        ("peak memory", "-" if peak is None else f"{peak / 2**20:,.0f} MiB", "the process's peak resident set"),
    ):
        table.add_row(*row)
    console.print(table)
    if run.report.flows and top:
        console.print(_flows_table(run.report.flows, top))
    if run.report.refused:
        console.print(_refusals_table(run.report.refused))


def _flows_table(flows: tuple[FlowReport, ...], top: int) -> Table:
    ranked = sorted(flows, key=lambda f: (-f.pairs, f.hops))
    shown = ranked if len(ranked) <= 2 * top else [*ranked[:top], None, *ranked[-top:]]
    title = "per request" + ("" if len(ranked) <= 2 * top else f": the {top} with most and fewest pairs")
    table = Table(title=title, title_justify="left")
    for col in ("request", "hops", "km", "mem/link", "pairs", "rate", "fidelity ± 95 %", "first pair", "bound"):
        table.add_column(col, justify="left" if col == "request" else "right", no_wrap=True)
    for f in shown:
        if f is None:
            table.add_row("…", *[""] * 8)
            continue
        table.add_row(escape(f"{f.source} → {f.destination}"), str(f.hops), f"{f.distance_km:g}",
                      str(f.memories_per_link), f"{f.pairs:,}", _rate(f.rate_hz), _fidelity(f),
                      _seconds(f.first_pair_s), _rate(f.repeaterless_bound_hz))
    return table


def _refusals_table(refused: tuple[tuple[str, str, str], ...], shown: int = 10) -> Table:
    kinds = Counter(re.sub(r"^router \S+ ", "a router ", re.sub(r"^no path from .*", "no path", why))
                    for _, _, why in refused)
    summary = "; ".join(f"{n}: {escape(kind)}" for kind, n in kinds.most_common())
    table = Table(title=f"refused: {len(refused)} ({summary})", title_justify="left")
    table.add_column("request")
    table.add_column("reason")
    for a, b, why in refused[:shown]:
        table.add_row(escape(f"{a} → {b}"), escape(why))
    if len(refused) > shown:
        table.add_row(f"… and {len(refused) - shown} more", "")
    return table


# -- numbers for people -------------------------------------------------------------------------------------
def _rate(value: float | None, unit: str = " pairs/s") -> str:
    """A rate with an SI prefix: ``1.46 k pairs/s`` (``unit=""`` in a column that names it: ``1.46 k``)."""
    if value is None or math.isinf(value):
        return "unlimited"
    for scale, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= scale:
            return f"{value / scale:.3g} {prefix}{unit}"
    return f"{value:.3g}{unit}"


def _seconds(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    if math.isinf(value):
        return "never"
    for scale, unit in ((1.0, "s"), (1e-3, "ms"), (1e-6, "µs")):
        if value >= scale:
            return f"{value / scale:.3g} {unit}"
    return "0 s" if value == 0 else f"{value * 1e9:.3g} ns"


def _ratio(rate: float, bound: float | None) -> str:
    if bound is None or not math.isfinite(bound) or bound <= 0:
        return "-"
    return f"{rate / bound:.3g}"


def _fidelity(flow: FlowReport) -> str:
    return _fidelity_numbers(flow.pairs, flow.fidelity_mean, flow.fidelity_ci95)


def _fidelity_numbers(pairs: int, mean: float | None, ci: float | None) -> str:
    if not pairs or mean is None:
        return "-"
    if ci is None or math.isnan(ci):
        return f"{mean:.4f}"
    return f"{mean:.4f} ± {ci:.2g}" if ci > 1e-9 else f"{mean:.4f} ± 0"  # equal fidelities: rounding noise
