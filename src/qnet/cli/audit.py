"""``qnet audit``: check the KMEs' audit logs of key supply and report key consumption from them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from qnet.cli._console import console, err_console

__all__ = ["app"]

app = typer.Typer(help="The audit log of key supply: verify its hash chain, report key consumption.",
                  no_args_is_help=True)

_PATH_HELP = ("An audit log (DIR/audit/NODE.jsonl), a directory of them, or a deployment directory "
              "(qnet pki init / qnet up), whose audit/ logs are read.")


@app.command("verify")
def verify(path: Path = typer.Argument(..., show_default=False, help=_PATH_HELP)) -> None:
    """Check each audit log's hash chain: "ok N records, chain intact", or exit status 1 naming the
    first record that was altered, removed, reordered or torn, and why.

    Example:  qnet audit verify demo/audit/Alice.jsonl
    """
    from qnet.management.audit import audit_files
    from qnet.management.audit import verify as check

    failed = 0
    for file in audit_files(path):
        verdict = check(file)
        if verdict.ok:
            console.print(f"{escape(str(file))}: ok {verdict.records} records, chain intact", highlight=False)
        else:
            failed += 1
            err_console.print(f"[bold red]{escape(str(file))}: FAILED[/] at {escape(verdict.reason)} "
                              f"({verdict.records} intact record(s) before it)", highlight=False)
    if failed:
        raise typer.Exit(1)


@app.command("report")
def report(
    path: Path = typer.Argument(..., show_default=False, help=_PATH_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
) -> None:
    """Key bits per application (master SAE and its slaves) and per link, from the audit logs; for a
    deployment directory, also what each KME's store says each link spent, by use.

    Example:  qnet audit report demo --json
    """
    from qnet.cli._output import to_json
    from qnet.management.audit import accounting, audit_files, read_records

    records = [rec for file in audit_files(path) for rec in read_records(file)]
    acc = accounting(records, _store_usage(path) if path.is_dir() else None)
    if as_json:
        typer.echo(to_json(acc.as_json()))
        return
    _tables(acc.as_json())


def _store_usage(root: Path) -> dict[tuple[str, str], dict[str, int]]:
    """What the SQLite stores of a deployment directory's KMEs spent per link (none elsewhere)."""
    from qnet.errors import QNetError
    from qnet.keys.store import KeyStore
    from qnet.management.audit import store_usage
    from qnet.servers.config import load_config

    usage: dict[tuple[str, str], dict[str, int]] = {}
    for config_path in sorted(root.glob("*.json")):
        try:
            config = load_config(config_path)
        except QNetError:
            continue  # not a KME configuration (endpoints.json, ...)
        db = config.store_url.removeprefix("sqlite:///")
        if not config.store_url.startswith("sqlite:///") or not Path(db).is_file():
            continue  # only an existing SQLite file: never create a store, never reach a server
        store = KeyStore(config.store_url, config.kme_id)
        try:
            usage |= store_usage(store, config.unit_bits)
        finally:
            store.close()
    return usage


def _tables(data: dict[str, Any]) -> None:
    from rich.table import Table

    events = ("enc_keys", "dec_keys", "relay_stored")

    def cells(row: dict[str, Any]) -> list[str]:
        return [f"{row[e]['keys']} / {row[e]['bits']}" if e in row else "-" for e in events]

    apps = Table(title="Per application (keys / bits)")
    for col in ("master SAE", "slave SAE(s)", *events):
        apps.add_column(col, justify="right" if col in events else "left")
    for row in data["applications"]:
        apps.add_row(row["master_SAE_ID"], ", ".join(row["slave_SAE_IDs"]), *cells(row))
    links = Table(title="Per link, from the audit logs (keys / bits)")
    for col in ("KME", "link", *events):
        links.add_column(col, justify="right" if col in events else "left")
    for row in data["links"]:
        links.add_row(row["kme"], row["link_id"], *cells(row))
    console.print(apps)
    console.print(links)
    if data["store"]:
        uses = sorted({use for row in data["store"] for use in row["bits"]})
        store = Table(title="Per link, from the stores (bits spent, by use)")
        for col in ("KME", "link", *uses):
            store.add_column(col, justify="right" if col in uses else "left")
        for row in data["store"]:
            store.add_row(row["kme"], row["link_id"], *(str(row["bits"].get(u, 0)) for u in uses))
        console.print(store)
