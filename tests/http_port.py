"""The read-only HTTP port of a `supervise run` under test: where it listens, and plain
GETs against it (standard library; no retries: a test waits with `wait_until`)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from tests.helpers import Run


def health_base(run: Run) -> str:
    """`http://HOST:PORT` of the run's health port, from the line it prints at start."""
    note = run.wait_for(lambda r: "health and status on" in r.get("line", ""), "health url")
    url: str = note["line"].split(" on ", 1)[1]
    return url.removesuffix("/readyz")


def get(url: str, timeout: float = 10.0) -> tuple[int, str, str]:
    """Status, content type and body text of a GET."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = response.read().decode()
            return int(response.status), response.headers.get("Content-Type", ""), body
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


def get_json(url: str) -> Any:
    status, _, body = get(url)
    assert status == 200, f"GET {url}: want 200, got {status}: {body[:300]}"
    return json.loads(body)
