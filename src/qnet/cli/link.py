"""``qnet link simulate``: run a simulated QKD link, photon by photon, through the whole
post-processing chain, and report what it made."""

from __future__ import annotations

import math
import time
from typing import Any

import typer
from rich.markup import escape

from qnet.cli._console import console, err_console
from qnet.cli._output import to_json
from qnet.cli._parse import parse_params

__all__ = ["app"]

app = typer.Typer(help="Simulated QKD links: photons, post-processing, keys.", no_args_is_help=True,
                  add_completion=False, pretty_exceptions_enable=False, rich_markup_mode="rich")


@app.command()
def simulate(
    protocol: str = typer.Option("bb84-decoy", "--protocol", "-p",
                                 help="bb84-decoy (photon level) or cv-qkd (symbols)."),
    distance_km: float = typer.Option(50.0, "--distance-km", "-d", min=0.0, help="Fibre length (km)."),
    pulses: float | None = typer.Option(None, "--pulses", "-n", min=1.0, show_default=False,
                                        help="Pulses to send (default 1e9), or CV symbols (default 1e7)."),
    block_pulses: float = typer.Option(1e9, "--block-pulses", min=1e4,
                                       help="Pulses per post-processing block (the finite-key block)."),
    eve: str | None = typer.Option(None, "--eve", help="Eavesdropper: intercept-resend or pns."),
    eve_fraction: float | None = typer.Option(None, "--eve-fraction", min=0.0, max=1.0, show_default=False,
                                              help="Share of pulses intercept-resend attacks (default 1)."),
    reconciler: str = typer.Option("cascade", "--reconciler", help="cascade (interactive) or polar (one-way)."),
    param: list[str] = typer.Option([], "--param", metavar="NAME=VALUE", help="Override a device parameter."),
    seed: int = typer.Option(0, "--seed", help="Seed: the same seed gives the same run."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a report."),
) -> None:
    """Send pulses through a simulated link and run the post-processing chain on them.

    Reports sifted bits, QBER, the reconciliation leak and its efficiency f, the frame error rate,
    the final key, and the secret fraction next to the analytic finite-key and asymptotic rates.

    Examples:

      qnet link simulate --protocol bb84-decoy --distance-km 50 --pulses 1e9

      qnet link simulate -d 25 --pulses 2e9 --eve intercept-resend

      qnet link simulate -d 50 --eve pns --json

      qnet link simulate -p cv-qkd -d 25 --pulses 1e7
    """
    overrides = parse_params(param)
    if protocol == "cv-qkd":
        _simulate_cv(distance_km, _count(pulses or 1e7, "--pulses", MAX_SYMBOLS), overrides, seed, as_json)
        return
    if protocol != "bb84-decoy":
        raise typer.BadParameter(f"photon-level simulation exists for bb84-decoy and cv-qkd, not {protocol!r}",
                                 param_hint="--protocol")
    fixed = sorted(set(overrides) & {"decoy", "nu", "block_size"})
    if fixed:
        raise typer.BadParameter(f"{', '.join(fixed)}: the link runs the three-intensity protocol of Lim et al. "
                                 "(2014) and chooses its decoys itself; set mu, or nothing", param_hint="--param")
    if eve_fraction is not None and eve != "intercept-resend":
        raise typer.BadParameter("applies to --eve intercept-resend only", param_hint="--eve-fraction")
    total = _count(pulses or 1e9, "--pulses", MAX_PULSES)
    result = _simulate_bb84(distance_km, total, min(_count(block_pulses, "--block-pulses", MAX_PULSES), total),
                            eve, 1.0 if eve_fraction is None else eve_fraction, reconciler, overrides, seed)
    if as_json:
        typer.echo(to_json(result))
    else:
        _print_report(result)


MAX_PULSES = 10**15
MAX_SYMBOLS = 10**10
MAX_CLICKS_PER_BLOCK = 5 * 10**7  # about 1 GB of per-click arrays


def _count(value: float, option: str, limit: int) -> int:
    """A whole, finite count within ``limit``."""
    if not math.isfinite(value) or value > limit:
        raise typer.BadParameter(f"must be a finite number up to {limit:.0e}, got {value!r}", param_hint=option)
    return max(1, round(value))


def _simulate_bb84(distance_km: float, pulses: int, block_pulses: int, eve_name: str | None,
                   eve_fraction: float, reconciler: str, overrides: dict[str, Any], seed: int) -> dict[str, Any]:
    from dataclasses import asdict, replace

    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from qnet.physics.finite_key import key_length_for_pulses
    from qnet.physics.keyrate import get_protocol, key_rate
    from qnet.quantum.eve import Eve, EveAttack
    from qnet.quantum.link import SimulatedLink, summarise
    from qnet.quantum.postprocess.pipeline import ChainConfig, Reconciler

    device = get_protocol("bb84-decoy").params({"decoy": "vacuum+weak", **overrides})
    eve = Eve(_choice(EveAttack, eve_name, "--eve"), eve_fraction) if eve_name else None
    config = ChainConfig(reconciler=_choice(Reconciler, reconciler, "--reconciler"))
    block = block_pulses
    link = SimulatedLink("cli", device, length_km=distance_km, pulses_per_block=block, seed=seed, eve=eve,
                         config=config)
    _check_block_size(link, device, block)
    sizes = [block] * (pulses // block) + ([pulses % block] if pulses % block else [])
    started = time.perf_counter()
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} blocks"),
                  TimeRemainingColumn(), console=err_console, transient=True) as progress:
        task = progress.add_task("simulating", total=len(sizes))
        for size in sizes:
            link.run_blocks(1, pulses=size)
            progress.advance(task)
    seconds = time.perf_counter() - started
    summary = summarise(link.reports)
    eta = link.transmittance * device.detector_efficiency
    measured = summary.ec_efficiency
    f = measured if math.isfinite(measured) else device.ec_efficiency  # no reconciliation: the nominal f
    analytic = key_length_for_pulses(replace(device, block_size=1e6, ec_efficiency=max(f, 1.0)), eta,
                                     link.settings, block)
    return {
        **asdict(summary),
        "distance_km": distance_km, "eve": eve_name, "reconciler": reconciler,
        "frame_error_rate": summary.frame_error_rate, "secret_fraction": summary.secret_fraction,
        "analytic_finite_key_fraction": max(analytic.key_length, 0.0) / block,
        "analytic_asymptotic_fraction": key_rate("bb84-decoy", distance_km,
                                                 replace(device, decoy="infinite")).rate_per_pulse,
        "settings": asdict(link.settings), "wall_seconds": seconds,
        "sifted_bits_per_second": summary.sifted_bits / seconds if seconds > 0 else None,
    }


