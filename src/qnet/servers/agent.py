"""A KME's link to the network's controller (ITU-T Y.3804), over HTTPS: every control period it
posts its report and applies the answer, both decided by :class:`qnet.control.kme_view.KMEControlView`
(what it reports of each link, what it takes from the controller's picture).

Between reports the agent waits on the controller's changes (a long poll): a cut, an alarm or a
moved session reaches every KME at once, not a period later.

If the controller stops answering for three periods, the KME forgets its picture and routes on what it
sees itself, so the network keeps working without its controller.
"""

from __future__ import annotations

import logging
import ssl
import threading
import time
from collections.abc import Callable
from typing import Protocol

import httpx

from qnet.control.kme_view import KMEControlView
from qnet.keys.events import KMEEvent
from qnet.keys.manager import KeyManager

__all__ = ["ControlAgent", "ControlledNode"]

WAIT_SLICE_S = 2.0
"""The longest one wait on the controller's changes lasts (a stopping KME is not held up longer)."""
MIN_REPORT_GAP_S = 0.1
"""Reports come at most this often, however often the controller's picture changes."""

log = logging.getLogger("qnet.kme")


class ControlledNode(Protocol):
    """What the agent needs of the KME it serves (:class:`qnet.servers.node.KMENode`)."""

    manager: KeyManager
    clock: Callable[[], float]
    control: KMEControlView


class ControlAgent:
    """Reports to the controller at ``url`` and applies its answers to ``node``."""

    def __init__(self, node: ControlledNode, url: str, period_s: float, context: ssl.SSLContext) -> None:
        self.node, self.url, self.period_s = node, url.rstrip("/") + "/control/v1/reports", period_s
        self.changes_url = url.rstrip("/") + "/control/v1/changes"
        self._revision: int | None = None
        self._http = httpx.Client(verify=context, timeout=max(period_s, 2.0))
        self._silent_since: float | None = None

    def run(self, stop: threading.Event) -> None:
        """Report every period until ``stop`` is set."""
        while not stop.is_set():
            began = time.monotonic()
            self.step()
            self.wait(stop, began + self.period_s)
        self._http.close()

    def wait(self, stop: threading.Event, until: float) -> None:
        """Until the next report is due at ``until`` (monotonic), or sooner: once the controller's
        picture changes. Without an answer from the controller this is a plain wait."""
        stop.wait(MIN_REPORT_GAP_S)
        while not stop.is_set() and (left := until - time.monotonic()) > 0:
            if self._revision is None or self._silent_since is not None:
                stop.wait(left)
                return
            wait_s = min(left, WAIT_SLICE_S)
            try:
                r = self._http.get(self.changes_url, params={"after": self._revision, "wait_s": round(wait_s, 3)},
                                   timeout=wait_s + 5.0)
                if r.status_code != 200:
                    raise httpx.HTTPError(f"{r.status_code}: {r.text[:200]}")
                if int(r.json()["revision"]) > self._revision:
                    return
            except (httpx.HTTPError, ValueError, KeyError, TypeError):
                stop.wait(left)
                return

    def step(self) -> None:
        """One report and its answer."""
        now, view = self.node.clock(), self.node.control
        try:
            report = view.report(now)
            r = self._http.post(self.url, json=report)
            if r.status_code != 200:
                raise httpx.HTTPError(f"{r.status_code}: {r.text[:200]}")
            answer = r.json()
            view.answered(report, answer)
            period_s, revision = float(answer.get("period_s", self.period_s)), answer.get("revision")
            self._silent_since = None
        except (httpx.HTTPError, ValueError, TypeError, AttributeError) as exc:  # no answer, or not one of ours
            if self._silent_since is None:
                self._silent_since = now
                self.node.manager.event(KMEEvent.CONTROLLER_UNREACHABLE, f"{self.url}: {exc}")
            elif now - self._silent_since > 3 * self.period_s:
                view.forget()
            return
        self.period_s = period_s
        self._revision = revision if isinstance(revision, int) else None
