"""Errors to HTTP answers, once per server: each server maps qnet's exception tree
(:mod:`qnet.errors`) to statuses in one table, looked up along the exception's class hierarchy as
Starlette's exception handlers are (the most derived class with an entry wins), and answers with
the ETSI GS QKD 014 error body (``message``, and ``details`` where there are any).

ETSI 014 knows three statuses (400, 401, 503), so a KME's ETSI 014 routes answer what the standard has
for each kind of failure; the controller's API, not bound by it, also answers 403, 404 and 409.
A test walks every subclass of :class:`~qnet.errors.QNetError` and checks that each table covers it.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from qnet.errors import (
    ConflictError,
    ForbiddenError,
    InvalidRequestError,
    NotFoundError,
    QNetError,
    UnauthorizedError,
    UnavailableError,
)

log = logging.getLogger("qnet.servers")

__all__ = ["CONTROL_STATUS", "ETSI014_STATUS", "error_body", "install_error_handler", "status_of"]

ETSI014_STATUS: Mapping[type[QNetError], int] = {
    InvalidRequestError: 400,
    NotFoundError: 400,  # a key_ID or SAE the KME does not know is a bad request (sec. 5.4)
    ConflictError: 400,
    UnauthorizedError: 401,
    ForbiddenError: 403,  # only the KM-to-KM routes: a KME of the network that is not a peer of this one
    UnavailableError: 503,
}
"""A KME's statuses (ETSI GS QKD 014 sec. 5: 400 bad request, 401 unauthorized, 503 error of server;
its ETSI 014 routes raise no ForbiddenError, so they answer only those three)."""

CONTROL_STATUS: Mapping[type[QNetError], int] = {
    InvalidRequestError: 400,
    UnauthorizedError: 401,
    ForbiddenError: 403,
    NotFoundError: 404,
    ConflictError: 409,
    UnavailableError: 503,
}
"""The controller's and the dashboard's statuses."""


def status_of(exc: QNetError | type[QNetError], table: Mapping[type[QNetError], int]) -> int | None:
    """The status ``table`` gives the most derived class of ``exc`` (an error, or its class) that
    it names (None if none)."""
    for cls in (exc if isinstance(exc, type) else type(exc)).__mro__:
        if cls in table:
            return table[cls]
    return None


def error_body(message: str, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The standard's Error data format (ETSI GS QKD 014 sec. 6.3)."""
    return {"message": message, "details": details} if details else {"message": message}


def install_error_handler(app: FastAPI, table: Mapping[type[QNetError], int], *, fallback: int = 503) -> None:
    """Answer every :class:`QNetError` a route raises with its status from ``table`` (``fallback``
    for one no entry covers: a bare QNetError) and the error body."""

    @app.exception_handler(QNetError)
    async def qnet_error(request: Request, exc: QNetError) -> JSONResponse:
        status = status_of(exc, table)
        if status is None:  # a bare QNetError in a request: a defect, with its traceback in the log
            log.error("%s %s: unmapped %s", request.method, request.url.path, type(exc).__name__, exc_info=exc)
        return JSONResponse(error_body(exc.message or str(exc), exc.details), status_code=status or fallback)
