"""``qnet send FILE --to SAE`` and ``qnet receive``: a file between two SAEs of a running network,
over a QKD-keyed channel (:mod:`qnet.clients.file_transfer`).

Both find their SAE in the network's state directory: its certificate and its node's KME, from
``DIR/endpoints.json`` (written by ``qnet up SPEC --state-dir DIR``), or from the KME
configurations of a deployment made by ``qnet pki init`` (``qnet kme serve DIR``). The receiver
listens on TCP with its SAE certificate (mutual TLS); the sender connects with its own, takes keys
from its KME (ETSI GS QKD 014 enc_keys), the receiver the same keys from its own (dec_keys). Both
show a progress bar on stderr and, at the end, the key the transfer consumed.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from qnet.cli._console import console, err_console
from qnet.clients.file_transfer import REKEY_BYTES, REKEY_S, Channel
from qnet.errors import InvalidRequestError, NotFoundError, did_you_mean

if TYPE_CHECKING:
    from qnet.clients.etsi014 import ETSI014Client
    from qnet.clients.file_transfer import Header, KMELookup, KMESupply, Progress, TransferReport
    from qnet.clients.records import SAEIdentity

__all__ = ["receive", "send"]

KME_TIMEOUT_S = 30.0
"""How long one ETSI 014 call may take (a thousand keys of 8192 bits is a large assign message)."""
_STATE_HELP = "The running network's directory (qnet up SPEC --state-dir DIR)."
_CHANNEL_NAMES = {Channel.aes: "AES-256-GCM", Channel.otp: "one-time pad"}


@dataclass(frozen=True)
class _SAE:
    """An SAE of the network: its TLS files and its node's KME."""

    identity: SAEIdentity
    node: str
    kme_url: str


def _network(state_dir: Path) -> tuple[Path, dict[str, tuple[str, str, Path, Path]]]:
    """(CA, SAE_ID -> (node, KME URL, cert, key)) of the network in ``state_dir``.

    Raises:
        NotFoundError: when there is no such directory, or no network in it.
    """
    if not state_dir.is_dir():
        raise NotFoundError(f"no such state directory: {state_dir} (start a network there with: "
                            f"qnet up SPEC --state-dir {state_dir})")
    endpoints = state_dir / "endpoints.json"
    if endpoints.is_file():
        data = json.loads(endpoints.read_text())
        return Path(data["ca_cert"]), {sae: (info["node"], data["kmes"][info["node"]], Path(info["cert"]),
                                             Path(info["key"])) for sae, info in data["saes"].items()}
    saes: dict[str, tuple[str, str, Path, Path]] = {}
    for path in sorted(state_dir.glob("*.json")):  # a deployment not started by qnet up (qnet kme serve DIR)
        config = json.loads(path.read_text())
        if isinstance(config, dict) and "kme_id" in config and "port" in config:
            url = f"https://{config.get('host', '127.0.0.1')}:{config['port']}"
            for sae in config.get("saes", []):
                saes[sae] = (config["kme_id"], url, state_dir / "sae" / f"{sae}.pem", state_dir / "sae" / f"{sae}.key")
    if not saes or not (state_dir / "ca.pem").is_file():
        raise NotFoundError(f"{state_dir} holds no qnet network (no endpoints.json, no KME configurations); start "
                            f"one with: qnet up SPEC --state-dir {state_dir}")
    return state_dir / "ca.pem", saes


def _sae(state_dir: Path, sae_id: str, option: str) -> _SAE:
    """The SAE ``sae_id`` (given as ``option``) of the network in ``state_dir``.

    Raises:
        NotFoundError: naming the SAEs there when it is not one of them.
    """
    from qnet.clients.records import SAEIdentity

    ca, saes = _network(state_dir)
    if sae_id not in saes:
        raise NotFoundError(f"{option} {sae_id!r}: no such SAE in the network of {state_dir}"
                            f"{did_you_mean(sae_id, saes)} (its SAEs: {', '.join(sorted(saes))})")
    node, url, cert, key = saes[sae_id]
    return _SAE(SAEIdentity(sae_id, ca, cert, key), node, url)


def _kme(sae: _SAE) -> ETSI014Client:
    from qnet.clients.etsi014 import ETSI014Client

    return ETSI014Client(sae.kme_url, ca=sae.identity.ca, cert=sae.identity.cert, key=sae.identity.key,
                         timeout_s=KME_TIMEOUT_S)


def _address(text: str, option: str) -> tuple[str, int]:
    from qnet.clients.records import parse_address

    try:
        return parse_address(text, option)
    except InvalidRequestError as exc:
        raise typer.BadParameter(str(exc).removeprefix(f"{option} "), param_hint=option) from None