def _check_block_size(link: Any, device: Any, block: int) -> None:
    """Refuse blocks whose clicks would not fit in memory, saying what block size would."""
    from qnet.physics.bb84 import bb84_channel

    eta = link.transmittance * device.detector_efficiency
    # the gain includes after-pulses; the brightest intensity alone bounds the clicks before dead time
    rate = max(bb84_channel(device, eta, mu, device.dark_count_prob).gain for mu in link.settings.intensities)
    clicks = block * rate
    if clicks > MAX_CLICKS_PER_BLOCK:
        fits = int(MAX_CLICKS_PER_BLOCK / rate)
        raise typer.BadParameter(f"a block of {block:.0e} pulses would make about {clicks:.1e} clicks, more than "
                                 f"{MAX_CLICKS_PER_BLOCK:.0e}; use --block-pulses {fits:.0e} or less",
                                 param_hint="--block-pulses")


def _choice(enum: Any, value: str | None, option: str) -> Any:
    try:
        return enum(value)
    except ValueError:
        names = ", ".join(e.value for e in enum)
        raise typer.BadParameter(f"must be one of {names}; got {value!r}", param_hint=option) from None


def _print_report(r: dict[str, Any]) -> None:
    from rich.table import Table

    title = f"decoy BB84 over {r['distance_km']:g} km" + (f", Eve: {escape(r['eve'])}" if r["eve"] else "")
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("quantity")
    table.add_column("value", justify="right")
    rows = [
        ("pulses sent", f"{r['pulses']:.3g} in {r['blocks']} block(s)"),
        ("detections", f"{r['clicks']:,}"),
        ("sifted key bits", f"{r['sifted_bits']:,}"),
        ("QBER (measured / estimated)", f"{r['qber']:.3%} / {r['qber_estimate']:.3%}"),
        ("leak_EC (bits)", f"{r['leak_ec']:,}"),
        (f"{r['reconciler']} efficiency f", _finite_or(r["ec_efficiency"], ".3f", "n/a (no block reconciled)")),
        ("frame error rate", f"{r['frames_failed']}/{r['frames']} = {r['frame_error_rate']:.3g}" if r["frames"]
         else "n/a (no frame reconciled)"),
        ("final key bits", f"{r['final_bits']:,}"),
        ("net of authentication", f"{r['net_bits']:,}"),
        ("secret fraction (bits/pulse)", f"{r['secret_fraction']:.4g}"),
        ("analytic finite-key (Lim 2014, same f)", f"{r['analytic_finite_key_fraction']:.4g}"),
        ("analytic asymptotic", f"{r['analytic_asymptotic_fraction']:.4g}"),
        ("Eve knows of the raw key", f"{r['eve_knows']:.1%}"),
        ("blocks without key", f"{r['aborted']}" + (f" ({escape(r['abort_reason'])})" if r["abort_reason"] else "")),
        ("wall time", f"{r['wall_seconds']:.2f} s"),
    ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)


def _finite_or(value: float | None, spec: str, missing: str) -> str:
    """``value`` formatted with ``spec``, or ``missing`` for None or a non-finite number (an
    eavesdropper can abort every block before reconciliation, which leaves f undefined)."""
    return format(value, spec) if value is not None and math.isfinite(value) else missing


def _simulate_cv(distance_km: float, symbols: int, overrides: dict[str, Any], seed: int, as_json: bool) -> None:
    import numpy as np

    from qnet.physics.channels import link_transmittance
    from qnet.physics.keyrate import get_protocol
    from qnet.quantum.cvqkd import MIN_SYMBOLS, simulate_cv_qkd

    if symbols < MIN_SYMBOLS:
        raise typer.BadParameter(f"CV-QKD needs at least {MIN_SYMBOLS} symbols to estimate the channel",
                                 param_hint="--pulses")
    device = get_protocol("cv-qkd").params(overrides)
    t = float(link_transmittance(distance_km, device.attenuation_db_per_km, device.extra_loss_db))
    est = simulate_cv_qkd(device, t, symbols=symbols, rng=np.random.default_rng(seed))
    result = {"distance_km": distance_km, "symbols": est.symbols, "transmittance_true": est.transmittance_true,
              "transmittance_estimate": est.transmittance, "excess_noise_true": device.excess_noise,
              "excess_noise_estimate": est.excess_noise, "rate_per_symbol_estimated": est.rate_per_symbol,
              "rate_per_symbol_true": est.rate_true}
    if as_json:
        typer.echo(to_json(result))
        return
    for name, value in result.items():
        console.print(f"{name:28s} {value:.6g}" if isinstance(value, float) else f"{name:28s} {value}")
