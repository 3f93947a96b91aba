"""Read-only health and status on the `http` port (the platform's health check):
`/healthz` while the loop is alive, `/readyz` (200 when ready, else 503 with why),
`/status` without secrets. Any other method is 405: changes go through the socket."""

from __future__ import annotations

import time

from supervisor.control.http import ApiError, Request, Response
from supervisor.control.plane import ControlPlane
from supervisor.control.status import readiness, status_document


class HealthApi:
    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane

    async def handle(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            raise ApiError(
                405,
                "method_not_allowed",
                "this port is read-only; changes go through the control socket",
            )
        if request.path == "/healthz":
            return Response(body={"status": "ok", "time": time.time()})
        if request.path == "/readyz":
            ready, body = readiness(self.plane.view())
            return Response(200 if ready else 503, body)
        if request.path == "/status":
            return Response(body=status_document(self.plane, full=False))
        raise ApiError(404, "not_found", f"no such endpoint {request.path!r}; try /readyz")
