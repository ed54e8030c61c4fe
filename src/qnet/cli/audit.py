"""``qnet audit``: check the KMEs' audit logs of key supply and report key consumption from them."""

from __future__ import annotations

from collections.abc import Iterator
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
    """Check each audit log's hash chain, and that it reaches the newest head its KME signed
    (kept in its store and at its peers, in a deployment directory): "ok N records, chain intact",
    or exit status 1 naming the first record that was altered, removed, reordered or torn, or the
    records cut off the end, and why.

    Example:  qnet audit verify demo/audit/Alice.jsonl
    """
    root = path.parent if path.name == "audit" and path.is_dir() else path if path.is_dir() \
        else path.parent.parent if path.parent.name == "audit" else None
    anchors = _anchors(root) if root is not None else {}
    failed = 0
    for file in _logs(path, root, anchors):
        ok, message = _verdict(file, anchors.get(file.stem, []))
        if ok:
            console.print(f"{escape(str(file))}: {escape(message)}", highlight=False)
        else:
            failed += 1
            err_console.print(f"[bold red]{escape(str(file))}: FAILED[/] at {escape(message)}", highlight=False)
    if failed:
        raise typer.Exit(1)


def _logs(path: Path, root: Path | None, anchors: dict[str, Any]) -> list[Path]:
    """The logs to check: those at ``path``; for a deployment, also any log whose KME anchored its
    head but which is gone.

    Raises:
        AuditError: for a path that holds no log, and no anchor names it.
    """
    from qnet.management.audit import audit_files

    if not path.exists() and (root is None or path.stem not in anchors):
        audit_files(path)  # raises: no such file
    files = {f.stem: f for f in audit_files(path)} if path.exists() else {}
    if root is not None:
        wanted = anchors if path.is_dir() else [path.stem] if not path.exists() else []
        files |= {kme: root / "audit" / f"{kme}.jsonl" for kme in wanted if kme not in files}
    return [files[k] for k in sorted(files)]


def _verdict(file: Path, held: list[tuple[str, Any]]) -> tuple[bool, str]:
    """Whether a log is whole (its chain, and its end against the newest of its anchors ``held``)
    and what to say."""
    from qnet.management.audit import verify as check
    from qnet.management.audit_anchor import anchored_problem

    if not file.exists():
        return False, anchored_problem(file, [a for _, a in held]) or "missing"
    verdict = check(file)
    if not verdict.ok:
        return False, f"{verdict.reason} ({verdict.records} intact record(s) before it)"
    if problem := anchored_problem(file, [a for _, a in held]):
        return False, problem
    if not held:
        return True, f"ok {verdict.records} records, chain intact; no anchor of its head found (a cut-off end " \
                     "would not show)"
    where = ", ".join(sorted({w for w, _ in held}))
    return True, (f"ok {verdict.records} records, chain intact; its head signed at record "
                  f"{max(a.seq for _, a in held)} ({where})")


def _anchors(root: Path) -> dict[str, list[tuple[str, Any]]]:
    """KME_ID -> (where kept, anchor) for every validly signed anchor in a deployment's stores: each
    KME's own and those its peers keep of it."""
    from qnet.management.audit_anchor import ANCHOR_META, PEER_ANCHOR_META, valid_anchors
    from qnet.security.names import name_problem
    from qnet.security.pki import load_verify_key

    kept: dict[str, dict[str, str]] = {}
    for config, store in _kme_stores(root):
        for name, value in store.meta("audit").items():
            if name == ANCHOR_META:
                kept.setdefault(config.kme_id, {})["its store"] = value
            elif name.startswith(PEER_ANCHOR_META):
                kept.setdefault(name.removeprefix(PEER_ANCHOR_META), {})[f"{config.kme_id}'s store"] = value
    out = {}
    for kme, values in kept.items():
        if name_problem(kme, reserved=False):
            continue  # a store's entry that names no KME: never a path
        key_path = root / "kme" / f"{kme}.mldsa.pub"
        if key_path.is_file():
            out[kme] = valid_anchors(values, kme, load_verify_key(key_path))
    return out


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
    from qnet.management.audit import store_usage

    usage: dict[tuple[str, str], dict[str, int]] = {}
    for config, store in _kme_stores(root):
        usage |= store_usage(store, config.unit_bits)
    return usage


def _kme_stores(root: Path) -> Iterator[tuple[Any, Any]]:
    """(configuration, opened store) of each KME of a deployment directory whose store is an
    existing SQLite file: never a store created, never a server reached."""
    from qnet.errors import QNetError
    from qnet.keys.store import KeyStore
    from qnet.servers.config import load_config

    for config_path in sorted(root.glob("*.json")):
        try:
            config = load_config(config_path)
        except QNetError:
            continue  # not a KME configuration (endpoints.json, ...)
        db = config.store_url.removeprefix("sqlite:///")
        if not config.store_url.startswith("sqlite:///") or not Path(db).is_file():
            continue
        store = KeyStore(config.store_url, config.kme_id)
        try:
            yield config, store
        finally:
            store.close()


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