class _Bars:
    """Rich progress bars on stderr: file bytes, MB/s, time left, and the key used so far."""

    def __init__(self) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                                 TransferSpeedColumn(), TimeRemainingColumn(), TextColumn("key {task.fields[key]}"),
                                 console=err_console)

    def bar(self, description: str, total: int) -> Progress:
        """A new bar; the callback moves it."""
        from rich.filesize import decimal

        tasks: list[Any] = []  # the bar appears with the first frame (not for a file refused at once)

        def advance(done: int, key_bytes: int) -> None:
            if not tasks:
                tasks.append(self.progress.add_task(escape(description), total=total or 1, key="0 bytes"))
            self.progress.update(tasks[0], completed=done, key=decimal(key_bytes))

        return advance

    @contextmanager
    def shown(self) -> Iterator[_Bars]:
        """The bars live while the block runs (their last state stays on the screen)."""
        with self.progress:
            yield self


def _key_line(report: TransferReport) -> str:
    key = report.key
    if report.channel is Channel.otp:
        what = (f"one-time pad: {report.size:,} file bytes and 32 per frame x {report.frames}")
    else:
        what = (f"{key.aes_keys} AES-256 key{'s' * (key.aes_keys != 1)}: the first and {key.rekeys} "
                f"re-key{'s' * (key.rekeys != 1)}")
    calls = "enc_keys" if report.role == "sent" else "dec_keys"
    spare = key.etsi014_bytes - key.key_bytes
    line = (f"key consumed: {key.key_bytes:,} bytes ({what}), from {_count(key.key_IDs, 'key_ID')}; "
            f"{_count(key.etsi014_keys, 'ETSI 014 key')} of {key.etsi014_bytes:,} bytes in "
            f"{_count(key.requests, calls + ' call')}")
    return line + (f" ({spare:,} bytes of them unused)" if report.role == "sent" and spare > 0 else "")


def _count(n: int, thing: str) -> str:
    return f"{n:,} {thing}{'s' * (n != 1)}"


def _print(report: TransferReport, as_json: bool) -> None:
    from qnet.cli._output import to_json

    if as_json:
        typer.echo(to_json(report.as_json()))
        return
    name = Path(report.path).name
    peer = (f"to {report.receiver} at {report.address}" if report.role == "sent" else
            f"from {report.sender} ({report.address}) into {report.path}")
    console.print(f"{report.role} {escape(name)} {escape(peer)}: {report.size / 1e6:,.1f} MB in "
                  f"{report.seconds:.2f} s, {report.mb_per_s:,.1f} MB/s over {_CHANNEL_NAMES[report.channel]}; "
                  f"SHA-256 {report.sha256} {'confirmed by the receiver' if report.role == 'sent' else 'checked'}",
                  highlight=False)
    console.print(_key_line(report), highlight=False)


