"""Read-only health and status on the `http` port (the platform's health check):
`/healthz` while the loop is alive, `/readyz` (200 when ready, else 503 with why),
`/status` without secrets, `/metrics` (Prometheus), and the live status page at `/` with
the two read-only views it shows on a click: `/logs?unit=U` (a unit's last lines,
masked) and `/why?unit=U`. Any other method is 405: changes go through the socket."""

from __future__ import annotations

import os
import time

from supervisor.control.http import ApiError, Raw, Request, Response
from supervisor.control.metrics import CONTENT_TYPE, metrics_text
from supervisor.control.plane import ControlPlane
from supervisor.control.status import readiness, status_document
from supervisor.control.why import explain
from supervisor.errors import ControlError

# Which `http_serve` entry each path belongs to (spec.HTTP_VIEWS).
VIEW_OF_PATH = {
    "/healthz": "health",
    "/readyz": "health",
    "/status": "status",
    "/metrics": "metrics",
    "/": "page",
    "/logs": "page",
    "/why": "page",
}
PAGE_LINES = 200  # at most this many of a unit's last lines for the page
HTML = "text/html; charset=utf-8"
# The page loads nothing from elsewhere, and the browser is told to hold it to that.
PAGE_HEADERS = [
    (
        "Content-Security-Policy",
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
]


class HealthApi:
    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        # Beside this module, as the guard's script is beside its own (a package on disk;
        # importlib.resources would keep ~1 MiB of zip and email modules resident).
        with open(os.path.join(os.path.dirname(__file__), "status.html"), "rb") as page:
            self.page = page.read()

    async def handle(self, request: Request) -> Response:
        if request.method not in ("GET", "HEAD"):
            raise ApiError(
                405,
                "method_not_allowed",
                "this port is read-only; changes go through the control socket",
            )
        view = VIEW_OF_PATH.get(request.path)
        served = self.plane.http_views()
        if view is not None and view not in served:
            raise ApiError(
                404,
                "not_found",
                f"{request.path} is not served on this port ([supervise] http_serve = "
                f"{list(served)}); `supervise status`, `logs` and `why` have it",
            )
        if request.path == "/healthz":
            return Response(body={"status": "ok", "time": time.time()})
        if request.path == "/readyz":
            ready, body = readiness(self.plane.view(), self.plane.redactor)
            return Response(200 if ready else 503, body)
        if request.path == "/status":
            return Response(body=status_document(self.plane, full=False))
        if request.path == "/metrics":
            return Response(body=Raw(metrics_text(self.plane).encode(), CONTENT_TYPE))
        if request.path == "/":
            return Response(body=Raw(self.page, HTML), headers=PAGE_HEADERS)
        if request.path == "/logs":
            return self._logs(request)
        if request.path == "/why":
            name = self._unit(request)
            try:
                history = self.plane.history(name)
            except ControlError as exc:
                raise ApiError(404, exc.kind, exc.message) from exc
            text = explain(history, self.plane.view())
            return Response(body={"unit": name, "why": self.plane.redactor.mask(text)})
        raise ApiError(404, "not_found", f"no such endpoint {request.path!r}; try /readyz")

    def _logs(self, request: Request) -> Response:
        name = self._unit(request)
        count = min(int(request.number("lines", 50)), PAGE_LINES)
        try:
            records = self.plane.recent_logs(name)
        except ControlError as exc:
            raise ApiError(404, exc.kind, exc.message) from exc
        mask = self.plane.redactor.mask
        lines = [
            {"ts": r.ts, "stream": r.stream, "line": mask(r.line)}
            for r in (records[-count:] if count else [])
        ]
        return Response(body={"unit": name, "lines": lines})

    @staticmethod
    def _unit(request: Request) -> str:
        name = request.query.get("unit", [""])[-1]
        if not name:
            raise ApiError(400, "bad_request", "which unit? add ?unit=NAME")
        return name
