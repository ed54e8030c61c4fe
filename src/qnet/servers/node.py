"""The running key manager of one node: store, key manager, ETSI 014 service, KM-to-KM traffic.

Two background threads keep it in step with its peers:

- the **outbox flusher** sends queued ``assign`` messages, batched per peer in one signed envelope;
  an ``enc_keys`` call waits for the flush round that carries its keys, so a master SAE only ever
  holds keys its slave's KME has already reserved;
- the **synchroniser** offers each peer the units it has not confirmed, and erases expired units.

Feeders (one child process per link, ``qnet.servers.feeder``) fill the store.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

from qnet.clients.km import KmClient, PeerError, tls_client_context
from qnet.keys.manager import KeyManager, LinkInfo
from qnet.keys.store import KeyStore, StoreError
from qnet.security.envelope import seal
from qnet.security.pki import load_signing_key, load_verify_key
from qnet.servers.config import KmeConfig
from qnet.servers.feeder import feeder_main
from qnet.service.etsi014 import Etsi014Service

__all__ = ["KmeNode"]

log = logging.getLogger("qnet.kme")

ACK_TIMEOUT_S = 5.0
SYNC_PERIOD_S = 0.2
EXPIRY_PERIOD_S = 10.0


class KmeNode:
    """Everything one KME process runs, apart from the HTTP server.

    Args:
        config: the KME's configuration.
        config_path: its file (feeder processes read it); None runs without feeders.
        clock: wall-clock seconds.
    """

    def __init__(self, config: KmeConfig, config_path: Path | None = None, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.config, self.config_path, self.clock = config, config_path, clock
        self.kme_id = config.kme_id
        self.store = KeyStore(config.store_url, config.kme_id, lifetime_s=config.key_lifetime_s)
        links = [LinkInfo(lk.link_id, lk.peer, lk.ends) for lk in config.links]
        remote = {sae: lk.peer for lk in config.links for sae in lk.remote_saes}
        self.manager = KeyManager(self.store, links, config.saes, remote, unit_bits=config.unit_bits, clock=clock)
        self.manager.wait_for_peer = self._wait_for_peer
        self.service = Etsi014Service(self.manager)
        self.signing_key = load_signing_key(config.signing_key)
        self.verify_keys = {lk.peer: load_verify_key(lk.peer_verify_key) for lk in config.links}
        context = tls_client_context(config.tls.ca, config.tls.cert, config.tls.key)
        self.clients = {lk.peer: KmClient(lk.peer_url, context) for lk in config.links}
        self._cond = threading.Condition()
        self._started = self._finished = 0
        self._failed_in: dict[str, int] = {}
        self._dirty = False
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._feeders: list[BaseProcess] = []

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self, *, feeders: bool = True) -> None:
        """Start the background threads (and the feeder processes)."""
        for target in (self._flush_loop, self._sync_loop):
            thread = threading.Thread(target=target, name=f"{self.kme_id}-{target.__name__}", daemon=True)
            thread.start()
            self._threads.append(thread)
        if feeders and self.config_path is not None:
            ctx = multiprocessing.get_context("spawn")
            for link in self.config.links:
                proc = ctx.Process(target=feeder_main, args=(str(self.config_path), link.link_id),
                                   name=f"feeder-{link.link_id}", daemon=True)
                proc.start()
                self._feeders.append(proc)

    def stop(self) -> None:
        """Stop threads and feeders; close connections."""
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(timeout=5)
        for proc in self._feeders:
            proc.terminate()
            proc.join(timeout=5)
        for client in self.clients.values():
            client.close()
        self.store.close()

    # -- KM-to-KM ----------------------------------------------------------------------------------------

    def send(self, peer: str, body: dict[str, Any]) -> dict[str, Any]:
        """Sign ``body`` and deliver it to ``peer``; returns the reply.

        Raises:
            PeerError: if the peer is unreachable or refuses it.
        """
        envelope = seal(body, sender=self.kme_id, receiver=peer, key=self.signing_key, now_s=self.clock())
        return self.clients[peer].send(envelope)

    def _wait_for_peer(self, peer: str) -> None:
        with self._cond:
            ticket = self._started + 1
            self._dirty = True
            self._cond.notify_all()
            ok = self._cond.wait_for(lambda: self._finished >= ticket or self._stop.is_set(), ACK_TIMEOUT_S)
            failed = self._failed_in.get(peer, -1) >= ticket
        if not ok or failed:
            raise StoreError(f"the peer KME {peer} did not acknowledge the keys; they stay queued for it and "
                             "will not be served again", [{"peer_KME_ID": peer}])

    def _flush_loop(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                self._cond.wait_for(lambda: self._dirty or self._stop.is_set(), 0.5)
                self._dirty = False
                self._started += 1
                round_no = self._started
            failed = self._flush_once()
            with self._cond:
                for peer in failed:
                    self._failed_in[peer] = round_no
                self._finished = round_no
                self._cond.notify_all()

    def _flush_once(self) -> set[str]:
        """Send every queued message, one batch per peer; returns the peers that failed."""
        by_peer: dict[str, list[tuple[int, dict[str, Any]]]] = defaultdict(list)
        for row_id, peer, body in self.store.outbox():
            by_peer[peer].append((row_id, body))
        failed = set()
        for peer, rows in by_peer.items():
            try:
                self.send(peer, {"type": "batch", "link_id": self.manager.links[peer].link_id,
                                 "messages": [body for _, body in rows]})
            except PeerError as exc:
                failed.add(peer)
                self.manager.event("peer-unreachable", f"{peer}: {exc}")
                continue
            self.store.outbox_done([row_id for row_id, _ in rows])
        return failed

    def _sync_loop(self) -> None:
        last_expiry = 0.0
        while not self._stop.wait(SYNC_PERIOD_S):
            for peer in self.manager.links:
                self._sync_with(peer)
            if self.clock() - last_expiry > EXPIRY_PERIOD_S:
                last_expiry = self.clock()
                self.store.expire(last_expiry)

    def _sync_with(self, peer: str) -> None:
        offer = self.manager.sync_offer(peer)
        if offer is None:
            return
        try:
            answer = self.send(peer, offer)
        except PeerError as exc:
            log.debug("sync with %s: %s", peer, exc)
            return
        self.manager.sync_answered(peer, offer, answer)
