"""`GET /metrics` against a real `supervise run`: parsed by prometheus_client's own text
parser (never by string matching), every value checked against `status --json`, and no
secret anywhere in it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import PY, ROOT, SVC, Run, cli, wait_until, write_stack
from tests.http_port import get, health_base

FAKE = str(ROOT / "tests" / "children" / "fakemcp.py")
SECRET = "sk-live-0123456789abcdef"
ENV_SECRET = "hunter2-very-secret"

STACK = f"""
[supervise]
http = "127.0.0.1:0"
coalesce = 0

[env]
DB_PASSWORD = "{ENV_SECRET}"

[models.alpha]
API_KEY = "{SECRET}"
DAY = "1"
[models.beta]
API_KEY = "{SECRET}"
DAY = "1"

[processes.trade]
per_model = true
command = ["{PY}", "{SVC}", "--listen"]
port = "auto"
inject = ["API_KEY", "DAY"]
ready = {{ tcp = "${{port}}" }}

[processes.tools]
command = ["{PY}", "{FAKE}"]
port = "auto"
ready = {{ mcp = "http://127.0.0.1:${{port}}/mcp" }}

[processes.crash]
command = ["{PY}", "{SVC}", "--exit", "3", "--sleep", "0"]
required = false
max_failures = 0
"""

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(base: str) -> tuple[str, Samples, dict[str, str]]:
    """The text, every sample by (name, labels), and each family's type."""
    status, content_type, text = get(f"{base}/metrics")
    assert status == 200, text
    assert content_type == "text/plain; version=0.0.4; charset=utf-8"
    samples: Samples = {}
    types = {}
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return text, samples, types


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def unit_labels(unit: dict[str, Any]) -> dict[str, str]:
    return {"unit": unit["unit"], "model": unit["model"] or "", "process": unit["process"]}


def status_json(run: Run) -> dict[str, Any]:
    result = cli("status", "--json", "-c", str(run.stack))
    assert result.returncode == 0, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return document


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[tuple[Run, str]]:
    run = Run(write_stack(tmp_path, STACK))
    try:
        base = health_base(run)
        for unit in ("alpha/trade", "beta/trade", "tools"):
            run.event(unit, "running", ready=True)
        run.event("crash", "failed")
        yield run, base
    finally:
        assert run.stop() == 0


def test_metrics_parse_and_agree_with_status_json_and_show_no_secret(
    stack: tuple[Run, str],
) -> None:
    run, base = stack
    assert cli("set", "alpha", "DAY=2", "-c", str(run.stack)).returncode == 0
    assert cli("reload", "-c", str(run.stack)).returncode == 0
    text, before, types = scrape(base)
    document = status_json(run)
    _, after, _ = scrape(base)

    assert SECRET not in text and ENV_SECRET not in text
    assert SECRET not in json.dumps(document)
    assert types["supervise_unit_restarts"] == "counter"  # the parser drops `_total`
    assert types["supervise_unit_probe_duration_seconds"] == "histogram"
    version = metadata.version("supervise")
    build = next(labels for name, labels in before if name == "supervise_build_info")
    assert dict(build)["version"] == version

    for unit in document["units"]:
        labels = unit_labels(unit)
        for state in ("pending", "running", "exited", "failed", "backoff", "stopped"):
            want = 1.0 if unit["state"] == state else 0.0
            assert value(before, "supervise_unit_state", **labels, state=state) == want, unit
        assert value(before, "supervise_unit_ready", **labels) == float(unit["ready"])
        assert value(before, "supervise_unit_restarts_total", **labels) == unit["restarts"]
        exit_code = value(before, "supervise_unit_last_exit_code", **labels)
        assert exit_code == unit["exit_code"], unit
        for key, name in (
            ("uptime", "supervise_unit_uptime_seconds"),
            ("cpu", "supervise_unit_cpu_seconds_total"),
            ("rss", "supervise_unit_resident_memory_bytes"),
        ):
            first, second = value(before, name, **labels), value(after, name, **labels)
            if unit[key] is None:
                assert first is None and second is None, (unit, name)
            elif key == "rss":  # memory moves both ways: same order of magnitude
                assert first is not None and 0.5 < unit[key] / first < 2, (unit, first)
            else:  # time only grows: status was read between the two scrapes
                assert first is not None and second is not None
                assert first <= unit[key] <= second, (unit, name, first, second)
        tools = value(before, "supervise_unit_mcp_tools", **labels)
        assert tools == unit["tools"], unit
        if unit["tools"] is not None:
            info = value(before, "supervise_unit_mcp_tools_info", **labels, hash=unit["tools_hash"])
            assert info == 1.0

    for model, status in document["models"].items():
        for state in ("running", "changing", "stopping", "failed"):
            want = 1.0 if status["state"] == state else 0.0
            assert value(before, "supervise_model_state", model=model, state=state) == want
    assert value(before, "supervise_model_sets_total", model="alpha") == 1.0
    assert value(before, "supervise_model_sets_total", model="beta") == 0.0
    took = value(before, "supervise_model_last_set_duration_seconds", model="alpha")
    assert took is not None and 0 < took < 60
    assert value(before, "supervise_model_last_set_duration_seconds", model="beta") is None

    assert value(before, "supervise_config_reloads_total") == 1.0
    assert value(before, "supervise_config_last_reload_successful") == 1.0
    assert value(before, "supervise_config_last_reload_success_timestamp_seconds")