def send(
    file: Path = typer.Argument(..., metavar="FILE", show_default=False, help="The file to send."),
    state_dir: Path = typer.Option(..., "--state-dir", help=_STATE_HELP, show_default=False),
    sae: str = typer.Option(..., "--as", metavar="SAE", show_default=False,
                            help="The sending SAE (master): its certificate, and its node's KME for the keys."),
    to: str = typer.Option(..., "--to", metavar="SAE", show_default=False, help="The receiving SAE (slave)."),
    address: str = typer.Option(..., "--address", metavar="HOST:PORT", show_default=False,
                                help="Where its `qnet receive --listen HOST:PORT` listens."),
    channel: Channel = typer.Option(Channel.aes, "--channel", case_sensitive=False,
                                    help="aes: AES-256-GCM re-keyed from QKD keys (32 key bytes a key); otp: "
                                         "one-time pad, one key byte per file byte."),
    rekey_bytes: int = typer.Option(REKEY_BYTES, "--rekey-bytes", min=1, max=1 << 30,
                                    help="aes: a new key after this many file bytes."),
    rekey_s: float = typer.Option(REKEY_S, "--rekey-s", min=0.001, help="aes: a new key after this many seconds."),
    wait_s: float = typer.Option(5.0, "--wait-s", min=0.0, max=3600.0,
                                 help="How long to wait for key when the KME runs short before giving up."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Send FILE to the SAE --to over a channel keyed by QKD keys, to its `qnet receive`; succeed only
    when the receiver confirms the file's SHA-256. Prints the key consumed.

    Example:  qnet send video.bin --state-dir tokyo --as tv-koganei --to tv-otemachi --address 127.0.0.1:9000
    """
    from qnet.clients.file_transfer import AES_PREFETCH_KEYS, KMESupply, send_file
    from qnet.clients.records import connect
    from qnet.service.aead_channel import AES_KEY_BYTES

    if not file.is_file():
        raise NotFoundError(f"no such file: {file}" if not file.exists() else f"{file} is not a file")
    me, peer = _sae(state_dir, sae, "--as"), _sae(state_dir, to, "--to")
    if me.identity.sae_id == peer.identity.sae_id:
        raise InvalidRequestError(f"--as and --to name the same SAE ({sae}): send to another")
    where = _address(address, "--address")
    with _kme(me) as kme:
        ahead = AES_PREFETCH_KEYS * AES_KEY_BYTES if channel is Channel.aes else 0
        supply = KMESupply(kme, to, min_request_bytes=ahead)
        if channel is Channel.otp:
            _check_pad(supply, file.stat().st_size, wait_s)
        conn = connect(where, me.identity, to)
        with conn, _Bars().shown() as bars:
            report = send_file(file, conn, sender=sae, channel=channel, supply=supply, rekey_bytes=rekey_bytes,
                               rekey_s=rekey_s, wait_s=wait_s,
                               on_progress=bars.bar(f"{file.name} -> {to}", file.stat().st_size))
    _print(report, as_json)


def _check_pad(supply: KMESupply, size: int, wait_s: float) -> None:
    """Refuse a one-time pad the KME cannot cover now (with --wait-s 0), or warn that it must make
    more key during the transfer."""
    from qnet.clients.file_transfer import CHUNK_BYTES
    from qnet.service.otp_channel import MAC_KEY_BYTES, KeyExhaustedError

    need = size + MAC_KEY_BYTES * max(-(-size // (CHUNK_BYTES - MAC_KEY_BYTES)), 1)
    have = supply.available_bytes()
    if have >= need:
        return
    text = (f"a one-time pad for {size:,} bytes needs {need:,} key bytes, and the KME holds about {have:,} for "
            f"{supply.slave} now")
    if wait_s == 0:
        raise KeyExhaustedError(f"{text}: nothing was sent (--channel aes needs 32 key bytes per re-key; or give "
                                "the KME time with --wait-s S)")
    err_console.print(f"[yellow]{escape(text)}: the link must make the rest during the transfer, or it stops "
                      f"after {wait_s:g} s without key[/]", highlight=False)


def receive(
    state_dir: Path = typer.Option(..., "--state-dir", help=_STATE_HELP, show_default=False),
    sae: str = typer.Option(..., "--as", metavar="SAE", show_default=False,
                            help="The receiving SAE (slave): its certificate, and its node's KME for the keys."),
    listen: str = typer.Option(..., "--listen", metavar="HOST:PORT", show_default=False,
                               help="Where to listen for senders (port 0: any free one, printed)."),
    out: Path = typer.Option(None, "--out", show_default=False,
                             help="A directory for the files (the sender's file names), or one file's path; "
                                  "the current directory if left out."),
    once: bool = typer.Option(False, "--once", help="Exit after the first transfer (non-zero if it failed)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace a file of the same name."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON report per file received."),
) -> None:
    """Receive files from SAEs that `qnet send` to this SAE, each over the QKD-keyed channel its sender
    chose, until Ctrl-C (or after one, with --once). A file appears only whole and checked.

    Example:  qnet receive --state-dir tokyo --as tv-otemachi --listen 127.0.0.1:9000 --out incoming/
    """
    from qnet.clients.file_transfer import FileReceiver
    from qnet.clients.records import Listener

    me = _sae(state_dir, sae, "--as")
    if out is not None and not out.is_dir() and not out.parent.is_dir():
        raise NotFoundError(f"--out {out}: no such directory {out.parent}")
    where = _address(listen, "--listen")
    with _kme(me) as kme, Listener(where, me.identity) as listener:
        host, port = listener.address
        err_console.print(f"{escape(sae)} receives on {host}:{port} into {escape(str(out or Path.cwd()))} "
                          f"(keys from the KME of {escape(me.node)}; Ctrl-C stops)", highlight=False)
        receiver = FileReceiver(sae, out, _lookups(kme), overwrite=overwrite)
        previous = signal.signal(signal.SIGTERM, _interrupt)  # a part file in the making is removed
        try:
            _serve(listener, receiver, once=once, as_json=as_json)
        except KeyboardInterrupt:
            err_console.print("stopped")
            raise typer.Exit(130) from None
        finally:
            signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def _lookups(kme: ETSI014Client) -> Callable[[str], KMELookup]:
    """dec_keys at ``kme`` for each master, in batches of what its KME allows."""
    from qnet.clients.file_transfer import KMELookup
    from qnet.errors import QNetError

    def lookup_for(master: str) -> KMELookup:
        try:
            batch = kme.status(master).max_key_per_request
        except QNetError:
            batch = 1024  # the KME answers dec_keys anyway (and says what is wrong there)
        return KMELookup(kme, master, max_per_request=batch)

    return lookup_for


def _serve(listener: Any, receiver: Any, *, once: bool, as_json: bool) -> None:
    from qnet.errors import QNetError

    def refused(where: str, why: str) -> None:
        err_console.print(f"[yellow]refused a connection from {escape(where)}: {escape(why)}[/]", highlight=False)

    while True:
        conn = listener.accept(refused)
        bars = _Bars()

        def start(header: Header, target: Path, bars: _Bars = bars) -> Progress:
            return bars.bar(f"{header.name} <- {header.sender}", header.size)

        try:
            with conn, bars.shown():
                report = receiver.receive(conn, start)
        except QNetError as exc:
            if once:
                raise
            err_console.print(f"[bold red]error:[/] {escape(str(exc))}", highlight=False)
            continue
        _print(report, as_json)
        if once:
            return
