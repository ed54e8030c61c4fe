"""One exception tree, one table per server (:mod:`qnet.errors`, :mod:`qnet.servers.errors`):
every error class qnet defines is drawn in the tree and has a status in each server's table
(by a class of its own or one it derives from, never by the bare root), and a server answers a
raised error with that status and the standard's error body, in-process."""

from __future__ import annotations

import asyncio
import importlib
import pkgutil

import httpx
import pytest
from fastapi import FastAPI

import qnet
from qnet import errors
from qnet.errors import (
    ForbiddenError,
    NoRouteError,
    NotFoundError,
    QNetError,
    UnauthorizedError,
    UnavailableError,
)
from qnet.keys.store import InsufficientKeyError, StoreError
from qnet.servers.errors import CONTROL_STATUS, ETSI014_STATUS, install_error_handler, status_of

OPTIONAL = ("qnet.quantum.postprocess.amplification_gpu",)
"""Modules that need hardware this machine may lack (CuPy and a GPU)."""


def _every_error_class() -> list[type[QNetError]]:
    for info in pkgutil.walk_packages(qnet.__path__, "qnet."):
        if info.name not in OPTIONAL:
            importlib.import_module(info.name)
    found: list[type[QNetError]] = []
    pending = [QNetError]
    while pending:
        for sub in pending.pop().__subclasses__():
            if sub.__module__.startswith("qnet.") and sub not in found:
                found.append(sub)
                pending.append(sub)
    return found


ERRORS = _every_error_class()


def test_the_walk_finds_the_tree() -> None:
    """The walk reaches every layer's errors (else the checks below could pass on nothing)."""
    names = {cls.__name__ for cls in ERRORS}
    assert {"NoRouteError", "StoreError", "InsufficientKeyError", "PeerError", "EnvelopeError", "AuditError",
            "AuthenticationFailed", "PortInUseError", "SpecError", "CapacityError"} <= names


@pytest.mark.parametrize("cls", ERRORS, ids=[c.__name__ for c in ERRORS])
def test_every_error_is_drawn_and_mapped_by_each_server(cls: type[QNetError]) -> None:
    """Drawn in errors.py's docstring; a status in the KMEs' table and in the controller's, found on
    a class below the root."""
    assert f" {cls.__name__} " in (errors.__doc__ or "").replace("\n", " ")
    for table in (ETSI014_STATUS, CONTROL_STATUS):
        assert QNetError not in table
        assert status_of(cls, table) is not None


def test_the_most_derived_class_wins() -> None:
    """Not enough key is a store refusal, but an unavailable one: 503, not 400."""
    assert issubclass(InsufficientKeyError, StoreError)
    assert status_of(InsufficientKeyError, ETSI014_STATUS) == 503 and status_of(StoreError, ETSI014_STATUS) == 400
    assert status_of(ForbiddenError, CONTROL_STATUS) == 403 and status_of(NotFoundError, CONTROL_STATUS) == 404
    assert status_of(UnauthorizedError, ETSI014_STATUS) == 401


def test_domain_errors_carry_their_context_and_no_status() -> None:
    err = NoRouteError("A", "D", "node 'B' is excluded by policy")
    assert (err.src, err.dst) == ("A", "D") and str(err) == "no route from A to D: node 'B' is excluded by policy"
    short = InsufficientKeyError("not enough key", needed_units=8, available_units=3)
    assert (short.needed_units, short.available_units) == (8, 3)
    assert short.details == [{"available_units": "3", "needed_units": "8"}]
    assert not any(hasattr(e, "status") for e in (err, short))


@pytest.mark.parametrize(("error", "table", "status"), [
    (NoRouteError("A", "B"), CONTROL_STATUS, 503),
    (ForbiddenError("not an operator"), CONTROL_STATUS, 403),
    (UnavailableError("peer down", [{"failed": "B"}]), ETSI014_STATUS, 503),
    (NotFoundError("no such key"), ETSI014_STATUS, 400),
])
def test_a_server_answers_an_error_with_its_tables_status_and_body(error: QNetError, table: dict[type[QNetError], int],
                                                                   status: int) -> None:
    app = FastAPI()
    install_error_handler(app, table)

    @app.get("/")
    async def fail() -> None:
        raise error

    async def get() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
            return await http.get("/")

    response = asyncio.run(get())
    assert response.status_code == status
    assert response.json() == ({"message": error.message, "details": error.details} if error.details
                               else {"message": error.message})


@pytest.mark.parametrize("error", [
    NoRouteError("A", "D", "node 'B' is excluded by policy"),
    InsufficientKeyError("not enough key", needed_units=8, available_units=3),
    errors.CapacityError(("A", "B"), 2000.0, 500.0, "demand exceeds hop A-B"),
    errors.PortInUseError([("127.0.0.1", 8443, "KME of A")], "try elsewhere"),
    errors.SpecError("net.yaml", [errors.Problem("links[0]", "bad")]),
    UnavailableError("peer down", [{"failed": "B"}]),
], ids=lambda e: type(e).__name__)
def test_errors_cross_processes_whole(error: QNetError) -> None:
    """Pickled (multiprocessing, Dask) and copied, an error keeps its class, message, details and
    context, whatever its constructor takes."""
    import copy
    import pickle

    for again in (pickle.loads(pickle.dumps(error)), copy.copy(error)):
        assert type(again) is type(error) and str(again) == str(error)
        assert again.__dict__ == error.__dict__