def test_probe_latency_is_a_well_formed_histogram_per_unit(stack: tuple[Run, str]) -> None:
    _, base = stack
    _, samples, _ = scrape(base)
    labels = {"unit": "tools", "model": "", "process": "tools", "probe": "ready", "kind": "mcp"}
    count = value(samples, "supervise_unit_probe_duration_seconds_count", **labels)
    total = value(samples, "supervise_unit_probe_duration_seconds_sum", **labels)
    assert count == 1.0 and total is not None and 0 < total < 1
    buckets = sorted(
        (float(dict(k[1])["le"]), v)
        for k, v in samples.items()
        if k[0] == "supervise_unit_probe_duration_seconds_bucket"
        and {("unit", "tools"), ("probe", "ready")} <= k[1]
    )
    assert buckets[-1] == (float("inf"), count)
    counts = [v for _, v in buckets]
    assert counts == sorted(counts)
    tcp = {**labels, "unit": "alpha/trade", "model": "alpha", "process": "trade", "kind": "tcp"}
    assert value(samples, "supervise_unit_probe_duration_seconds_count", **tcp) == 1.0


def test_a_refused_reload_shows_as_an_unsuccessful_last_reload(
    stack: tuple[Run, str],
) -> None:
    run, base = stack
    good = run.stack.read_text()
    run.stack.write_text(good + "\n[processes.broken\n")  # the watcher reloads it

    def last_reload() -> tuple[float | None, float | None]:
        _, samples, _ = scrape(base)
        return (
            value(samples, "supervise_config_last_reload_successful"),
            value(samples, "supervise_config_reloads_total"),
        )

    wait_until(lambda: last_reload()[0] == 0.0, "last reload unsuccessful")
    assert (last_reload()[1] or 0) >= 1
    run.stack.write_text(good)
    wait_until(lambda: last_reload()[0] == 1.0, "last reload successful again")


def test_http_serve_keeps_a_public_port_to_the_health_checks_and_a_reload_widens_it(
    tmp_path: Path,
) -> None:
    body = f"""
[processes.web]
command = ["{PY}", "{SVC}"]
"""
    path = write_stack(
        tmp_path, '[supervise]\nhttp = "127.0.0.1:0"\nhttp_serve = ["health"]\n' + body
    )
    run = Run(path)
    try:
        run.event("web", "running", ready=True)
        base = health_base(run)
        assert get(base + "/healthz")[0] == 200
        assert get(base + "/readyz")[0] == 200
        for hidden in ("/status", "/metrics", "/", "/logs?unit=web", "/why?unit=web"):
            status, _, text = get(base + hidden)
            assert status == 404, (hidden, status)
            assert "is not served on this port ([supervise] http_serve = ['health'])" in text
        path.write_text('[supervise]\nhttp = "127.0.0.1:0"\n' + body)
        assert cli("reload", "-c", str(path)).returncode == 0
        assert get(base + "/status")[0] == 200  # the same port, serving everything again
        assert get(base + "/metrics")[0] == 200
    finally:
        assert run.stop() == 0
